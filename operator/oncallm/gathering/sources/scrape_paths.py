"""A scrape that fails (TargetDown, KubeletDown, ``absent(up)``): the path from Prometheus to
the target, with the NetworkPolicies on both ends evaluated.

When a target "goes down" for Prometheus while it runs, the scrape itself is blocked: an
egress policy on the Prometheus pods that lacks the target's port (the kubelet's 10250), or an
ingress policy on the target's pods that does not admit the monitoring namespace. The source
reads nothing unless the alert is about a failing scrape: then the Prometheus pods the alert's
``prometheus`` label names (``monitoring/kube-prometheus-stack-prometheus``), the policies of
their namespace, the target's Service and pods (or a node's address for the kubelet) and the
policies of the target's namespace. The verdicts land in ``Context.network_paths``.

Evidence: ``netpath/<destination>``, as the ``network_paths`` source writes it.
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, label_selector, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import Source, Stage
from oncallm.gathering.sources.network_paths import (
    allowed_by,
    peer_pod,
    read_namespace,
)
from oncallm.gathering.sources.network_policies import (
    label_selector_of,
    network_policy_snapshot,
    restricts,
    selects,
)
from oncallm.gathering.sources.workload import PROMETHEUS_OPERATOR
from oncallm.models.evidence import NetworkPathSnapshot, NetworkPolicySnapshot, PodSnapshot

SCRAPE_ALERTS = frozenset(
    {
        "TargetDown",
        "KubeletDown",
        "KubeProxyDown",
        "KubeSchedulerDown",
        "KubeControllerManagerDown",
        "KubeStateMetricsDown",
        "NodeExporterDown",
    }
)
"""kube-prometheus-stack's alerts on a scrape that fails or a target that disappeared."""

KUBELET_PORT = 10250
"""The kubelet's HTTPS port, where kube-prometheus-stack scrapes its /metrics and cAdvisor."""

PROMETHEUS_LABEL = "app.kubernetes.io/name=prometheus"
"""The label the Prometheus Operator puts on every Prometheus server pod."""


def is_scrape_alert(name: str, expression: str) -> bool:
    return name in SCRAPE_ALERTS or "absent(up" in expression or expression.startswith("up ")


async def read(scope: Scope) -> None:
    alert = scope.alert
    if not is_scrape_alert(alert.name, ""):
        return
    server = alert.labels.get("prometheus", "")
    if "/" not in server:
        return
    ns, name = server.split("/", 1)
    async with scope.guard(f"prometheus pods in {ns}"):
        pods = await scope.reader.list("Pod", ns, label_selector=PROMETHEUS_LABEL)
        pods = [p for p in pods if (meta(p).get("labels") or {}).get("prometheus") == name] or pods
        if pods:
            labels = dict(meta(pods[0]).get("labels") or {})
            me = PodSnapshot(name=str(meta(pods[0]).get("name", "")), namespace=ns, labels=labels)
        else:
            # Prometheus runs where OnCallM cannot list it (or the pods are being replaced):
            # its pods carry the labels the Prometheus Operator always sets, and the
            # target's ingress policies are judged against those and the namespace
            labels = operator_labels(name)
            me = PodSnapshot(name=f"prometheus-{name}-0", namespace=ns, labels=labels)
        egress = [
            p
            for p in (
                network_policy_snapshot(obj, [me])
                for obj in await scope.reader.list("NetworkPolicy", ns)
            )
            if p.selects_target
        ]
        await read_namespace(scope, ns)
        path = await _destination(scope, alert.labels)
        if path is None:
            return
        path.source_pod, path.source_namespace, path.source_labels = me.name, ns, labels
        await _evaluate(scope, path, egress)
        scope.ctx.network_paths.append(path)


def operator_labels(name: str) -> dict[str, str]:
    """The labels the Prometheus Operator puts on the pods of Prometheus ``name``."""
    return {
        "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "operator.prometheus.io/name": name,
        "prometheus": name,
    }


