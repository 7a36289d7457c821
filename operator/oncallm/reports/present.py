"""Presentation helpers shared by the rendered report and the web view.

Pure functions from an :class:`~oncallm.models.analysis.AlertAnalysis` to words, times and
links an engineer reads: category names, the timeline of an analysis, links to Prometheus and
Alertmanager. No HTTP, no Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from oncallm.models.analysis import AlertAnalysis, Category, EvidenceSource, Phase

#: Category names in the words of the fix; anything missing falls back to the enum value.
CATEGORY_LABELS: dict[Category, str] = {
    Category.BAD_CONFIG: "Bad configuration",
    Category.MISSING_SECRET_OR_CONFIGMAP: "Missing Secret or ConfigMap",
    Category.OOM_KILLED: "OOMKilled (out of memory)",
    Category.IMAGE_PULL_ERROR: "Image pull error",
    Category.FAILING_PROBE: "Failing probe",
    Category.APP_CRASH_EXCEPTION: "Application crash (exception)",
    Category.DEPENDENCY_UNREACHABLE: "Dependency unreachable",
    Category.DNS_FAILURE: "DNS failure",
    Category.NODE_NOT_READY: "Node not ready",
    Category.DISK_PRESSURE: "Disk pressure",
    Category.PVC_PENDING: "PersistentVolumeClaim pending",
    Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE: "Unschedulable: insufficient resources",
    Category.QUOTA_EXCEEDED: "ResourceQuota exceeded",
    Category.RBAC_FORBIDDEN: "RBAC: forbidden",
    Category.CERT_EXPIRED: "Certificate expired",
    Category.JOB_BACKOFF_LIMIT: "Job reached its backoff limit",
    Category.HPA_MAXED: "HPA at max replicas",
    Category.CPU_THROTTLING: "CPU throttling",
    Category.ROLLOUT_STUCK: "Rollout stuck",
    Category.NETWORK_POLICY_BLOCK: "Blocked by a NetworkPolicy",
    Category.UNKNOWN: "Unknown",
}

#: Evidence sources as an engineer names them.
SOURCE_LABELS: dict[EvidenceSource, str] = {
    EvidenceSource.ALERT: "alert",
    EvidenceSource.EVENT: "event",
    EvidenceSource.LOG: "log excerpt",
    EvidenceSource.CONTAINER_STATUS: "container state",
    EvidenceSource.POD_STATUS: "pod status",
    EvidenceSource.WORKLOAD: "workload",
    EvidenceSource.NODE: "node",
    EvidenceSource.PVC: "volume claim",
    EvidenceSource.SERVICE: "service",
    EvidenceSource.QUOTA: "quota",
    EvidenceSource.HPA: "autoscaler",
    EvidenceSource.METRIC: "metric",
    EvidenceSource.HISTORY: "earlier analysis",
    EvidenceSource.NETWORK_POLICY: "network policy",
}


def category_label(category: Category | str | None) -> str:
    """A category in words, e.g. ``oom_killed`` -> ``OOMKilled (out of memory)``."""
    if category is None:
        return ""
    try:
        return CATEGORY_LABELS[Category(category)]
    except ValueError:
        return str(category).replace("_", " ")


def source_label(source: EvidenceSource | str) -> str:
    """Where a piece of evidence was read, in words."""
    try:
        return SOURCE_LABELS[EvidenceSource(source)]
    except ValueError:
        return str(source)


def confidence_label(confidence: float | None) -> str:
    """``0.92`` -> ``high (92%)``; the thresholds match how much to trust the diagnosis."""
    if confidence is None:
        return ""
    pct = round(confidence * 100)
    word = "high" if confidence >= 0.8 else "medium" if confidence >= 0.5 else "low"
    return f"{word} ({pct}%)"


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_time(value: datetime | None) -> str:
    """``2024-05-14 03:12:09 UTC``: absolute, in UTC, to the second."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """A duration for people: ``850 ms``, ``4.2 s``, ``3m 05s``, ``2h 10m``, ``3d 4h``."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_age(then: datetime | None, now: datetime) -> str:
    """How long ago, coarsely: ``45s``, ``12m``, ``3h``, ``2d``."""
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def sibling_url(url: str | None, name: str) -> str | None:
    """The report address of another analysis of the same namespace, from this one's:
    ``https://x/analyses/oncallm/a`` and ``b`` give ``https://x/analyses/oncallm/b``."""
    if not url or "/" not in url:
        return None
    return http_url(url.rstrip("/").rsplit("/", 1)[0] + "/" + quote(name, safe=""))


