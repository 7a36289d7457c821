"""Gathering over an in-memory cluster: what it finds, and what it does when a source fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from oncallm.gathering.gather import alert_expression, gather
from oncallm.gathering.memory import MemoryReader
from oncallm.models.alert import Alert
from oncallm.models.policy import DEFAULT_POLICY, AnalysisPolicy

NOW = datetime(2025, 5, 14, 9, 52, tzinfo=UTC)


def t(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _objects() -> list[dict[str, Any]]:
    owner = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "api",
            "controller": True,
            "uid": "d1",
        }
    ]
    rs_owner = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "api-7d9f8c6b5",
            "controller": True,
            "uid": "r1",
        }
    ]
    template = {
        "metadata": {"labels": {"app": "api"}},
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "registry.example.com/orders/api:1.42.0",
                    "env": [
                        {"name": "DATABASE_HOST", "value": "orders-db.orders.svc.cluster.local"},
                        {
                            "name": "DATABASE_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "password"}},
                        },
                    ],
                }
            ]
        },
    }
    return [
        {
            "kind": "Node",
            "metadata": {"name": "worker-1"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "4"},
            },
        },
        {
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "orders", "uid": "d1"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "api"}},
                "template": template,
            },
            "status": {"replicas": 2, "readyReplicas": 0, "unavailableReplicas": 2},
        },
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "api-7d9f8c6b5",
                "namespace": "orders",
                "uid": "r1",
                "labels": {"app": "api"},
                "ownerReferences": owner,
                "annotations": {"deployment.kubernetes.io/revision": "3"},
            },
            "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": template},
        },
        {
            "kind": "Pod",
            "metadata": {
                "name": "api-7d9f8c6b5-x2kqp",
                "namespace": "orders",
                "labels": {"app": "api"},
                "ownerReferences": rs_owner,
            },
            "spec": {"nodeName": "worker-1", **template["spec"]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "api",
                        "ready": False,
                        "restartCount": 9,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": t(-1)}
                        },
                    }
                ],
            },
        },
        {
            "kind": "Pod",
            "metadata": {
                "name": "api-7d9f8c6b5-q8wzn",
                "namespace": "orders",
                "labels": {"app": "api"},
                "ownerReferences": rs_owner,
            },
            "spec": {"nodeName": "worker-1", **template["spec"]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "api",
                        "ready": False,
                        "restartCount": 8,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": t(-2)}
                        },
                    }
                ],
            },
        },
        {
            "kind": "Service",
            "metadata": {"name": "orders-db", "namespace": "orders"},
            "spec": {
                "selector": {"app": "orders-db"},
                "ports": [{"port": 5432}],
                "clusterIP": "10.96.44.12",
            },
        },
        {
            "kind": "Endpoints",
            "metadata": {"name": "orders-db", "namespace": "orders"},
            "subsets": [],
        },
        {
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "orders"},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 8080}]},
        },
        {
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "orders"},
            "involvedObject": {"kind": "Pod", "name": "api-7d9f8c6b5-x2kqp", "namespace": "orders"},
            "type": "Warning",
            "reason": "BackOff",
            "count": 42,
            "message": "Back-off restarting failed container api in pod api-7d9f8c6b5-x2kqp",
            "lastTimestamp": t(-1),
        },
        {
            "kind": "Event",
            "metadata": {"name": "e-old", "namespace": "orders"},
            "involvedObject": {"kind": "Pod", "name": "api-7d9f8c6b5-x2kqp", "namespace": "orders"},
            "type": "Normal",
            "reason": "Pulled",
            "message": "pulled long ago",
            "lastTimestamp": t(-600),
        },
        {
            "kind": "Event",
            "metadata": {"name": "e-other", "namespace": "orders"},
            "involvedObject": {"kind": "Pod", "name": "unrelated-pod", "namespace": "orders"},
            "type": "Warning",
            "reason": "Unhealthy",
            "message": "not ours",
            "lastTimestamp": t(-1),
        },
    ]


def _alert(**labels: str) -> Alert:
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "warning", **labels},
            "startsAt": t(-5),
            "fingerprint": "5f3a9c1e2b7d4a60",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1",
        }
    )


def _reader() -> MemoryReader:
    reader = MemoryReader(_objects())
    reader.add_log(
        "orders",
        "api-7d9f8c6b5-x2kqp",
        "api",
        "INFO starting api 1.42.0\nFATAL could not connect to orders-db.orders.svc.cluster.local:5432: connection refused",
        previous=True,
    )
    return reader


async def test_gathers_the_workload_its_pods_logs_events_and_dependencies() -> None:
    alert = _alert(namespace="orders", pod="api-7d9f8c6b5-x2kqp", container="api")
    ctx = await gather(alert, _reader(), DEFAULT_POLICY, now=NOW)

    assert ctx.target.display == "pod/orders/api-7d9f8c6b5-x2kqp"
    assert ctx.workload is not None and ctx.workload.kind == "Deployment"
    assert ctx.workload.revisions[0].revision == 3
    assert ctx.pods[0].name == "api-7d9f8c6b5-x2kqp"  # the alerted pod first
    assert {p.name for p in ctx.pods} == {"api-7d9f8c6b5-x2kqp", "api-7d9f8c6b5-q8wzn"}
    assert ctx.pods[0].secrets == ["orders-db"]  # a name only, never a value

    previous = [lg for lg in ctx.logs if lg.previous and lg.pod == "api-7d9f8c6b5-x2kqp"]
    assert previous and "connection refused" in previous[0].lines[-1]

    reasons = [(e.reason, e.object_name) for e in ctx.events]
    assert ("BackOff", "api-7d9f8c6b5-x2kqp") in reasons
    assert all(e.reason != "Pulled" for e in ctx.events)  # outside the event window
    assert all(e.object_name != "unrelated-pod" for e in ctx.events)

    services = {s.name: s for s in ctx.services}
    assert services["api"].relation == "member"
    assert services["orders-db"].relation == "dependency"
    assert services["orders-db"].ready_endpoints == 0
    assert [n.name for n in ctx.nodes] == ["worker-1"]


async def test_a_forbidden_source_is_missing_evidence_not_a_failure() -> None:
    reader = _reader()
    reader.forbidden = {"Event", "Node"}
    alert = _alert(namespace="orders", pod="api-7d9f8c6b5-x2kqp")
    ctx = await gather(alert, reader, DEFAULT_POLICY, now=NOW)
    missing = {m.source for m in ctx.missing}
    assert "Event" in missing and "Node" in missing
    assert ctx.pods and ctx.logs  # the rest was still gathered


async def test_a_deleted_pod_falls_back_to_its_deployment() -> None:
    alert = _alert(namespace="orders", pod="api-7d9f8c6b5-gone1")
    ctx = await gather(alert, _reader(), DEFAULT_POLICY, now=NOW)
    assert any("no longer exists" in m.reason for m in ctx.missing)
    assert ctx.workload is not None and ctx.workload.name == "api"
    assert len(ctx.pods) == 2


async def test_quick_depth_reads_only_the_alerted_pod() -> None:
    quick = AnalysisPolicy.model_validate(
        {"metadata": {"name": "quick"}, "spec": {"depth": "quick"}}
    )
    alert = _alert(namespace="orders", pod="api-7d9f8c6b5-x2kqp")
    ctx = await gather(alert, _reader(), quick, now=NOW)
    assert [p.name for p in ctx.pods] == ["api-7d9f8c6b5-x2kqp"]
    assert ctx.nodes == [] and ctx.services == []


def test_alert_expression_from_generator_url() -> None:
    expr = alert_expression(_alert().generator_url)
    assert (
        expr
        == 'max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}[5m]) >= 1'
    )


def test_a_pod_snapshot_knows_which_references_are_optional() -> None:
    """Only a required ConfigMap or Secret can hold a container back: the kubelet starts a pod
    without an object every reference of which says ``optional: true``."""
    from oncallm.gathering.sources.pods import pod_snapshot

    spec = {
        "volumes": [
            {"name": "flags", "configMap": {"name": "flags", "optional": True}},
            {"name": "tls", "secret": {"secretName": "tls"}},
            {"name": "both", "projected": {"sources": [{"configMap": {"name": "shared"}}]}},
        ],
        "containers": [
            {
                "name": "api",
                "envFrom": [{"secretRef": {"name": "extra", "optional": True}}],
                "env": [
                    {
                        "name": "MODE",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "shared", "key": "mode", "optional": True}
                        },
                    }
                ],
            }
        ],
    }
    snap = pod_snapshot({"metadata": {"name": "api-0", "namespace": "x"}, "spec": spec})
    assert snap.optional_refs == ["ConfigMap flags", "Secret extra"]


def test_a_single_failing_containers_ready_sidecar_log_is_read_too() -> None:
    """A container that fails alone may be failing to talk to its sidecar: the sidecar's log
    says where it listens. Two failing containers leave no room for it."""
    from oncallm.gathering.sources.logs import _log_containers
    from oncallm.models.evidence import ContainerSnapshot, PodSnapshot

    def c(name: str, ready: bool) -> ContainerSnapshot:
        return ContainerSnapshot(name=name, state="running", ready=ready)

    one = PodSnapshot(name="p", namespace="x", containers=[c("app", False), c("proxy", True)])
    assert [x.name for x in _log_containers(one, None)] == ["app", "proxy"]
    two = PodSnapshot(
        name="p", namespace="x", containers=[c("app", False), c("worker", False), c("proxy", True)]
    )
    assert [x.name for x in _log_containers(two, None)] == ["app", "worker"]
