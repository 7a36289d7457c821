"""Which object an alert is about: from its name where the rule that fires it is known, else
from its labels, never from the labels of the exporter that produced the series.

Why the labels alone mislead. Prometheus puts the scrape target's own labels on every series
(through prometheus-operator: ``namespace``, ``service``, ``endpoint``, ``pod``, ``container``,
``instance``, ``job``, and ``node`` for a node target). kube-prometheus-stack scrapes
kube-state-metrics with ``honorLabels: true``: a label the series carries itself wins, and the
target's fills in where it carries none. So a kube-state-metrics series about a Deployment
arrives with the Deployment's ``namespace`` and ``deployment`` but the kube-state-metrics pod's
``pod``, ``container`` and ``instance``; a series about a Node (no namespace of its own) also
with that pod's ``namespace``. Without honorLabels the series' own labels are renamed
``exported_<label>``, so an ``exported_`` label wins over the plain one wherever the object is
read. The same leak comes from node-exporter (its own ``pod``, ``container`` and ``namespace``;
the node only in ``instance``), from the kubelet and cAdvisor (``node``, ``namespace:
kube-system``, ``service: ...-kubelet``; their ``pod`` and ``container`` are the object's, a
kubelet target being a node, not a pod) and from the API server (``namespace: default``,
``service: kubernetes``). ``job`` names the scrape job, never a Kubernetes Job (``job_name``).

Resolution, in order:

1. **Known alerts.** :data:`_BY_ALERT` maps each alert of kube-prometheus-stack's default rules
   (kubernetes-mixin, node-exporter mixin, kube-prometheus, prometheus-operator, Prometheus,
   Alertmanager) to what its rule is about: the object its metric and ``by`` clause name (a
   Deployment from ``deployment``, a Job from ``job_name``, a ResourceQuota from
   ``resourcequota``...), a Node, a cluster component (kind ``Component``: the kubelet, the API
   server, kube-state-metrics...), the scrape target itself for the monitoring stack's own
   alerts (Prometheus, Alertmanager, the operator: their pod, else their Service), or the whole
   Cluster. A known alert whose labels lack what its rule names (a custom rule reusing the
   name) falls through to step 2.
2. **Any other alert**, by :func:`_from_labels`: a node exporter's series is about its Node;
   else the ``pod`` (with its ``container``) unless it is the exporter's own pod and an object
   label is present; else the first object label (:data:`_OBJECT_LABELS`); else a control-plane
   component named by ``job``; else a ``service`` that is not an exporter's; else the
   service an SLO generator's label names (Sloth's ``sloth_service``); else the Namespace;
   else the Cluster.

Node exporters without kube-prometheus-stack's relabelling, and kubelets, name the node as
``IP:port`` in ``instance``; :func:`refine_target` maps such an address to the Node's name with
a read of the cluster. It also narrows a Namespace target to the one workload of the namespace
that a label value of an application alert names (``consumergroup: invoice-consumer``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

from oncallm.gathering.reader import KubeReader, SourceError
from oncallm.models.alert import Alert
from oncallm.models.analysis import TargetRef

Labels = Mapping[str, str]
Resolver = Callable[[Labels], TargetRef | None]

COMPONENT = "Component"
"""Kind of a target that is a cluster component (the kubelet, the API server,
kube-state-metrics...) rather than one Kubernetes object."""

#: Labels that name an object, most specific first, with its Kind. ``pod`` is handled before
#: these, ``node`` comes last: kubelet and cAdvisor put ``node`` on every series they export.
_OBJECT_LABELS: list[tuple[str, str]] = [
    ("job_name", "Job"),
    ("cronjob", "CronJob"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("replicaset", "ReplicaSet"),
    ("horizontalpodautoscaler", "HorizontalPodAutoscaler"),
    ("poddisruptionbudget", "PodDisruptionBudget"),
    ("persistentvolumeclaim", "PersistentVolumeClaim"),
    ("resourcequota", "ResourceQuota"),
    ("persistentvolume", "PersistentVolume"),
    ("node", "Node"),
]

_CLUSTER_SCOPED = {"Node", "PersistentVolume", "APIService"}

#: Exporters scraped as pods whose series are about other objects: their own pod, container and
#: service leak onto those series. Matched as parts of a name (``kube-prometheus-stack-kube-state-
#: metrics-6d9c8b7f4-x2x9q``, ``...-prometheus-node-exporter``).
_POD_EXPORTERS = ("kube-state-metrics", "node-exporter", "windows-exporter")

#: Exporters whose series are about a node (``instance`` is the node).
_NODE_EXPORTERS = ("node-exporter", "windows-exporter")

#: Parts of the names of exporters' scrape Services (``kube-prometheus-stack-kubelet``...): a
#: ``service`` label naming one is the scrape target's, never the subject.
_EXPORTER_SERVICES = (*_POD_EXPORTERS, "kubelet", "kube-proxy")

#: Control-plane scrape jobs (as kube-prometheus-stack names them) and the component each is.
_COMPONENT_JOBS = {
    "apiserver": "apiserver",
    "kube-apiserver": "apiserver",
    "kubelet": "kubelet",
    "kube-scheduler": "kube-scheduler",
    "kube-controller-manager": "kube-controller-manager",
    "kube-proxy": "kube-proxy",
    "kube-etcd": "etcd",
    "etcd": "etcd",
}


# -- reading labels ------------------------------------------------------------------------------


def _own(labels: Labels, key: str) -> str | None:
    """The series' own value of ``key``: ``exported_<key>`` when Prometheus renamed it."""
    return labels.get(f"exported_{key}") or labels.get(key) or None


