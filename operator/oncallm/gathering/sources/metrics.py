"""Prometheus: the alert's own expression now, and a few standard series for its pods.

Reads only when a Prometheus is configured (``ONCALLM_PROMETHEUS_URL``) and the policy has
``sources.metrics``.

Evidence: ``metric/<name>`` for each query that returned samples.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.alert import Alert
from oncallm.models.analysis import EvidenceSource, TargetRef
from oncallm.models.evidence import Context, MetricSnapshot
from oncallm.models.policy import Depth


def metric_id(name: str) -> str:
    """``metric/<name>``: one PromQL query's latest values."""
    return f"metric/{name}"


async def read(scope: Scope) -> None:
    source = scope.metrics
    if source is None or not scope.policy.spec.sources.metrics:
        return
    for name, query, description in standard_queries(scope.alert, scope.target, scope.ctx):
        async with scope.guard(f"metric {name}"):
            values = await source.query(query)
            if values:
                scope.ctx.metrics.append(
                    MetricSnapshot(name=name, query=query, values=values, description=description)
                )


#: Alerts on a scrape that fails: which of the job's targets are down names the pod and the
#: node to look at, where the alert counts them only (TargetDown: "25% of the targets").
_SCRAPE_DOWN_ALERTS = frozenset({"TargetDown", "NodeExporterDown", "KubeletDown"})


def targets_down_query(alert: Alert) -> str | None:
    """``up{job, namespace, service} == 0`` of a failing scrape's alert, by its own labels."""
    if alert.name not in _SCRAPE_DOWN_ALERTS or not alert.labels.get("job"):
        return None
    keys = ("job", "namespace", "service")
    sel = ",".join(f'{k}="{promql_string(alert.labels[k])}"' for k in keys if alert.labels.get(k))
    return f"up{{{sel}}} == 0"


def standard_queries(alert: Alert, target: TargetRef, ctx: Context) -> list[tuple[str, str, str]]:
    """The alert's own expression and a few standard series for its target."""
    out: list[tuple[str, str, str]] = []
    expr = alert_expression(alert.generator_url)
    if expr:
        out.append(("alert_expression", expr, "the alert's own expression, now"))
    pods = [p.name for p in ctx.pods][:10]
    ns = target.namespace
    down = targets_down_query(alert)
    if down:
        out.append(("targets_down", down, "the alert's scrape targets that are down, now"))
    if target.kind == "PersistentVolumeClaim" and ns:
        out += volume_queries(
            ns, target.name, inodes=alert.name == "KubePersistentVolumeInodesFillingUp"
        )
        writers = [p.name for p in ctx.pods if target.name in p.pvcs][:10]
        if writers:
            out += queue_queries(ns, writers)
    if ns and any(STORE_FULL.search(line) for lg in ctx.logs for line in lg.lines):
        free = f'kubelet_volume_stats_available_bytes{{namespace="{ns}"}}'
        size = f'kubelet_volume_stats_capacity_bytes{{namespace="{ns}"}}'
        out.append(
            (
                "fullest_volumes",
                f"bottomk({FULLEST_VOLUMES}, {free} / {size})",
                f"the fullest claims of namespace {ns}: free share of each volume",
            )
        )
    if ns and pods:
        sel = f'namespace="{ns}",pod=~"{"|".join(promql_regex(p) for p in pods)}"'
        out += [
            (
                "restarts",
                f"kube_pod_container_status_restarts_total{{{sel}}}",
                "container restarts so far",
            ),
            (
                "memory_working_set_bytes",
                f'container_memory_working_set_bytes{{{sel},container!=""}}',
                "memory in use per container",
            ),
            (
                "memory_limit_bytes",
                f'kube_pod_container_resource_limits{{{sel},resource="memory"}}',
                "memory limit per container",
            ),
            (
                "cpu_throttled_ratio",
                "sum by (pod, container) "
                f"(increase(container_cpu_cfs_throttled_periods_total{{{sel}}}[5m]))"
                " / sum by (pod, container) "
                f"(increase(container_cpu_cfs_periods_total{{{sel}}}[5m]))",
                "share of CPU periods throttled, last 5 minutes",
            ),
        ]
    return out


