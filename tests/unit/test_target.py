"""Target resolution from alerts as they really arrive from kube-prometheus-stack.

Each label set below is what Alertmanager receives for the rule: the labels the rule's
expression keeps (its metric's own labels, minus what ``by``/``without``/``ignoring`` drop) plus
the scrape target's labels that Prometheus adds where the metric has none of its own
(kube-state-metrics is scraped with honorLabels), plus the rule's ``severity`` and Prometheus'
external label ``prometheus``. Expressions: kube-prometheus-stack's
``templates/prometheus/rules-1.14`` (generated from kubernetes-mixin, the node-exporter mixin
and kube-prometheus).
"""

from __future__ import annotations

from typing import Any

import pytest

from oncallm.gathering.memory import MemoryReader
from oncallm.gathering.target import _BY_ALERT, refine_target, resolve_target
from oncallm.models.alert import Alert
from oncallm.models.analysis import TargetRef


def _alert(labels: dict[str, str]) -> Alert:
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": labels,
            "startsAt": "2025-05-14T09:41:30Z",
            "fingerprint": "0a1b2c3d4e5f6071",
        }
    )


# -- the scrape targets' own labels, as prometheus-operator sets them -----------------------------

#: kube-state-metrics: every series it exports about an object without a pod of its own
#: carries these; a series with its own ``namespace`` keeps that one.
KSM = {
    "container": "kube-state-metrics",
    "endpoint": "http",
    "instance": "10.42.3.17:8080",
    "job": "kube-state-metrics",
    "namespace": "monitoring",
    "pod": "kube-prometheus-stack-kube-state-metrics-6d9c8b7f4-x2x9q",
    "service": "kube-prometheus-stack-kube-state-metrics",
}
#: the kubelet's /metrics (a node target: ``node``, no pod).
KUBELET = {
    "endpoint": "https-metrics",
    "instance": "10.0.1.12:10250",
    "job": "kubelet",
    "metrics_path": "/metrics",
    "namespace": "kube-system",
    "node": "worker-2",
    "service": "kube-prometheus-stack-kubelet",
}
#: node-exporter, its ``instance`` relabelled to the node's name by kube-prometheus-stack.
NODE_EXPORTER = {
    "container": "node-exporter",
    "endpoint": "http-metrics",
    "instance": "worker-2",
    "job": "node-exporter",
    "namespace": "monitoring",
    "pod": "kube-prometheus-stack-prometheus-node-exporter-7xk2p",
    "service": "kube-prometheus-stack-prometheus-node-exporter",
}
APISERVER = {
    "endpoint": "https",
    "instance": "10.0.1.10:6443",
    "job": "apiserver",
    "namespace": "default",
    "service": "kubernetes",
}
PROMETHEUS = {
    "container": "prometheus",
    "endpoint": "http-web",
    "instance": "10.42.2.8:9090",
    "job": "kube-prometheus-stack-prometheus",
    "namespace": "monitoring",
    "pod": "prometheus-kube-prometheus-stack-prometheus-0",
    "service": "kube-prometheus-stack-prometheus",
}
ALERTMANAGER = {
    "container": "alertmanager",
    "endpoint": "http-web",
    "instance": "10.42.1.5:9093",
    "job": "kube-prometheus-stack-alertmanager",
    "namespace": "monitoring",
    "pod": "alertmanager-kube-prometheus-stack-alertmanager-0",
    "service": "kube-prometheus-stack-alertmanager",
}
OPERATOR = {
    "container": "kube-prometheus-stack",
    "endpoint": "https",
    "instance": "10.42.1.9:10250",
    "job": "kube-prometheus-stack-operator",
    "namespace": "monitoring",
    "pod": "kube-prometheus-stack-operator-7b8d9c6f5-m4x2p",
    "service": "kube-prometheus-stack-operator",
}

POD = "orders-api-7d9f8c6b5-x2kqp"
PROM_POD = "pod/monitoring/prometheus-kube-prometheus-stack-prometheus-0"
AM_POD = "pod/monitoring/alertmanager-kube-prometheus-stack-alertmanager-0"
AM_SERVICE = {"namespace": "monitoring", "service": "kube-prometheus-stack-alertmanager"}
OPERATOR_POD = "pod/monitoring/kube-prometheus-stack-operator-7b8d9c6f5-m4x2p"
FILESYSTEM = {"device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/"}