def _names_any(value: str | None, names: tuple[str, ...]) -> bool:
    return bool(value) and any(n in str(value) for n in names)


def _host(instance: str | None) -> str | None:
    """The host of an ``instance``: ``10.0.1.12:9100`` -> ``10.0.1.12``, ``[fd00::1]:9100`` ->
    ``fd00::1``; ``worker-2`` stays."""
    if not instance:
        return None
    bracketed = re.match(r"^\[(?P<host>[^\]]+)\](?::\d+)?$", instance)
    if bracketed:
        return bracketed.group("host")
    if instance.count(":") == 1:
        return instance.split(":", 1)[0] or None
    return instance


def _from_node_exporter(labels: Labels) -> bool:
    """By ``job`` (or ``service`` once aggregated away), not ``container``: kube-state-metrics'
    series about a node-exporter pod carry that pod's own ``container: node-exporter``."""
    job = labels.get("job", "")
    if job == "node" or _names_any(job, _NODE_EXPORTERS):
        return True
    return not job and _names_any(labels.get("service"), _NODE_EXPORTERS)


def _from_kubelet(labels: Labels) -> bool:
    return labels.get("job") == "kubelet" or _names_any(labels.get("service"), ("kubelet",))


def _from_pod_exporter(labels: Labels) -> bool:
    """The series was scraped from kube-state-metrics or another exporter run as a pod."""
    return any(
        _names_any(labels.get(key), _POD_EXPORTERS) for key in ("job", "service", "container")
    )


def _is_exporter_pod(labels: Labels, has_workload: bool) -> bool:
    """Whether ``pod`` is the exporter's own pod rather than the object's.

    Sure when the pod's name is an exporter's. When only the series came from such an exporter
    (by ``job``, ``service`` or ``container``), sure only if it also names an object other than
    a Node: kube-state-metrics' series about workloads, claims or quotas never carry a pod of
    their own, whereas its series about a pod (``kube_pod_info``) carry the pod's own ``node``
    beside a leaked ``container``.
    """
    if labels.get("exported_pod"):
        return False  # renamed: the series' own pod, the plain one is the target's
    pod = labels.get("pod")
    if _names_any(pod, _POD_EXPORTERS):
        return True
    return has_workload and _from_pod_exporter(labels)


# -- what a known rule is about ------------------------------------------------------------------


def _object(kind: str, label: str) -> Resolver:
    """The object named by ``label``, in the series' own namespace unless cluster-scoped."""

    def resolve(labels: Labels) -> TargetRef | None:
        name = _own(labels, label)
        if not name:
            return None
        if kind in _CLUSTER_SCOPED:
            return TargetRef(kind=kind, name=name)
        namespace = _own(labels, "namespace")
        return TargetRef(kind=kind, namespace=namespace, name=name) if namespace else None

    return resolve


