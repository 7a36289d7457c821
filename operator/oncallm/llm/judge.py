"""Whose category stands when the model and the rules disagree: never worse than the rules.

Grounding (``analyse.ground``) only proves that the ids the model cites exist. A weak model
gives valid JSON that cites real evidence and names the wrong category ("app_crash_exception"
for a container the kernel OOM-killed), so a differing category must also pass these checks:

1. **The evidence the category needs is there.** Each category names what proves it (an
   OOM needs an OOMKilled or exit-137 termination or a kernel OOM record; an image error a
   pull event or an image waiting reason; ...), as patterns over the gathered evidence
   (:data:`NEEDS`). Any gathered item may supply it, cited or not, if it is current (below).
2. **It does not overrule a confident rules finding.** The rules read the same evidence with
   tested rules; when they found a cause at least ``confident_rules`` sure, they stand.
3. **Where the rules are unsure, the model must be sure and cite the proof.** Replacing a
   weak or ``unknown`` rules' result takes a model confidence of at least ``confident_rules``
   and an item the model itself cites among those that prove its category (a pod that
   recovered shows failed probes too; the rules call it ``unknown`` on purpose).
4. **It is not the symptom of the rules' cause, nor a wrapper of a pod's own failure**
   (below), even where the rules are unsure.

What proves a category must be **current** (:class:`PodsNow`). What the evidence says of a
failure that shows on the pod itself (a crash, an OOM kill, an image or a Secret that keeps it
from starting, a failing probe: :data:`POD_FAILURES`), or of a failed connection, is history
when the pod no longer exists (replaced since), when it runs ready and never restarted or last
restarted over an hour before the alert began (the rules' ``STALE_TERMINATION``), when the
event was last seen before the pod's container last restarted and the pod runs ready since,
and, for a readiness probe's failure, whenever the pod is ready now. Nor does a probe's failed
connection prove a dependency down (the probe connects to the container itself), nor an exit
137 that a liveness kill or an eviction explains prove an OOM (137 is any SIGKILL).

A **wrapper** (a stuck rollout, an HPA at its maximum: :data:`WRAPPERS`) is a controller
reporting that what it manages fails: it is the cause only when the controller itself is at
fault, never while a pod it manages fails for a cause of its own (crash-looping, OOM-killed,
an image or a config that keeps it from starting). And a failed connection is what a blocking
NetworkPolicy, a failed name lookup or a bad certificate looks like from the client: where the
rules found one of those, the model's ``dependency_unreachable`` restates the symptom of the
rules' cause and does not replace it (:data:`SYMPTOM_OF`).

When the model's category is refused, the rules' diagnosis stands and the note says both
sides ("The model proposed X because …; kept Y because …"). Agreeing on the category, the
model's text stands: it may explain the same cause better.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from oncallm.models.analysis import (
    STALE_TERMINATION,
    Category,
    Diagnosis,
    EvidenceRef,
    EvidenceSource,
    logged_as_info,
    parse_rfc3339,
)

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
    #: proof the pattern cannot say (a number compared with another), besides the pattern
    check: Callable[[EvidenceRef], bool] | None = field(default=None, compare=False)

    def found_in(self, item: EvidenceRef) -> bool:
        if self.sources and item.source not in self.sources:
            return False
        if item.source is EvidenceSource.LOG and logged_as_info(item.excerpt):
            return False  # what a program logs at info level it handled: it proves no failure
        text = f"{item.id} {item.excerpt}"
        if self.unless is not None and self.unless.search(text):
            return False
        if self.check is not None and self.check(item):
            return True
        return self.pattern.search(text) is not None


def _need(
    what: str,
    pattern: str,
    *sources: EvidenceSource,
    unless: str = "",
    check: Callable[[EvidenceRef], bool] | None = None,
) -> Need:
    return Need(
        what,
        re.compile(pattern, re.IGNORECASE),
        frozenset(sources),
        re.compile(unless, re.IGNORECASE) if unless else None,
        check,
    )


_UPDATED = re.compile(r"\bdesired (\d+), ready \d+, updated (\d+)\b")


_EVICTED = re.compile(r"\bEvicted\b", re.IGNORECASE)


def _kubelet_eviction(item: EvidenceRef) -> bool:
    """An eviction in the kubelet's words (an ``Evicted`` event or pod reason). A log line that
    says "evicted" is the application's own (a cache dropping entries)."""
    return item.source is not EvidenceSource.LOG and _EVICTED.search(item.excerpt) is not None


