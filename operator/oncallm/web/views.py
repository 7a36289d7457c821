"""What the web view's pages show, as plain data: filtering, ordering, grouping, related analyses.

No HTTP here: the handlers in :mod:`oncallm.web.routes` feed these functions the store's
analyses and hand the results to the templates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from oncallm.models.analysis import AlertAnalysis, Phase
from oncallm.reports import present

#: The ``phase`` filter value that selects every analysis not finished yet.
ACTIVE = "active"

#: Severities in the order an engineer triages them; others sort after these.
SEVERITY_ORDER = ("critical", "error", "warning", "info", "none")


def analysis_path(namespace: str, name: str) -> str:
    """The report page's path, relative to the web view's root (no leading slash)."""
    return f"analyses/{quote(namespace, safe='')}/{quote(name, safe='')}"


def report_url(base_url: str, namespace: str, name: str) -> str:
    """The absolute address of an analysis's report page, e.g. for a notification.

    ``report_url("https://oncallm.example.com/", "oncallm", "kube-pod-crash-looping-3f9a")``
    is ``https://oncallm.example.com/analyses/oncallm/kube-pod-crash-looping-3f9a``.
    """
    return f"{base_url.rstrip('/')}/{analysis_path(namespace, name)}"


def etag(analysis: AlertAnalysis) -> str:
    """A strong ETag of an analysis's content: it changes exactly when the object does."""
    wire = json.dumps(analysis.to_kube(), sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(wire.encode("utf-8")).hexdigest()[:20] + '"'


def etag_matches(if_none_match: str | None, current: str) -> bool:
    """True when an ``If-None-Match`` header names ``current`` (or is ``*``)."""
    if not if_none_match:
        return False
    candidates = [c.strip() for c in if_none_match.split(",")]
    return "*" in candidates or current in candidates or f"W/{current}" in candidates


@dataclass(frozen=True)
class Filters:
    """The list's filters, as query parameters: ``phase``, ``severity``, ``namespace``,
    ``alertname``. Empty means any."""

    phase: str = ""
    severity: str = ""
    namespace: str = ""
    alertname: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        """Filters from a request's query; unknown parameters are ignored."""

        def get(key: str) -> str:
            return str(query.get(key, "")).strip()[:256]

        return cls(
            phase=get("phase"),
            severity=get("severity"),
            namespace=get("namespace"),
            alertname=get("alertname"),
        )

    @property
    def active(self) -> bool:
        return any((self.phase, self.severity, self.namespace, self.alertname))

    def matches(self, analysis: AlertAnalysis) -> bool:
        """True when the analysis passes every filter that is set."""
        if self.phase:
            current = present.phase(analysis)
            if self.phase.lower() == ACTIVE:
                if current.finished:
                    return False
            elif current.value.lower() != self.phase.lower():
                return False
        if self.severity and present.severity(analysis).lower() != self.severity.lower():
            return False
        if self.namespace and present.target_namespace(analysis) != self.namespace:
            return False
        alertname = analysis.spec.alert.labels.get("alertname", "")
        return not (self.alertname and alertname != self.alertname)

    def query(self) -> str:
        """The filters as a query string (``""`` when none is set)."""
        pairs = {k: v for k, v in vars(self).items() if v}
        return urlencode(pairs)


def newest_first(analyses: Iterable[AlertAnalysis]) -> list[AlertAnalysis]:
    """Analyses by when the alert reached OnCallM, newest first (ties by name)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    items = sorted(analyses, key=lambda a: (a.namespace, a.name))
    return sorted(items, key=lambda a: present.received_time(a) or epoch, reverse=True)


@dataclass(frozen=True)
class Row:
    """One analysis in the list."""

    namespace: str
    name: str
    path: str
    alertname: str
    target: str
    severity: str
    phase: str
    finished: bool
    alert_status: str
    summary: str
    category: str
    age: str
    received: str
    #: "primary" or "member" of an incident; "" otherwise
    role: str = ""


def row(analysis: AlertAnalysis, now: datetime) -> Row:
    """The list's view of one analysis."""
    current = present.phase(analysis)
    received = present.received_time(analysis)
    return Row(
        namespace=analysis.namespace,
        name=analysis.name,
        path=analysis_path(analysis.namespace, analysis.name),
        alertname=analysis.spec.alert.labels.get("alertname", ""),
        target=present.target_display(analysis),
        severity=present.severity(analysis),
        phase=current.value,
        finished=current.finished,
        alert_status=analysis.spec.alert.status.value,
        summary=present.short_root_cause(analysis),
        category=present.category_label(analysis.status.category),
        age=present.format_age(received, now),
        received=present.format_time(received),
        role=analysis.status.incident.role.value if analysis.status.incident else "",
    )


@dataclass
class Group:
    """Analyses shown as one card: an incident (alerts sharing a cause, its primary first), or
    alerts Alertmanager sent together (the same ``spec.groupKey``)."""

    key: str
    label: str
    rows: list[Row] = field(default_factory=list)
    #: "incident" or "alertmanager"
    kind: str = "alertmanager"
    #: an incident's cause, category and root cause (its primary's)
    cause: str = ""
    category: str = ""
    root_cause: str = ""
    primary_path: str = ""


def group_label(group_key: str) -> str:
    """``{}/{severity="warning"}:{alertname="X", namespace="orders"}`` -> the grouping labels
    as ``alertname=X, namespace=orders``; the key itself when it has another shape."""
    _, sep, labels = group_key.rpartition(":")
    if not sep or not (labels.startswith("{") and labels.endswith("}")):
        return group_key
    parts = [p.strip().replace('"', "") for p in labels[1:-1].split(",") if p.strip()]
    return ", ".join(parts) or group_key


def incident_key(analysis: AlertAnalysis) -> str:
    """``<namespace>/<primary>`` of the analysis' incident; "" when it has none."""
    ref = analysis.status.incident
    return f"{analysis.namespace}/{ref.primary}" if ref is not None else ""


def group_rows(
    analyses: list[AlertAnalysis], now: datetime, window: timedelta = timedelta(hours=1)
) -> list[Group]:
    """One card per incident with more than one alert (its primary first, then its members
    newest first), then the rest grouped by ``spec.groupKey``; cards in the order of their
    newest analysis.

    ``analyses`` must be newest first. Alertmanager keeps a group's key while the group
    lives, so the same key days apart is another incident: an analysis joins a group only
    when it was received within ``window`` of the group's oldest member. Analyses without a
    group key stand alone.
    """
    sizes: dict[str, int] = {}
    for analysis in analyses:
        if key := incident_key(analysis):
            sizes[key] = sizes.get(key, 0) + 1
    incidents: dict[str, Group] = {}
    latest: dict[str, tuple[Group, datetime | None]] = {}
    ordered: list[Group] = []
    for analysis in analyses:
        ikey = incident_key(analysis)
        if ikey and sizes[ikey] > 1:
            group = incidents.get(ikey)
            if group is None:
                ref = analysis.status.incident
                assert ref is not None
                group = incidents[ikey] = Group(
                    key=ikey,
                    label=ref.cause,
                    kind="incident",
                    cause=ref.cause,
                    primary_path=analysis_path(analysis.namespace, ref.primary),
                )
                ordered.append(group)
            if analysis.name == ikey.split("/", 1)[1]:
                group.rows.insert(0, row(analysis, now))
                group.category = present.category_label(analysis.status.category)
                group.root_cause = present.short_root_cause(analysis)
            else:
                group.rows.append(row(analysis, now))
                if not group.root_cause:  # members share the primary's, should it be filtered out
                    group.category = present.category_label(analysis.status.category)
                    group.root_cause = present.short_root_cause(analysis)
            continue
        key = analysis.spec.group_key
        received = present.received_time(analysis)
        joined = latest.get(key) if key else None
        if joined is not None:
            group, oldest = joined
            if oldest is None or received is None or oldest - received <= window:
                group.rows.append(row(analysis, now))
                latest[key] = (group, received or oldest)
                continue
        group = Group(key=key, label=group_label(key) if key else "")
        group.rows.append(row(analysis, now))
        ordered.append(group)
        if key:
            latest[key] = (group, received)
    return ordered


def filter_options(analyses: Iterable[AlertAnalysis]) -> dict[str, list[str]]:
    """The values each filter can take, from what is stored."""
    severities: set[str] = set()
    namespaces: set[str] = set()
    alertnames: set[str] = set()
    for a in analyses:
        severities.add(present.severity(a))
        if ns := present.target_namespace(a):
            namespaces.add(ns)
        alertnames.add(a.spec.alert.labels.get("alertname", ""))

    def severity_key(s: str) -> tuple[int, str]:
        lowered = s.lower()
        rank = SEVERITY_ORDER.index(lowered) if lowered in SEVERITY_ORDER else len(SEVERITY_ORDER)
        return rank, lowered

    return {
        "phase": [ACTIVE, *[p.value for p in Phase]],
        "severity": sorted(severities, key=severity_key),
        "namespace": sorted(namespaces),
        "alertname": sorted(n for n in alertnames if n),
    }


def incident_members(
    analysis: AlertAnalysis, everything: Iterable[AlertAnalysis]
) -> list[AlertAnalysis]:
    """The members of the incident ``analysis`` is the primary of, newest first."""
    ref = analysis.status.incident
    if ref is None or ref.primary != analysis.name:
        return []
    return newest_first(
        a
        for a in everything
        if a.namespace == analysis.namespace
        and a.name != analysis.name
        and a.status.incident is not None
        and a.status.incident.primary == analysis.name
    )


def related(
    analysis: AlertAnalysis,
    same_fingerprint: Iterable[AlertAnalysis],
    everything: Iterable[AlertAnalysis],
    limit: int,
) -> tuple[list[AlertAnalysis], list[AlertAnalysis]]:
    """Earlier analyses of the same alert (fingerprint), and of the same alertname on the same
    target (a new fingerprint, e.g. after a label changed); newest first, ``limit`` each."""
    me = (analysis.namespace, analysis.name)
    same_alert = [a for a in same_fingerprint if (a.namespace, a.name) != me]
    seen = {(a.namespace, a.name) for a in same_alert} | {me}
    alertname = analysis.spec.alert.labels.get("alertname")
    target = present.target_display(analysis)
    same_target = [
        a
        for a in everything
        if (a.namespace, a.name) not in seen
        and a.spec.alert.labels.get("alertname") == alertname
        and target
        and present.target_display(a) == target
    ]
    return newest_first(same_alert)[:limit], newest_first(same_target)[:limit]
