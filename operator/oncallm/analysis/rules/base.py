"""What every rule shares: the Finding it returns, the Rule table entry, and context helpers."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    EvidenceIndex,
    container_id,
    is_noise_line,
    parse_quantity,
    pod_id,
)
from oncallm.models.analysis import STALE_TERMINATION, Category, parse_rfc3339
from oncallm.models.evidence import (
    ContainerSnapshot,
    Context,
    EventSnapshot,
    LogSnapshot,
    PodSnapshot,
    WorkloadSnapshot,
)


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds of the rules. Read from the environment by :meth:`from_env`."""

    cpu_throttling_ratio: float = 0.25
    """Share of CFS periods throttled from which a container counts as throttled
    (``ONCALLM_RULES_CPU_THROTTLING_RATIO``); 0.25 is kube-prometheus' CPUThrottlingHigh."""

    memory_near_limit_ratio: float = 0.9
    """Working set / memory limit from which memory counts as "at the limit"
    (``ONCALLM_RULES_MEMORY_NEAR_LIMIT_RATIO``); below it an exit 137 is less likely an OOM."""

    unknown_confidence: float = 0.2
    """Confidence of the fallback ``unknown`` diagnosis (``ONCALLM_RULES_UNKNOWN_CONFIDENCE``):
    low, so a language model or a human is asked to look."""

    alert_hint_bonus: float = 0.04
    """Added to a finding whose category the alert's name points at, e.g. KubeJobFailed for
    job_backoff_limit (``ONCALLM_RULES_ALERT_HINT_BONUS``). Small: it breaks ties, it never
    turns a symptom into a cause."""

    proven_cause_score: float = 0.7
    """Score from which a finding in the pod or outside it counts as a proven cause
    (``ONCALLM_RULES_PROVEN_CAUSE_SCORE``): a wrapper (a failed Job, a stuck rollout) yields
    the root cause to it. Below it sit the weak signals (a readiness failure, a non-zero exit
    with no reason) that are symptoms as often as causes."""

    secondary_cause_score: float = 0.8
    """Score from which another cause of a different category, citing other evidence, is
    reported as an independent secondary cause (``ONCALLM_RULES_SECONDARY_CAUSE_SCORE``)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RuleSettings:
        """Settings from ``ONCALLM_RULES_*`` variables; unset ones keep their defaults.

        Raises ValueError naming the variable when a value is not a number in [0, 1].
        """
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name in cls.__dataclass_fields__:
            var = f"ONCALLM_RULES_{name.upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number; set it to e.g. 0.25") from None
            if not 0 <= value <= 1:
                raise ValueError(f"{var}={raw!r} must be between 0 and 1")
            values[name] = value
        return cls(**values)


class Scope(StrEnum):
    """Where a rule looks for the fault. The engine ranks and links findings by it."""

    POD = "pod"
    """The pod's own spec, image or code: a missing key, a bad flag, an OOM, a panic."""

    OUTSIDE = "outside"
    """Outside the failing pod: a dependency, DNS, a certificate, RBAC, a NetworkPolicy, the
    node, storage, a quota, the scheduler. Rolling the pod back would not help."""

    CAPACITY = "capacity"
    """The service works, but not at the load it gets: CPU throttling."""

    WRAPPER = "wrapper"
    """A controller reporting that what it manages fails (a Job that gave up, a stuck rollout,
    an HPA at max). It describes the chain and names its own category only when it is itself
    at fault or nothing deeper is proven."""


@dataclass(frozen=True)
class Link:
    """One step of a causal chain below a finding: a cause of the cause, with its evidence."""

    summary: str
    evidence: list[str] = field(default_factory=list)
    category: Category | None = None


@dataclass
class Finding:
    """What one rule concluded. ``score`` (0-1) ranks findings and becomes the confidence."""

    category: Category
    score: float
    summary: str
    root_cause: str
    evidence: list[str] = field(default_factory=list)
    impact: str = ""
    immediate_actions: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    #: deeper steps the rule itself proved (the workload that fills a quota, the pod that
    #: fills a disk), outermost first
    because: list[Link] = field(default_factory=list)
    #: for a wrapper: the wrapper itself is the fault (a rollout deadlocked by its strategy
    #: while the old pods are healthy), so it competes with the causes instead of yielding
    at_fault: bool = False
    #: the name and scope of the rule that made it (set by the engine)
    rule: str = ""
    scope: Scope = Scope.POD


