"""The resource metrics API behind an HPA that cannot read its metrics.

An HPA whose controller answers ``FailedGetResourceMetric`` or
``FailedComputeMetricsReplicas`` ("unable to fetch metrics from resource metrics API") has no
CPU or memory figures to scale on: the cause is whatever serves ``metrics.k8s.io``, normally
metrics-server in kube-system. This source reads its pods (by the labels of its official
manifests and Helm chart), the logs of those that crash or are not ready, and its Service's
endpoints.

Reads nothing unless an event or an HPA condition says the metrics could not be fetched.

Evidence: ``metricsapi/<pod>`` (a metrics-server pod's state) and
``metricsapi/log/<pod>/<container>/<previous|current>#L<n>`` (a line of its log).
"""

from __future__ import annotations

import re

from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.logs import add_error_lines, fetch_log, line_ids
from oncallm.gathering.sources.pods import describe_container, pod_is_unhealthy, pod_snapshot
from oncallm.gathering.sources.services import service_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, MetricsAPISnapshot

NAMESPACE = "kube-system"
#: The labels of metrics-server's pods: its official manifests, then its Helm chart.
LABELS = ("k8s-app=metrics-server", "app.kubernetes.io/name=metrics-server")
SERVICE = "metrics-server"
#: metrics-server pods whose logs are read, and lines of each.
MAX_PODS = 2
LOG_LINES = 60

#: The HPA controller saying it could not read the resource metrics.
METRICS_UNAVAILABLE = re.compile(
    r"unable to (?:get|fetch) metrics from resource metrics API"
    r"|the server is currently unable to handle the request \(get pods\.metrics\.k8s\.io\)"
    r"|no metrics returned from resource metrics API|metrics\.k8s\.io.*(?:unavailable|not found)",
    re.IGNORECASE,
)
_REASONS = ("FailedGetResourceMetric", "FailedComputeMetricsReplicas")


def metrics_pod_id(pod: str) -> str:
    """``metricsapi/<pod>``: one metrics-server pod's state."""
    return f"metricsapi/{pod}"


#: ``metricsapi/log/<pod>/<container>/<previous|current>#L<n>``: a line of its log.
metrics_line_id = line_ids("metricsapi/log")


def _scaling_now(ctx: Context) -> set[str]:
    """HPAs whose current condition says they read their metrics (``ScalingActive=True``): an
    older FailedGetResourceMetric event about one of them tells of a gap that has closed."""
    return {h.name for h in ctx.hpas if h.conditions.get("ScalingActive", ("",))[0] == "True"}


def trigger(ctx: Context) -> str | None:
    """The event or HPA condition that says the resource metrics could not be fetched."""
    recovered = _scaling_now(ctx)
    for e in ctx.events:
        if e.object_kind == "HorizontalPodAutoscaler" and e.object_name in recovered:
            continue
        if e.reason in _REASONS and METRICS_UNAVAILABLE.search(e.message):
            return e.message
    for hpa in ctx.hpas:
        for _type, (_status, reason, message) in hpa.conditions.items():
            if reason in _REASONS and METRICS_UNAVAILABLE.search(message):
                return message
    return None


async def read(scope: Scope) -> None:
    why = trigger(scope.ctx)
    if why is None:
        return
    snap = MetricsAPISnapshot(trigger=why)
    scope.ctx.metrics_api = snap
    for label in LABELS:
        async with scope.guard(f"metrics-server pods ({label})"):
            raw = await scope.reader.list("Pod", NAMESPACE, label_selector=label)
            if raw:
                snap.pods = [pod_snapshot(p) for p in raw]
                break
    for pod in [p for p in snap.pods if pod_is_unhealthy(p)][:MAX_PODS]:
        for c in [c for c in pod.containers if not c.init][:1]:
            if c.restart_count > 0 or c.last_state == "terminated":
                await _log(scope, snap, pod.name, c.name, previous=True)
            await _log(scope, snap, pod.name, c.name, previous=False)
    async with scope.guard(f"service {NAMESPACE}/{SERVICE}"):
        svc = await scope.get("Service", NAMESPACE, SERVICE)
        if svc is not None:
            endpoints = await scope.get("Endpoints", NAMESPACE, SERVICE)
            snap.service = service_snapshot(svc, endpoints, snap.pods, "dependency")


async def _log(
    scope: Scope, snap: MetricsAPISnapshot, pod: str, container: str, *, previous: bool
) -> None:
    tail = min(LOG_LINES, scope.policy.spec.sources.log_lines or LOG_LINES)
    log = await fetch_log(scope, NAMESPACE, pod, container, previous=previous, tail=tail)
    if log is not None:
        snap.logs.append(log)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    snap = ctx.metrics_api
    if snap is None:
        return
    for pod in snap.pods:
        out.add(
            Tier.OBJECT_BAD if pod_is_unhealthy(pod) else Tier.BACKGROUND,
            metrics_pod_id(pod.name),
            EvidenceSource.POD_STATUS,
            f"pod/{NAMESPACE}/{pod.name}",
            "metrics-server (serves metrics.k8s.io to the HPAs): "
            + "; ".join(describe_container(c) for c in pod.containers if not c.init),
        )
    add_error_lines(out, snap.logs, metrics_line_id)


SOURCE = Source(
    "metrics_api",
    Stage.LEADS,
    read,
    evidence,
    resources=("pods", "pods/log", "services", "endpoints"),
)
