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
    excerpt matches ``pattern``. ``what`` says it in words, for the note."""

    what: str
    pattern: re.Pattern[str]
    sources: frozenset[EvidenceSource] = frozenset()

    def found_in(self, item: EvidenceRef) -> bool:
        if self.sources and item.source not in self.sources:
            return False
        return self.pattern.search(f"{item.id} {item.excerpt}") is not None


def _need(what: str, pattern: str, *sources: EvidenceSource) -> Need:
    return Need(what, re.compile(pattern, re.IGNORECASE), frozenset(sources))


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
        r"^pvc/|ProvisioningFailed|FailedBinding|unbound|persistentvolumeclaim|"
        r"storageclass|volume node affinity|FailedAttachVolume|Multi-Attach",
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


def support(category: Category, evidence: list[EvidenceRef]) -> tuple[EvidenceRef | None, str]:
    """The first evidence item that proves ``category``, and what the category needs.

    ``unknown`` needs nothing: the item is None and the need is empty.
    """
    need = NEEDS.get(category)
    if need is None:
        return None, ""
    for item in evidence:
        if need.found_in(item):
            return item, need.what
    return None, need.what


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
    item, need = support(proposed.category, evidence)
    cited = [e for e in evidence if e.id in set(proposed.evidence)]
    proof, _ = support(proposed.category, cited)
    if item is None:
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{proposed_text}; kept {baseline.category.value} because "
            f"{proposed.category.value} needs {need}, and none was gathered.",
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