RuleCheck = Callable[[Context, EvidenceIndex, RuleSettings], "Finding | None"]
"""A cause rule: reads the context and the evidence, returns its finding or None."""

WrapperCheck = Callable[[Context, EvidenceIndex, RuleSettings, "list[Finding]"], "Finding | None"]
"""A wrapper rule: also sees the ranked findings of every other rule, computed once."""


@dataclass(frozen=True)
class Rule:
    """One entry of the rule table: what it detects, where it looks, how it checks.

    ``mechanism`` states the general failure mechanism the rule detects, in one sentence; a
    rule that cannot state one only fits a scenario and does not belong in the table.
    """

    name: str
    category: Category
    scope: Scope
    mechanism: str
    check: RuleCheck | None = None
    wrap: WrapperCheck | None = None

    def __post_init__(self) -> None:
        if (self.scope is Scope.WRAPPER) != (self.wrap is not None) or (self.check is None) == (
            self.wrap is None
        ):
            raise ValueError(f"rule {self.name}: wrappers have `wrap`, the others `check`")


# --- context helpers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A log line that matched a pattern; ``id`` is its evidence id when it was kept."""

    log: LogSnapshot
    lineno: int
    line: str
    match: re.Match[str]
    id: str | None


def grep(
    ctx: Context,
    ev: EvidenceIndex,
    pattern: re.Pattern[str],
    *,
    pods: Iterable[str] | None = None,
    skip_noise: bool = True,
) -> list[Hit]:
    """Matching log lines, previous containers first.

    Lines that match :data:`~oncallm.analysis.evidence.NOISE_LINE` (deprecation warnings,
    404 access logs) are skipped unless ``skip_noise`` is False.
    """
    only = set(pods) if pods is not None else None
    hits: list[Hit] = []
    for log in sorted(ctx.logs, key=lambda lg: not lg.previous):
        if only is not None and log.pod not in only:
            continue
        for lineno, line in enumerate(log.lines, 1):
            m = pattern.search(line)
            if m is None:
                continue
            if skip_noise and is_noise_line(line):
                continue
            hits.append(Hit(log, lineno, line.strip(), m, ev.line(log, lineno)))
    return hits


def cite_hits(hits: list[Hit], limit: int = 3) -> list[str]:
    """Evidence ids of the last ``limit`` kept hits (the latest say the most)."""
    ids = [h.id for h in hits if h.id]
    seen: list[str] = []
    for eid in reversed(ids):
        if eid not in seen:
            seen.append(eid)
        if len(seen) >= limit:
            break
    return list(reversed(seen))


def events(
    ctx: Context,
    *,
    reasons: Iterable[str] | None = None,
    pattern: re.Pattern[str] | None = None,
    warning: bool | None = None,
) -> list[EventSnapshot]:
    wanted = set(reasons) if reasons is not None else None
    out = []
    for e in ctx.events:
        if wanted is not None and e.reason not in wanted:
            continue
        if pattern is not None and not pattern.search(e.message):
            continue
        if warning is not None and (e.type == "Warning") != warning:
            continue
        out.append(e)
    return out


def containers(ctx: Context) -> Iterator[tuple[PodSnapshot, ContainerSnapshot]]:
    for pod in ctx.pods:
        for c in pod.containers:
            yield pod, c


def namespace(ctx: Context) -> str:
    if ctx.target.namespace:
        return ctx.target.namespace
    if ctx.pods:
        return ctx.pods[0].namespace
    if ctx.workload:
        return ctx.workload.namespace
    return "default"


def target_pod(ctx: Context) -> PodSnapshot | None:
    """The alerted pod when the alert names one, else the most troubled gathered pod."""
    if ctx.target.kind == "Pod":
        for pod in ctx.pods:
            if pod.name == ctx.target.name:
                return pod
    troubled = sorted(ctx.pods, key=lambda p: -_trouble(p))
    return troubled[0] if troubled else None