def http_url(url: str | None) -> str | None:
    """The URL when it is http(s), else None: alert data never becomes a ``javascript:`` link."""
    if not url or len(url) > MAX_LINK_CHARS:
        return None
    url = url.strip()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.replace(" ", "%20")


#: Longer links break in browsers and proxies (and no one reads them): leave them out.
MAX_LINK_CHARS = 8192


def _matchers(labels: dict[str, str]) -> str:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


def alertmanager_alert_url(external_url: str | None, labels: dict[str, str]) -> str | None:
    """Alertmanager's UI filtered to exactly this alert (all its labels as matchers)."""
    base = http_url(external_url)
    if base is None or sum(len(k) + len(v) for k, v in labels.items()) > MAX_LINK_CHARS:
        return None
    return f"{base.rstrip('/')}/#/alerts?filter={quote(_matchers(labels), safe='')}"


def alertmanager_silence_url(external_url: str | None, labels: dict[str, str]) -> str | None:
    """Alertmanager's "new silence" form, prefilled with this alert's labels."""
    base = http_url(external_url)
    if base is None or sum(len(k) + len(v) for k, v in labels.items()) > MAX_LINK_CHARS:
        return None
    return f"{base.rstrip('/')}/#/silences/new?filter={quote(_matchers(labels), safe='')}"


def target_display(analysis: AlertAnalysis) -> str:
    """The alert's target as ``kind/namespace/name``, from the status or the alert's labels."""
    status = analysis.status
    if status.target_display:
        return status.target_display
    if status.target is not None:
        return status.target.display
    labels = analysis.spec.alert.labels
    ns = labels.get("namespace")
    for kind in ("pod", "deployment", "statefulset", "daemonset", "job", "node", "service"):
        if labels.get(kind):
            scoped = ns and kind != "node"
            return f"{kind}/{ns}/{labels[kind]}" if scoped else f"{kind}/{labels[kind]}"
    if labels.get("persistentvolumeclaim"):
        return f"persistentvolumeclaim/{ns}/{labels['persistentvolumeclaim']}"
    return f"namespace/{ns}" if ns else ""


def target_namespace(analysis: AlertAnalysis) -> str:
    """The namespace the alert is about (not where the AlertAnalysis object lives)."""
    target = analysis.status.target
    if target is not None and target.namespace:
        return target.namespace
    return analysis.spec.alert.labels.get("namespace", "")


def severity(analysis: AlertAnalysis) -> str:
    """The alert's severity label (``none`` when it has none)."""
    return analysis.status.severity or analysis.spec.alert.labels.get("severity", "none")


def phase(analysis: AlertAnalysis) -> Phase:
    """The analysis phase; a fresh object without a status counts as Pending."""
    return analysis.status.phase or Phase.PENDING


def received_time(analysis: AlertAnalysis) -> datetime | None:
    """When OnCallM received the alert; falls back to creation, then to when it fired."""
    return (
        parse_time(analysis.spec.received_at)
        or parse_time(str(analysis.metadata.get("creationTimestamp") or ""))
        or parse_time(analysis.spec.alert.starts_at)
    )


def short_root_cause(analysis: AlertAnalysis, limit: int = 140) -> str:
    """One line for lists: the short root cause, else the summary, cut at ``limit`` characters."""
    status = analysis.status
    text = status.short_root_cause or status.summary or status.root_cause or status.reason or ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class TimelineEntry:
    """One moment in the life of an alert and its analysis."""

    at: datetime
    label: str
    detail: str = ""
    #: time since the alert fired, e.g. ``+1m 04s``; empty for the firing itself
    offset: str = ""
    #: ``ok``, ``warn``, ``error`` or ``""``: how the entry is coloured
    tone: str = ""