def case(
    alertname: str,
    severity: str,
    scraped: dict[str, str] | None,
    own: dict[str, str],
    expected: str,
    container: str | None = None,
    id: str | None = None,
) -> Any:
    """One alert: the target's labels, overlaid by the series' own (honorLabels), the rule's."""
    labels = {**(scraped or {}), **own}
    labels |= {
        "alertname": alertname,
        "severity": severity,
        "prometheus": "monitoring/kube-prometheus-stack-prometheus",
    }
    return pytest.param(labels, expected, container, id=id or alertname)


KUBE_PROMETHEUS_STACK = [
    # -- kubernetes-apps ------------------------------------------------------------------------
    case(
        "KubePodCrashLooping",
        "warning",
        KSM,
        {
            "namespace": "orders",
            "pod": POD,
            "container": "api",
            "reason": "CrashLoopBackOff",
            "uid": "5b1e6c1e-8f0a-4d4e-9b51-0f1c2d3e4f50",
        },
        f"pod/orders/{POD}",
        "api",
    ),
    case(  # sum by (namespace, pod): nothing of the exporter is left
        "KubePodNotReady",
        "warning",
        None,
        {"namespace": "orders", "pod": "orders-worker-5f6d7c8b9-q8w7e"},
        "pod/orders/orders-worker-5f6d7c8b9-q8w7e",
    ),
    case(
        "KubeDeploymentGenerationMismatch",
        "warning",
        KSM,
        {"namespace": "orders", "deployment": "orders-api"},
        "deployment/orders/orders-api",
    ),
    case(
        "KubeDeploymentReplicasMismatch",
        "warning",
        KSM,
        {"namespace": "orders", "deployment": "orders-api"},
        "deployment/orders/orders-api",
    ),
    case(
        "KubeDeploymentRolloutStuck",
        "warning",
        KSM,
        {
            "namespace": "orders",
            "deployment": "orders-api",
            "condition": "Progressing",
            "status": "false",
        },
        "deployment/orders/orders-api",
    ),
    case(
        "KubeStatefulSetReplicasMismatch",
        "warning",
        KSM,
        {"namespace": "db", "statefulset": "postgres"},
        "statefulset/db/postgres",
    ),
    case(
        "KubeStatefulSetGenerationMismatch",
        "warning",
        KSM,
        {"namespace": "db", "statefulset": "postgres"},
        "statefulset/db/postgres",
    ),
    case(  # max by (namespace, statefulset, job, cluster): the scrape job survives
        "KubeStatefulSetUpdateNotRolledOut",
        "warning",
        None,
        {"namespace": "db", "statefulset": "postgres", "job": "kube-state-metrics"},
        "statefulset/db/postgres",
    ),
    case(
        "KubeDaemonSetRolloutStuck",
        "warning",
        KSM,
        {"namespace": "logging", "daemonset": "fluent-bit"},
        "daemonset/logging/fluent-bit",
    ),
    case(
        "KubeContainerWaiting",
        "warning",
        KSM,
        {
            "namespace": "orders",
            "pod": POD,
            "container": "api",
            "reason": "ContainerCreating",
            "uid": "5b1e6c1e-8f0a-4d4e-9b51-0f1c2d3e4f50",
        },
        f"pod/orders/{POD}",
        "api",
    ),
    case(
        "KubeDaemonSetNotScheduled",
        "warning",
        KSM,
        {"namespace": "logging", "daemonset": "fluent-bit"},
        "daemonset/logging/fluent-bit",
    ),
    case(
        "KubeDaemonSetMisScheduled",
        "warning",
        KSM,
        {"namespace": "logging", "daemonset": "fluent-bit"},
        "daemonset/logging/fluent-bit",
    ),
    case(  # max by (namespace, job_name, cluster)
        "KubeJobNotCompleted",
        "warning",
        None,
        {"namespace": "billing", "job_name": "invoice-sync-28930115"},
        "job/billing/invoice-sync-28930115",
    ),
    case(  # the name before kubernetes-mixin 0.13
        "KubeJobCompletion",
        "warning",
        KSM,
        {"namespace": "billing", "job_name": "invoice-sync-28930115"},
        "job/billing/invoice-sync-28930115",
    ),
    case(
        "KubeJobFailed",
        "warning",
        KSM,
        {"namespace": "billing", "job_name": "invoice-sync-28930115", "condition": "true"},
        "job/billing/invoice-sync-28930115",
    ),
    case(
        "KubeHpaReplicasMismatch",
        "warning",
        KSM,
        {"namespace": "web", "horizontalpodautoscaler": "frontend"},
        "horizontalpodautoscaler/web/frontend",
    ),
    case(
        "KubeHpaMaxedOut",
        "warning",
        KSM,
        {"namespace": "web", "horizontalpodautoscaler": "frontend"},
        "horizontalpodautoscaler/web/frontend",
    ),
    case(
        "KubePdbNotEnoughHealthyPods",
        "warning",
        KSM,
        {"namespace": "orders", "poddisruptionbudget": "orders-api"},
        "poddisruptionbudget/orders/orders-api",
    ),
    # -- kubernetes-resources -------------------------------------------------------------------
    case("KubeCPUOvercommit", "warning", None, {}, "cluster/cluster"),
    case("KubeMemoryOvercommit", "warning", None, {}, "cluster/cluster"),
    case("KubeCPUQuotaOvercommit", "warning", None, {}, "cluster/cluster"),
    case("KubeMemoryQuotaOvercommit", "warning", None, {}, "cluster/cluster"),
    *[
        # kube_resourcequota / ignoring(instance, job, type): the rest of the exporter stays
        case(
            name,
            severity,
            {k: v for k, v in KSM.items() if k not in ("instance", "job")},
            {"namespace": "team-a", "resourcequota": "compute", "resource": "requests.cpu"},
            "resourcequota/team-a/compute",
        )
        for name, severity in (
            ("KubeQuotaAlmostFull", "info"),
            ("KubeQuotaFullyUsed", "info"),
            ("KubeQuotaExceeded", "warning"),
        )
    ],
    case(  # cAdvisor series, without (id, metrics_path, name, image, endpoint, job, node)
        "CPUThrottlingHigh",
        "info",
        {"instance": "10.0.1.12:10250", "service": "kube-prometheus-stack-kubelet"},
        {"namespace": "pricing", "pod": "pricing-engine-6c8d9f7b5-cfmsd", "container": "engine"},
        "pod/pricing/pricing-engine-6c8d9f7b5-cfmsd",
        "engine",
    ),
    # -- kubernetes-storage: kubelet volume stats carry the claim's namespace ------------------
    case(
        "KubePersistentVolumeFillingUp",
        "critical",
        KUBELET,
        {"namespace": "db", "persistentvolumeclaim": "data-postgres-0"},
        "persistentvolumeclaim/db/data-postgres-0",
    ),
    case(
        "KubePersistentVolumeInodesFillingUp",
        "warning",
        KUBELET,
        {"namespace": "db", "persistentvolumeclaim": "data-postgres-0"},
        "persistentvolumeclaim/db/data-postgres-0",
    ),
    case(
        "KubePersistentVolumeErrors",
        "critical",
        KSM,
        {"persistentvolume": "pvc-3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "phase": "Failed"},
        "persistentvolume/pvc-3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f",
    ),
    # -- kubernetes-system ----------------------------------------------------------------------
    case("KubeVersionMismatch", "warning", None, {}, "cluster/cluster"),
    case(  # by (cluster, instance, job, namespace): the client that sees the errors
        "KubeClientErrors",
        "warning",
        None,
        {"instance": "10.42.3.17:8080", "job": "kube-state-metrics", "namespace": "monitoring"},
        "component/monitoring/kube-state-metrics",
    ),
    case(
        "KubeClientErrors",
        "warning",
        None,
        {"instance": "10.0.1.12:10250", "job": "kubelet", "namespace": "kube-system"},
        "component/kubelet",
        id="KubeClientErrors-kubelet",
    ),
    # -- kubernetes-system-apiserver and kube-apiserver-slos ------------------------------------
    case("KubeClientCertificateExpiration", "warning", APISERVER, {}, "component/apiserver"),
    case(
        "KubeAggregatedAPIErrors",
        "warning",
        None,
        {"instance": "10.0.1.10:6443", "name": "v1beta1.metrics.k8s.io", "reason": "Unavailable"},
        "apiservice/v1beta1.metrics.k8s.io",
    ),
    case(
        "KubeAggregatedAPIDown",
        "warning",
        None,
        {"name": "v1beta1.metrics.k8s.io", "namespace": "default"},
        "apiservice/v1beta1.metrics.k8s.io",
    ),
    case(  # the names before kubernetes-mixin 0.13, by (name, namespace)
        "AggregatedAPIErrors",
        "warning",
        None,
        {"name": "v1beta1.metrics.k8s.io", "namespace": "default"},
        "apiservice/v1beta1.metrics.k8s.io",
    ),
    case(
        "AggregatedAPIDown",
        "warning",
        None,
        {"name": "v1beta1.metrics.k8s.io", "namespace": "default"},
        "apiservice/v1beta1.metrics.k8s.io",
    ),
    case("KubeAPIDown", "critical", None, {"job": "apiserver"}, "component/apiserver"),
    case("KubeAPITerminatedRequests", "warning", None, {}, "component/apiserver"),
    case(
        "KubeAPIErrorBudgetBurn",
        "critical",
        None,
        {"long": "1h", "short": "5m"},
        "component/apiserver",
    ),
    # -- kubernetes-system-kubelet --------------------------------------------------------------
    case(  # kube_node_* has no namespace: the exporter's leaks in
        "KubeNodeNotReady",
        "warning",
        KSM,
        {"node": "worker-3", "condition": "Ready", "status": "true"},
        "node/worker-3",
    ),
    case(
        "KubeNodePressure",
        "info",
        KSM,
        {"node": "worker-3", "condition": "MemoryPressure", "status": "true"},
        "node/worker-3",
    ),
    case(
        "KubeNodeUnreachable",
        "warning",
        KSM,
        {"node": "worker-3", "key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        "node/worker-3",
    ),
    case(
        "KubeletTooManyPods",
        "info",
        None,
        {"instance": "10.0.1.12:10250", "node": "worker-2"},
        "node/worker-2",
    ),
    case("KubeNodeReadinessFlapping", "warning", None, {"node": "worker-3"}, "node/worker-3"),
    case(
        "KubeNodeEviction",
        "info",
        None,
        {"eviction_signal": "memory.available", "instance": "10.0.1.12:10250", "node": "worker-2"},
        "node/worker-2",
    ),
    case(
        "KubeletPlegDurationHigh",
        "warning",
        None,
        {"instance": "10.0.1.12:10250", "node": "worker-2", "quantile": "0.99"},
        "node/worker-2",
    ),
    case(
        "KubeletPodStartUpLatencyHigh",
        "warning",
        None,
        {"instance": "10.0.1.12:10250", "node": "worker-2"},
        "node/worker-2",
    ),
    case("KubeletClientCertificateExpiration", "warning", KUBELET, {}, "node/worker-2"),
    case("KubeletServerCertificateExpiration", "critical", KUBELET, {}, "node/worker-2"),
    case("KubeletClientCertificateRenewalErrors", "warning", KUBELET, {}, "node/worker-2"),
    case("KubeletServerCertificateRenewalErrors", "warning", KUBELET, {}, "node/worker-2"),
    case(  # absent(up{job="kubelet", metrics_path="/metrics"} == 1)
        "KubeletDown",
        "critical",
        None,
        {"job": "kubelet", "metrics_path": "/metrics"},
        "component/kubelet",
    ),
    # -- kubernetes-system-scheduler, -controller-manager, -kube-proxy --------------------------
    case(
        "KubeSchedulerDown", "critical", None, {"job": "kube-scheduler"}, "component/kube-scheduler"
    ),
    case(
        "KubeControllerManagerDown",
        "critical",
        None,
        {"job": "kube-controller-manager"},
        "component/kube-controller-manager",
    ),
    case("KubeProxyDown", "critical", None, {"job": "kube-proxy"}, "component/kube-proxy"),
    # -- kube-state-metrics: sums without a by clause ------------------------------------------
    *[
        case(name, "critical", None, {}, "component/kube-state-metrics")
        for name in (
            "KubeStateMetricsListErrors",
            "KubeStateMetricsWatchErrors",
            "KubeStateMetricsShardingMismatch",
            "KubeStateMetricsShardsMissing",
        )
    ],
    # -- node-exporter and node-network: no aggregation, the exporter's labels all stay ---------
    *[
        case(name, severity, NODE_EXPORTER, own, "node/worker-2")
        for name, severity, own in (
            ("NodeFilesystemSpaceFillingUp", "warning", FILESYSTEM),
            ("NodeFilesystemAlmostOutOfSpace", "critical", FILESYSTEM),
            ("NodeFilesystemFilesFillingUp", "warning", FILESYSTEM),
            ("NodeFilesystemAlmostOutOfFiles", "critical", FILESYSTEM),
            ("NodeNetworkReceiveErrs", "warning", {"device": "eth0"}),
            ("NodeNetworkTransmitErrs", "warning", {"device": "eth0"}),
            ("NodeHighNumberConntrackEntriesUsed", "warning", {}),
            ("NodeTextFileCollectorScrapeError", "warning", {}),
            ("NodeClockSkewDetected", "warning", {}),
            ("NodeClockNotSynchronising", "warning", {}),
            ("NodeRAIDDegraded", "critical", {"device": "md0"}),
            ("NodeRAIDDiskFailure", "warning", {"device": "md0", "state": "failed"}),
            ("NodeFileDescriptorLimit", "warning", {}),
            ("NodeCPUHighUsage", "info", {}),
            ("NodeSystemSaturation", "warning", {}),
            ("NodeMemoryMajorPagesFaults", "warning", {}),
            ("NodeMemoryHighUtilization", "warning", {}),
            ("NodeDiskIOSaturation", "warning", {"device": "nvme0n1"}),
            ("NodeSystemdServiceFailed", "warning", {"name": "containerd.service"}),
            ("NodeSystemdServiceCrashlooping", "warning", {"name": "kubelet.service"}),
            ("NodeBondingDegraded", "warning", {"master": "bond0"}),
            ("NodeNetworkInterfaceFlapping", "warning", {"device": "eth1"}),
        )
    ],
    case(  # instance left as IP:port (no relabelling): refine_target names the node
        "NodeFilesystemSpaceFillingUp",
        "warning",
        NODE_EXPORTER | {"instance": "10.0.1.12:9100"},
        FILESYSTEM,
        "node/10.0.1.12",
        id="NodeFilesystemSpaceFillingUp-ip",
    ),
    # -- general.rules --------------------------------------------------------------------------
    case(  # count by (job, namespace, service)
        "TargetDown",
        "warning",
        None,
        {"job": "payments-api", "namespace": "payments", "service": "payments-api"},
        "service/payments/payments-api",
    ),
    case(
        "TargetDown",
        "warning",
        None,
        {"job": "kubelet", "namespace": "kube-system", "service": "kube-prometheus-stack-kubelet"},
        "service/kube-system/kube-prometheus-stack-kubelet",
        id="TargetDown-kubelet",
    ),
    case(  # a PodMonitor's job is <namespace>/<name> and there is no service label
        "TargetDown",
        "warning",
        None,
        {"job": "media/transcoder", "namespace": "media"},
        "podmonitor/media/transcoder",
        id="TargetDown-podmonitor",
    ),
    case("Watchdog", "none", None, {}, "cluster/cluster"),
    case(  # ALERTS{severity="info"}: the labels of an info alert, about none of them
        "InfoInhibitor",
        "none",
        None,
        {
            "alertstate": "firing",
            "namespace": "pricing",
            "pod": "pricing-engine-6c8d9f7b5-cfmsd",
            "container": "engine",
        },
        "cluster/cluster",
    ),
    # -- prometheus-operator --------------------------------------------------------------------
    *[
        case(  # sum or min by (controller, namespace)
            name,
            "warning",
            None,
            {"controller": "prometheus", "namespace": "monitoring"},
            "component/monitoring/prometheus-operator",
        )
        for name in (
            "PrometheusOperatorListErrors",
            "PrometheusOperatorWatchErrors",
            "PrometheusOperatorReconcileErrors",
            "PrometheusOperatorStatusUpdateErrors",
            "PrometheusOperatorNotReady",
        )
    ],
    case(
        "PrometheusOperatorSyncFailed",
        "warning",
        OPERATOR,
        {"controller": "alertmanager", "status": "failed"},
        OPERATOR_POD,
        "kube-prometheus-stack",
    ),
    case(
        "PrometheusOperatorNodeLookupErrors",
        "warning",
        OPERATOR,
        {},
        OPERATOR_POD,
        "kube-prometheus-stack",
    ),
    case(
        "PrometheusOperatorRejectedResources",
        "warning",
        OPERATOR,
        {"controller": "prometheus", "resource": "servicemonitors", "state": "rejected"},
        OPERATOR_POD,
        "kube-prometheus-stack",
    ),
    # -- prometheus: rates of its own series, its pod's labels all stay ------------------------
    *[
        case(name, severity, PROMETHEUS, own, PROM_POD, "prometheus")
        for name, severity, own in (
            ("PrometheusBadConfig", "critical", {}),
            (
                "PrometheusSDRefreshFailure",
                "warning",
                {"mechanism": "kubernetes", "config": "serviceMonitor/orders/orders-api/0"},
            ),
            ("PrometheusKubernetesListWatchFailures", "warning", {}),
            ("PrometheusNotificationQueueRunningFull", "warning", {}),
            (
                "PrometheusErrorSendingAlertsToSomeAlertmanagers",
                "warning",
                {"alertmanager": "http://10.42.1.5:9093/api/v2/alerts"},
            ),
            ("PrometheusNotConnectedToAlertmanagers", "warning", {}),
            ("PrometheusTSDBReloadsFailing", "warning", {}),
            ("PrometheusTSDBCompactionsFailing", "warning", {}),
            ("PrometheusNotIngestingSamples", "warning", {}),
            ("PrometheusDuplicateTimestamps", "warning", {}),
            ("PrometheusOutOfOrderTimestamps", "warning", {}),
            (
                "PrometheusRemoteStorageFailures",
                "critical",
                {"remote_name": "0a1b2c", "url": "https://mimir.example.com/api/v1/push"},
            ),
            (
                "PrometheusRemoteWriteBehind",
                "critical",
                {"remote_name": "0a1b2c", "url": "https://mimir.example.com/api/v1/push"},
            ),
            (
                "PrometheusRemoteWriteDesiredShards",
                "warning",
                {"remote_name": "0a1b2c", "url": "https://mimir.example.com/api/v1/push"},
            ),
            (
                "PrometheusRuleFailures",
                "critical",
                {"rule_group": "/etc/prometheus/rules/orders.yaml;orders"},
            ),
            (
                "PrometheusMissingRuleEvaluations",
                "warning",
                {"rule_group": "/etc/prometheus/rules/orders.yaml;orders"},
            ),
            ("PrometheusTargetLimitHit", "warning", {}),
            ("PrometheusLabelLimitHit", "warning", {}),
            ("PrometheusScrapeBodySizeLimitHit", "warning", {}),
            ("PrometheusScrapeSampleLimitHit", "warning", {}),
            (
                "PrometheusTargetSyncFailure",
                "critical",
                {"scrape_job": "serviceMonitor/orders/orders-api/0"},
            ),
            ("PrometheusErrorSendingAlertsToAnyAlertmanager", "critical", {}),
            ("PrometheusHighQueryLoad", "warning", {}),
        )
    ],
    # -- alertmanager.rules ---------------------------------------------------------------------
    case("AlertmanagerFailedReload", "critical", ALERTMANAGER, {}, AM_POD, "alertmanager"),
    case("AlertmanagerMembersInconsistent", "critical", ALERTMANAGER, {}, AM_POD, "alertmanager"),
    case(
        "AlertmanagerFailedToSendAlerts",
        "warning",
        ALERTMANAGER,
        {"integration": "slack"},
        AM_POD,
        "alertmanager",
    ),
    case(  # min by (namespace, service, integration)
        "AlertmanagerClusterFailedToSendAlerts",
        "critical",
        None,
        AM_SERVICE | {"integration": "pagerduty"},
        "service/monitoring/kube-prometheus-stack-alertmanager",
    ),
    *[
        case(  # count by (namespace, service)
            name,
            "critical",
            None,
            AM_SERVICE,
            "service/monitoring/kube-prometheus-stack-alertmanager",
        )
        for name in (
            "AlertmanagerConfigInconsistent",
            "AlertmanagerClusterDown",
            "AlertmanagerClusterCrashlooping",
        )
    ],
    # -- config-reloaders: the sidecar's own port of the Prometheus pod -------------------------
    case(
        "ConfigReloaderSidecarErrors",
        "warning",
        PROMETHEUS | {"container": "config-reloader", "endpoint": "reloader-web"},
        {"instance": "10.42.2.8:8080"},
        PROM_POD,
        "config-reloader",
    ),
]


@pytest.mark.parametrize(("labels", "expected", "container"), KUBE_PROMETHEUS_STACK)
def test_kube_prometheus_stack_alerts(
    labels: dict[str, str], expected: str, container: str | None
) -> None:
    target = resolve_target(_alert(labels))
    assert (target.display, target.container) == (expected, container)


def test_the_table_and_the_resolver_know_the_same_alerts() -> None:
    """Every alert the resolver knows by name has a real label set here, and no more."""
    assert {p.values[0]["alertname"] for p in KUBE_PROMETHEUS_STACK} == set(_BY_ALERT)


# -- alerts of other rules: the general rule -----------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected", "container"),
    [
        pytest.param(  # a custom rule on a kube-state-metrics Deployment series
            KSM
            | {"alertname": "DeploymentScaledToZero", "namespace": "orders", "deployment": "api"},
            "deployment/orders/api",
            None,
            id="ksm-deployment",
        ),
        pytest.param(  # kube-state-metrics renamed (fullnameOverride): known by its job
            KSM
            | {
                "alertname": "CronJobSuspended",
                "pod": "ksm-6d9c8b7f4-x2x9q",
                "namespace": "billing",
                "cronjob": "invoice-sync",
            },
            "cronjob/billing/invoice-sync",
            None,
            id="ksm-renamed-cronjob",
        ),
        pytest.param(  # kube_pod_info: the pod and node are the object's, the container leaks
            KSM
            | {
                "alertname": "PodOnCordonedNode",
                "namespace": "orders",
                "pod": POD,
                "node": "worker-3",
                "created_by_kind": "ReplicaSet",
            },
            f"pod/orders/{POD}",
            "kube-state-metrics",
            id="ksm-pod-info",
        ),
        pytest.param(  # kube_node_*: the exporter's pod and namespace leak, the node is named
            KSM | {"alertname": "NodeCordoned", "node": "worker-3"},
            "node/worker-3",
            None,
            id="ksm-node",
        ),
        pytest.param(  # a custom node-exporter rule: the node is in instance
            NODE_EXPORTER | {"alertname": "HostOomKills"},
            "node/worker-2",
            None,
            id="node-exporter",
        ),
        pytest.param(
            NODE_EXPORTER | {"alertname": "HostOomKills", "instance": "10.0.1.12:9100"},
            "node/10.0.1.12",
            None,
            id="node-exporter-ip",
        ),
        pytest.param(
            NODE_EXPORTER | {"alertname": "HostOomKills", "instance": "[fd00::12]:9100"},
            "node/fd00::12",
            None,
            id="node-exporter-ipv6",
        ),
        pytest.param(  # cAdvisor: a kubelet target has no pod, so the pod is the container's
            KUBELET
            | {
                "alertname": "ContainerMemoryNearLimit",
                "metrics_path": "/metrics/cadvisor",
                "namespace": "orders",
                "pod": POD,
                "container": "api",
            },
            f"pod/orders/{POD}",
            "api",
            id="cadvisor-container",
        ),
        pytest.param(
            KUBELET | {"alertname": "KubeletRunningPodsHigh"},
            "node/worker-2",
            None,
            id="kubelet",
        ),
        pytest.param(
            APISERVER | {"alertname": "ApiserverSlowLists", "verb": "LIST"},
            "component/apiserver",
            None,
            id="apiserver",
        ),
        pytest.param(  # an application's own series: its pod is the subject
            {
                "alertname": "OrdersHighErrorRate",
                "job": "orders-api",
                "namespace": "orders",
                "pod": POD,
                "container": "api",
                "service": "orders-api",
                "endpoint": "http",
                "instance": "10.42.5.21:8080",
            },
            f"pod/orders/{POD}",
            "api",
            id="application-pod",
        ),
        pytest.param(
            {
                "alertname": "OrdersHighErrorRate",
                "job": "orders-api",
                "namespace": "orders",
                "service": "orders-api",
            },
            "service/orders/orders-api",
            None,
            id="application-service",
        ),
        pytest.param(  # the kube-state-metrics pod itself is the subject when nothing else is
            KSM | {"alertname": "KubeStateMetricsMemoryHigh"},
            "pod/monitoring/kube-prometheus-stack-kube-state-metrics-6d9c8b7f4-x2x9q",
            "kube-state-metrics",
            id="ksm-itself",
        ),
    ],
)
def test_other_alerts(labels: dict[str, str], expected: str, container: str | None) -> None:
    target = resolve_target(_alert(labels))
    assert (target.display, target.container) == (expected, container)


# -- earlier cases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (  # the kube-state-metrics pod crash-looping is about that pod
            KSM | {"alertname": "KubePodCrashLooping", "reason": "CrashLoopBackOff"},
            "pod/monitoring/kube-prometheus-stack-kube-state-metrics-6d9c8b7f4-x2x9q",
        ),
        (
            {
                "alertname": "KubeDeploymentReplicasMismatch",
                "namespace": "orders",
                "deployment": "api",
                "job": "kube-state-metrics",
            },
            "deployment/orders/api",
        ),
        (
            {
                "alertname": "KubeHpaMaxedOut",
                "namespace": "web",
                "horizontalpodautoscaler": "frontend",
            },
            "horizontalpodautoscaler/web/frontend",
        ),
        ({"alertname": "KubeNodeNotReady", "node": "worker-3"}, "node/worker-3"),
        (
            {
                "alertname": "NodeFilesystemSpaceFillingUp",
                "instance": "worker-2:9100",
                "job": "node-exporter",
            },
            "node/worker-2",
        ),
        (  # scraped without honorLabels: the series' own labels are renamed exported_*
            {
                "alertname": "CPUThrottlingHigh",
                "namespace": "kube-system",
                "exported_namespace": "orders",
                "pod": "api-1",
                "exported_pod": POD,
                "container": "api",
            },
            f"pod/orders/{POD}",
        ),
        (
            KSM
            | {
                "alertname": "KubeDeploymentReplicasMismatch",
                "exported_namespace": "orders",
                "deployment": "api",
            },
            "deployment/orders/api",
        ),
        # a known rule whose labels lack its object falls back to the general rule
        ({"alertname": "KubeQuotaExceeded", "namespace": "team-a"}, "namespace/team-a/team-a"),
        ({"alertname": "Watchdog"}, "cluster/cluster"),
        # Sloth's burn-rate alerts name the service their SLO is of
        (
            {
                "alertname": "CheckoutErrorBudgetBurn",
                "namespace": "shop",
                "sloth_service": "checkout",
                "sloth_slo": "availability",
                "sloth_id": "checkout-av",
            },
            "service/shop/checkout",
        ),
    ],
)
def test_resolve_target(labels: dict[str, str], expected: str) -> None:
    assert resolve_target(_alert(labels)).display == expected


