from __future__ import annotations

import pytest

from oncallm.gathering.target import resolve_target
from oncallm.models.alert import Alert


def _alert(labels: dict[str, str]) -> Alert:
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": labels,
            "startsAt": "2025-05-14T09:41:30Z",
            "fingerprint": "0a1b2c3d4e5f6071",
        }
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {
                "alertname": "KubePodCrashLooping",
                "namespace": "orders",
                "pod": "api-7d9f8c6b5-x2kqp",
                "container": "api",
                "job": "kube-state-metrics",
            },
            "pod/orders/api-7d9f8c6b5-x2kqp",
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
                "alertname": "KubeJobFailed",
                "namespace": "billing",
                "job_name": "invoice-sync-28930115",
                "job": "kube-state-metrics",
            },
            "job/billing/invoice-sync-28930115",
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
        (
            {
                "alertname": "TargetDown",
                "namespace": "payments",
                "job": "payments-api",
                "service": "payments-api",
            },
            "service/payments/payments-api",
        ),
        (
            {
                "alertname": "KubePersistentVolumeFillingUp",
                "namespace": "db",
                "persistentvolumeclaim": "data-postgres-0",
            },
            "persistentvolumeclaim/db/data-postgres-0",
        ),
        (
            {
                "alertname": "CPUThrottlingHigh",
                "namespace": "orders",
                "pod": "api-1",
                "exported_pod": "api-7d9f8c6b5-x2kqp",
                "container": "api",
            },
            "pod/orders/api-7d9f8c6b5-x2kqp",
        ),
        ({"alertname": "KubeQuotaExceeded", "namespace": "team-a"}, "namespace/team-a/team-a"),
        ({"alertname": "Watchdog"}, "cluster/cluster"),
    ],
)
def test_resolve_target(labels: dict[str, str], expected: str) -> None:
    assert resolve_target(_alert(labels)).display == expected


def test_the_scrape_job_label_is_not_a_kubernetes_job() -> None:
    target = resolve_target(
        _alert({"alertname": "KubePodNotReady", "namespace": "orders", "job": "kube-state-metrics"})
    )
    assert target.kind == "Namespace"