async def _destination(scope: Scope, labels: dict[str, str]) -> NetworkPathSnapshot | None:
    job = labels.get("job", "")
    if job == "kubelet" or scope.alert.name == "KubeletDown":
        nodes = await scope.reader.list("Node", None)
        ip = next(
            (
                str(a.get("address"))
                for n in nodes[:1]
                for a in (n.get("status") or {}).get("addresses") or []
                if a.get("type") == "InternalIP"
            ),
            None,
        )
        return NetworkPathSnapshot(
            destination=f"kubelet:{KUBELET_PORT}",
            kind="scrape",
            line=f"Prometheus scrapes the kubelets on port {KUBELET_PORT} (job {job or 'kubelet'})",
            ip=ip,
            port=KUBELET_PORT,
            target_port=KUBELET_PORT,
        )
    ns, svc = labels.get("namespace"), labels.get("service") or job
    if not ns or not svc:
        return None
    await read_namespace(scope, ns)
    service = await scope.get("Service", ns, svc)
    path = NetworkPathSnapshot(
        destination=f"{svc}.{ns}",
        kind="scrape",
        line=f"Prometheus scrapes Service {ns}/{svc} (job {job})",
        namespace=ns,
        service=svc,
        service_exists=service is not None,
    )
    selector = ((service or {}).get("spec") or {}).get("selector") or {}
    if selector:
        targets = await scope.reader.list("Pod", ns, label_selector=label_selector(selector))
        path.pods = [peer_pod(p) for p in targets[:5]]
    ports = ((service or {}).get("spec") or {}).get("ports") or []
    monitor, scraped = await _monitor(scope, ns, service, labels.get("endpoint"))
    endpoint = labels.get("endpoint") or (str(scraped["port"]) if scraped else None)
    if monitor is not None and scraped is not None:
        path.monitor = monitor
        path.scheme = str(scraped.get("scheme") or "http").lower()
        path.monitor_tls = bool(scraped.get("tlsConfig"))
    port: Obj = next(
        (p for p in ports if p.get("name") == endpoint),
        next((p for p in ports if "metrics" in str(p.get("name", ""))), ports[0] if ports else {}),
    )
    if port:
        path.port_name = str(port.get("name") or "") or None
        path.app_protocol = str(port.get("appProtocol") or "") or None
        path.port = int(port.get("port", 0)) or None
        target = port.get("targetPort", path.port)
        named = {pp.name: pp.port for pod in path.pods for pp in pod.ports if pp.name}
        path.target_port = (
            int(str(target)) if str(target).isdigit() else named.get(str(target), path.port)
        )
    return path


async def _monitor(
    scope: Scope, ns: str, service: Obj | None, endpoint: str | None
) -> tuple[str | None, Obj | None]:
    """The ServiceMonitor that scrapes the Service, and its endpoint that scrapes the port
    ``endpoint`` (the alert's label), or its first named endpoint when the alert aggregated
    that label away (TargetDown counts by job and service). Prometheus scrapes that port, not
    the Service's first one: a policy that admits the application port and not the metrics
    port blocks only the scrape; and the endpoint says which scheme the scrape speaks.
    ServiceMonitors are read in the Service's namespace; a cluster without
    prometheus-operator serves none."""
    if service is None:
        return None, None
    svc_labels = dict(meta(service).get("labels") or {})
    for monitor in await scope.reader.list("ServiceMonitor", ns, api_version=PROMETHEUS_OPERATOR):
        spec = monitor.get("spec") or {}
        if not spec.get("selector") or not selects(label_selector_of(spec["selector"]), svc_labels):
            continue
        for ep in spec.get("endpoints") or []:
            if ep.get("port") and (endpoint is None or ep["port"] == endpoint):
                return str(meta(monitor).get("name", "")), ep
    return None, None


async def _evaluate(
    scope: Scope, path: NetworkPathSnapshot, egress: list[NetworkPolicySnapshot]
) -> None:
    ctx = scope.ctx
    labels_of = {n.name: n.labels for n in ctx.namespaces}
    named = {p.name: p.port for pod in path.pods for p in pod.ports if p.name}
    path.egress_policies = [p.name for p in egress if restricts(p, "Egress")]
    dest_labels = path.pods[0].labels if path.pods else None
    path.egress_allowed, path.egress_allowed_by = allowed_by(
        egress,
        "Egress",
        dest_labels,
        path.namespace,
        labels_of.get(path.namespace or "", {}),
        path.ip,
        path.target_port,
        path.protocol,
        named,
    )
    if path.namespace and path.pods:
        path.ingress_policies = [
            p
            for p in (
                network_policy_snapshot(obj, [])
                for obj in await scope.reader.list("NetworkPolicy", path.namespace)
            )
            if any(selects(p.selector, pod.labels) for pod in path.pods) and restricts(p, "Ingress")
        ]
        path.ingress_allowed, path.ingress_allowed_by = allowed_by(
            path.ingress_policies,
            "Ingress",
            path.source_labels,
            path.source_namespace,
            labels_of.get(path.source_namespace, {}),
            None,
            path.target_port,
            path.protocol,
            named,
        )


SOURCE = Source(
    "scrape_paths",
    Stage.LEADS,
    read,
    None,
    resources=(
        "pods",
        "nodes",
        "services",
        "namespaces",
        "networkpolicies.networking.k8s.io",
        "servicemonitors.monitoring.coreos.com",
    ),
)