def test_the_scrape_job_label_is_not_a_kubernetes_job() -> None:
    target = resolve_target(
        _alert({"alertname": "KubePodNotReady", "namespace": "orders", "job": "kube-state-metrics"})
    )
    assert target.kind == "Namespace"


# -- refine_target: a node given by IP address ---------------------------------------------------


def _node(name: str, *addresses: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
    }


NODES = [
    _node("worker-1", ("InternalIP", "10.0.1.11"), ("Hostname", "worker-1")),
    _node("worker-2", ("InternalIP", "10.0.1.12"), ("ExternalIP", "203.0.113.12")),
    _node("10.0.1.13", ("InternalIP", "10.0.1.13")),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("10.0.1.12", "worker-2"),
        ("203.0.113.12", "worker-2"),
        ("10.0.1.13", "10.0.1.13"),  # a node named by its IP
        ("10.0.9.99", "10.0.9.99"),  # no node has it: unchanged
        ("worker-1", "worker-1"),  # a name: no read at all
    ],
)
async def test_refine_target_names_the_node_of_an_address(name: str, expected: str) -> None:
    refined = await refine_target(TargetRef(kind="Node", name=name), MemoryReader(NODES))
    assert refined == TargetRef(kind="Node", name=expected)


async def test_refine_target_resolves_node_exporter_ip_instances_end_to_end() -> None:
    alert = _alert(
        NODE_EXPORTER
        | FILESYSTEM
        | {"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "10.0.1.12:9100"}
    )
    refined = await refine_target(resolve_target(alert), MemoryReader(NODES))
    assert refined.display == "node/worker-2"


async def test_refine_target_reads_nothing_for_other_targets() -> None:
    reader = MemoryReader(NODES, forbidden={"Node"})
    pod = TargetRef(kind="Pod", namespace="orders", name=POD, container="api")
    assert await refine_target(pod, reader) == pod
    assert await refine_target(TargetRef(kind="Node", name="worker-1"), reader) == TargetRef(
        kind="Node", name="worker-1"
    )


async def test_refine_target_keeps_the_address_when_nodes_cannot_be_read() -> None:
    reader = MemoryReader(NODES, forbidden={"Node"})
    target = TargetRef(kind="Node", name="10.0.1.12")
    assert await refine_target(target, reader) == target


# -- refine_target: an application alert's label value names a workload -------------------------


def _workload(kind: str, name: str, namespace: str = "billing") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
    }