#: Condition types that mark the end of gathering and of the diagnosis, in any spelling the
#: operator may use; when absent the moments are computed from ``status.timings``.
_GATHERED_TYPES = {"Gathered", "EvidenceGathered", "GatheringComplete"}
_ANALYZED_TYPES = {"Analyzed", "Analysed", "Diagnosed", "AnalysisComplete"}


def timeline(analysis: AlertAnalysis) -> list[TimelineEntry]:
    """The alert's and the analysis's moments, oldest first."""
    spec, status = analysis.spec, analysis.status
    fired = parse_time(spec.alert.starts_at)
    entries: list[tuple[datetime, str, str, str]] = []

    def add(at: datetime | None, label: str, detail: str = "", tone: str = "") -> None:
        if at is not None:
            entries.append((at, label, detail, tone))

    add(fired, "Alert fired", spec.alert.labels.get("alertname", ""), "warn")
    add(
        parse_time(spec.received_at),
        "Received from Alertmanager",
        f"receiver {spec.receiver}" if spec.receiver else "",
    )
    started = parse_time(status.started_at)
    add(started, "Analysis started", f"policy {status.policy}" if status.policy else "")

    conditions = status.conditions or []
    timings = status.timings
    gathered_cond = next((c for c in conditions if c.type in _GATHERED_TYPES), None)
    analyzed_cond = next((c for c in conditions if c.type in _ANALYZED_TYPES), None)
    gathered: datetime | None = None
    if gathered_cond is not None:
        gathered = parse_time(gathered_cond.last_transition_time)
    elif started is not None and timings is not None and timings.gathering is not None:
        gathered = started + timedelta(seconds=timings.gathering)
    gather_detail = ""
    if timings is not None and timings.gathering is not None:
        gather_detail = f"took {format_duration(timings.gathering)}"
    if status.evidence:
        pieces = _count(len(status.evidence), "piece", "pieces") + " of evidence"
        gather_detail = ", ".join(filter(None, [gather_detail, pieces]))
    add(gathered, "Evidence gathered", gather_detail)

    analyzed: datetime | None = None
    if analyzed_cond is not None:
        analyzed = parse_time(analyzed_cond.last_transition_time)
    elif gathered is not None and timings is not None and timings.analyzing is not None:
        analyzed = gathered + timedelta(seconds=timings.analyzing)
    analyze_detail = ", ".join(
        filter(
            None,
            [
                f"took {format_duration(timings.analyzing)}"
                if timings is not None and timings.analyzing is not None
                else "",
                f"by {status.analyzer}" if status.analyzer else "",
            ],
        )
    )
    add(analyzed, "Diagnosis made", analyze_detail)

    current = phase(analysis)
    completed = parse_time(status.completed_at)
    if current is Phase.FAILED:
        add(completed, "Analysis failed", status.reason or "", "error")
    elif current is Phase.SKIPPED:
        add(completed, "Analysis skipped", status.reason or "")
    else:
        total = timings.total if timings is not None else None
        detail = f"total {format_duration(total)}" if total else ""
        add(completed, "Analysis completed", detail, "ok")

    resolved = parse_time(spec.resolved_at) or parse_time(spec.alert.ends_at)
    add(resolved, "Alert resolved", "", "ok")

    used = {id(gathered_cond), id(analyzed_cond)}
    for cond in conditions:
        if id(cond) in used:
            continue
        detail = " — ".join(filter(None, [cond.reason, cond.message]))
        tone = "error" if cond.status == "False" and cond.type in ("Ready", "Succeeded") else ""
        label = cond.type if cond.status == "True" else f"{cond.type}: {cond.status}"
        add(parse_time(cond.last_transition_time), label, detail, tone)

    entries.sort(key=lambda e: e[0])
    result: list[TimelineEntry] = []
    for at, label, detail, tone in entries:
        offset = ""
        if fired is not None and label != "Alert fired":
            delta = (at - fired).total_seconds()
            offset = ("+" if delta >= 0 else "") + format_duration(delta)
        result.append(TimelineEntry(at=at, label=label, detail=detail, offset=offset, tone=tone))
    return result