def _pod(labels: Labels) -> TargetRef | None:
    """The pod and container of a kube-state-metrics or cAdvisor series about a container: its
    own ``pod``/``container`` labels win over the exporter's under honorLabels."""
    name, namespace = _own(labels, "pod"), _own(labels, "namespace")
    if not (name and namespace):
        return None
    return TargetRef(
        kind="Pod", namespace=namespace, name=name, container=_own(labels, "container")
    )


def _node(labels: Labels) -> TargetRef | None:
    """The Node: its ``node`` label, else the host in ``instance`` where that is the node's
    (a node exporter's or a kubelet's series; kube-state-metrics' ``instance`` is its own pod)."""
    name = _own(labels, "node")
    if not name and (_from_node_exporter(labels) or _from_kubelet(labels)):
        name = _host(labels.get("instance"))
    return TargetRef(kind="Node", name=name) if name else None


def _component(name: str) -> Resolver:
    """A cluster component, whatever labels the alert carries (an ``absent()`` has only ``job``)."""
    return lambda _labels: TargetRef(kind=COMPONENT, name=name)


def _cluster(_labels: Labels) -> TargetRef:
    return TargetRef(kind="Cluster", name="cluster")


def _scrape_target(component: str | None) -> Resolver:
    """The scrape target itself, for alerts about the monitoring stack's own health: here the
    target's ``pod`` and ``service`` labels are the subject. Its pod (and container) when the
    rule keeps them, else its Service, else the component (``component``, or ``job``)."""

    def resolve(labels: Labels) -> TargetRef | None:
        namespace = labels.get("namespace")
        pod, service = labels.get("pod"), labels.get("service")
        if namespace and pod:
            return TargetRef(
                kind="Pod", namespace=namespace, name=pod, container=labels.get("container")
            )
        if namespace and service:
            return TargetRef(kind="Service", namespace=namespace, name=service)
        job = labels.get("job", "")
        if component is None and job in _COMPONENT_JOBS:
            return TargetRef(kind=COMPONENT, name=_COMPONENT_JOBS[job])
        name = component or job
        return TargetRef(kind=COMPONENT, namespace=namespace, name=name) if name else None

    return resolve


def _target_down(labels: Labels) -> TargetRef | None:
    """TargetDown counts ``up == 0`` by (job, namespace, service): the scrape target's Service,
    named by ``service``, else by ``job`` (the Service's name unless a jobLabel renames it);
    a PodMonitor's targets have no Service and the job ``<namespace>/<podmonitor>``."""
    namespace, service, job = labels.get("namespace"), labels.get("service"), labels.get("job")
    if not service and job and job.count("/") == 1:
        # prometheus-operator names a PodMonitor's job <namespace>/<name>: no Service is
        # scraped, the PodMonitor's selector picks the pods
        monitor_ns, monitor = job.split("/")
        return TargetRef(kind="PodMonitor", namespace=monitor_ns or namespace, name=monitor)
    if namespace and (service or job):
        return TargetRef(kind="Service", namespace=namespace, name=service or job or "")
    return TargetRef(kind=COMPONENT, name=job) if job else None


_PROMETHEUS_ALERTS = (
    "PrometheusBadConfig",
    "PrometheusNotificationQueueRunningFull",
    "PrometheusErrorSendingAlertsToSomeAlertmanagers",
    "PrometheusNotConnectedToAlertmanagers",
    "PrometheusTSDBReloadsFailing",
    "PrometheusTSDBCompactionsFailing",
    "PrometheusNotIngestingSamples",
    "PrometheusDuplicateTimestamps",
    "PrometheusOutOfOrderTimestamps",
    "PrometheusRemoteStorageFailures",
    "PrometheusRemoteWriteBehind",
    "PrometheusRemoteWriteDesiredShards",
    "PrometheusRuleFailures",
    "PrometheusMissingRuleEvaluations",
    "PrometheusTargetLimitHit",
    "PrometheusLabelLimitHit",
    "PrometheusScrapeBodySizeLimitHit",
    "PrometheusScrapeSampleLimitHit",
    "PrometheusTargetSyncFailure",
    "PrometheusErrorSendingAlertsToAnyAlertmanager",
    "PrometheusSDRefreshFailure",
    "PrometheusKubernetesListWatchFailures",
    "PrometheusHighQueryLoad",
)