def _trouble(pod: PodSnapshot) -> int:
    score = sum(c.restart_count for c in pod.containers)
    if any(c.state == "waiting" and c.reason for c in pod.containers):
        score += 100
    if pod.phase in ("Pending", "Failed") or pod.reason:
        score += 50
    return score


def crashed_container(ctx: Context) -> tuple[PodSnapshot, ContainerSnapshot] | None:
    """The container that failed hardest: waiting with a reason, exited non-zero, restarted."""
    best: tuple[int, PodSnapshot, ContainerSnapshot] | None = None
    preferred = ctx.target.container
    for pod, c in containers(ctx):
        score = c.restart_count
        if c.state == "waiting" and c.reason:
            score += 1000
        if c.last_exit_code not in (None, 0) or c.exit_code not in (None, 0):
            score += 500
        if c.state == "terminated" and c.reason not in ("", "Completed"):
            score += 400
        if preferred and c.name == preferred:
            score += 10
        if ctx.target.kind == "Pod" and pod.name == ctx.target.name:
            score += 5
        if score > 0 and any(lg.pod == pod.name and lg.container == c.name for lg in ctx.logs):
            score += 200  # a failure whose log was read can be explained, not just reported
        if score > 0 and (best is None or score > best[0]):
            best = (score, pod, c)
    return (best[1], best[2]) if best else None


def log_of(
    ctx: Context, pod: str, container: str, *, previous: bool | None = None
) -> LogSnapshot | None:
    """The container's previous log if gathered (or the one asked for), else its current log."""
    logs = [lg for lg in ctx.logs if lg.pod == pod and lg.container == container]
    if previous is not None:
        logs = [lg for lg in logs if lg.previous == previous]
    logs.sort(key=lambda lg: not lg.previous)
    return logs[0] if logs else None


def controller(ctx: Context) -> WorkloadSnapshot | None:
    """The object to roll back or scale: the Deployment/StatefulSet/DaemonSet above the pods."""
    for w in [ctx.workload, *ctx.owners]:
        if w is not None and w.kind in ("Deployment", "StatefulSet", "DaemonSet"):
            return w
    return ctx.workload


def stale_termination(ctx: Context, c: ContainerSnapshot) -> bool:
    """The container recovered long before the alert: its last termination is history."""
    if c.state != "running" or not c.ready:
        return False
    ended = parse_rfc3339(c.last_finished_at)
    return ended is not None and ended < ctx.alert.starts_at - STALE_TERMINATION


def exit_code(c: ContainerSnapshot) -> int | None:
    """The code of the latest termination: the current one, else the last one."""
    if c.state == "terminated" and c.exit_code is not None:
        return c.exit_code
    return c.last_exit_code if c.last_exit_code is not None else c.exit_code


def workload_state(ctx: Context) -> str:
    """``Deployment orders/api has 1/3 ready replicas`` or the pod's phase; for impact text."""
    w = ctx.workload
    if w is not None and w.kind == "Job":
        return f"Job {w.namespace}/{w.name} has failed {w.failed or 0} pods"
    if w is not None and w.desired is not None:
        return f"{w.kind} {w.namespace}/{w.name} has {w.ready or 0}/{w.desired} ready replicas"
    pod = target_pod(ctx)
    if pod is not None:
        ready = sum(1 for c in pod.containers if c.ready and not c.init)
        total = sum(1 for c in pod.containers if not c.init)
        return f"pod {pod.namespace}/{pod.name} is {pod.phase or 'Unknown'} ({ready}/{total} ready)"
    return f"{ctx.target.display} is affected"


def pod_commands(ctx: Context, pod: PodSnapshot, c: ContainerSnapshot | None) -> list[str]:
    """describe + logs (previous when it restarted) for one pod."""
    cmds = [kc.describe("pod", pod.namespace, pod.name)]
    if c is not None:
        restarted = c.restart_count > 0 or c.last_state is not None
        cmds.append(kc.logs(pod.namespace, pod.name, c.name, previous=restarted))
    return cmds