def _updating(item: EvidenceRef) -> bool:
    """A workload line (``describe_workload``) with fewer pods updated than desired: a rollout
    under way. Unavailable replicas alone are no rollout: a finished one whose pods fail shows
    them too (``Progressing=True NewReplicaSetAvailable``)."""
    match = _UPDATED.search(item.excerpt)
    return match is not None and int(match.group(2)) < int(match.group(1))


_S = EvidenceSource
_CONTAINER = (_S.CONTAINER_STATUS, _S.POD_STATUS)

#: Per category, the evidence that proves it (any one of the patterns). ``unknown`` needs
#: nothing. Patterns are plain alternations, linear on any excerpt.
NEEDS: dict[Category, Need] = {
    Category.OOM_KILLED: _need(
        "an OOMKilled or exit-137 termination, or a kernel OOM record",
        r"OOMKill|exit(?: code)? 137\b|out of memory|oom[-_ ]kill|Killed process",
        unless=r"ContainerStatusUnknown|Evicted",
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
        r"executable file not found|exec\b[^\n]{0,120}no such file|not found in \$PATH|bad value",
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
        r"no (?:ready )?endpoints|\b0 ready|unavailable",
        _S.LOG,
        _S.SERVICE,
        _S.EVENT,
        *_CONTAINER,
        # a Service of the alerted pods themselves is no dependency: theirs being down is the
        # symptom, whatever the cause
        unless=r"probe failed|/Unhealthy\b|^service/\S+ member service",
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
        r"FreeDiskSpaceFailed|ephemeral[- ]storage (?:usage|limit)|disk (?:is )?full",
        check=_kubelet_eviction,
    ),
    Category.PVC_PENDING: _need(
        "a PersistentVolumeClaim that is not bound (Pending, ProvisioningFailed, FailedBinding)",
        r"^pvc/\S+ (?:Pending|Lost)\b|ProvisioningFailed|FailedBinding|unbound|"
        r"volume node affinity conflict|FailedAttachVolume|Multi-Attach",
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
        "a refusal by the API server (forbidden, cannot <verb>) or of the pod's identity by "
        "an outside authority (Vault, AWS STS, Google IAM)",
        r"forbidden|cannot (?:get|list|watch|create|update|patch|delete)|RBAC|unauthorized|"
        r"permission denied|not authorized|invalid role name|WebIdentityErr|"
        r"InvalidIdentityToken|AssumeRoleWithWebIdentity|getAccessToken'? denied",
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
        "a rollout that does not progress (ProgressDeadlineExceeded, fewer pods updated than "
        "desired, an update held at its partition)",
        r"ProgressDeadlineExceeded|progress deadline|ReplicaSetCreateError|FailedCreate|"
        r"FailedAttachVolume|Multi-Attach|; updating \S+ -> \S+|rollingUpdate partition",
        _S.WORKLOAD,
        _S.EVENT,
        check=_updating,
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

#: What a pod's own evidence proves only while it is current: the failures that show on the
#: pod, and a failed connection (one logged by a pod that runs ready is one it survived: a
#: retry that worked). A Service without endpoints is about no pod and stays proof.
CURRENT_ON_POD = POD_FAILURES | {Category.DEPENDENCY_UNREACHABLE}

#: Wrappers: a controller reporting that what it manages fails (the rules' ``Scope.WRAPPER``).
#: One is the cause only when the controller itself is at fault (a rollout that cannot place
#: its new pods, an HPA that needs more than its maximum); while a pod it manages fails for a
#: cause of its own, that cause is the diagnosis. (A failed Job is left out: its pods failing
#: is what a Job's failure is, and its proof is the Job's own BackoffLimitExceeded.)
WRAPPERS = frozenset({Category.ROLLOUT_STUCK, Category.HPA_MAXED})

#: Per category, the causes it is the symptom of, seen from the client: a NetworkPolicy that
#: blocks egress, a failed name lookup and a bad certificate all make a dependency unreachable.
#: Where the rules found one of these, the model's category restates the rules' cause.
SYMPTOM_OF: dict[Category, frozenset[Category]] = {
    Category.DEPENDENCY_UNREACHABLE: frozenset(
        {Category.NETWORK_POLICY_BLOCK, Category.DNS_FAILURE, Category.CERT_EXPIRED}
    ),
}

#: A container status line (``describe_container``) of a container that runs and is ready,
#: with its restart count. (One that restarted may be ready between two OOM kills: corpus
#: worker-oom-noisy-logs; its last termination says whether that is recent.)
_RUNNING_READY = re.compile(
    r"^container \S+ \([^)]*\); running; (?:last state .*?; )?restarts (\d+), ready true(?:;|$)"
)
#: A container (or init container) that fails for a cause of its own now: waiting on an error,
#: or terminated by one.
_FAILING_NOW = re.compile(
    r"^(?:init )?container \S+ \([^)]*\); (?:waiting (?:CrashLoopBackOff|ErrImagePull|"
    r"ImagePullBackOff|InvalidImageName|ErrImageNeverPull|CreateContainerConfigError|"
    r"CreateContainerError|RunContainerError)|terminated (?:Error|OOMKilled))\b"
)
_CRASHED = re.compile(r"; last state terminated (?:Error|OOMKilled)\b")
_READINESS = re.compile(r"Readiness probe failed", re.IGNORECASE)
#: A readiness probe the application answered with a server error, as the kubelet words it:
#: the probe works and the application says it is not ready (the rules' ``_APP_VERDICT``).
_APP_VERDICT = re.compile(r"Readiness probe failed: HTTP probe failed with statuscode: 5\d\d")
#: A network path evaluated against the policies of both ends (``network_paths``), and what
#: one says when a policy denies it.
_PATH = re.compile(r"; egress: .*; ingress: ")
_DENIED = re.compile(r"\bdenied\b")
_LIVENESS = re.compile(r"liveness probe", re.IGNORECASE)
#: What names the kernel's OOM killer; an exit 137 alone is any SIGKILL.
_OOM_WORDS = re.compile(r"OOMKill|out of memory|oom[-_ ]kill|Killed process", re.IGNORECASE)


def pod_of(item: EvidenceRef) -> str:
    """``pod/<namespace>/<name>`` of an item about a pod (its logs, events, status), else ""."""
    parts = item.object.split("/")
    if parts[0] != "pod" or len(parts) < 3 or not parts[2]:
        return ""
    return f"pod/{parts[1]}/{parts[2].split()[0]}"


@dataclass
class PodNow:
    """One gathered pod as its status lines say it is now."""

    #: its containers (at least one) all run and are ready
    ready: bool = True
    containers: int = 0
    restarts: int = 0
    #: when a container of it last terminated, if one did
    last_termination: datetime | None = None
    #: a container status item that fails for a cause of its own now
    failing: EvidenceRef | None = None
    #: a container status item whose last termination was an error or an OOM kill
    crashed: EvidenceRef | None = None


@dataclass(frozen=True)
class PodsNow:
    """What the gathered evidence says of the pods now, to tell a current failure from history.

    Built from the items themselves: each gathered pod has a ``pod/<name>`` status item and a
    status line per container, and events are gathered only for the gathered pods and the
    alert's target, so an event of a pod without a status item is one of a pod that no longer
    exists (replaced since)."""

    pods: dict[str, PodNow]
    #: when the alert started (the ``alert`` item's time)
    alert_start: datetime | None = None
    #: pods whose liveness probe failed or killed a container
    liveness: frozenset[str] = frozenset()
    #: pods whose application answered the readiness probe with a server error
    verdict: frozenset[str] = frozenset()

    @classmethod
    def of(cls, evidence: list[EvidenceRef]) -> PodsNow:
        pods: dict[str, PodNow] = {}
        alert_start = None
        liveness: set[str] = set()
        verdict: set[str] = set()
        for item in evidence:
            pod = pod_of(item)
            if item.id == "alert":
                alert_start = parse_rfc3339(item.time)
            if not pod:
                continue
            if item.source is EvidenceSource.POD_STATUS:
                pods.setdefault(pod, PodNow())
            elif item.source is EvidenceSource.CONTAINER_STATUS:
                state = pods.setdefault(pod, PodNow())
                if _FAILING_NOW.search(item.excerpt) and state.failing is None:
                    state.failing = item
                if _CRASHED.search(item.excerpt) and state.crashed is None:
                    state.crashed = item
                if not item.excerpt.startswith("container "):
                    continue  # an init container, an environment listing
                state.containers += 1
                running = _RUNNING_READY.search(item.excerpt)
                state.ready = state.ready and running is not None
                state.restarts += int(running.group(1)) if running else 0
                ended = parse_rfc3339(item.time) if "terminated" in item.excerpt else None
                if ended is not None and (
                    state.last_termination is None or ended > state.last_termination
                ):
                    state.last_termination = ended
            elif item.source is EvidenceSource.EVENT:
                if _LIVENESS.search(item.excerpt):
                    liveness.add(pod)
                if _APP_VERDICT.search(item.excerpt):
                    verdict.add(pod)
        for state in pods.values():
            state.ready = state.ready and state.containers > 0
        return cls(pods, alert_start, frozenset(liveness), frozenset(verdict))

    def healthy(self) -> set[str]:
        """The pods whose containers all run, ready and never restarted."""
        return {pod for pod, s in self.pods.items() if s.ready and s.restarts == 0}

    def failing(self) -> EvidenceRef | None:
        """A container that fails for a cause of its own now (crash-looping, OOM-killed, an
        image or a config that keeps it from starting), or one that restarted and last
        terminated within the hour before the alert began."""
        for state in self.pods.values():
            if state.failing is not None:
                return state.failing
            if state.crashed is not None and not self._settled(state):
                return state.crashed
        return None

    def _settled(self, state: PodNow) -> bool:
        """Runs ready and never restarted, or last restarted long before the alert began."""
        if not state.ready:
            return False
        if state.restarts == 0:
            return True
        if state.last_termination is None or self.alert_start is None:
            return False
        return state.last_termination < self.alert_start - STALE_TERMINATION

    def history(self, category: Category, item: EvidenceRef) -> str:
        """Why ``item``, which looks like proof of ``category``, is history now; "" when it is
        current (or no pod's state says otherwise)."""
        pod = pod_of(item)
        if category not in CURRENT_ON_POD or not pod:
            return ""
        state = self.pods.get(pod)
        if state is None:
            if self.pods and item.source is EvidenceSource.EVENT:
                return f"it is about {pod}, which no longer exists (replaced since)"
            return ""
        if (
            category is Category.OOM_KILLED
            and pod in self.liveness
            and not _OOM_WORDS.search(f"{item.id} {item.excerpt}")
        ):
            return (
                f"an exit 137 is any SIGKILL, and the liveness probe of {pod} killed its container"
            )
        if (
            category is Category.FAILING_PROBE
            and pod in self.verdict
            and _READINESS.search(item.excerpt)
        ):
            return (
                f"the application answers {pod}'s readiness probe with a server error (HTTP "
                "5xx): the probe works, and the application says it is not ready"
            )
        if not state.ready:
            return ""
        if state.restarts == 0:
            return f"it is about {pod}, which runs ready and never restarted"
        ended = state.last_termination
        if self._settled(state) and ended is not None:
            return (
                f"it is about {pod}, which runs ready since its container last terminated at "
                f"{ended:%Y-%m-%dT%H:%M:%SZ}, over an hour before the alert began"
            )
        seen = parse_rfc3339(item.time)
        if item.source is EvidenceSource.EVENT and ended and seen and seen <= ended:
            return (
                f"it was last seen before {pod}'s container restarted "
                f"({ended:%Y-%m-%dT%H:%M:%SZ}), and the pod runs ready since"
            )
        if category is Category.FAILING_PROBE and _READINESS.search(item.excerpt):
            return f"{pod} is ready now, so its readiness probe passes"
        return ""


def healthy_pods(evidence: list[EvidenceRef]) -> set[str]:
    """The pods whose gathered containers all run, ready and never restarted."""
    return PodsNow.of(evidence).healthy()


def support(
    category: Category, evidence: list[EvidenceRef], now: PodsNow | None = None
) -> tuple[EvidenceRef | None, str]:
    """The first evidence item that proves ``category``, and what the category needs.

    ``now`` (:meth:`PodsNow.of` all the gathered evidence) leaves out what is history: items
    about pods that recovered or no longer exist (:meth:`PodsNow.history`). ``unknown`` needs
    nothing: the item is None and the need is empty.
    """
    need = NEEDS.get(category)
    if need is None:
        return None, ""
    for item in evidence:
        if need.found_in(item) and not (now and now.history(category, item)):
            return item, need.what
    return None, need.what


def open_path(evidence: list[EvidenceRef]) -> EvidenceRef | None:
    """The alert's own network path (a scrape of its target: ``-> <namespace>/<name>:``) as
    the policies of both ends allow it, if it was evaluated (``network_paths``). Only the
    alert's path says what traffic fails; another path allowed on one port and protocol says
    nothing of the rest (DNS allowed over UDP and blocked over TCP)."""
    alert = next((e for e in evidence if e.id == "alert"), None)
    parts = alert.object.split("/") if alert is not None else []
    if len(parts) != 3:
        return None
    target = f"-> {parts[1]}/{parts[2]}:"
    for item in evidence:
        if item.source is EvidenceSource.NETWORK_POLICY and _PATH.search(item.excerpt):
            if target in item.excerpt and not _DENIED.search(item.excerpt):
                return item
    return None


def _past(
    category: Category, evidence: list[EvidenceRef], now: PodsNow
) -> tuple[EvidenceRef, str] | None:
    """The first item that looks like proof of ``category`` and is history, and why."""
    need = NEEDS.get(category)
    for item in evidence:
        if need is not None and need.found_in(item):
            why = now.history(category, item)
            if why:
                return item, why
    return None


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
    kept = f"{proposed_text}; kept {baseline.category.value} because"
    rules_found = (
        f"the rules found {baseline.category.value} with confidence {baseline.confidence:.2f}"
        + (f" ({', '.join(baseline.evidence[:3])})" if baseline.evidence else "")
    )
    if proposed.category is Category.UNKNOWN:
        if rules_confident:
            return Verdict(accept=False, disagreement=True, note=f"{kept} {rules_found}.")
        return Verdict(accept=True, disagreement=True)
    now = PodsNow.of(evidence)
    item, need = support(proposed.category, evidence, now)
    cited = [e for e in evidence if e.id in set(proposed.evidence)]
    proof, _ = support(proposed.category, cited, now)
    if item is None:
        past = _past(proposed.category, evidence, now)
        why = f"{past[0].id} is history: {past[1]}" if past is not None else "none was gathered"
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{kept} {proposed.category.value} needs {need}, and {why}.",
        )
    if rules_confident:
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{kept} {rules_found}, which the model's evidence ({item.id}) does not outweigh.",
        )
    path = open_path(evidence) if proposed.category is Category.NETWORK_POLICY_BLOCK else None
    if path is not None:
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{kept} a NetworkPolicy blocks only traffic it does not allow, and "
            f"{path.id} shows the policies of both ends allow the alert's own path.",
        )
    if baseline.category in SYMPTOM_OF.get(proposed.category, frozenset()):
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{kept} {proposed.category.value} is what {baseline.category.value} looks "
            f"like from the client: {rules_found}, the deeper cause.",
        )
    failing = now.failing() if proposed.category in WRAPPERS else None
    if failing is not None:
        return Verdict(
            accept=False,
            disagreement=True,
            note=f"{kept} {proposed.category.value} is a controller reporting that what it "
            f"manages fails, and {failing.id} fails for a cause of its own.",
        )
    if proof is None or proposed.confidence < confident_rules:
        reason = (
            f"the model cited none of the evidence that proves it (such as {item.id})"
            if proof is None
            else f"the model's confidence {proposed.confidence:.2f} is below "
            f"{confident_rules:.2f} (ONCALLM_LLM_CONFIDENT_RULES)"
        )
        return Verdict(accept=False, disagreement=True, note=f"{kept} {reason}.")
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