_NODE_EXPORTER_ALERTS = (
    "NodeFilesystemSpaceFillingUp",
    "NodeFilesystemAlmostOutOfSpace",
    "NodeFilesystemFilesFillingUp",
    "NodeFilesystemAlmostOutOfFiles",
    "NodeNetworkReceiveErrs",
    "NodeNetworkTransmitErrs",
    "NodeHighNumberConntrackEntriesUsed",
    "NodeTextFileCollectorScrapeError",
    "NodeClockSkewDetected",
    "NodeClockNotSynchronising",
    "NodeRAIDDegraded",
    "NodeRAIDDiskFailure",
    "NodeFileDescriptorLimit",
    "NodeCPUHighUsage",
    "NodeSystemSaturation",
    "NodeMemoryMajorPagesFaults",
    "NodeMemoryHighUtilization",
    "NodeDiskIOSaturation",
    "NodeSystemdServiceFailed",
    "NodeSystemdServiceCrashlooping",
    "NodeBondingDegraded",
    "NodeNetworkInterfaceFlapping",
)

#: Alert name -> what its rule in kube-prometheus-stack is about. Every alert of the groups
#: kubernetes-apps, -resources, -storage, -system (kubelet, apiserver, scheduler,
#: controller-manager, kube-proxy), kube-apiserver-slos, kube-state-metrics, node-exporter,
#: node-network, general.rules, prometheus-operator, prometheus, alertmanager.rules and
#: config-reloaders; ``tests/unit/test_target.py`` holds one real label set for each.
_BY_ALERT: dict[str, Resolver] = {
    # kubernetes-apps and -resources: kube-state-metrics (or cAdvisor) series about a pod
    **dict.fromkeys(
        ("KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting", "CPUThrottlingHigh"),
        _pod,
    ),
    **dict.fromkeys(
        (
            "KubeDeploymentGenerationMismatch",
            "KubeDeploymentReplicasMismatch",
            "KubeDeploymentRolloutStuck",
        ),
        _object("Deployment", "deployment"),
    ),
    **dict.fromkeys(
        (
            "KubeStatefulSetReplicasMismatch",
            "KubeStatefulSetGenerationMismatch",
            "KubeStatefulSetUpdateNotRolledOut",
        ),
        _object("StatefulSet", "statefulset"),
    ),
    **dict.fromkeys(
        ("KubeDaemonSetRolloutStuck", "KubeDaemonSetNotScheduled", "KubeDaemonSetMisScheduled"),
        _object("DaemonSet", "daemonset"),
    ),
    **dict.fromkeys(
        ("KubeJobNotCompleted", "KubeJobCompletion", "KubeJobFailed"), _object("Job", "job_name")
    ),
    **dict.fromkeys(
        ("KubeHpaReplicasMismatch", "KubeHpaMaxedOut"),
        _object("HorizontalPodAutoscaler", "horizontalpodautoscaler"),
    ),
    "KubePdbNotEnoughHealthyPods": _object("PodDisruptionBudget", "poddisruptionbudget"),
    **dict.fromkeys(
        ("KubeQuotaAlmostFull", "KubeQuotaFullyUsed", "KubeQuotaExceeded"),
        _object("ResourceQuota", "resourcequota"),
    ),
    **dict.fromkeys(
        (
            "KubeCPUOvercommit",
            "KubeMemoryOvercommit",
            "KubeCPUQuotaOvercommit",
            "KubeMemoryQuotaOvercommit",
            "KubeVersionMismatch",
        ),
        _cluster,
    ),
    # kubernetes-storage: kubelet volume stats (the claim's namespace) and kube-state-metrics
    **dict.fromkeys(
        ("KubePersistentVolumeFillingUp", "KubePersistentVolumeInodesFillingUp"),
        _object("PersistentVolumeClaim", "persistentvolumeclaim"),
    ),
    "KubePersistentVolumeErrors": _object("PersistentVolume", "persistentvolume"),
    # kubernetes-system: the client is the scrape job that sees the errors
    "KubeClientErrors": _scrape_target(None),
    # kubernetes-system-apiserver and kube-apiserver-slos
    **dict.fromkeys(
        (
            "KubeClientCertificateExpiration",
            "KubeAPIDown",
            "KubeAPITerminatedRequests",
            "KubeAPIErrorBudgetBurn",
        ),
        _component("apiserver"),
    ),
    **dict.fromkeys(
        (
            "KubeAggregatedAPIErrors",
            "KubeAggregatedAPIDown",
            "AggregatedAPIErrors",
            "AggregatedAPIDown",
        ),
        _object("APIService", "name"),
    ),
    # kubernetes-system-kubelet: kube-state-metrics node series and the kubelets' own
    **dict.fromkeys(
        (
            "KubeNodeNotReady",
            "KubeNodePressure",
            "KubeNodeUnreachable",
            "KubeNodeReadinessFlapping",
            "KubeNodeEviction",
            "KubeletTooManyPods",
            "KubeletPlegDurationHigh",
            "KubeletPodStartUpLatencyHigh",
            "KubeletClientCertificateExpiration",
            "KubeletServerCertificateExpiration",
            "KubeletClientCertificateRenewalErrors",
            "KubeletServerCertificateRenewalErrors",
            *_NODE_EXPORTER_ALERTS,
        ),
        _node,
    ),
    "KubeletDown": _component("kubelet"),
    "KubeSchedulerDown": _component("kube-scheduler"),
    "KubeControllerManagerDown": _component("kube-controller-manager"),
    "KubeProxyDown": _component("kube-proxy"),
    **dict.fromkeys(
        (
            "KubeStateMetricsListErrors",
            "KubeStateMetricsWatchErrors",
            "KubeStateMetricsShardingMismatch",
            "KubeStateMetricsShardsMissing",
        ),
        _component("kube-state-metrics"),
    ),
    # general.rules
    "TargetDown": _target_down,
    "Watchdog": _cluster,
    "InfoInhibitor": _cluster,  # carries the labels of some info alert, about none of them
    # the monitoring stack's own health
    **dict.fromkeys(
        (
            "PrometheusOperatorListErrors",
            "PrometheusOperatorWatchErrors",
            "PrometheusOperatorSyncFailed",
            "PrometheusOperatorReconcileErrors",
            "PrometheusOperatorStatusUpdateErrors",
            "PrometheusOperatorNodeLookupErrors",
            "PrometheusOperatorNotReady",
            "PrometheusOperatorRejectedResources",
        ),
        _scrape_target("prometheus-operator"),
    ),
    **dict.fromkeys(_PROMETHEUS_ALERTS, _scrape_target("prometheus")),
    **dict.fromkeys(
        (
            "AlertmanagerFailedReload",
            "AlertmanagerMembersInconsistent",
            "AlertmanagerFailedToSendAlerts",
            "AlertmanagerClusterFailedToSendAlerts",
            "AlertmanagerConfigInconsistent",
            "AlertmanagerClusterDown",
            "AlertmanagerClusterCrashlooping",
        ),
        _scrape_target("alertmanager"),
    ),
    "ConfigReloaderSidecarErrors": _scrape_target("config-reloader"),
}


