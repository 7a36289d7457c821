"""Flatten a gathered :class:`~oncallm.models.evidence.Context` into citable evidence.

Every snapshot becomes one or more :class:`~oncallm.models.analysis.EvidenceRef` items whose
ids are derived from what they describe (``container/api-7d9f8c6b5-x2kqp/api``,
``event/Pod/api-7d9f8c6b5-x2kqp/BackOff``, ``log/api-7d9f8c6b5-x2kqp/api/previous#L42``), so
the same cluster state always yields the same ids and a diagnosis can cite them.

Items come out ordered most diagnostic first: termination reasons and exit codes, Warning
events, error lines of logs (previous container first), abnormal node conditions, broken
dependencies, then the healthy background. The language model's prompt builder cuts this
list from the end to fit its budget, so the order is part of the contract.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from oncallm.models.analysis import EvidenceRef, EvidenceSource
from oncallm.models.evidence import (
    ContainerSnapshot,
    Context,
    EventSnapshot,
    HistorySnapshot,
    HPASnapshot,
    LogSnapshot,
    NetworkPolicySnapshot,
    NodeSnapshot,
    PodSnapshot,
    PVCSnapshot,
    QuotaSnapshot,
    ServiceSnapshot,
    WorkloadSnapshot,
)

ALERT_ID = "alert"
"""The id of the alert itself."""


@dataclass(frozen=True)
class EvidenceSettings:
    """How much of each log becomes evidence.

    Read from the environment by :meth:`from_env`; the defaults fit a typical crash loop
    (a traceback and the lines around it) into a few hundred prompt tokens per container.
    """

    max_error_lines: int = 8
    """Error-looking lines kept per log (``ONCALLM_EVIDENCE_MAX_ERROR_LINES``). When there are
    more, the first two (where the trouble started) and the last ones (how it ended) are kept."""

    tail_lines: int = 5
    """Last lines kept per log whatever they say (``ONCALLM_EVIDENCE_TAIL_LINES``): the end of
    a previous container's log is where it died."""

    max_excerpt_chars: int = 400
    """Longest excerpt of one item (``ONCALLM_EVIDENCE_MAX_EXCERPT_CHARS``); longer text is cut
    with an ellipsis so one JSON log line cannot eat the prompt budget."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> EvidenceSettings:
        """Settings from ``ONCALLM_EVIDENCE_*`` variables; unset ones keep their defaults.

        Raises ValueError naming the variable when a value is not a positive integer.
        """
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name in ("max_error_lines", "tail_lines", "max_excerpt_chars"):
            var = f"ONCALLM_EVIDENCE_{name.upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not an integer; set it to e.g. 8") from None
            if values[name] < 1:
                raise ValueError(f"{var}={raw!r} must be at least 1")
        return cls(**values)


# --- id helpers: rules cite exactly what build_evidence produces ---------------------------


def container_id(pod: str, container: str) -> str:
    """``container/<pod>/<container>``: a container's state, last state and restarts."""
    return f"container/{pod}/{container}"


def pod_id(pod: str) -> str:
    """``pod/<pod>``: a pod's phase, reason and conditions."""
    return f"pod/{pod}"


def event_base_id(event: EventSnapshot) -> str:
    """``event/<Kind>/<name>/<reason>``; a second event with the same three gets ``~2``."""
    return f"event/{event.object_kind or 'Object'}/{event.object_name}/{event.reason or 'Event'}"


def log_line_id(log: LogSnapshot, lineno: int) -> str:
    """``log/<pod>/<container>/previous#L42``: line 42 (1-based) of the fetched tail."""
    which = "previous" if log.previous else "current"
    return f"log/{log.pod}/{log.container}/{which}#L{lineno}"


def node_condition_id(node: str, condition: str) -> str:
    """``node/<node>/<Condition>``: an abnormal node condition (``Ready`` not True, a pressure)."""
    return f"node/{node}/{condition}"


def node_id(node: str) -> str:
    """``node/<node>``: a node's taints, schedulability and allocated resources."""
    return f"node/{node}"


def workload_id(kind: str, name: str) -> str:
    """``workload/<Kind>/<name>``: replicas and conditions of a Deployment, Job, ..."""
    return f"workload/{kind}/{name}"


def revision_id(name: str) -> str:
    """``revision/<name>``: one ReplicaSet or ControllerRevision, with what it changed."""
    return f"revision/{name}"


