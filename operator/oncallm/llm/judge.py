"""Whose category stands when the model and the rules disagree: never worse than the rules.

Grounding (``analyse.ground``) only proves that the ids the model cites exist. A weak model
gives valid JSON that cites real evidence and names the wrong category ("app_crash_exception"
for a container the kernel OOM-killed), so a differing category must also pass two checks:

1. **The evidence the category needs is there.** Each category names what proves it (an
   OOM needs an OOMKilled or exit-137 termination or a kernel OOM record; an image error a
   pull event or an image waiting reason; ...), as patterns over the gathered evidence
   (:data:`NEEDS`). Any gathered item may supply it, cited or not.
2. **It does not overrule a confident rules finding.** The rules read the same evidence with
   tested rules; when they found a cause at least ``confident_rules`` sure, they stand.
3. **Where the rules are unsure, the model must be sure and cite the proof.** Replacing a
   weak or ``unknown`` rules' result takes a model confidence of at least ``confident_rules``
   and an item the model itself cites among those that prove its category (a pod that
   recovered shows failed probes too; the rules call it ``unknown`` on purpose).

What the evidence says of a failure that shows on the pod itself (a crash, an OOM kill, an
image or a Secret that keeps it from starting, a failing probe) proves nothing about
a pod whose containers all run, ready and never restarted: that is history, such as a probe
that failed while the pod started or an exception it handled (:data:`POD_FAILURES`). Nor does
a probe's failed connection prove a dependency down: the probe connects to the container
itself (:attr:`Need.unless`).

When the model's category is refused, the rules' diagnosis stands and the note says both
sides ("The model proposed X because …; kept Y because …"). Agreeing on the category, the
model's text stands: it may explain the same cause better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oncallm.models.analysis import Category, Diagnosis, EvidenceRef, EvidenceSource

#: The model's reasoning quoted in a note is cut to this many characters.
MAX_QUOTED_CHARS = 240


@dataclass(frozen=True)
class Need:
    """What proves a category: an evidence item from ``sources`` (any when empty) whose id or
    excerpt matches ``pattern`` and not ``unless``. ``what`` says it in words, for the note."""

    what: str
    pattern: re.Pattern[str]
    sources: frozenset[EvidenceSource] = frozenset()
    #: what looks like the proof and is not (a probe's failed connection for a dependency)
    unless: re.Pattern[str] | None = None

    def found_in(self, item: EvidenceRef) -> bool:
        if self.sources and item.source not in self.sources:
            return False
        text = f"{item.id} {item.excerpt}"
        if self.unless is not None and self.unless.search(text):
            return False
        return self.pattern.search(text) is not None


def _need(what: str, pattern: str, *sources: EvidenceSource, unless: str = "") -> Need:
    return Need(
        what,
        re.compile(pattern, re.IGNORECASE),
        frozenset(sources),
        re.compile(unless, re.IGNORECASE) if unless else None,
    )


_S = EvidenceSource
_CONTAINER = (_S.CONTAINER_STATUS, _S.POD_STATUS)

#: Per category, the evidence that proves it (any one of the patterns). ``unknown`` needs
#: nothing. Patterns are plain alternations, linear on any excerpt.
NEEDS: dict[Category, Need] = {
    Category.OOM_KILLED: _need(
        "an OOMKilled or exit-137 termination, or a kernel OOM record",
        r"OOMKill|exit(?: code)? 137\b|out of memory|oom[-_ ]kill|Killed process",
    ),
    Category.IMAGE_PULL_ERROR: _need(
        "an image pull event or an image waiting reason (ErrImagePull, ImagePullBackOff)",
        r"ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull|Failed to pull|"
        r"pulling image|manifest unknown|exec format error|no match for platform",
    ),
    Category.FAILING_PROBE: _need(
        "a failed probe (an Unhealthy event)",
        r"probe failed|/Unhealthy\b|Unhealthy:",
        _S.EVENT,
        *_CONTAINER,
    ),
    Category.MISSING_SECRET_OR_CONFIGMAP: _need(
        "a missing Secret or ConfigMap (CreateContainerConfigError, a failed mount, not found)",
        r"^missing/|CreateContainerConfigError|(?:secret|configmap)s? \"[^\"]*\" not found|"
        r"couldn't find key|FailedMount",
    ),
    Category.BAD_CONFIG: _need(
        "a configuration or argument error in the logs or the container's termination",
        r"invalid|unknown (?:flag|option|field|key|argument|setting)|flag provided but not "
        r"defined|unrecognized|parse|yaml|toml|unmarshal|config|must be|required|not set|"
        r"executable file not found|no such file|not found in \$PATH|bad value",
        _S.LOG,
        _S.EVENT,
        *_CONTAINER,
    ),
    Category.APP_CRASH_EXCEPTION: _need(
        "a crash in the logs (an exception, a panic, a stack trace, a fatal error)",
        r"Traceback|panic|exception|fatal|segmentation fault|SIGSEGV|SIGABRT|uncaught|"
        r"unhandled|stack ?trace|nil pointer|null ?pointer|core dumped|assertion",
        _S.LOG,
        *_CONTAINER,
    ),
    Category.DEPENDENCY_UNREACHABLE: _need(
        "a failed connection to a dependency, or a Service without ready endpoints",
        r"connection refused|ECONNREFUSED|ECONNRESET|timed? ?out|timeout|unreachable|"
        r"no route to host|dial tcp|could not connect|cannot connect|failed to connect|"
        r"no (?:ready )?endpoints|0 ready|unavailable",
        _S.LOG,
        _S.SERVICE,
        _S.EVENT,
        *_CONTAINER,
        unless=r"probe failed|/Unhealthy\b",
    ),
    Category.DNS_FAILURE: _need(
        "a failed name lookup (no such host, NXDOMAIN, name resolution)",
        r"no such host|NXDOMAIN|SERVFAIL|name resolution|could not resolve|resolve host|"
        r"server misbehaving|getaddrinfo|Name or service not known|lookup \S+ on",
    ),
    Category.NODE_NOT_READY: _need(
        "a node that is not Ready (NotReady, Ready=False or Unknown)",
        r"(?-i:NodeNotReady|NotReady|Ready=False|Ready=Unknown|^node/\S+/Ready\b)|"
        r"NodeStatusUnknown|PIDPressure=True",
        _S.NODE,
        _S.EVENT,
    ),
    Category.DISK_PRESSURE: _need(
        "disk pressure or evictions for disk (DiskPressure, no space left, Evicted)",
        r"/DiskPressure\b|DiskPressure=True|no space left|EvictionThresholdMet|"
        r"FreeDiskSpaceFailed|Evicted|ephemeral[- ]storage (?:usage|limit)|disk (?:is )?full",
    ),
    Category.PVC_PENDING: _need(
        "a PersistentVolumeClaim that is not bound (Pending, ProvisioningFailed, FailedBinding)",
        r"^pvc/\S+ (?:Pending|Lost)\b|ProvisioningFailed|FailedBinding|unbound|"
        r"volume node affinity|FailedAttachVolume|Multi-Attach",
    ),
    Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE: _need(
        "a scheduling failure (FailedScheduling, Insufficient cpu/memory, untolerated taint)",
        r"FailedScheduling|Insufficient|Unschedulable|didn't match|NotTriggerScaleUp|"
        r"untolerated taint|\b0/\d+ nodes",
    ),
    Category.QUOTA_EXCEEDED: _need(
        "a ResourceQuota that is exhausted or refused a create",
        r"^quota/|exceeded quota|quota",
    ),
    Category.RBAC_FORBIDDEN: _need(
        "a refusal by the API server (forbidden, cannot <verb>)",
        r"forbidden|cannot (?:get|list|watch|create|update|patch|delete)|RBAC|unauthorized|"
        r"permission denied",
    ),
    Category.CERT_EXPIRED: _need(
        "a certificate error (x509, expired certificate, TLS handshake)",
        r"x509|certificate|tls handshake|ssl",
    ),
    Category.JOB_BACKOFF_LIMIT: _need(
        "a Job that failed (BackoffLimitExceeded, DeadlineExceeded)",
        r"BackoffLimitExceeded|backoff ?limit|DeadlineExceeded|activeDeadlineSeconds|"
        r"^workload/Job/",
    ),
    Category.HPA_MAXED: _need(
        "a HorizontalPodAutoscaler at its maximum",
        r"^hpa/|maxReplicas|max replicas|ScalingLimited|TooManyReplicas",
    ),
    Category.CPU_THROTTLING: _need(
        "CPU throttling (a throttling metric or alert)",
        r"throttl",
    ),
    Category.ROLLOUT_STUCK: _need(
        "a rollout that does not progress (ProgressDeadlineExceeded, unavailable replicas)",
        r"ProgressDeadlineExceeded|progress deadline|unavailable [1-9]|ReplicaSetCreateError|"
        r"FailedCreate|FailedAttachVolume|Multi-Attach",
        _S.WORKLOAD,
        _S.EVENT,
    ),
    Category.NETWORK_POLICY_BLOCK: _need(
        "a NetworkPolicy that selects the pod",
        r"^netpol/|networkpolic",
    ),
}


#: Failures that show on the pod itself: its container restarts (a crash, an OOM kill), never
#: starts (an image, a missing Secret or ConfigMap) or is not ready (a failing probe). A pod
#: whose containers all run, ready and never restarted has none of them now. A bad config is
#: not one: a wrong setting can leave the pod running and ready (retention off, a wrong URL).
POD_FAILURES = frozenset(
    {
        Category.OOM_KILLED,
        Category.APP_CRASH_EXCEPTION,
        Category.IMAGE_PULL_ERROR,
        Category.MISSING_SECRET_OR_CONFIGMAP,
        Category.FAILING_PROBE,
    }
)

#: A container status line (``describe_container``) of a container that runs, is ready and
#: never restarted: no waiting or terminated state, no last state. (One that restarted may
#: be ready between two OOM kills: corpus worker-oom-noisy-logs.)
_HEALTHY_CONTAINER = re.compile(r"^container \S+ \([^)]*\); running; restarts 0, ready true(?:;|$)")


def pod_of(item: EvidenceRef) -> str:
    """``pod/<namespace>/<name>`` of an item about a pod (its logs, events, status), else ""."""
    parts = item.object.split("/")
    if parts[0] != "pod" or len(parts) < 3 or not parts[2]:
        return ""
    return f"pod/{parts[1]}/{parts[2].split()[0]}"


def healthy_pods(evidence: list[EvidenceRef]) -> set[str]:
    """The pods whose gathered containers all run, ready and never restarted."""
    healthy: dict[str, bool] = {}
    for item in evidence:
        if item.source is not EvidenceSource.CONTAINER_STATUS:
            continue
        if not item.excerpt.startswith("container "):
            continue  # an init container, an environment listing
        pod = pod_of(item)
        if pod:
            ok = _HEALTHY_CONTAINER.search(item.excerpt) is not None
            healthy[pod] = healthy.get(pod, True) and ok
    return {pod for pod, ok in healthy.items() if ok}


def support(
    category: Category, evidence: list[EvidenceRef], healthy: set[str] | None = None
) -> tuple[EvidenceRef | None, str]:
    """The first evidence item that proves ``category``, and what the category needs.

    ``healthy`` are pods that run ready and never restarted (:func:`healthy_pods` of all the
    gathered evidence): an item about one of them proves no :data:`POD_FAILURES`.
    ``unknown`` needs nothing: the item is None and the need is empty.
    """
    need = NEEDS.get(category)
    if need is None:
        return None, ""
    for item in evidence:
        if need.found_in(item) and not _history(category, item, healthy):
            return item, need.what
    return None, need.what


def _history(category: Category, item: EvidenceRef, healthy: set[str] | None) -> bool:
    return category in POD_FAILURES and pod_of(item) in (healthy or set())


@dataclass(frozen=True)
class Verdict:
    """Whether the model's diagnosis stands against the rules', and what to say."""

    accept: bool
    #: the model named another category than the rules
    disagreement: bool
    #: a sentence for the report ("The model proposed X because …; kept Y because …")
    note: str | None = None


def judge(
    proposed: Diagnosis,
    baseline: Diagnosis,
    evidence: list[EvidenceRef],
    *,
    confident_rules: float,
) -> Verdict:
    """Decide between the model's (grounded) diagnosis and the rules' ``baseline``."""
    if proposed.category == baseline.category:
        return Verdict(accept=True, disagreement=False)
    rules_confident = (
        baseline.category is not Category.UNKNOWN and baseline.confidence >= confident_rules
    )
    proposed_text = f"The model proposed {proposed.category.value} because {_quote(proposed)}"
    rules_found = (
        f"the rules found {baseline.category.value} with confidence {baseline.confidence:.2f}"
        + (f" ({', '.join(baseline.evidence[:3])})" if baseline.evidence else "")
    )
    if proposed.category is Category.UNKNOWN:
        if rules_confident:
            return Verdict(
                accept=False,
                disagreement=True,
                note=f"{proposed_text}; kept {baseline.category.value} because {rules_found}.",
            )
        return Verdict(accept=True, disagreement=True)
    healthy = healthy_pods(evidence)
    item, need = support(proposed.category, evidence, healthy)
    cited = [e for e in evidence if e.id in set(proposed.evidence)]
    proof, _ = support(proposed.category, cited, healthy)
    if item is None:
        past, _ = support(proposed.category, evidence)
        why = (
            f"what was gathered of it is about {pod_of(past)}, which runs ready and never "
            f"restarted ({past.id} is history)"
            if past is not None
            else "none was gathered"
        )
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{proposed_text}; kept {baseline.category.value} because "
            f"{proposed.category.value} needs {need}, and {why}.",
        )
    if rules_confident:
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{proposed_text}; kept {baseline.category.value} because {rules_found}, "
            f"which the model's evidence ({item.id}) does not outweigh.",
        )
    if proof is None or proposed.confidence < confident_rules:
        reason = (
            f"the model cited none of the evidence that proves it (such as {item.id})"
            if proof is None
            else f"the model's confidence {proposed.confidence:.2f} is below "
            f"{confident_rules:.2f} (ONCALLM_LLM_CONFIDENT_RULES)"
        )
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{proposed_text}; kept {baseline.category.value} because {reason}.",
        )
    return Verdict(
        accept=True,
        disagreement=True,
        note=f"The model's {proposed.category.value} (proven by {proof.id}) replaced the "
        f"rules' {baseline.category.value}, which had confidence {baseline.confidence:.2f}.",
    )


def _quote(diagnosis: Diagnosis) -> str:
    text = " ".join((diagnosis.root_cause or diagnosis.summary).split())
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 1].rstrip() + "…"
    return f'"{text}"'