#: A program's log saying that a store refuses writes because its disk is full: its own
#: volume (``No space left on device``) or a server it writes to: Elasticsearch's flood-stage
#: watermark (indices become read-only-allow-delete), Redis's MISCONF (it cannot persist),
#: Kafka's KafkaStorageException, a database's "could not extend file".
STORE_FULL = re.compile(
    r"flood[- ]stage (?:disk )?watermark|read[-_ ]only[-_ ]allow[-_ ]delete"
    r"|no space left on device|MISCONF [^\n]*unable to persist|KafkaStorageException"
    r"|could not extend file|disk (?:is )?full\b|insufficient (?:disk|storage) space",
    re.IGNORECASE,
)
#: Claims listed when a store says its disk is full: the fullest few of the namespace.
FULLEST_VOLUMES = 3

#: The window over which a claim's fill rate is measured: the kube-prometheus-stack alert
#: KubePersistentVolumeFillingUp predicts from 6 hours; one hour follows a change of pace
#: (a campaign, a stuck clean-up) sooner and still smooths single writes out.
VOLUME_RATE_WINDOW = "1h"


#: Queues listed for a broker whose volume fills: the largest few.
MAX_QUEUES = 3


def queue_queries(namespace: str, pods: list[str]) -> list[tuple[str, str, str]]:
    """A message broker writing the filling volume (RabbitMQ's per-queue metrics, detailed or
    per-object): its largest queues and their consumers. A queue nobody consumes (a dead-letter
    queue whose replayer stopped) keeps every message on disk until the volume is full."""
    sel = f'namespace="{namespace}",pod=~"{"|".join(promql_regex(p) for p in pods)}"'
    return [
        (
            "queue_messages",
            f"topk({MAX_QUEUES}, max by (vhost, queue) (rabbitmq_detailed_queue_messages_ready"
            f"{{{sel}}} or rabbitmq_queue_messages_ready{{{sel}}}))",
            "the broker's largest queues: messages ready",
        ),
        (
            "queue_consumers",
            f"max by (vhost, queue) (rabbitmq_detailed_queue_consumers{{{sel}}} "
            f"or rabbitmq_queue_consumers{{{sel}}})",
            "consumers per queue",
        ),
    ]


def volume_queries(
    namespace: str, claim: str, *, inodes: bool = False
) -> list[tuple[str, str, str]]:
    """The kubelet's volume stats of one claim: free bytes, size, and how fast free space
    shrinks (bytes per hour, negative while it fills); with ``inodes`` (the inodes alert), the
    free and total inodes too: a volume of many small files runs out of them first."""
    vol = f'namespace="{namespace}",persistentvolumeclaim="{claim}"'
    counted = [
        (
            "volume_inodes_free",
            f"kubelet_volume_stats_inodes_free{{{vol}}}",
            f"free inodes on the volume of claim {claim}",
        ),
        (
            "volume_inodes",
            f"kubelet_volume_stats_inodes{{{vol}}}",
            f"inodes of the volume of claim {claim}",
        ),
    ]
    return (counted if inodes else []) + [
        (
            "volume_available_bytes",
            f"kubelet_volume_stats_available_bytes{{{vol}}}",
            f"free bytes on the volume of claim {claim}",
        ),
        (
            "volume_capacity_bytes",
            f"kubelet_volume_stats_capacity_bytes{{{vol}}}",
            f"size of the volume of claim {claim}",
        ),
        (
            "volume_available_per_hour",
            f"deriv(kubelet_volume_stats_available_bytes{{{vol}}}[{VOLUME_RATE_WINDOW}]) * 3600",
            f"change of free bytes per hour on claim {claim}, over {VOLUME_RATE_WINDOW}",
        ),
    ]


def promql_string(value: str) -> str:
    """A label value inside a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def promql_regex(name: str) -> str:
    """A literal for a regex inside a PromQL string: Python's re.escape would write ``\\-``,
    which PromQL strings refuse; pod names need only their dots escaped."""
    return re.sub(r"([.+*?()|\[\]{}^$])", r"\\\\\1", name)


def alert_expression(generator_url: str) -> str | None:
    """The PromQL expression in a Prometheus generatorURL (``/graph?g0.expr=...``)."""
    if not generator_url:
        return None
    query = parse_qs(urlparse(generator_url).query)
    values = query.get("g0.expr")
    return values[0] if values else None


def _num(value: float) -> str:
    return f"{value:.4g}"


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for metric in ctx.metrics:
        values = ", ".join(f"{k or metric.name}={_num(v)}" for k, v in metric.values.items())
        desc = f"{metric.description}: " if metric.description else ""
        out.add(
            Tier.METRIC,
            metric_id(metric.name),
            EvidenceSource.METRIC,
            metric.query,
            f"{desc}{values or 'no samples'}",
        )


SOURCE = Source("metrics", Stage.FOLLOW, read, evidence, depth=Depth.QUICK)