# -- any other alert -----------------------------------------------------------------------------


#: Labels an SLO generator puts on its burn-rate alerts to name the service the SLO is of:
#: Sloth's ``sloth_service`` (its ``sloth_id`` and ``sloth_slo`` name the SLO itself).
_SLO_SERVICE_LABELS = ("sloth_service",)


def _from_labels(labels: Labels) -> TargetRef:
    """The general rule for an alert whose rule is not known (step 2 of the module's order)."""
    namespace = _own(labels, "namespace")
    if _from_node_exporter(labels):
        node = _node(labels)
        if node is not None:
            return node
    objects = [
        (kind, name)
        for label, kind in _OBJECT_LABELS
        if (name := _own(labels, label)) and (kind in _CLUSTER_SCOPED or namespace)
    ]
    has_workload = any(kind != "Node" for kind, _ in objects)
    pod = _own(labels, "pod")
    if pod and namespace and not (objects and _is_exporter_pod(labels, has_workload)):
        return TargetRef(
            kind="Pod", namespace=namespace, name=pod, container=_own(labels, "container")
        )
    if objects:
        kind, name = objects[0]
        return TargetRef(
            kind=kind, namespace=None if kind in _CLUSTER_SCOPED else namespace, name=name
        )
    component = _COMPONENT_JOBS.get(labels.get("job", ""))
    if component:
        return TargetRef(kind=COMPONENT, name=component)
    service = _own(labels, "service")
    if service and namespace and not _names_any(service, _EXPORTER_SERVICES):
        return TargetRef(kind="Service", namespace=namespace, name=service)
    slo_service = next((v for key in _SLO_SERVICE_LABELS if (v := _own(labels, key))), None)
    if slo_service and namespace:
        return TargetRef(kind="Service", namespace=namespace, name=slo_service)
    if namespace:
        return TargetRef(kind="Namespace", name=namespace, namespace=namespace)
    return TargetRef(kind="Cluster", name="cluster")