def pvc_id(name: str) -> str:
    return f"pvc/{name}"


def service_id(name: str) -> str:
    return f"service/{name}"


def quota_id(name: str) -> str:
    return f"quota/{name}"


def limit_range_id(name: str) -> str:
    return f"limitrange/{name}"


def hpa_id(name: str) -> str:
    return f"hpa/{name}"


def metric_id(name: str) -> str:
    return f"metric/{name}"


def netpol_id(name: str) -> str:
    return f"netpol/{name}"


def history_id(analysis: str) -> str:
    return f"history/{analysis}"


def missing_id(name: str) -> str:
    """``missing/<name>``: a ConfigMap or Secret a pod references that does not exist."""
    return f"missing/{name}"


# --- what looks like an error in a log line -------------------------------------------------

ERROR_LINE = re.compile(
    r"""
    \b(?:error|err|errors?=[1-9]|exception|traceback|panic|fatal|critical|crit|emerg
      |refused|timed\ ?out|timeout|deadline\ exceeded|forbidden|denied|unauthori[sz]ed
      |x509|certificate|no\ such\ host|name\ resolution|name\ or\ service\ not\ known
      |not\ found|cannot|can't|could\ not|couldn't|unable\ to|failed|failure
      |killed|invalid|unknown\ (?:flag|field|option|key)|flag\ provided\ but\ not\ defined
      |segmentation\ fault|out\ of\ memory|oom|unreachable|reset\ by\ peer|broken\ pipe
      |exited|exit\ code|abort(?:ed|ing)?|E[0-9]{4})\b
    | \w+(?:Error|Exception)\b
    | ^\s*at\ [\w.$]+\(
    """,
    re.IGNORECASE | re.VERBOSE,
)
"""A line worth quoting: error words, exception class names, stack frames."""