WORKLOADS = [
    _workload("Deployment", "invoice-consumer"),
    _workload("Deployment", "tax-api"),
    _workload("StatefulSet", "ledger-db"),
    _workload("Deployment", "invoice-consumer", namespace="other"),
]
APP_ALERT = {"namespace": "billing", "severity": "warning", "team": "billing"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"consumergroup": "invoice-consumer", "topic": "billing.invoices"}, "deployment/billing/invoice-consumer"),
        ({"database": "ledger-db"}, "statefulset/billing/ledger-db"),
        # two workloads named: ambiguous, the namespace stays
        ({"consumergroup": "invoice-consumer", "upstream": "tax-api"}, "namespace/billing/billing"),
        # routing and scrape labels never name the workload
        ({"team": "tax-api", "job": "tax-api"}, "namespace/billing/billing"),
        ({"queue": "nothing-of-that-name"}, "namespace/billing/billing"),
    ],
)  # fmt: skip
async def test_refine_target_narrows_an_application_alert_to_the_workload_a_label_names(
    labels: dict[str, str], expected: str
) -> None:
    alert = _alert(APP_ALERT | {"alertname": "ConsumerLagHigh"} | labels)
    target = resolve_target(alert)
    assert target.kind == "Namespace"
    refined = await refine_target(target, MemoryReader(WORKLOADS), alert.labels)
    assert refined.display == expected


async def test_refine_target_keeps_the_namespace_when_workloads_cannot_be_listed() -> None:
    alert = _alert(APP_ALERT | {"alertname": "ConsumerLagHigh", "app": "invoice-consumer"})
    reader = MemoryReader(WORKLOADS, forbidden={"Deployment"})
    refined = await refine_target(resolve_target(alert), reader, alert.labels)
    assert refined.display == "namespace/billing/billing"