def pod_cites(ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot | None) -> list[str]:
    return ev.cite(container_id(pod.name, c.name) if c else None, pod_id(pod.name))


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ][\d:.,]+Z?\s+")
"""A leading timestamp: the sentence around a quote says when already."""


def quote_line(text: str, limit: int = 220, keep: str | None = None) -> str:
    """A log line or message for a sentence: trimmed, quoted, cut in the middle when long;
    around ``keep`` when the line says its reason in the middle (a nested JSON error)."""
    text = _STAMP.sub("", " ".join(text.split()))
    at = text.find(keep) if keep else -1
    if len(text) > limit and at >= 0:
        start = max(0, min(at - limit // 3, len(text) - limit))
        text = (
            ("… " if start else "")
            + text[start : start + limit]
            + (" …" if start + limit < len(text) else "")
        )
    elif len(text) > limit:
        # keep both ends: error lines put the context first and the reason last
        head = limit * 2 // 5
        tail = limit - head - 3
        code = _ERROR_CODE.search(text, head, len(text) - tail)
        if code is not None and code.end() <= len(text) - tail:
            # and a cloud API's error code cut out of the middle (VolumeLimitExceeded,
            # AccessDeniedException): it is what to search for
            middle = text[code.start() : code.end() + 40]
            head = max(20, head - len(middle) // 2)
            tail = max(20, limit - head - len(middle) - 6)
            text = text[:head] + " … " + middle + " … " + text[len(text) - tail :]
        else:
            text = text[:head] + " … " + text[len(text) - tail :]
    return f"'{text}'"


#: An API's error code word: CamelCase ending in what went wrong (VolumeLimitExceeded,
#: UnauthorizedOperation, InsufficientInstanceCapacity, AccessDeniedException).
_ERROR_CODE = re.compile(
    r"\b(?:[A-Z][a-z]+){1,5}(?:Exceeded|Exception|Denied|NotFound|Unauthorized|Operation"
    r"|Capacity|Error|Failure|Invalid|Limit)\b"
)


@dataclass(frozen=True)
class InjectedSizing:
    """An injected sidecar's bound and the pod annotation its injector sets it from."""

    text: str
    """what to add to the cause (``; istio-proxy is injected ... sidecar.istio.io/...``)"""
    action: str
    command: str | None


def injected_sizing(
    ctx: Context, pod: PodSnapshot, c: ContainerSnapshot, bound: str, raised: str | None
) -> InjectedSizing | None:
    """For a sidecar a mesh or agent injector adds (istio-proxy, linkerd-proxy, vault-agent),
    the pod annotation that sets ``bound`` (``memory limit``): the injector writes the
    container's resources from it when the pod is created, so the fix is the annotation on
    the pod template, and ``kubectl set resources`` on the container would not last."""
    sized = c.sized_by.get(bound)
    if sized is None:
        return _resized_by_vpa(ctx, pod, bound)
    key, value = sized
    text = f"; {c.name} is an injected sidecar, sized by the pod annotation {key}" + (
        f" = {value}" if value else " (unset, so the injector's default applies)"
    )
    w = controller(ctx)
    action = (
        f"Set the pod template annotation {key}"
        + (f" to {raised}" if raised else "")
        + (f" on {w.kind} {w.namespace}/{w.name}" if w else "")
        + ": the injector writes the sidecar's resources from it when the pods are created, "
        "so a change to the container itself is undone at the next rollout."
    )
    command = (
        kc.annotate_template(w.kind, w.namespace, w.name, key, raised) if w and raised else None
    )
    return InjectedSizing(text, action, command)


def _resized_by_vpa(ctx: Context, pod: PodSnapshot, bound: str) -> InjectedSizing | None:
    """A VerticalPodAutoscaler in Auto/Recreate mode evicts pods and its admission controller
    writes its recommendation into the new ones (``vpaUpdates``); with ``controlledValues:
    RequestsAndLimits`` it scales the limit with the request. A recommendation learnt in a
    quiet period then caps the pod below its load, and the template's own values no longer
    apply: the fix is the VPA, not the container."""
    if pod.resized_by is None or bound not in pod.resized:
        return None
    vpa = pod.resized_by
    text = (
        f"; that {bound} was written by VerticalPodAutoscaler {vpa} when it recreated the pod "
        f"(vpaUpdates: '{pod.resized}'), not by the pod template: its recommendation is below "
        "what the load needs now"
    )
    action = (
        f"Bound VerticalPodAutoscaler {pod.namespace}/{vpa}: set minAllowed for the container "
        "(or controlledValues: RequestsOnly so it leaves the limits alone, or updateMode: Off "
        "while you size it), then restart the pods; a change to the pod template alone is "
        "rewritten by the VPA's admission controller."
    )
    return InjectedSizing(text, action, kc.describe("verticalpodautoscaler", pod.namespace, vpa))


def double_quantity(text: str | None) -> str | None:
    """``512Mi`` -> ``1Gi``, ``500m`` -> ``1``: a first guess for a raised limit."""
    value = parse_quantity(text)
    if value is None or text is None:
        return None
    if text.endswith("m"):
        milli = int(value * 2000)
        return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"
    if text.endswith(("Ki", "Mi", "Gi")):
        mi = int(value * 2 / 1024**2)
        return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"
    return f"{value * 2:g}"


_LOOPBACK = r"(?:127\.0\.0\.1|localhost|\[::1\])"
#: A flag that binds a server to the loopback address without naming the port
#: (kube-controller-manager's ``--bind-address=127.0.0.1`` serves its secure port there).
#: Only the server's own address flags: ``--metrics-bind-address=127.0.0.1`` binds another one.
#: An env var that sets the address a server binds (``SERVER_HOST``, ``BIND_ADDR``, ``HOST``),
#: not one that names a server it calls (``DB_HOST``, ``REDIS_HOST``).
_LOOPBACK_HOST_VAR = re.compile(
    r"BIND|LISTEN|^(?:(?:SERVER|HTTP|APP|WEB|API|UVICORN|GUNICORN|FLASK_RUN)_)?HOST(?:NAME)?$",
    re.I,
)
_LOOPBACK_FLAG = re.compile(
    rf"^--?(?:bind-address|address|listen-address|bind|host|listen)=(?:{_LOOPBACK}|::1)$"
)


def loopback_binding(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot, ports: set[int]
) -> tuple[str, str | None] | None:
    """The container's server listens on the loopback address only, for one of ``ports``
    (``--bind 127.0.0.1:8000``, ``LISTEN_ADDR=localhost:8000``, a log ``Serving securely on
    127.0.0.1:10257``): (what says so, its evidence id). Nothing listens on the pod's or the
    node's address then, so a probe, a Service or a scrape there is refused."""
    if not ports:
        return None
    alternatives = "|".join(str(p) for p in sorted(ports))
    loopback = re.compile(rf"{_LOOPBACK}:(?:{alternatives})\b")
    for var, value in {**c.config_env, **c.env}.items():
        if loopback.search(value):
            origin = c.config_env_source.get(var) if var not in c.env else None
            where = f"ConfigMap {origin}" if origin else "the pod spec"
            return f"its environment variable {var} ({where}) is '{value[:120]}'", None
    flag = next((w for w in c.command if loopback.search(w) or _LOOPBACK_FLAG.search(w)), None)
    hits = [h for h in grep(ctx, ev, loopback, pods=[pod.name]) if h.log.container == c.name]
    if hits and flag is None:
        # the log proves the loopback bind; a host setting with the bare address is what set it
        for var, value in {**c.config_env, **c.env}.items():
            if _LOOPBACK_HOST_VAR.search(var) and re.fullmatch(rf"{_LOOPBACK}|::1", value):
                origin = c.config_env_source.get(var) if var not in c.env else None
                where = f"ConfigMap {origin}" if origin else "the pod spec"
                return (
                    f"its environment variable {var} ({where}) is '{value}', and it logs "
                    f"{quote_line(hits[-1].line, 160)}",
                    hits[-1].id,
                )
    if flag is not None:
        logged = f", and it logs {quote_line(hits[-1].line, 160)}" if hits else ""
        return f"its command line binds {flag}{logged}", hits[-1].id if hits else None
    if hits:
        return f"it logs {quote_line(hits[-1].line, 160)}", hits[-1].id
    return None