NOISE_LINE = re.compile(
    r"""
    deprecat
    | \b(?:level=)?debug\b
    | "\s(?:404|301|302|304)\s            # access log lines for a harmless miss or redirect
    | \bstatus[=:]\s?(?:404|301|302|304)\b
    | \b(?:0|no)\ errors?\b
    | \berrors?[=:]\s?0\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
"""Lines that look like errors but are not: deprecation warnings, 404 access logs, "0 errors"."""


def is_error_line(line: str) -> bool:
    """True for a log line that reports a failure and is not known noise."""
    return bool(ERROR_LINE.search(line)) and not NOISE_LINE.search(line)


# --- flattening -----------------------------------------------------------------------------

# Lower comes first. The tiers follow how an engineer reads a crash: how the container died,
# what the cluster said about it, what the process said, then the node and dependencies.
_P_ALERT = 0
_P_CONTAINER_BAD = 10
_P_MISSING = 12
_P_POD_BAD = 15
_P_EVENT_WARNING = 20
_P_LOG_ERROR_PREVIOUS = 30
_P_LOG_ERROR_CURRENT = 32
_P_NODE_BAD = 40
_P_OBJECT_BAD = 45
_P_METRIC = 50
_P_LOG_TAIL_PREVIOUS = 60
_P_LOG_TAIL_CURRENT = 62
_P_BACKGROUND = 70
_P_HISTORY = 80


@dataclass
class _Item:
    priority: int
    ref: EvidenceRef


@dataclass
class EvidenceIndex:
    """The flattened evidence of a context, with lookups from snapshots to their ids.

    Rules use the lookups (``event_ids``, ``line_ids``) so they cite only items that exist.
    """

    items: list[EvidenceRef] = field(default_factory=list)
    #: id(EventSnapshot) -> evidence id
    event_ids: dict[int, str] = field(default_factory=dict)
    #: (id(LogSnapshot), 1-based line number) -> evidence id, for the lines that were kept
    line_ids: dict[tuple[int, int], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = {item.id for item in self.items}

    def has(self, evidence_id: str) -> bool:
        return evidence_id in self._ids

    def cite(self, *evidence_ids: str | None) -> list[str]:
        """The given ids that exist, in order, without repeats."""
        out: list[str] = []
        for eid in evidence_ids:
            if eid and eid in self._ids and eid not in out:
                out.append(eid)
        return out

    def event(self, event: EventSnapshot) -> str | None:
        return self.event_ids.get(id(event))

    def line(self, log: LogSnapshot, lineno: int) -> str | None:
        return self.line_ids.get((id(log), lineno))

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def build_evidence(ctx: Context, settings: EvidenceSettings | None = None) -> list[EvidenceRef]:
    """The context's evidence, most diagnostic first, with stable readable ids."""
    return index_evidence(ctx, settings).items


def index_evidence(ctx: Context, settings: EvidenceSettings | None = None) -> EvidenceIndex:
    """Like :func:`build_evidence`, plus the lookups rules use to cite items."""
    settings = settings or EvidenceSettings()
    builder = _Builder(settings)
    builder.alert(ctx)
    for pod in ctx.pods:
        builder.pod(pod)
    for name in ctx.missing_objects:
        builder.add(
            _P_MISSING,
            missing_id(name),
            EvidenceSource.POD_STATUS,
            name,
            f"{name} is referenced by the pod but does not exist",
        )
    for event in ctx.events:
        builder.event(event)
    for log in sorted(ctx.logs, key=lambda lg: not lg.previous):
        builder.log(log)
    for node in ctx.nodes:
        builder.node(node)
    for workload in [w for w in [ctx.workload] if w is not None] + list(ctx.owners):
        builder.workload(workload)
    for pvc in ctx.pvcs:
        builder.pvc(pvc)
    for svc in ctx.services:
        builder.service(svc)
    for quota in ctx.quotas:
        builder.quota(quota)
    for lr in ctx.limit_ranges:
        builder.add(
            _P_BACKGROUND,
            limit_range_id(lr.name),
            EvidenceSource.QUOTA,
            f"limitrange/{lr.namespace}/{lr.name}",
            "; ".join(lr.limits) or "no limits",
        )
    for hpa in ctx.hpas:
        builder.hpa(hpa)
    for netpol in ctx.network_policies:
        builder.netpol(netpol)
    for metric in ctx.metrics:
        values = ", ".join(f"{k or metric.name}={_num(v)}" for k, v in metric.values.items())
        desc = f"{metric.description}: " if metric.description else ""
        builder.add(
            _P_METRIC,
            metric_id(metric.name),
            EvidenceSource.METRIC,
            metric.query,
            f"{desc}{values or 'no samples'}",
        )
    for past in ctx.history:
        builder.history(past)
    return builder.finish()


class _Builder:
    def __init__(self, settings: EvidenceSettings) -> None:
        self.settings = settings
        self.items: list[_Item] = []
        self.seen: dict[str, int] = {}
        self.event_ids: dict[int, str] = {}
        self.line_ids: dict[tuple[int, int], str] = {}

    def add(
        self,
        priority: int,
        base_id: str,
        source: EvidenceSource,
        obj: str,
        excerpt: str,
        time: str | None = None,
    ) -> str:
        count = self.seen.get(base_id, 0) + 1
        self.seen[base_id] = count
        eid = base_id if count == 1 else f"{base_id}~{count}"
        limit = self.settings.max_excerpt_chars
        text = excerpt if len(excerpt) <= limit else excerpt[: limit - 1] + "…"
        ref = EvidenceRef(id=eid, source=source, object=obj, excerpt=text, time=time)
        self.items.append(_Item(priority, ref))
        return eid

    def finish(self) -> EvidenceIndex:
        ordered = sorted(self.items, key=lambda it: it.priority)  # stable: keeps gather order
        return EvidenceIndex(
            items=[it.ref for it in ordered], event_ids=self.event_ids, line_ids=self.line_ids
        )

    def alert(self, ctx: Context) -> None:
        a = ctx.alert
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
        text = a.annotations.get("description") or a.annotations.get("summary") or ""
        self.add(
            _P_ALERT,
            ALERT_ID,
            EvidenceSource.ALERT,
            ctx.target.display,
            f"{a.name} ({a.status.value}) {labels}. {text}".strip(),
            time=a.starts_at.isoformat().replace("+00:00", "Z"),
        )

    def pod(self, pod: PodSnapshot) -> None:
        for c in pod.containers:
            bad = container_abnormal(c)
            self.add(
                _P_CONTAINER_BAD if bad else _P_BACKGROUND,
                container_id(pod.name, c.name),
                EvidenceSource.CONTAINER_STATUS,
                f"pod/{pod.namespace}/{pod.name}",
                describe_container(c),
                time=c.finished_at or c.last_finished_at or c.started_at,
            )
        self.add(
            _P_POD_BAD if pod_abnormal(pod) else _P_BACKGROUND,
            pod_id(pod.name),
            EvidenceSource.POD_STATUS,
            f"pod/{pod.namespace}/{pod.name}",
            describe_pod(pod),
            time=pod.created_at,
        )

    def event(self, event: EventSnapshot) -> None:
        ns = f"{event.object_namespace}/" if event.object_namespace else ""
        count = f" (x{event.count})" if event.count > 1 else ""
        eid = self.add(
            _P_EVENT_WARNING if event.type == "Warning" else _P_BACKGROUND,
            event_base_id(event),
            EvidenceSource.EVENT,
            f"{event.object_kind.lower()}/{ns}{event.object_name}",
            f"{event.type} {event.reason}: {event.message}{count}",
            time=event.last_seen or event.first_seen,
        )
        self.event_ids[id(event)] = eid

    def log(self, log: LogSnapshot) -> None:
        obj = f"pod/{log.namespace}/{log.pod}/{log.container}"
        errors = [i for i, line in enumerate(log.lines, 1) if is_error_line(line)]
        limit = self.settings.max_error_lines
        if len(errors) > limit:
            head = min(2, limit)
            errors = errors[:head] + errors[len(errors) - (limit - head) :]
        tail_start = max(1, len(log.lines) - self.settings.tail_lines + 1)
        tail = [i for i in range(tail_start, len(log.lines) + 1) if i not in errors]
        err_p = _P_LOG_ERROR_PREVIOUS if log.previous else _P_LOG_ERROR_CURRENT
        tail_p = _P_LOG_TAIL_PREVIOUS if log.previous else _P_LOG_TAIL_CURRENT
        for priority, numbers in ((err_p, errors), (tail_p, tail)):
            for lineno in numbers:
                line = log.lines[lineno - 1].rstrip()
                if not line.strip():
                    continue
                eid = self.add(
                    priority,
                    log_line_id(log, lineno),
                    EvidenceSource.LOG,
                    obj,
                    line,
                )
                self.line_ids[(id(log), lineno)] = eid

    def node(self, node: NodeSnapshot) -> None:
        for cond, (status, reason, message) in node.conditions.items():
            if node_condition_abnormal(cond, status):
                self.add(
                    _P_NODE_BAD,
                    node_condition_id(node.name, cond),
                    EvidenceSource.NODE,
                    f"node/{node.name}",
                    f"{cond}={status} {reason}: {message}".strip(),
                )
        parts = [
            "unschedulable (cordoned)" if node.unschedulable else "schedulable",
            f"taints: {', '.join(node.taints)}" if node.taints else "no taints",
            f"{node.pods} pods",
        ]
        if node.allocatable:
            parts.append(f"allocatable {_kv(node.allocatable)}")
        if node.requested:
            parts.append(f"requested {_kv(node.requested)}")
        ok = ", ".join(f"{c}={s}" for c, (s, _, _) in node.conditions.items())
        if ok:
            parts.append(ok)
        self.add(
            _P_BACKGROUND,
            node_id(node.name),
            EvidenceSource.NODE,
            f"node/{node.name}",
            "; ".join(parts),
        )

    def workload(self, w: WorkloadSnapshot) -> None:
        self.add(
            _P_OBJECT_BAD if workload_abnormal(w) else _P_BACKGROUND,
            workload_id(w.kind, w.name),
            EvidenceSource.WORKLOAD,
            f"{w.kind.lower()}/{w.namespace}/{w.name}",
            describe_workload(w),
        )
        for rev in w.revisions:
            images = ", ".join(f"{c}={img}" for c, img in rev.images.items())
            changes = f"; changed: {'; '.join(rev.changes)}" if rev.changes else ""
            number = f"revision {rev.revision} " if rev.revision is not None else ""
            self.add(
                _P_BACKGROUND,
                revision_id(rev.name),
                EvidenceSource.WORKLOAD,
                f"{w.kind.lower()}/{w.namespace}/{w.name}",
                f"{number}{rev.name}: {rev.ready_replicas}/{rev.replicas} ready; "
                f"images {images or '-'}{changes}",
                time=rev.created_at,
            )

    def pvc(self, pvc: PVCSnapshot) -> None:
        sc = pvc.storage_class or "(default)"
        if pvc.storage_class_exists is False:
            sc += " (StorageClass does not exist)"
        text = (
            f"{pvc.phase or 'Unknown'}; storageClass {sc}; requests {pvc.requested or '-'}; "
            f"volume {pvc.volume_name or 'none'}"
            + (f" ({pvc.volume_phase})" if pvc.volume_phase else "")
            + (f"; provisioner {pvc.provisioner}" if pvc.provisioner else "")
        )
        self.add(
            _P_OBJECT_BAD if pvc.phase != "Bound" else _P_BACKGROUND,
            pvc_id(pvc.name),
            EvidenceSource.PVC,
            f"persistentvolumeclaim/{pvc.namespace}/{pvc.name}",
            text,
        )

    def service(self, svc: ServiceSnapshot) -> None:
        selector = _kv(svc.selector) or "none"
        text = (
            f"{svc.relation} service, {svc.type} {svc.cluster_ip or ''} ports "
            f"{', '.join(svc.ports) or '-'}; selector {selector}; "
            f"{svc.ready_endpoints} ready / {svc.not_ready_endpoints} not ready endpoints"
            + ("" if svc.ready_endpoints else " (no ready endpoints)")
            + f"; {len(svc.matching_pods)} matching pods"
        )
        self.add(
            _P_OBJECT_BAD if svc.ready_endpoints == 0 else _P_BACKGROUND,
            service_id(svc.name),
            EvidenceSource.SERVICE,
            f"service/{svc.namespace}/{svc.name}",
            text,
        )

    def quota(self, quota: QuotaSnapshot) -> None:
        full = quota_full_resources(quota)
        usage = ", ".join(
            f"{r} {quota.used.get(r, '0')}/{hard}" for r, hard in sorted(quota.hard.items())
        )
        text = f"used/hard: {usage}" + (f"; at the limit: {', '.join(full)}" if full else "")
        self.add(
            _P_OBJECT_BAD if full else _P_BACKGROUND,
            quota_id(quota.name),
            EvidenceSource.QUOTA,
            f"resourcequota/{quota.namespace}/{quota.name}",
            text,
        )

    def hpa(self, hpa: HPASnapshot) -> None:
        conds = "; ".join(f"{c}={s} {r}: {m}".strip() for c, (s, r, m) in hpa.conditions.items())
        text = (
            f"{hpa.target_kind}/{hpa.target_name}: {hpa.current_replicas} current, "
            f"{hpa.desired_replicas} desired, min {hpa.min_replicas or 1}, max "
            f"{hpa.max_replicas}; metrics {', '.join(hpa.metrics) or '-'}; {conds}"
        )
        limited = hpa.conditions.get("ScalingLimited", ("", "", ""))[0] == "True"
        at_max = hpa.max_replicas > 0 and hpa.current_replicas >= hpa.max_replicas
        self.add(
            _P_OBJECT_BAD if limited or at_max else _P_BACKGROUND,
            hpa_id(hpa.name),
            EvidenceSource.HPA,
            f"horizontalpodautoscaler/{hpa.namespace}/{hpa.name}",
            text,
        )

    def netpol(self, np: NetworkPolicySnapshot) -> None:
        text = (
            f"selects {_kv(np.pod_selector) or 'all pods'}"
            + (" (including the alerted pods)" if np.selects_target else "")
            + f"; types {', '.join(np.policy_types) or 'Ingress'}"
            + f"; ingress: {'; '.join(np.ingress) or 'deny all'}"
            * ("Ingress" in np.policy_types or not np.policy_types)
            + f"; egress: {'; '.join(np.egress) or 'deny all'}" * ("Egress" in np.policy_types)
        )
        self.add(
            _P_OBJECT_BAD if np.selects_target else _P_BACKGROUND,
            netpol_id(np.name),
            EvidenceSource.NETWORK_POLICY,
            f"networkpolicy/{np.namespace}/{np.name}",
            text,
        )

    def history(self, past: HistorySnapshot) -> None:
        self.add(
            _P_HISTORY,
            history_id(past.analysis),
            EvidenceSource.HISTORY,
            f"alertanalysis/{past.analysis}",
            f"{past.phase or '?'} {past.category or '?'}: {past.root_cause or 'no root cause'}",
            time=past.starts_at,
        )


# --- shared descriptions and predicates (also used by the rules) ----------------------------


def container_abnormal(c: ContainerSnapshot) -> bool:
    """Waiting with a reason, terminated badly, restarted, or running but not ready."""
    if c.state == "waiting" and c.reason:
        return True
    if c.state == "terminated" and (c.exit_code not in (0, None) or c.reason != "Completed"):
        return True
    if c.restart_count > 0 or c.last_exit_code not in (None, 0):
        return True
    return c.state == "running" and not c.ready and not c.init


def pod_abnormal(pod: PodSnapshot) -> bool:
    if pod.deleting or pod.reason or pod.phase in ("Pending", "Failed", "Unknown"):
        return True
    return any(s != "True" and r for _, (s, r, _) in pod.conditions.items())


def node_condition_abnormal(condition: str, status: str) -> bool:
    """Ready must be True; every other standard condition (pressures) must be False."""
    if condition == "Ready":
        return status != "True"
    return status == "True"


def workload_abnormal(w: WorkloadSnapshot) -> bool:
    for cond, (status, reason, _) in w.conditions.items():
        if cond in ("Failed", "ReplicaFailure") and status == "True":
            return True
        if cond in ("Progressing", "Available") and status == "False":
            return True
        if reason in ("ProgressDeadlineExceeded", "BackoffLimitExceeded", "DeadlineExceeded"):
            return True
    return bool(w.unavailable)


def quota_full_resources(quota: QuotaSnapshot) -> list[str]:
    """Resources whose use has reached the hard limit."""
    full = []
    for res, hard in quota.hard.items():
        used = quota.used.get(res)
        if used is None:
            continue
        h, u = parse_quantity(hard), parse_quantity(used)
        if h is not None and u is not None and u >= h:
            full.append(res)
    return sorted(full)


def describe_container(c: ContainerSnapshot) -> str:
    """One line as ``kubectl describe pod`` would say it."""
    parts = [f"{'init ' if c.init else ''}container {c.name} ({c.image or 'image ?'})"]
    now = c.state
    if c.reason:
        now += f" {c.reason}"
    if c.exit_code is not None:
        now += f" exit code {c.exit_code}"
    if c.message:
        now += f": {c.message}"
    parts.append(now)
    if c.last_state:
        last = f"last state {c.last_state}"
        if c.last_reason:
            last += f" {c.last_reason}"
        if c.last_exit_code is not None:
            last += f" exit code {c.last_exit_code}"
        if c.last_finished_at:
            last += f" at {c.last_finished_at}"
        if c.last_message:
            last += f": {c.last_message}"
        parts.append(last)
    parts.append(f"restarts {c.restart_count}, ready {str(c.ready).lower()}")
    if c.limits:
        parts.append(f"limits {_kv(c.limits)}")
    if c.requests:
        parts.append(f"requests {_kv(c.requests)}")
    return "; ".join(parts)


def describe_pod(pod: PodSnapshot) -> str:
    parts = [f"phase {pod.phase or 'Unknown'}"]
    if pod.reason:
        parts.append(f"reason {pod.reason}")
    if pod.message:
        parts.append(pod.message)
    parts.append(f"node {pod.node_name or '(not scheduled)'}")
    if pod.deleting:
        parts.append("terminating")
    conds = [
        f"{c}={s}" + (f" ({r}: {m})" if r or m else "")
        for c, (s, r, m) in pod.conditions.items()
        if s != "True"
    ]
    if conds:
        parts.append("; ".join(conds))
    if pod.owner_kind:
        parts.append(f"owned by {pod.owner_kind}/{pod.owner_name}")
    return "; ".join(parts)


def describe_workload(w: WorkloadSnapshot) -> str:
    parts = [f"{w.kind} {w.name}"]
    if w.kind == "Job":
        parts.append(
            f"active {w.active or 0}, succeeded {w.succeeded or 0}, failed {w.failed or 0}, "
            f"backoffLimit {w.backoff_limit if w.backoff_limit is not None else 6}"
        )
    else:
        parts.append(
            f"desired {w.desired}, ready {w.ready}, updated {w.updated}, "
            f"available {w.available}, unavailable {w.unavailable or 0}"
        )
    for cond, (status, reason, message) in w.conditions.items():
        parts.append(f"{cond}={status} {reason}: {message}".strip())
    return "; ".join(parts)


_QUANTITY = re.compile(r"^([0-9.]+(?:e[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX: dict[str, float] = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def parse_quantity(text: str | None) -> float | None:
    """A Kubernetes quantity (``500m``, ``512Mi``, ``2``) as a number; None if unreadable."""
    if not text:
        return None
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _SUFFIX:
        return None
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _kv(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


def _num(value: float) -> str:
    return f"{value:.4g}"