def resolve_target(alert: Alert) -> TargetRef:
    """The object ``alert`` is about, from its name and labels alone (no cluster read).

    A known kube-prometheus-stack alert resolves to what its rule is about (:data:`_BY_ALERT`);
    any other alert, or a known one lacking the label its rule names, by the general rule
    (:func:`_from_labels`). Either way a pod, container or service that belongs to the exporter
    which produced the series (kube-state-metrics, node-exporter, the kubelet) is never taken
    for the subject when the alert names an object. A Namespace when only a namespace is known,
    else the Cluster.
    """
    labels = alert.labels
    known = _BY_ALERT.get(labels.get("alertname", ""))
    target = known(labels) if known is not None else None
    return target if target is not None else _from_labels(labels)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: Labels of an application alert that never name the workload it is about: the alert's own
#: bookkeeping, routing and ownership, the scrape's, and the cluster's place.
_NOT_WORKLOAD_LABELS = frozenset(
    {
        "alertname", "severity", "priority", "namespace", "prometheus", "team", "owner",
        "squad", "receiver", "cluster", "env", "environment", "region", "zone", "tier",
        "job", "instance", "endpoint", "service", "pod", "container", "node", "slo",
        "sloth_id", "sloth_slo", "sloth_window", "le", "quantile", "code", "method", "status",
    }
)  # fmt: skip

#: The workload kinds an application alert's label values are matched against.
_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


async def _named_workload(namespace: str, labels: Labels, reader: KubeReader) -> TargetRef | None:
    """The one workload of ``namespace`` whose name an application alert's label value is.

    An application's own alert often names no Kubernetes object, only its own terms
    (``consumergroup: invoice-consumer``, ``app: checkout``, ``queue: ...``); where such a value
    is exactly the name of one Deployment, StatefulSet or DaemonSet of the alert's namespace, the
    alert is about that workload. Several different workloads named: ambiguous, None."""
    values = {
        v
        for key, v in labels.items()
        if key not in _NOT_WORKLOAD_LABELS
        and not key.startswith("exported_")
        and _DNS_NAME.match(v)
    }
    if not values:
        return None
    found: list[TargetRef] = []
    for kind in _WORKLOAD_KINDS:
        for item in await reader.list(kind, namespace):
            name = str((item.get("metadata") or {}).get("name") or "")
            if name in values:
                found.append(TargetRef(kind=kind, namespace=namespace, name=name))
    return found[0] if len(found) == 1 else None


_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


async def refine_target(
    target: TargetRef, reader: KubeReader, labels: Labels | None = None
) -> TargetRef:
    """``target`` with a Node given by IP address (a node exporter's ``instance`` without
    kube-prometheus-stack's relabelling, a kubelet's) renamed to the Node that has the address,
    and a Namespace target of an application alert narrowed to the one workload a label value
    of ``labels`` names (:func:`_named_workload`; one LIST per workload kind).

    Only a Node whose name is an IP address costs reads: one GET (nodes may be named by their
    IP), then, if there is no such Node, one LIST of Nodes matched on ``status.addresses``. Any
    other target is returned as is. A read that fails (SourceError) or an address no Node has
    leaves the target unchanged; gathering then reports the node as missing.
    """
    if target.kind == "Namespace" and labels:
        try:
            named = await _named_workload(target.name, labels, reader)
        except SourceError:
            return target
        return named or target
    if target.kind != "Node" or not _is_ip(target.name):
        return target
    try:
        if await reader.get("Node", None, target.name) is not None:
            return target
        nodes = await reader.list("Node")
    except SourceError:
        return target
    wanted = ipaddress.ip_address(target.name)
    for node in nodes:
        for address in (node.get("status") or {}).get("addresses") or []:
            if _same_ip(str(address.get("address", "")), wanted):
                name = str((node.get("metadata") or {}).get("name") or "")
                if name:
                    return target.model_copy(update={"name": name})
    return target


def _same_ip(text: str, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == wanted
    except ValueError:
        return False
