"""The rule engine on hand-built contexts: one per category, plus the cause past the symptom.

Every test checks the category, that the cited evidence ids exist in build_evidence's output,
and that the commands name the real objects.
"""

from __future__ import annotations

from typing import Any

import pytest

from oncallm.analysis import build_evidence, diagnose, evaluate
from oncallm.analysis.rules import RULES, RuleSettings
from oncallm.models.alert import Alert
from oncallm.models.analysis import Category, Diagnosis, TargetRef
from oncallm.models.evidence import (
    ContainerSnapshot,
    Context,
    EmptyDirVolume,
    EnvKeyRef,
    EphemeralStorageUse,
    EventSnapshot,
    HPASnapshot,
    LogSnapshot,
    MetricSnapshot,
    NetworkPolicySnapshot,
    NodeSnapshot,
    NodeStorageSnapshot,
    PodSnapshot,
    PVCSnapshot,
    QuotaSnapshot,
    RevisionSnapshot,
    ServiceSnapshot,
    WorkloadSnapshot,
)
from oncallm.models.quantity import parse_quantity

NOW = "2025-05-14T09:52:00Z"
NS = "orders"
POD = "api-7d9f8c6b5-x2kqp"
NODE = "orders-worker-1"

# --- builders -----------------------------------------------------------------------------


def alert(name: str = "KubePodCrashLooping", **labels: str) -> Alert:
    base = {
        "alertname": name,
        "namespace": NS,
        "pod": POD,
        "container": "api",
        "job": "kube-state-metrics",
        "severity": "warning",
    }
    base.update(labels)
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": {k: v for k, v in base.items() if v},
            "annotations": {
                "description": f"Pod {NS}/{POD} (api) is in waiting state "
                "(reason: CrashLoopBackOff)."
            },
            "startsAt": "2025-05-14T09:40:00Z",
            "fingerprint": "3f1c2a9b7d6e5f40",
        }
    )


def container(**kw: Any) -> ContainerSnapshot:
    base: dict[str, Any] = {
        "name": "api",
        "image": "ghcr.io/acme/orders-api:2.14.0",
        "ready": False,
        "restart_count": 7,
        "state": "waiting",
        "reason": "CrashLoopBackOff",
        "message": f"back-off 5m0s restarting failed container=api pod={POD}",
        "last_state": "terminated",
        "last_reason": "Error",
        "last_exit_code": 1,
        "last_finished_at": "2025-05-14T09:49:12Z",
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
        "liveness_probe": "http GET /healthz port 8080 delay=10s timeout=1s period=10s",
        "readiness_probe": "http GET /ready port 8080 delay=5s timeout=1s period=5s",
        "env": {"DATABASE_HOST": "orders-db", "LOG_LEVEL": "info"},
    }
    base.update(kw)
    return ContainerSnapshot(**base)


def pod(name: str = POD, *containers: ContainerSnapshot, **kw: Any) -> PodSnapshot:
    base: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "phase": "Running",
        "node_name": NODE,
        "conditions": {
            "Ready": ("False", "ContainersNotReady", "containers with unready status: [api]")
        },
        "containers": list(containers) or [container()],
        "owner_kind": "ReplicaSet",
        "owner_name": "api-7d9f8c6b5",
        "labels": {"app": "api", "pod-template-hash": "7d9f8c6b5"},
        "service_account": "api",
    }
    base.update(kw)
    return PodSnapshot(**base)


def deployment(**kw: Any) -> WorkloadSnapshot:
    base: dict[str, Any] = {
        "kind": "Deployment",
        "name": "api",
        "namespace": NS,
        "desired": 3,
        "ready": 1,
        "updated": 3,
        "available": 1,
        "unavailable": 2,
        "conditions": {
            "Available": (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
            "Progressing": (
                "True",
                "NewReplicaSetAvailable",
                'ReplicaSet "api-7d9f8c6b5" has successfully progressed.',
            ),
        },
        "revisions": [
            RevisionSnapshot(
                name="api-7d9f8c6b5",
                revision=12,
                images={"api": "ghcr.io/acme/orders-api:2.14.0"},
                replicas=3,
                ready_replicas=1,
            ),
        ],
        "selector": {"app": "api"},
    }
    base.update(kw)
    return WorkloadSnapshot(**base)


def node(name: str = NODE, **conditions: tuple[str, str, str]) -> NodeSnapshot:
    conds = {
        "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
        "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID"),
        "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
    }
    conds.update(conditions)
    return NodeSnapshot(
        name=name,
        conditions=conds,
        allocatable={"cpu": "3920m", "memory": "15Gi", "pods": "110"},
        requested={"cpu": "3100m", "memory": "9Gi"},
        pods=17,
    )


def event(
    reason: str, message: str, *, kind: str = "Pod", name: str = POD, **kw: Any
) -> EventSnapshot:
    base: dict[str, Any] = {
        "type": "Warning",
        "reason": reason,
        "message": message,
        "count": 5,
        "object_kind": kind,
        "object_name": name,
        "object_namespace": NS if kind != "Node" else None,
        "first_seen": "2025-05-14T09:30:00Z",
        "last_seen": "2025-05-14T09:50:00Z",
    }
    base.update(kw)
    return EventSnapshot(**base)


def log(
    text: str, *, pod_name: str = POD, container_name: str = "api", previous: bool = True
) -> LogSnapshot:
    return LogSnapshot(
        pod=pod_name,
        namespace=NS,
        container=container_name,
        previous=previous,
        lines=text.strip("\n").splitlines(),
    )


def ctx(**kw: Any) -> Context:
    base: dict[str, Any] = {
        "alert": alert(),
        "target": TargetRef(kind="Pod", namespace=NS, name=POD, container="api"),
        "pods": [pod()],
        "workload": deployment(),
        "nodes": [node()],
    }
    base.update(kw)
    return Context(**base)


def check(c: Context, category: Category) -> Diagnosis:
    """Diagnose, and hold the invariants every diagnosis must keep."""
    d = diagnose(c)
    assert d.category == category, (d.category, d.root_cause)
    ids = {e.id for e in build_evidence(c)}
    assert d.evidence, "a diagnosis cites at least one item"
    missing = [e for e in d.evidence if e not in ids]
    assert not missing, f"cited ids that do not exist: {missing}"
    assert d.commands and all(cmd.startswith(("kubectl", "openssl")) for cmd in d.commands)
    assert 0 <= d.confidence <= 1
    return d


CRASH_NOISE = """
2025-05-14T09:49:01Z WARN  DeprecationWarning: the 'pool_size' setting is deprecated, use 'pool.max'
2025-05-14T09:49:01Z INFO  10.42.0.1 - - "GET /favicon.ico HTTP/1.1" 404 0
2025-05-14T09:49:02Z INFO  retrying metrics push in 5s (attempt 2/5)
"""

# --- the cause past the symptom ------------------------------------------------------------


def test_crash_caused_by_dependency_without_endpoints_is_dependency_unreachable() -> None:
    logs = (
        CRASH_NOISE
        + "2025-05-14T09:49:10Z INFO  connecting to postgres at orders-db:5432\n"
        + "2025-05-14T09:49:12Z ERROR could not connect to server: Connection refused. Is the "
        + 'server running on host "orders-db" (10.96.14.7) and accepting TCP/IP connections on '
        + "port 5432?\n"
        + """Traceback (most recent call last):
  File "/app/orders/main.py", line 41, in <module>
    engine.connect()
psycopg2.OperationalError: could not connect to server: Connection refused
"""
    )
    c = ctx(
        logs=[log(logs)],
        services=[
            ServiceSnapshot(
                name="orders-db",
                namespace=NS,
                cluster_ip="10.96.14.7",
                selector={"app": "orders-db"},
                ports=["5432/TCP->5432"],
                ready_endpoints=0,
                not_ready_endpoints=0,
                relation="dependency",
            ),
            ServiceSnapshot(
                name="api",
                namespace=NS,
                selector={"app": "api"},
                ports=["80/TCP->8080"],
                ready_endpoints=1,
                not_ready_endpoints=2,
                matching_pods=[POD],
                relation="member",
            ),
        ],
    )
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "orders-db" in d.root_cause and "no endpoints" in d.root_cause
    assert "service/orders-db" in d.evidence
    assert any("kubernetes.io/service-name=orders-db" in cmd for cmd in d.commands)
    assert any(f"-n {NS} logs {POD} -c api --previous" in cmd for cmd in d.commands)
    # The traceback alone would have been an application crash, ranked lower.
    ranked = [f.category for f in evaluate(c)]
    assert ranked.index(Category.APP_CRASH_EXCEPTION) > 0


def test_same_traceback_without_the_dependency_is_app_crash() -> None:
    logs = (
        CRASH_NOISE
        + """
Traceback (most recent call last):
  File "/app/orders/handlers.py", line 88, in handle_order
    total = sum(item["price"] for item in order["items"])
TypeError: 'NoneType' object is not subscriptable
"""
    )
    d = check(ctx(logs=[log(logs)]), Category.APP_CRASH_EXCEPTION)
    assert "TypeError" in d.root_cause
    assert "favicon" not in d.root_cause and "deprecated" not in d.root_cause.lower()
    assert any(e.startswith(f"log/{POD}/api/previous#L") for e in d.evidence)


def test_evicted_pods_point_at_the_node_with_disk_pressure() -> None:
    evicted = pod(
        "api-7d9f8c6b5-h8w2n",
        container(
            state="terminated",
            reason="ContainerStatusUnknown",
            restart_count=0,
            last_state=None,
            last_exit_code=None,
            exit_code=137,
        ),
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: ephemeral-storage. Threshold quantity: "
        "10%, available: 3%. Container api was using 11Gi, request is 0, has larger "
        "consumption of ephemeral-storage.",
        node_name="orders-worker-2",
    )
    c = ctx(
        pods=[evicted],
        nodes=[
            node(
                "orders-worker-2",
                DiskPressure=("True", "KubeletHasDiskPressure", "kubelet has disk pressure"),
            )
        ],
        events=[event("Evicted", evicted.message, name=evicted.name, count=1)],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
    )
    d = check(c, Category.DISK_PRESSURE)
    assert "orders-worker-2" in d.root_cause
    assert "node/orders-worker-2/DiskPressure" in d.evidence
    assert "kubectl describe node orders-worker-2" in d.commands


def test_node_not_ready_with_pods_terminating_on_it() -> None:
    stuck = pod(
        "orders-db-0",
        container(
            name="postgres",
            image="postgres:16.2",
            state="running",
            reason="",
            message="",
            ready=True,
            restart_count=0,
            last_state=None,
            last_exit_code=None,
        ),
        deleting=True,
        owner_kind="StatefulSet",
        owner_name="orders-db",
        conditions={"Ready": ("False", "NodeNotReady", "")},
    )
    c = ctx(
        pods=[stuck],
        workload=WorkloadSnapshot(
            kind="StatefulSet", name="orders-db", namespace=NS, desired=1, ready=0
        ),
        nodes=[
            node(Ready=("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."))
        ],
        events=[event("NodeNotReady", "Node is not ready", name="orders-db-0")],
        alert=alert(
            "KubeStatefulSetReplicasMismatch", pod="", container="", statefulset="orders-db"
        ),
        target=TargetRef(kind="StatefulSet", namespace=NS, name="orders-db"),
    )
    d = check(c, Category.NODE_NOT_READY)
    assert NODE in d.root_cause and "Terminating" in d.root_cause
    assert f"node/{NODE}/Ready" in d.evidence


# --- scheduling and storage ------------------------------------------------------------------


def pending_pod(**kw: Any) -> PodSnapshot:
    return pod(
        "orders-db-0",
        container(
            name="postgres",
            image="postgres:16.2",
            state="waiting",
            reason="",
            message="",
            restart_count=0,
            last_state=None,
            last_exit_code=None,
            requests={"cpu": "4", "memory": "8Gi"},
        ),
        phase="Pending",
        node_name=None,
        **kw,
    )


def test_failed_scheduling_insufficient_cpu() -> None:
    msg = (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 "
        "nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption "
        "victims found for incoming pod."
    )
    c = ctx(
        pods=[pending_pod(conditions={"PodScheduled": ("False", "Unschedulable", msg)})],
        events=[event("FailedScheduling", msg, name="orders-db-0", count=12)],
    )
    d = check(c, Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE)
    assert "Insufficient cpu" in d.root_cause and "cpu=4" in d.root_cause
    assert f"kubectl -n {NS} describe pod orders-db-0" in d.commands


def test_a_daemonset_pod_short_of_memory_names_the_one_node_it_may_run_on() -> None:
    msg = (
        "0/6 nodes are available: 1 Insufficient memory, 5 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/6 nodes are available: 1 No preemption victims "
        "found for incoming pod, 5 Preemption is not helpful for scheduling."
    )
    pinned = pending_pod(
        conditions={"PodScheduled": ("False", "Unschedulable", msg)},
        pinned_node="worker-3",
        placement=["requires node metadata.name In worker-3"],
    )
    c = ctx(pods=[pinned], events=[event("FailedScheduling", msg, name="orders-db-0")])
    d = check(c, Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE)
    assert "on node worker-3, the only node it may run on" in d.summary
    # the same pod free to run anywhere says so instead
    free = pending_pod(conditions={"PodScheduled": ("False", "Unschedulable", msg)})
    d = check(
        ctx(pods=[free], events=[event("FailedScheduling", msg, name="orders-db-0")]),
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
    )
    assert "on any node" in d.summary and "worker-3" not in d.summary


def test_unbound_pvc_with_missing_storage_class_is_pvc_pending() -> None:
    msg = (
        "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    c = ctx(
        pods=[pending_pod(pvcs=["data-orders-db-0"])],
        pvcs=[
            PVCSnapshot(
                name="data-orders-db-0",
                namespace=NS,
                phase="Pending",
                storage_class="fast-ssd",
                storage_class_exists=False,
                requested="50Gi",
            )
        ],
        events=[
            event("FailedScheduling", msg, name="orders-db-0"),
            event(
                "ProvisioningFailed",
                'storageclass.storage.k8s.io "fast-ssd" not found',
                kind="PersistentVolumeClaim",
                name="data-orders-db-0",
            ),
        ],
    )
    d = check(c, Category.PVC_PENDING)
    assert "data-orders-db-0" in d.root_cause and "fast-ssd" in d.root_cause
    assert "pvc/data-orders-db-0" in d.evidence
    assert f"kubectl -n {NS} describe pvc data-orders-db-0" in d.commands


def test_quota_exceeded_failed_create() -> None:
    msg = (
        'pods "api-5c8d7f9b4-" is forbidden: exceeded quota: compute, requested: '
        "limits.memory=1Gi, used: limits.memory=8Gi, limited: limits.memory=8Gi"
    )
    c = ctx(
        pods=[],
        quotas=[
            QuotaSnapshot(
                name="compute",
                namespace=NS,
                hard={"limits.memory": "8Gi", "pods": "20"},
                used={"limits.memory": "8Gi", "pods": "9"},
            )
        ],
        events=[event("FailedCreate", msg, kind="ReplicaSet", name="api-5c8d7f9b4")],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
    )
    d = check(c, Category.QUOTA_EXCEEDED)
    assert "compute" in d.root_cause and "limits.memory 8Gi/8Gi" in d.root_cause
    assert "quota/compute" in d.evidence
    assert f"kubectl -n {NS} describe resourcequota compute" in d.commands


# --- the pod's own spec ---------------------------------------------------------------------


def test_missing_secret() -> None:
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="waiting",
                    reason="CreateContainerConfigError",
                    message='secret "orders-db-credentials" not found',
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            )
        ],
        events=[event("Failed", 'Error: secret "orders-db-credentials" not found')],
    )
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert 'Secret "orders-db-credentials"' in d.root_cause
    assert f"kubectl -n {NS} get secret orders-db-credentials" in d.commands


def test_missing_configmap_from_failed_mount_and_gathering() -> None:
    msg = 'MountVolume.SetUp failed for volume "config" : configmap "api-config" not found'
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="waiting",
                    reason="ContainerCreating",
                    message="",
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
                phase="Pending",
            )
        ],
        events=[event("FailedMount", msg)],
        missing_objects=[f"ConfigMap {NS}/api-config"],
    )
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert 'ConfigMap "api-config"' in d.root_cause
    assert f"missing/ConfigMap {NS}/api-config" in d.evidence


def test_oom_killed() -> None:
    c = ctx(
        pods=[pod(POD, container(last_reason="OOMKilled", last_exit_code=137))],
        logs=[log(CRASH_NOISE + "2025-05-14T09:49:05Z INFO  loaded 1843220 rows into cache")],
        metrics=[
            MetricSnapshot(
                name="memory_working_set_bytes",
                query="container_memory_working_set_bytes{...}",
                values={f'{{container="api",pod="{POD}"}}': 532_000_000},
            )
        ],
    )
    d = check(c, Category.OOM_KILLED)
    assert "512Mi" in d.root_cause and "OOMKilled" in d.root_cause
    assert any("--limits=memory=1Gi" in cmd and "deployment/api" in cmd for cmd in d.commands)
    assert d.confidence >= 0.9


@pytest.mark.parametrize(("size", "named"), [("", True), ("1Gi", True), ("64Mi", False)])
def test_an_oom_kill_names_a_memory_backed_emptydir_the_container_writes(
    size: str, named: bool
) -> None:
    """Files on an emptyDir with medium: Memory are charged to the container's memory cgroup:
    one without a sizeLimit, or a sizeLimit large against the limit, is named with its mount;
    a small /dev/shm is not what fills 512Mi."""
    killed = container(
        last_reason="OOMKilled", last_exit_code=137, mounts={"/tmp": "spool", "/dev/shm": "shm"}
    )
    the_pod = pod(POD, killed, memory_volumes={"spool": size})
    d = check(ctx(pods=[the_pod]), Category.OOM_KILLED)
    assert ("emptyDir volume spool at /tmp" in d.root_cause) is named
    assert any("spool" in a for a in d.immediate_actions) is named


def test_exit_137_from_liveness_kill_is_not_oom() -> None:
    c = ctx(
        pods=[pod(POD, container(last_reason="Error", last_exit_code=137, restart_count=4))],
        events=[
            event(
                "Unhealthy",
                'Liveness probe failed: Get "http://10.42.1.17:8080/healthz": '
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                count=14,
            ),
            event(
                "Killing", "Container api failed liveness probe, will be restarted", type="Normal"
            ),
        ],
    )
    d = check(c, Category.FAILING_PROBE)
    assert "liveness" in d.root_cause.lower() and "/healthz" in d.root_cause


def test_image_pull_error() -> None:
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="waiting",
                    reason="ImagePullBackOff",
                    image="ghcr.io/acme/orders-api:2.15.0-rc1",
                    message='Back-off pulling image "ghcr.io/acme/orders-api:2.15.0-rc1"',
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            )
        ],
        events=[
            event(
                "Failed",
                'Failed to pull image "ghcr.io/acme/orders-api:2.15.0-rc1": '
                "rpc error: code = NotFound desc = failed to pull and unpack image: "
                "ghcr.io/acme/orders-api:2.15.0-rc1: not found",
            )
        ],
    )
    d = check(c, Category.IMAGE_PULL_ERROR)
    assert "ghcr.io/acme/orders-api:2.15.0-rc1" in d.root_cause
    assert "does not exist" in d.root_cause


def test_a_tag_missing_from_a_frozen_registry_points_at_where_it_moved() -> None:
    image = "k8s.gcr.io/node-problem-detector/node-problem-detector:v0.8.20"
    waiting = container(
        state="waiting",
        reason="ImagePullBackOff",
        image=image,
        message=f'Back-off pulling image "{image}"',
        restart_count=0,
        last_state=None,
        last_exit_code=None,
    )
    c = ctx(
        pods=[pod(POD, waiting)],
        events=[
            event(
                "Failed",
                f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to '
                f'pull and unpack image "{image}": failed to resolve reference "{image}": '
                f"{image}: not found",
            )
        ],
    )
    d = check(c, Category.IMAGE_PULL_ERROR)
    assert "registry.k8s.io" in d.root_cause and "frozen" in d.root_cause
    assert any("registry.k8s.io/node-problem-detector" in a for a in d.immediate_actions)


def test_bad_config_beats_the_traceback_it_causes() -> None:
    logs = (
        "2025-05-14T09:49:11Z INFO  starting orders-api 2.14.0\n"
        '2025-05-14T09:49:11Z ERROR failed to load config: invalid value "30x" for '
        '"http.timeout": time: unknown unit "x" in duration "30x"\n'
        "Error: failed to load config\n"
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=2))], logs=[log(logs)])
    d = check(c, Category.BAD_CONFIG)
    assert "30x" in d.root_cause and "code 2" in d.root_cause


def test_unknown_flag_is_bad_config() -> None:
    c = ctx(
        pods=[pod(POD, container(last_exit_code=2))],
        logs=[
            log(
                "flag provided but not defined: -metrics-adress\nUsage of /app/api:\n"
                "  -metrics-address string\n"
            )
        ],
    )
    check(c, Category.BAD_CONFIG)


# --- what the pod talks to ------------------------------------------------------------------


def test_dns_failure() -> None:
    logs = CRASH_NOISE + (
        "2025-05-14T09:49:12Z ERROR payment client: Post "
        '"https://payments.acme-internal.svc:8443/v1/charge": '
        "dial tcp: lookup payments.acme-internal.svc on 10.96.0.10:53: no such host\n"
    )
    d = check(ctx(logs=[log(logs)]), Category.DNS_FAILURE)
    assert "payments.acme-internal.svc" in d.root_cause
    assert any("nslookup payments.acme-internal.svc" in cmd for cmd in d.commands)


def test_network_policy_blocks_egress_to_a_healthy_service() -> None:
    logs = (
        "2025-05-14T09:49:12Z ERROR cache: dial tcp 10.96.80.12:6379: i/o timeout "
        "(redis-cache:6379)\n"
        "2025-05-14T09:49:42Z ERROR cache: dial tcp 10.96.80.12:6379: i/o timeout "
        "(redis-cache:6379)\n"
    )
    c = ctx(
        logs=[log(logs)],
        services=[
            ServiceSnapshot(
                name="redis-cache",
                namespace=NS,
                cluster_ip="10.96.80.12",
                selector={"app": "redis-cache"},
                ports=["6379/TCP->6379"],
                ready_endpoints=1,
                matching_pods=["redis-cache-0"],
                relation="dependency",
            )
        ],
        network_policies=[
            NetworkPolicySnapshot(
                name="api-egress",
                namespace=NS,
                pod_selector={"app": "api"},
                policy_types=["Egress"],
                egress=["namespaces {'kubernetes.io/metadata.name': 'kube-system'} ports 53/UDP"],
                selects_target=True,
            )
        ],
    )
    d = check(c, Category.NETWORK_POLICY_BLOCK)
    assert "api-egress" in d.root_cause and "redis-cache" in d.root_cause
    assert "netpol/api-egress" in d.evidence


def test_network_policy_that_allows_the_service_is_not_blamed() -> None:
    c = ctx(
        logs=[log("ERROR cache: dial tcp 10.96.80.12:6379: i/o timeout (redis-cache:6379)\n")],
        services=[
            ServiceSnapshot(
                name="redis-cache",
                namespace=NS,
                cluster_ip="10.96.80.12",
                selector={"app": "redis-cache"},
                ports=["6379/TCP->6379"],
                ready_endpoints=1,
                relation="dependency",
            )
        ],
        network_policies=[
            NetworkPolicySnapshot(
                name="api-egress",
                namespace=NS,
                pod_selector={"app": "api"},
                policy_types=["Egress"],
                egress=["pods {'app': 'redis-cache'} ports 6379/TCP"],
                selects_target=True,
            )
        ],
    )
    found = {f.category: f.score for f in evaluate(c)}
    assert found.get(Category.NETWORK_POLICY_BLOCK, 0) < 0.8


def test_rbac_forbidden() -> None:
    line = (
        "E0514 09:49:12.123456       1 reflector.go:147] pkg/mod/k8s.io/client-go@v0.29.3/"
        "tools/cache/reflector.go:229: Failed to watch *v1.ConfigMap: failed to list "
        '*v1.ConfigMap: configmaps is forbidden: User "system:serviceaccount:orders:api" '
        'cannot list resource "configmaps" in API group "" in the namespace "orders"'
    )
    d = check(ctx(logs=[log(line)]), Category.RBAC_FORBIDDEN)
    assert "orders/api" in d.root_cause and "configmaps" in d.root_cause
    assert (
        "kubectl auth can-i list configmaps -n orders --as=system:serviceaccount:orders:api"
        in d.commands
    )


def test_cert_expired() -> None:
    line = (
        '2025-05-14T09:49:12Z ERROR upstream: Get "https://ledger.payments.svc:8443/v2/balance": '
        "tls: failed to verify certificate: x509: certificate has expired or is not yet "
        "valid: current time 2025-05-14T09:49:12Z is after 2025-05-13T23:59:59Z"
    )
    c = ctx(logs=[log(line)], pods=[pod(secrets=["ledger-client-tls"])])
    d = check(c, Category.CERT_EXPIRED)
    assert "ledger.payments.svc:8443" in d.root_cause and "2025-05-13T23:59:59Z" in d.root_cause
    assert any("ledger-client-tls" in cmd for cmd in d.commands)


# --- controllers and capacity ---------------------------------------------------------------


def test_job_backoff_limit_follows_to_the_pods_failure() -> None:
    job_pod = pod(
        "orders-migrate-28597740-7xk2p",
        container(
            name="migrate",
            image="ghcr.io/acme/orders-migrate:2.14.0",
            state="terminated",
            reason="Error",
            exit_code=1,
            restart_count=0,
            last_state=None,
            last_exit_code=None,
            message="",
        ),
        phase="Failed",
        owner_kind="Job",
        owner_name="orders-migrate-28597740",
    )
    logs = """
2025-05-14T09:45:03Z INFO  running migration 0042_add_order_index
2025-05-14T09:45:04Z ERROR migration failed
psycopg2.errors.DuplicateTable: relation "orders_created_at_idx" already exists
"""
    c = ctx(
        pods=[job_pod],
        workload=WorkloadSnapshot(
            kind="Job",
            name="orders-migrate-28597740",
            namespace=NS,
            backoff_limit=4,
            failed=5,
            conditions={
                "Failed": (
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            },
        ),
        owners=[WorkloadSnapshot(kind="CronJob", name="orders-migrate", namespace=NS)],
        logs=[log(logs, pod_name=job_pod.name, container_name="migrate", previous=False)],
        events=[
            event(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                kind="Job",
                name="orders-migrate-28597740",
                count=1,
            )
        ],
        alert=alert("KubeJobFailed", pod="", container="", job_name="orders-migrate-28597740"),
        target=TargetRef(kind="Job", namespace=NS, name="orders-migrate-28597740"),
    )
    # the pods' unhandled error is the root cause; the failed Job is the link above it
    d = check(c, Category.APP_CRASH_EXCEPTION)
    assert "DuplicateTable" in d.root_cause
    assert "orders-migrate-28597740" in d.root_cause
    roles = [(link.role.value, link.rule) for link in d.chain]
    assert roles[0][0] == "symptom"
    assert ("wrapper", "job-backoff-limit") in roles
    assert roles[-1] == ("cause", "app-crash-exception")
    job_link = next(link for link in d.chain if link.rule == "job-backoff-limit")
    assert "BackoffLimitExceeded" in job_link.summary
    assert f"kubectl -n {NS} describe job orders-migrate-28597740" in d.commands
    assert any("--from=cronjob/orders-migrate" in cmd for cmd in d.commands)


def test_hpa_maxed() -> None:
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="running",
                    reason="",
                    message="",
                    ready=True,
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            )
        ],
        hpas=[
            HPASnapshot(
                name="api",
                namespace=NS,
                target_kind="Deployment",
                target_name="api",
                min_replicas=3,
                max_replicas=10,
                current_replicas=10,
                desired_replicas=10,
                metrics=["cpu current 142", "cpu target 70"],
                conditions={
                    "ScalingLimited": (
                        "True",
                        "TooManyReplicas",
                        "the desired replica count is more than the maximum replica count",
                    )
                },
            )
        ],
        alert=alert("KubeHpaMaxedOut", pod="", container="", horizontalpodautoscaler="api"),
        target=TargetRef(kind="HorizontalPodAutoscaler", namespace=NS, name="api"),
    )
    d = check(c, Category.HPA_MAXED)
    assert "maxReplicas 10" in d.root_cause
    assert any('"maxReplicas":20' in cmd for cmd in d.commands)
    # An HPA that KEDA owns is raised on its ScaledObject: KEDA rewrites the HPA.
    keda = c.hpas[0].model_copy(update={"owner_kind": "ScaledObject", "owner_name": "api-consumer"})
    d = check(c.model_copy(update={"hpas": [keda]}), Category.HPA_MAXED)
    assert "ScaledObject api-consumer" in d.root_cause
    assert any("patch scaledobject api-consumer" in cmd and '"maxReplicaCount":20' in cmd
               for cmd in d.commands)  # fmt: skip
    assert "maxReplicaCount of ScaledObject api-consumer" in d.immediate_actions[0]


def test_cpu_throttling_from_metric() -> None:
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="running",
                    reason="",
                    message="",
                    ready=True,
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            )
        ],
        metrics=[
            MetricSnapshot(
                name="cpu_throttled_ratio",
                query="sum(...)/sum(...)",
                values={f'{{container="api",pod="{POD}"}}': 0.68},
            )
        ],
        alert=alert("CPUThrottlingHigh"),
    )
    d = check(c, Category.CPU_THROTTLING)
    assert "68%" in d.root_cause and "500m" in d.root_cause
    assert any("--limits=cpu=1" in cmd for cmd in d.commands)


def test_rollout_stuck_names_the_revision_and_the_pods_failure() -> None:
    new = pod(
        "api-6b7c9d8f5-q4r7t",
        container(
            state="waiting",
            reason="CreateContainerConfigError",
            message='secret "orders-api-v2" not found',
            restart_count=0,
            last_state=None,
            last_exit_code=None,
            image="ghcr.io/acme/orders-api:2.15.0",
        ),
        owner_name="api-6b7c9d8f5",
        phase="Pending",
    )
    w = deployment(
        conditions={
            "Progressing": (
                "False",
                "ProgressDeadlineExceeded",
                'ReplicaSet "api-6b7c9d8f5" has timed out progressing.',
            )
        },
        revisions=[
            RevisionSnapshot(
                name="api-6b7c9d8f5",
                revision=13,
                images={"api": "ghcr.io/acme/orders-api:2.15.0"},
                replicas=1,
                ready_replicas=0,
                changes=[
                    "api.image: ghcr.io/acme/orders-api:2.14.0 -> ghcr.io/acme/orders-api:2.15.0"
                ],
            ),
            RevisionSnapshot(
                name="api-7d9f8c6b5",
                revision=12,
                images={"api": "ghcr.io/acme/orders-api:2.14.0"},
                replicas=3,
                ready_replicas=3,
            ),
        ],
    )
    c = ctx(
        pods=[
            new,
            pod(
                POD,
                container(
                    state="running",
                    reason="",
                    message="",
                    ready=True,
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            ),
        ],
        workload=w,
        alert=alert("KubeDeploymentRolloutStuck", pod="", container="", deployment="api"),
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
    )
    # the missing Secret of the new revision is the cause; the stuck rollout says which
    # revision it is and how to roll back
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "revision 13" in d.root_cause and "2.15.0" in d.root_cause
    assert "orders-api-v2" in d.root_cause
    assert f"kubectl -n {NS} rollout undo deployment/api --to-revision=12" in d.commands
    assert next(link.rule for link in d.chain if link.role.value == "wrapper") == "rollout-stuck"


def test_stuck_rollout_from_quota_is_quota() -> None:
    w = deployment(
        conditions={
            "Progressing": (
                "False",
                "ProgressDeadlineExceeded",
                'ReplicaSet "api-6b7c9d8f5" has timed out progressing.',
            ),
            "ReplicaFailure": (
                "True",
                "FailedCreate",
                'pods "api-6b7c9d8f5-" is forbidden: '
                "exceeded quota: compute, requested: limits.memory=1Gi, used: "
                "limits.memory=8Gi, limited: limits.memory=8Gi",
            ),
        }
    )
    c = ctx(
        pods=[],
        workload=w,
        quotas=[
            QuotaSnapshot(
                name="compute",
                namespace=NS,
                hard={"limits.memory": "8Gi"},
                used={"limits.memory": "8Gi"},
            )
        ],
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
    )
    check(c, Category.QUOTA_EXCEEDED)


def test_nothing_conclusive_is_unknown_with_low_confidence() -> None:
    healthy = pod(
        POD,
        container(
            state="running",
            reason="",
            message="",
            ready=True,
            restart_count=0,
            last_state=None,
            last_exit_code=None,
        ),
    )
    c = ctx(
        pods=[healthy],
        logs=[log(CRASH_NOISE, previous=False)],
        alert=alert("KubePodNotReady", container=""),
    )
    d = check(c, Category.UNKNOWN)
    assert d.confidence <= 0.3
    assert "alert" in d.evidence


# --- the table itself -----------------------------------------------------------------------


def test_every_category_has_a_rule_or_is_the_fallback() -> None:
    covered = {r.category for r in RULES} | {Category.UNKNOWN}
    assert covered == set(Category)


def test_rule_settings_from_env() -> None:
    s = RuleSettings.from_env({"ONCALLM_RULES_CPU_THROTTLING_RATIO": "0.5"})
    assert s.cpu_throttling_ratio == 0.5
    with pytest.raises(ValueError, match="ONCALLM_RULES_UNKNOWN_CONFIDENCE"):
        RuleSettings.from_env({"ONCALLM_RULES_UNKNOWN_CONFIDENCE": "high"})


def test_a_throttling_limit_a_vpa_wrote_into_the_pod_names_the_vpa() -> None:
    running = container(
        state="running", reason="", message="", ready=True, restart_count=0,
        last_state=None, last_exit_code=None, limits={"cpu": "300m"},
    )  # fmt: skip
    resized = pod(
        POD,
        running,
        resized_by="api-vpa",
        resized="container 0: cpu request, memory request, cpu limit, memory limit",
    )
    throttled = MetricSnapshot(
        name="cpu_throttled_ratio",
        query="sum(...)/sum(...)",
        values={f'{{container="api",pod="{POD}"}}': 0.85},
    )
    d = check(
        ctx(pods=[resized], metrics=[throttled], alert=alert("CPUThrottlingHigh")),
        Category.CPU_THROTTLING,
    )
    assert "VerticalPodAutoscaler api-vpa" in d.root_cause and "300m" in d.root_cause
    assert "minAllowed" in d.immediate_actions[0]
    # a VPA that set only the requests did not set the limit that throttles
    resized.resized = "container 0: cpu request, memory request"
    d = diagnose(ctx(pods=[resized], metrics=[throttled], alert=alert("CPUThrottlingHigh")))
    assert "api-vpa" not in d.root_cause


def test_throttling_below_threshold_is_ignored() -> None:
    c = ctx(
        pods=[
            pod(
                POD,
                container(
                    state="running",
                    reason="",
                    message="",
                    ready=True,
                    restart_count=0,
                    last_state=None,
                    last_exit_code=None,
                ),
            )
        ],
        metrics=[MetricSnapshot(name="cpu_throttled_ratio", query="q", values={"{}": 0.05})],
        alert=alert("KubePodNotReady"),
    )
    assert Category.CPU_THROTTLING not in {f.category for f in evaluate(c)}


# --- the causal chain: wrappers never hide a deeper proven cause ------------------------------

NEW_RS = "api-6b7c9d8f5"
NEW_POD = "api-6b7c9d8f5-q4r7t"


def _old_pod() -> PodSnapshot:
    healthy = container(
        state="running",
        reason="",
        message="",
        ready=True,
        restart_count=0,
        last_state=None,
        last_reason="",
        last_exit_code=None,
    )
    return pod(POD, healthy, conditions={"Ready": ("True", "", "")})


def _stuck_rollout(new: PodSnapshot, **kw: Any) -> Context:
    """Deployment api stuck rolling out revision 13 (2.15.0) while revision 12 serves."""
    w = deployment(
        ready=3,
        desired=3,
        conditions={
            "Progressing": (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{NEW_RS}" has timed out progressing.',
            )
        },
        revisions=[
            RevisionSnapshot(
                name=NEW_RS,
                revision=13,
                images={"api": "ghcr.io/acme/orders-api:2.15.0"},
                replicas=1,
                ready_replicas=0,
                changes=[
                    "api.image: ghcr.io/acme/orders-api:2.14.0 -> ghcr.io/acme/orders-api:2.15.0"
                ],
            ),
            RevisionSnapshot(
                name="api-7d9f8c6b5",
                revision=12,
                images={"api": "ghcr.io/acme/orders-api:2.14.0"},
                replicas=3,
                ready_replicas=3,
            ),
        ],
    )
    base: dict[str, Any] = {
        "pods": [new, _old_pod()],
        "workload": w,
        "alert": alert("KubeDeploymentRolloutStuck", pod="", container="", deployment="api"),
        "target": TargetRef(kind="Deployment", namespace=NS, name="api"),
    }
    base.update(kw)
    return ctx(**base)


def _new_pod(c: ContainerSnapshot, **kw: Any) -> PodSnapshot:
    return pod(NEW_POD, c, owner_name=NEW_RS, labels={"app": "api"}, **kw)


_NEW = {"image": "ghcr.io/acme/orders-api:2.15.0"}

ROLLOUT_CAUSES: dict[str, tuple[Category, dict[str, Any]]] = {
    "image-pull": (
        Category.IMAGE_PULL_ERROR,
        {
            "pods": [
                _new_pod(
                    container(
                        state="waiting",
                        reason="ImagePullBackOff",
                        message='Back-off pulling image "ghcr.io/acme/orders-api:2.15.0"',
                        restart_count=0,
                        last_state=None,
                        last_exit_code=None,
                        **_NEW,
                    ),
                    phase="Pending",
                ),
                _old_pod(),
            ],
            "events": [
                event(
                    "Failed",
                    'Failed to pull image "ghcr.io/acme/orders-api:2.15.0": rpc error: code = '
                    "NotFound desc = failed to pull and unpack image "
                    '"ghcr.io/acme/orders-api:2.15.0": ghcr.io/acme/orders-api:2.15.0: not found',
                    name=NEW_POD,
                )
            ],
        },
    ),
    "oom": (
        Category.OOM_KILLED,
        {
            "pods": [
                _new_pod(container(last_reason="OOMKilled", last_exit_code=137, **_NEW)),
                _old_pod(),
            ]
        },
    ),
    "missing-key": (
        Category.MISSING_SECRET_OR_CONFIGMAP,
        {
            "pods": [
                _new_pod(
                    container(
                        state="waiting",
                        reason="CreateContainerConfigError",
                        message="couldn't find key DB_PASSWORD in Secret orders/orders-db",
                        restart_count=0,
                        last_state=None,
                        last_exit_code=None,
                        secrets=["orders-db"],
                        **_NEW,
                    ),
                    phase="Pending",
                ),
                _old_pod(),
            ],
            "events": [
                event(
                    "Failed",
                    "Error: couldn't find key DB_PASSWORD in Secret orders/orders-db",
                    name=NEW_POD,
                )
            ],
        },
    ),
    "probe": (
        Category.FAILING_PROBE,
        {
            "pods": [
                _new_pod(
                    container(
                        last_reason="Error",
                        last_exit_code=137,
                        restart_count=6,
                        liveness_probe="http GET /healthz port 9090 delay=10s timeout=1s period=10s",
                        **_NEW,
                    )
                ),
                _old_pod(),
            ],
            "events": [
                event(
                    "Unhealthy",
                    'Liveness probe failed: Get "http://10.42.1.30:9090/healthz": dial tcp '
                    "10.42.1.30:9090: connect: connection refused",
                    name=NEW_POD,
                    count=18,
                ),
                event(
                    "Killing",
                    "Container api failed liveness probe, will be restarted",
                    name=NEW_POD,
                    type="Normal",
                    count=6,
                ),
            ],
        },
    ),
    "panic": (
        Category.APP_CRASH_EXCEPTION,
        {
            "pods": [_new_pod(container(**_NEW)), _old_pod()],
            "logs": [
                log(
                    "panic: runtime error: invalid memory address or nil pointer dereference\n"
                    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x9b3c1a]\n"
                    "goroutine 1 [running]:\nmain.(*Server).loadPricing(0x0)\n"
                    "\t/src/server.go:88 +0x1a",
                    pod_name=NEW_POD,
                )
            ],
        },
    ),
}


@pytest.mark.parametrize("case", sorted(ROLLOUT_CAUSES))
def test_the_new_pods_cause_wins_over_a_stuck_rollout(case: str) -> None:
    category, parts = ROLLOUT_CAUSES[case]
    d = check(_stuck_rollout(parts["pods"][0], **parts), category)
    wrappers = [link for link in d.chain if link.role.value == "wrapper"]
    assert wrappers and wrappers[0].rule == "rollout-stuck", d.chain
    assert d.chain[-1].role.value == "cause" and d.chain[-1].category == category
    assert "revision 13" in d.root_cause  # the wrapper says which revision to roll back
    assert f"kubectl -n {NS} rollout undo deployment/api --to-revision=12" in d.commands


def test_a_strategy_deadlock_with_healthy_old_pods_stays_rollout_stuck() -> None:
    pending = _new_pod(
        container(
            state="waiting",
            reason="ContainerCreating",
            message="",
            restart_count=0,
            last_state=None,
            last_reason="",
            last_exit_code=None,
            **_NEW,
        ),
        phase="Pending",
        node_name=None,
        conditions={"PodScheduled": ("False", "Unschedulable", "")},
    )
    c = _stuck_rollout(
        pending,
        events=[
            event(
                "FailedScheduling",
                "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. "
                "preemption: 0/3 nodes are available: 3 No preemption victims found for "
                "incoming pod.",
                name=NEW_POD,
            )
        ],
    )
    d = check(c, Category.ROLLOUT_STUCK)
    assert d.confidence >= 0.9
    assert "anti-affinity" in d.root_cause
    assert any("maxUnavailable" in a for a in d.immediate_actions)


def test_a_job_that_fails_on_a_bad_env_var_is_bad_config() -> None:
    job_pod = pod(
        "orders-export-28597740-7xk2p",
        container(
            name="export",
            state="terminated",
            reason="Error",
            exit_code=1,
            restart_count=0,
            last_state=None,
            last_reason="",
            last_exit_code=None,
            env={"EXPORT_BATCH_SIZE": "ten-thousand"},
        ),
        owner_kind="Job",
        owner_name="orders-export-28597740",
        phase="Failed",
    )
    job = WorkloadSnapshot(
        kind="Job",
        name="orders-export-28597740",
        namespace=NS,
        backoff_limit=2,
        failed=3,
        conditions={
            "Failed": (
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        },
    )
    c = ctx(
        pods=[job_pod],
        workload=job,
        logs=[
            log(
                "2025-05-14T09:41:02Z INFO starting export\n"
                "Error: invalid value for EXPORT_BATCH_SIZE: strconv.Atoi: parsing "
                '"ten-thousand": invalid syntax',
                pod_name="orders-export-28597740-7xk2p",
                container_name="export",
                previous=False,
            )
        ],
        alert=alert("KubeJobFailed", pod="", container="", job_name="orders-export-28597740"),
        target=TargetRef(kind="Job", namespace=NS, name="orders-export-28597740"),
    )
    d = check(c, Category.BAD_CONFIG)
    assert "EXPORT_BATCH_SIZE" in d.root_cause
    assert any(link.rule == "job-backoff-limit" for link in d.chain)


def test_every_rule_states_its_mechanism_and_scope() -> None:
    for rule in RULES:
        assert len(rule.mechanism) > 40, rule.name
        assert (rule.wrap is not None) == (rule.scope.value == "wrapper"), rule.name


# --- one step further: the mechanisms behind the pod's symptom --------------------------------


def test_a_heap_flag_above_the_memory_limit_is_named_in_the_oom() -> None:
    jvm = container(
        last_reason="OOMKilled",
        last_exit_code=137,
        limits={"cpu": "1", "memory": "2Gi"},
        env={"JAVA_TOOL_OPTIONS": "-Xms3g -Xmx3g -XX:+UseG1GC"},
    )
    d = check(ctx(pods=[pod(POD, jvm)]), Category.OOM_KILLED)
    assert "-Xmx3g" in d.root_cause and "JAVA_TOOL_OPTIONS" in d.root_cause


def test_an_image_for_another_architecture_is_an_image_error_naming_the_node_arch() -> None:
    arm = node()
    arm.labels = {"kubernetes.io/arch": "arm64"}
    c = ctx(
        nodes=[arm],
        logs=[log("exec /usr/local/bin/agent: exec format error")],
    )
    d = check(c, Category.IMAGE_PULL_ERROR)
    assert "arm64" in d.root_cause and "exec format error" in d.root_cause


def test_a_command_missing_from_the_image_is_bad_config_on_the_last_termination() -> None:
    c = container(
        last_reason="StartError",
        last_exit_code=128,
        last_message="failed to create containerd task: failed to create shim task: OCI runtime "
        'create failed: runc create failed: unable to start container process: exec: "gunicorn": '
        "executable file not found in $PATH: unknown",
    )
    d = check(ctx(pods=[pod(POD, c)]), Category.BAD_CONFIG)
    assert "gunicorn" in d.root_cause


def test_an_exception_quoting_an_env_vars_value_is_bad_config() -> None:
    c = container(env={"BATCH_SIZE": "5k", "LOG_LEVEL": "info"})
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/app/send.py", line 187, in main\n'
        '    batch_size = int(os.environ.get("BATCH_SIZE", "500"))\n'
        "ValueError: invalid literal for int() with base 10: '5k'"
    )
    d = check(ctx(pods=[pod(POD, c)], logs=[log(trace)]), Category.BAD_CONFIG)
    assert "BATCH_SIZE" in d.root_cause


def test_a_config_file_parse_error_is_bad_config_naming_the_file_and_configmap() -> None:
    c = container(config_maps=["api-rules"])
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/app/config.py", line 58, in load_rules\n'
        "    doc = yaml.safe_load(fh)\n"
        "yaml.scanner.ScannerError: while scanning for the next token\n"
        "found character '\\t' that cannot start any token\n"
        '  in "/etc/api/rules.yaml", line 14, column 1'
    )
    d = check(ctx(pods=[pod(POD, c)], logs=[log(trace)]), Category.BAD_CONFIG)
    assert "/etc/api/rules.yaml" in d.root_cause and "api-rules" in d.root_cause


def _running_ready() -> ContainerSnapshot:
    return container(
        state="running",
        reason="",
        message="",
        ready=True,
        restart_count=1,
        last_state="terminated",
        last_reason="OOMKilled",
        last_exit_code=137,
        last_finished_at="2025-05-12T09:40:00Z",  # two days before the alert
    )


def test_a_termination_long_before_the_alert_is_history() -> None:
    ready = pod(POD, _running_ready(), conditions={"Ready": ("True", "", "")})
    found = {f.category for f in evaluate(ctx(pods=[ready]))}
    assert Category.OOM_KILLED not in found


def test_readiness_failures_of_a_pod_that_is_ready_again_prove_nothing() -> None:
    ready = pod(POD, _running_ready(), conditions={"Ready": ("True", "", "")})
    c = ctx(
        pods=[ready],
        events=[
            event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")
        ],
        alert=alert("KubePodNotReady", container=""),
    )
    check(c, Category.UNKNOWN)


def test_a_rollout_that_cannot_attach_its_readwriteonce_volume_is_rollout_stuck() -> None:
    pending = _new_pod(
        container(
            state="waiting",
            reason="ContainerCreating",
            message="",
            restart_count=0,
            last_state=None,
            last_reason="",
            last_exit_code=None,
            **_NEW,
        ),
        phase="Pending",
        pvcs=["api-data"],
    )
    c = _stuck_rollout(
        pending,
        events=[
            event(
                "FailedAttachVolume",
                f'Multi-Attach error for volume "pvc-1f2e" Volume is already used by pod(s) {POD}',
                name=NEW_POD,
            )
        ],
    )
    d = check(c, Category.ROLLOUT_STUCK)
    assert "api-data" in d.root_cause and "Recreate" in " ".join(d.immediate_actions)


def test_dns_timeouts_under_an_egress_policy_without_port_53_are_the_policy() -> None:
    policy = NetworkPolicySnapshot(
        name="api-egress",
        namespace=NS,
        pod_selector={"app": "api"},
        policy_types=["Egress"],
        egress=["pods {'app': 'orders-db'} ports 5432/TCP"],
        selects_target=True,
    )
    c = ctx(
        network_policies=[policy],
        logs=[log("ERROR: [Errno -3] Temporary failure in name resolution (orders-db.orders.svc)")],
    )
    d = check(c, Category.NETWORK_POLICY_BLOCK)
    assert "api-egress" in d.root_cause and "53" in d.root_cause


def test_egress_policies_add_up_and_dns_over_udp_only_fails_large_answers() -> None:
    def egress(name: str, rules: list[str]) -> NetworkPolicySnapshot:
        return NetworkPolicySnapshot(name=name, namespace=NS, policy_types=["Egress"],
                                     egress=rules, selects_target=True)  # fmt: skip

    deny = egress("default-deny-egress", [])
    udp = egress(
        "allow-dns", ["namespaces {'kubernetes.io/metadata.name': 'kube-system'} ports 53/UDP"]
    )
    line = "ERROR: [Errno -3] Temporary failure in name resolution (feeds.partner.example)"
    d = check(ctx(network_policies=[deny, udp], logs=[log(line)]), Category.NETWORK_POLICY_BLOCK)
    assert "allow-dns" in d.root_cause and "TCP 53" in d.root_cause
    # With TCP 53 allowed by another policy of the pod, the policies are not the cause.
    tcp = egress("allow-dns-tcp", ["namespaces {'kubernetes.io/metadata.name': 'kube-system'} "
                                   "ports 53/TCP"])  # fmt: skip
    d = diagnose(ctx(network_policies=[deny, udp, tcp], logs=[log(line)]))
    assert d.category is not Category.NETWORK_POLICY_BLOCK


def test_a_403_names_the_binding_that_grants_it_to_another_serviceaccount() -> None:
    from oncallm.models.evidence import RoleBindingSnapshot

    binding = RoleBindingSnapshot(
        name="pod-launcher",
        namespace=NS,
        role_kind="Role",
        role_name="pod-launcher",
        subjects=[f"ServiceAccount {NS}/worker"],
        rules=[(["get", "list", "create"], ["pods"], [""])],
    )
    refusal = (
        'pods is forbidden: User "system:serviceaccount:orders:api" cannot list resource '
        '"pods" in API group "" in the namespace "orders"'
    )
    c = ctx(role_bindings=[binding], logs=[log(f"ERROR kubernetes client: {refusal}")])
    d = check(c, Category.RBAC_FORBIDDEN)
    assert "pod-launcher" in d.root_cause and "worker" in d.root_cause


# --- leads: what the sources found one step further ---------------------------------------


def test_a_volume_filling_with_retention_turned_off_is_bad_config() -> None:
    from oncallm.models.evidence import RetentionSetting

    c = ctx(
        pods=[_old_pod()],
        retention_settings=[
            RetentionSetting(
                config_map="broker-config",
                namespace=NS,
                file="server.properties",
                key="log.retention.ms",
                value="-1",
                line=12,
            )
        ],
        alert=alert("KubePersistentVolumeFillingUp", pod="", persistentvolumeclaim="data-0"),
        target=TargetRef(kind="PersistentVolumeClaim", namespace=NS, name="data-0"),
    )
    d = check(c, Category.BAD_CONFIG)
    assert "log.retention.ms=-1" in d.root_cause and "broker-config" in d.root_cause


def _webhook(**kw: Any) -> Any:
    from oncallm.models.evidence import WebhookSnapshot

    base: dict[str, Any] = {
        "name": "policy.acme.io",
        "error": 'Internal error occurred: failed calling webhook "policy.acme.io": failed to '
        'call webhook: Post "https://policy-svc.guard.svc:443/validate": no endpoints available '
        'for service "policy-svc"',
        "configuration": "policy",
        "kind": "ValidatingWebhookConfiguration",
        "service_namespace": "guard",
        "service_name": "policy-svc",
        "service_exists": True,
        "ready_endpoints": 0,
        "rules": ["CREATE pods"],
    }
    base.update(kw)
    return WebhookSnapshot(**base)


def _refused(message: str) -> EventSnapshot:
    return event(
        "FailedCreate", f"Error creating: {message}", kind="ReplicaSet", name="api-7d9f8c6b5"
    )


def test_a_webhook_without_endpoints_refusing_pods_is_its_unreachable_backend() -> None:
    hook = _webhook()
    c = ctx(pods=[], webhooks=[hook], events=[_refused(hook.error)])
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "policy.acme.io" in d.root_cause and "guard/policy-svc" in d.root_cause


def test_a_webhook_with_an_expired_certificate_names_the_issuer_that_failed() -> None:
    from oncallm.models.evidence import CertificateSnapshot, IssuerSnapshot

    hook = _webhook(
        error='failed calling webhook "policy.acme.io": tls: failed to verify certificate: '
        "x509: certificate has expired or is not yet valid",
        ready_endpoints=2,
    )
    cert = CertificateSnapshot(
        name="policy-serving",
        namespace="guard",
        secret_name="policy-tls",
        issuer_kind="Issuer",
        issuer_name="guard-ca",
        conditions={"Ready": ("False", "Expired", "Certificate expired")},
        why="the CA of webhook policy.acme.io is injected from it",
    )
    issuer = IssuerSnapshot(
        kind="Issuer",
        name="guard-ca",
        namespace="guard",
        conditions={"Ready": ("False", "ErrGetKeyPair", 'secret "guard-ca-key" not found')},
    )
    c = ctx(
        pods=[],
        webhooks=[hook],
        certificates=[cert],
        issuers=[issuer],
        events=[_refused(hook.error)],
    )
    d = check(c, Category.CERT_EXPIRED)
    assert "policy-serving" in d.root_cause and "guard-ca" in d.root_cause


def test_a_401_names_the_pull_secret_and_its_suspended_refresher() -> None:
    from oncallm.models.evidence import (
        PullCredentialsSnapshot,
        PullSecretSnapshot,
        SecretRefresher,
    )

    puller = container(
        state="waiting",
        reason="ImagePullBackOff",
        message='Back-off pulling image "123.dkr.ecr.eu-west-1.amazonaws.com/api:2.15.0"',
        restart_count=0,
        last_state=None,
        last_exit_code=None,
    )
    refusal = (
        'Failed to pull image "123.dkr.ecr.eu-west-1.amazonaws.com/api:2.15.0": failed to '
        "authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized"
    )
    creds = PullCredentialsSnapshot(
        pod=POD,
        namespace=NS,
        image="123.dkr.ecr.eu-west-1.amazonaws.com/api:2.15.0",
        registry="123.dkr.ecr.eu-west-1.amazonaws.com",
        error=refusal,
        secrets=[
            PullSecretSnapshot(
                name="ecr-creds",
                namespace=NS,
                refreshers=[
                    SecretRefresher(
                        kind="CronJob", name="ecr-refresh", namespace=NS, suspended=True
                    )
                ],
            )
        ],
    )
    c = ctx(pods=[pod(POD, puller)], events=[event("Failed", refusal)], pull_credentials=[creds])
    d = check(c, Category.IMAGE_PULL_ERROR)
    assert "ecr-creds" in d.root_cause and "ecr-refresh" in d.root_cause
    assert "suspended" in d.root_cause


def test_a_pending_gpu_pod_names_who_holds_the_gpus() -> None:
    from oncallm.models.evidence import ResourceHolder, ResourceHoldersSnapshot

    waiting = pod(
        POD,
        container(state="waiting", reason="", message="", restart_count=0, last_state=None),
        phase="Pending",
        node_name=None,
    )
    c = ctx(
        pods=[waiting],
        events=[
            event(
                "FailedScheduling",
                "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match "
                "Pod's node affinity/selector. preemption: 0/4 nodes are available: 2 No "
                "preemption victims found for incoming pod.",
            )
        ],
        resource_holders=[
            ResourceHoldersSnapshot(
                resource="nvidia.com/gpu",
                requested=8,
                allocatable=8,
                holders=[
                    ResourceHolder(
                        kind="Job", name="train-7", namespace="ml", amount=6, pods=["a", "b", "c"]
                    )
                ],
            )
        ],
    )
    d = check(c, Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE)
    assert "ml/train-7" in d.root_cause and "6 of 8" in d.root_cause


def test_a_path_denied_by_a_namespace_selector_names_the_policy_and_the_labels() -> None:
    from oncallm.models.evidence import NamespaceSnapshot, NetworkPathSnapshot, PeerPod

    path = NetworkPathSnapshot(
        destination="kafka.brokers:9092",
        line="TimeoutException: Timeout expired while fetching topic metadata",
        source_pod=POD,
        source_namespace=NS,
        source_labels={"app": "api"},
        namespace="brokers",
        service="kafka",
        service_exists=True,
        port=9092,
        target_port=9092,
        pods=[PeerPod(name="kafka-0", labels={"app": "kafka"})],
        egress_allowed=None,
        ingress_policies=[
            NetworkPolicySnapshot(
                name="kafka-clients", namespace="brokers", policy_types=["Ingress"]
            )
        ],
        ingress_allowed=False,
    )
    c = ctx(
        network_paths=[path],
        namespaces=[NamespaceSnapshot(name=NS, labels={"team": "shop"})],
    )
    d = check(c, Category.NETWORK_POLICY_BLOCK)
    assert "kafka-clients" in d.root_cause and "team=shop" in d.root_cause


def test_two_independent_causes_are_primary_then_secondary() -> None:
    pulling = pod(
        "api-7d9f8c6b5-p2p2p",
        container(
            state="waiting",
            reason="ImagePullBackOff",
            message='Back-off pulling image "ghcr.io/acme/orders-api:2.15.0"',
            restart_count=0,
            last_state=None,
            last_exit_code=None,
        ),
        phase="Pending",
    )
    down = node(
        "orders-worker-2", Ready=("Unknown", "NodeStatusUnknown", "Kubelet stopped posting status.")
    )
    stranded = pod("api-7d9f8c6b5-n3n3n", node_name="orders-worker-2", deleting=True)
    c = ctx(
        pods=[pulling, stranded],
        nodes=[node(), down],
        events=[
            event(
                "Failed",
                'Failed to pull image "ghcr.io/acme/orders-api:2.15.0": not found',
                name="api-7d9f8c6b5-p2p2p",
            )
        ],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
    )
    d = diagnose(c)
    categories = {d.category, *(link.category for link in d.secondary)}
    assert {Category.IMAGE_PULL_ERROR, Category.NODE_NOT_READY} <= categories, d
    assert d.secondary and d.secondary[0].role.value == "secondary"


def test_a_probe_that_errors_fails_like_one_that_answers_badly() -> None:
    """'probe errored and resulted in unknown state' is the kubelet's wording for a probe that
    could not run (an exec that timed out, a named port the container does not have)."""
    c = ctx(
        pods=[pod(POD, container(last_reason="Error", last_exit_code=137, restart_count=6))],
        events=[
            event(
                "Unhealthy",
                "Liveness probe errored and resulted in unknown state: strconv.Atoi: "
                'parsing "http": invalid syntax',
                count=31,
            ),
            event(
                "Killing", "Container api failed liveness probe, will be restarted", type="Normal"
            ),
        ],
    )
    d = check(c, Category.FAILING_PROBE)
    assert 'parsing "http"' in d.root_cause


def test_probe_errors_of_a_container_being_stopped_are_no_cause() -> None:
    c = ctx(
        pods=[pod(POD, container(last_reason="Error", last_exit_code=137, restart_count=2))],
        events=[
            event(
                "Unhealthy",
                "Readiness probe errored and resulted in unknown state: rpc error: code = "
                "Unknown desc = command error: cannot register an exec PID: container is "
                "stopping, stdout: , stderr: , exit code -1",
                count=9,
            ),
        ],
    )
    assert Category.FAILING_PROBE not in {f.category for f in evaluate(c)}


def test_a_job_stopped_at_its_deadline_did_not_crash_on_the_exception_it_logged() -> None:
    """Exit 143 is SIGTERM from outside (here the Job's activeDeadlineSeconds): the handled
    exception earlier in the log did not end the process."""
    job_pod = pod(
        "ledger-export-29811440-q8d2m",
        container(
            name="export",
            state="terminated",
            reason="Error",
            exit_code=143,
            restart_count=0,
            last_state=None,
            last_exit_code=None,
            message="",
        ),
        phase="Failed",
        owner_kind="Job",
        owner_name="ledger-export-29811440",
    )
    logs = """
2026-12-02T01:00:03Z INFO  exporting 4,218,332 rows
2026-12-02T01:07:41Z WARN  batch 212 failed, retrying
Traceback (most recent call last):
  File "/app/export.py", line 88, in write_batch
TimeoutError: write to s3 timed out
2026-12-02T01:07:44Z INFO  batch 212 written on retry 1
2026-12-02T01:29:59Z INFO  exported 3,901,100 rows
"""
    c = ctx(
        pods=[job_pod],
        workload=WorkloadSnapshot(
            kind="Job",
            name="ledger-export-29811440",
            namespace=NS,
            backoff_limit=6,
            failed=1,
            conditions={
                "Failed": (
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            },
        ),
        logs=[log(logs, pod_name=job_pod.name, container_name="export", previous=False)],
        alert=alert("KubeJobFailed", job_name="ledger-export-29811440", container=""),
    )
    d = check(c, Category.JOB_BACKOFF_LIMIT)
    assert "activeDeadlineSeconds" in d.root_cause


def test_job_pods_stopped_at_their_own_deadline_are_why_the_backoff_limit_was_reached() -> None:
    """The pod template's activeDeadlineSeconds (not the Job's): the kubelet stops each pod
    (status.reason DeadlineExceeded), so every attempt fails and backoffLimit ends the Job."""
    attempts = [
        pod(
            f"catalog-reindex-29955000-{suffix}",
            container(
                name="reindex",
                state="terminated",
                reason="Error",
                exit_code=143,
                restart_count=0,
                last_state=None,
                last_exit_code=None,
                message="",
            ),
            phase="Failed",
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
            active_deadline_seconds=1200,
            owner_kind="Job",
            owner_name="catalog-reindex-29955000",
        )
        for suffix in ("7xk2p", "dq4wz")
    ]
    logs = """
2026-12-15T02:00:10Z INFO reindex: 2,310,412 docs to index
2026-12-15T02:11:02Z WARNING reindex: bulk chunk 1184: 37 docs rejected with 429, retry 1/5
2026-12-15T02:20:04Z INFO reindex: 1,462,500/2,310,412 docs (63.3%), eta 11m46s
"""
    c = ctx(
        pods=attempts,
        workload=WorkloadSnapshot(
            kind="Job",
            name="catalog-reindex-29955000",
            namespace=NS,
            backoff_limit=1,
            failed=2,
            conditions={
                "Failed": ("True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            },
        ),
        logs=[log(logs, pod_name=attempts[0].name, container_name="reindex", previous=False)],
        alert=alert("KubeJobFailed", job_name="catalog-reindex-29955000", container=""),
    )  # fmt: skip
    d = check(c, Category.JOB_BACKOFF_LIMIT)
    assert "activeDeadlineSeconds (1200 s)" in d.root_cause and "63.3%" in d.root_cause


def test_a_volume_item_naming_a_key_its_configmap_lacks_is_a_missing_key() -> None:
    """The kubelet's mount error names the volume and the key; the pod's spec names the
    ConfigMap behind the volume."""
    waiting = container(
        state="waiting",
        reason="ContainerCreating",
        message="",
        restart_count=0,
        last_state=None,
        last_reason="",
        last_exit_code=None,
    )
    c = ctx(
        pods=[
            pod(
                POD, waiting, phase="Pending", volume_sources={"settings": "ConfigMap api-settings"}
            )
        ],
        events=[
            event(
                "FailedMount",
                'MountVolume.SetUp failed for volume "settings" : configmap references '
                "non-existent config key: application.yaml",
                count=12,
            )
        ],
    )
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "api-settings" in d.root_cause and "application.yaml" in d.root_cause


def test_a_crash_naming_the_variable_an_optional_secret_ref_leaves_unset() -> None:
    """Secrets are never read; the program's own error names the variable whose optional
    secretKeyRef left it unset."""
    crashing = container(
        key_refs=[
            EnvKeyRef(
                env="STRIPE_API_KEY", kind="Secret", name="payments", key="stripe", optional=True
            )
        ],
        secrets=["payments"],
    )
    logs = """
2026-12-02T01:10:02Z INFO  starting checkout-api 4.2.1
2026-12-02T01:10:02Z WARN  DeprecationWarning: pkg_resources is deprecated
Traceback (most recent call last):
  File "/app/main.py", line 12, in <module>
    stripe.api_key = os.environ["STRIPE_API_KEY"]
KeyError: 'STRIPE_API_KEY'
"""
    c = ctx(pods=[pod(POD, crashing)], logs=[log(logs)])
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "payments" in d.root_cause and "STRIPE_API_KEY" in d.root_cause


def test_an_error_faulting_the_value_of_an_optional_secret_var_is_not_a_missing_key() -> None:
    """The program names the variable of an optional secretKeyRef, but finds fault with the
    value it has: the key is there, and nothing proves a Secret or key missing."""
    crashing = container(
        key_refs=[
            EnvKeyRef(env="DATABASE_URL", kind="Secret", name="orders-db", key="url", optional=True)
        ],
        secrets=["orders-db"],
    )
    logs = """
2026-12-02T01:10:02Z INFO  starting orders-api 2.14.0
2026-12-02T01:10:02Z ERROR invalid DATABASE_URL: cannot parse "postgres//orders-db:5432": missing ':' after scheme
"""
    c = ctx(pods=[pod(POD, crashing)], logs=[log(logs)])
    assert diagnose(c).category != Category.MISSING_SECRET_OR_CONFIGMAP


@pytest.mark.parametrize(
    ("how", "held"),
    [
        ("required, container never started", True),
        ("required, container running", False),
        ("required, pod not scheduled", False),
        ("optional, container never started", False),
    ],
)
def test_a_configmap_found_missing_only_by_gathering_must_hold_the_pod_back(
    how: str, held: bool
) -> None:
    """No kubelet message names the ConfigMap: its absence explains the pod only when a pod on
    a node that requires it has a container that never started. A running container started
    with it (deleted since); an unscheduled pod waits for the scheduler first; an optional
    reference lets the kubelet start the pod without it."""
    waiting = container(
        state="waiting",
        reason="ContainerCreating",
        message="",
        restart_count=0,
        last_state=None,
        last_exit_code=None,
        config_maps=["api-flags"],
    )
    running = container(state="running", ready=True, restart_count=0, config_maps=["api-flags"])
    the_pod = {
        "required, container never started": pod(POD, waiting, phase="Pending"),
        "required, container running": pod(POD, running),
        "required, pod not scheduled": pod(POD, waiting, phase="Pending", node_name=None),
        "optional, container never started": pod(
            POD, waiting, phase="Pending", optional_refs=["ConfigMap api-flags"]
        ),
    }[how]
    the_pod.config_maps = ["api-flags"]
    c = ctx(pods=[the_pod], missing_objects=[f"ConfigMap {NS}/api-flags"])
    blamed = diagnose(c).category == Category.MISSING_SECRET_OR_CONFIGMAP
    assert blamed == held, (how, diagnose(c).root_cause)


def test_a_pull_refused_for_want_of_a_pull_secret_that_does_not_exist() -> None:
    """The kubelet could not retrieve the pod's imagePullSecret: the registry's 401 is the
    symptom of the missing Secret."""
    from oncallm.models.evidence import PullCredentialsSnapshot, PullSecretSnapshot

    puller = container(
        state="waiting",
        reason="ImagePullBackOff",
        message='Back-off pulling image "registry.acme.dev/etl/loader:2.4.1"',
        restart_count=0,
        last_state=None,
        last_exit_code=None,
    )
    refusal = (
        'Failed to pull image "registry.acme.dev/etl/loader:2.4.1": failed to authorize: '
        "failed to fetch anonymous token: unexpected status: 401 Unauthorized"
    )
    creds = PullCredentialsSnapshot(
        pod=POD,
        namespace=NS,
        image="registry.acme.dev/etl/loader:2.4.1",
        error=refusal,
        secrets=[PullSecretSnapshot(name="acme-registry", namespace=NS, exists=False)],
    )
    c = ctx(
        pods=[pod(POD, puller)],
        events=[
            event("Failed", refusal),
            event(
                "FailedToRetrieveImagePullSecret",
                "Unable to retrieve some image pull secrets (acme-registry); attempting to pull "
                "the image may not succeed.",
            ),
        ],
        pull_credentials=[creds],
    )
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "acme-registry" in d.root_cause and "does not exist" in d.root_cause


def test_a_client_dialing_a_port_its_dependency_service_does_not_expose() -> None:
    """SPRING_DATASOURCE_URL names ledger-pool:5432; Service ledger-pool exposes only 6432,
    so the connects time out though the pooler and its endpoints are healthy."""
    unready = container(
        state="running",
        ready=False,
        restart_count=0,
        last_state=None,
        last_reason="",
        last_exit_code=None,
        env={"SPRING_DATASOURCE_URL": "jdbc:postgresql://ledger-pool:5432/ledger"},
    )
    logs = """
2026-12-02T01:00:00.951Z  INFO 1 --- [main] com.zaxxer.hikari.HikariDataSource : HikariPool-1 - Starting...
org.postgresql.util.PSQLException: The connection attempt failed.
Caused by: java.net.SocketTimeoutException: Connect timed out
"""
    c = ctx(
        pods=[pod(POD, unready)],
        logs=[log(logs, previous=False)],
        services=[
            ServiceSnapshot(
                name="ledger-pool",
                namespace=NS,
                selector={"app": "ledger-pool"},
                ports=["6432/TCP->pgbouncer"],
                ready_endpoints=2,
                addresses=["10.72.1.51:6432", "10.72.3.18:6432"],
                relation="dependency",
            )
        ],
        alert=alert("KubePodNotReady", container=""),
    )
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "SPRING_DATASOURCE_URL" in d.root_cause and "6432" in d.root_cause


def test_a_selectorless_service_whose_hand_kept_endpoint_does_not_answer() -> None:
    logs = (
        'level=WARN msg="preflight failed" err="Get \\"https://pay-gw:8443/ping\\": dial tcp '
        '10.20.4.17:8443: i/o timeout"\n'
        'level=ERROR msg="payments gateway unreachable, giving up" err="dial tcp '
        '10.20.4.17:8443: i/o timeout"\n'
    )
    c = ctx(
        logs=[log(logs)],
        services=[
            ServiceSnapshot(
                name="pay-gw",
                namespace=NS,
                ports=["8443/TCP->8443"],
                ready_endpoints=1,
                addresses=["10.20.4.17:8443"],
                relation="dependency",
            )
        ],
    )
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "10.20.4.17:8443" in d.root_cause and "no selector" in d.root_cause


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (["python", "-m", "etl.load"], "/usr/local/bin/python: No module named etl.load"),
        (["node", "dist/server.js"], "Error: Cannot find module '/app/dist/server.js'"),
        (["java", "-jar", "/app/ledger.jar"], "Error: Unable to access jarfile /app/ledger.jar"),
        (["/app/run.sh"], "exec /app/run.sh: no such file or directory"),
    ],
)
def test_a_command_naming_what_the_image_does_not_have_is_bad_config(
    command: list[str], line: str
) -> None:
    crashed = container(command=command, last_exit_code=1, restart_count=5)
    c = ctx(pods=[pod(POD, crashed)], logs=[log(line + "\n")])
    d = check(c, Category.BAD_CONFIG)
    assert line.split()[-1].strip("'") in d.root_cause or "etl.load" in d.root_cause


def test_a_preload_an_env_var_names_that_the_image_lacks_is_that_setting() -> None:
    """NODE_OPTIONS (here from a ConfigMap) makes node load a file before the program; the
    command is right, the setting names a path the new image no longer has."""
    crashed = container(
        command=["node", "dist/server.js"],
        last_exit_code=1,
        restart_count=10,
        config_env={"NODE_OPTIONS": "--require /app/tracing.js --max-old-space-size=384"},
        config_env_source={"NODE_OPTIONS": "bff-env"},
    )
    lines = "Error: Cannot find module '/app/tracing.js'\nRequire stack:\n- internal/preload\n"
    d = check(ctx(pods=[pod(POD, crashed)], logs=[log(lines)]), Category.BAD_CONFIG)
    assert "NODE_OPTIONS" in d.root_cause and "ConfigMap bff-env" in d.root_cause
    assert "/app/tracing.js" in d.root_cause
    # a module no setting and no command names is not the configuration's
    crashed.config_env = {"NODE_ENV": "production"}
    assert diagnose(ctx(pods=[pod(POD, crashed)], logs=[log(lines)])).category is not (
        Category.BAD_CONFIG
    )


def test_an_import_error_inside_the_program_is_not_the_command() -> None:
    """A module the program imports (not the one the command names) is missing from the
    image: a crash of the image's own, not a wrong command."""
    crashed = container(command=["python", "-m", "billing.worker"], last_exit_code=1)
    logs = """Traceback (most recent call last):
  File "/app/billing/worker.py", line 3, in <module>
    import stripe
ModuleNotFoundError: No module named 'stripe'
"""
    c = ctx(pods=[pod(POD, crashed)], logs=[log(logs)])
    assert diagnose(c).category == Category.APP_CRASH_EXCEPTION


def test_nginx_refusing_a_directive_of_its_configmap_is_bad_config() -> None:
    logs = (
        'nginx: [warn] the "listen ... http2" directive is deprecated, use the "http2" '
        "directive instead in /etc/nginx/conf.d/default.conf:2\n"
        'nginx: [emerg] unknown directive "proxy_read_timout" in '
        "/etc/nginx/conf.d/default.conf:14\n"
    )
    crashed = container(name="api", last_exit_code=1, restart_count=9)
    c = ctx(pods=[pod(POD, crashed, config_maps=["edge-conf"])], logs=[log(logs)])
    d = check(c, Category.BAD_CONFIG)
    assert "proxy_read_timout" in d.root_cause and "edge-conf" in d.root_cause


def test_a_rust_panic_is_an_application_crash_with_its_location_and_message() -> None:
    logs = (
        "2025-12-15T07:03:00Z  WARN fx_rates::feed::ecb: currency BGN missing from feed\n"
        "thread 'main' panicked at src/feed/ecb.rs:142:37:\n"
        "called `Option::unwrap()` on a `None` value\n"
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    )
    crashed = container(last_exit_code=101, restart_count=12)
    c = ctx(pods=[pod(POD, crashed)], logs=[log(logs)])
    d = check(c, Category.APP_CRASH_EXCEPTION)
    assert "ecb.rs:142" in d.root_cause and "Option::unwrap()" in d.root_cause


def test_startup_probe_failures_of_pods_ready_now_without_restarts_prove_nothing() -> None:
    fresh = container(
        state="running", ready=True, restart_count=0, last_state=None, last_reason="",
        last_exit_code=None,
    )  # fmt: skip
    ready = pod(POD, fresh, conditions={"Ready": ("True", "", "")})
    c = ctx(
        pods=[ready],
        events=[
            event(
                "Unhealthy",
                'Startup probe failed: Get "http://10.112.1.30:8080/healthz": dial tcp '
                "10.112.1.30:8080: connect: connection refused",
                count=3,
            )
        ],
        alert=alert("KubeDeploymentReplicasMismatch", container=""),
    )
    check(c, Category.UNKNOWN)


def test_a_cronjob_whose_runs_overlap_fails_its_later_job_on_the_lock() -> None:
    failed = pod(
        "reindex-29187000-x2kfd",
        container(
            name="reindex", state="terminated", reason="Error", exit_code=3, restart_count=0,
            last_state=None, last_exit_code=None, message="",
        ),
        phase="Failed", owner_kind="Job", owner_name="reindex-29187000",
    )  # fmt: skip
    logs = (
        'level=error msg="could not acquire advisory lock" lock=catalog_reindex\n'
        'level=fatal msg="another reindex is running, exiting" code=3\n'
    )
    c = ctx(
        pods=[failed],
        workload=WorkloadSnapshot(
            kind="Job", name="reindex-29187000", namespace=NS, backoff_limit=2, failed=3,
            conditions={"Failed": ("True", "BackoffLimitExceeded", "Job has reached the "
                                   "specified backoff limit")},
        ),
        owners=[
            WorkloadSnapshot(
                kind="CronJob", name="reindex", namespace=NS, schedule="*/10 * * * *",
                concurrency_policy="Allow", active_jobs=["reindex-29186990"],
            )
        ],
        logs=[log(logs, pod_name=failed.name, container_name="reindex", previous=False)],
        alert=alert("KubeJobFailed", job_name="reindex-29187000", container=""),
    )  # fmt: skip
    d = check(c, Category.JOB_BACKOFF_LIMIT)
    assert "concurrencyPolicy Allow" in d.root_cause and "reindex-29186990" in d.root_cause
    # with Forbid the overlap cannot happen: the lock error is the pods' own
    c.owners[0].concurrency_policy = "Forbid"
    assert "concurrencyPolicy" not in diagnose(c).root_cause


def test_a_missing_secret_names_the_externalsecret_that_fails_to_render_it() -> None:
    from oncallm.models.evidence import ExternalSecretSnapshot

    waiting = container(
        state="waiting", reason="CreateContainerConfigError",
        message='secret "kafka-sasl" not found', restart_count=0, last_state=None,
        last_exit_code=None,
    )  # fmt: skip
    es = ExternalSecretSnapshot(
        name="kafka-sasl", namespace=NS, target="kafka-sasl",
        remote_keys=["prod/payments/kafka-sasl"], store="ClusterSecretStore/aws",
        conditions={"Ready": ("False", "SecretSyncedError", "could not get secret data")},
        last_error="ResourceNotFoundException: Secrets Manager can't find the specified secret.",
    )  # fmt: skip
    c = ctx(pods=[pod(POD, waiting)], external_secrets=[es])
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "prod/payments/kafka-sasl" in d.root_cause and "ResourceNotFound" in d.root_cause
    assert "externalsecret/kafka-sasl" in d.evidence or any("kafka-sasl" in e for e in d.evidence)


def test_a_program_missing_a_file_of_its_mounted_secret_is_a_missing_key() -> None:
    crashed = container(
        last_exit_code=1, restart_count=10, mounts={"/etc/ledger/secrets": "stripe"}
    )
    logs = (
        "2025/06/05 16:07:52 config: loading secrets from /etc/ledger/secrets\n"
        "2025/06/05 16:07:52 fatal: stripe: read api key: open "
        "/etc/ledger/secrets/stripe_api_key: no such file or directory\n"
    )
    c = ctx(
        pods=[pod(POD, crashed, volume_sources={"stripe": "Secret ledger-stripe"})],
        logs=[log(logs)],
    )
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "ledger-stripe" in d.root_cause and "stripe_api_key" in d.root_cause


def test_a_limitrange_refusing_the_new_template_is_named() -> None:
    from oncallm.models.evidence import LimitRangeSnapshot

    c = ctx(
        pods=[],
        events=[
            event(
                "FailedCreate",
                'Error creating: pods "api-6d8f7c9b5-x2x9q" is forbidden: maximum memory usage '
                "per Container is 2Gi, but limit is 3Gi",
                kind="ReplicaSet",
                name="api-6d8f7c9b5",
            )
        ],
        limit_ranges=[
            LimitRangeSnapshot(
                name="team-limits", namespace=NS, limits=["Container memory max 2Gi"]
            )
        ],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
    )
    d = check(c, Category.QUOTA_EXCEEDED)
    assert "team-limits" in d.root_cause and "3Gi" in d.root_cause


def test_a_dependency_whose_listed_endpoints_are_all_unready_pods_is_down() -> None:
    """publishNotReadyAddresses lists the pods as endpoints though none is Ready (a sealed
    Vault): the Service counts as down."""
    logs = (
        "WARNING payments.secrets vault login failed (attempt 2/3), retrying in 4s\n"
        "hvac.exceptions.VaultDown: Vault is sealed, on post "
        "https://vault.secrets.svc:8200/v1/auth/kubernetes/login\n"
    )
    c = ctx(
        logs=[log(logs)],
        services=[
            ServiceSnapshot(
                name="vault",
                namespace="secrets",
                selector={"app.kubernetes.io/name": "vault"},
                ports=["8200/TCP->8200"],
                ready_endpoints=3,
                matching_pods=["vault-0", "vault-1", "vault-2"],
                ready_pods=0,
                relation="dependency",
            )
        ],
    )
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "vault-0" in d.root_cause and "publishNotReadyAddresses" in d.root_cause


def test_a_daemonset_surging_a_pod_with_a_host_port_deadlocks_its_own_rollout() -> None:
    old = pod("shipper-a1b2c", container(state="running", ready=True, restart_count=0),
              owner_kind="DaemonSet", owner_name="shipper",
              conditions={"Ready": ("True", "", "")})  # fmt: skip
    surge = pod("shipper-x9y8z", container(state="waiting", reason="", message="",
                                            restart_count=0, last_state=None),
                phase="Pending", node_name=None, owner_kind="DaemonSet",
                owner_name="shipper")  # fmt: skip
    c = ctx(
        pods=[old, surge],
        workload=WorkloadSnapshot(kind="DaemonSet", name="shipper", namespace=NS, desired=3,
                                  ready=3, updated=1, available=3),
        events=[event("FailedScheduling",
                      "0/3 nodes are available: 1 node(s) didn't have free ports for the "
                      "requested pod ports, 2 node(s) didn't match Pod's node "
                      "affinity/selector.", name="shipper-x9y8z")],
        alert=alert("KubeDaemonSetRolloutStuck", pod="", container="", daemonset="shipper"),
    )  # fmt: skip
    d = check(c, Category.ROLLOUT_STUCK)
    assert "maxSurge 0" in " ".join(d.immediate_actions) and "shipper-x9y8z" in d.root_cause


def test_memory_evictions_blame_the_node_and_its_unbounded_pod_not_an_oom() -> None:
    from oncallm.models.evidence import NodeCondition, NodeHealthSnapshot, PodWithoutMemoryLimit

    evicted = pod(
        POD,
        container(state="terminated", reason="ContainerStatusUnknown", exit_code=137,
                  restart_count=0, last_state=None, last_exit_code=None,
                  limits={"memory": "768Mi"}),
        phase="Failed", reason="Evicted",
    )  # fmt: skip
    node = NodeSnapshot(name=NODE, conditions={
        "Ready": ("True", "KubeletReady", ""),
        "MemoryPressure": ("True", "KubeletHasInsufficientMemory",
                           "kubelet has insufficient memory available")})  # fmt: skip
    health = NodeHealthSnapshot(
        node=NODE,
        conditions=[NodeCondition(type="MemoryPressure", status="True",
                                  reason="KubeletHasInsufficientMemory")],
        pods_without_memory_limit=[PodWithoutMemoryLimit(
            pod="renderer-1", namespace=NS, owner_kind="Deployment", owner_name="renderer",
            containers=["renderer"], memory_request="512Mi")],
    )  # fmt: skip
    c = ctx(
        pods=[evicted],
        nodes=[node],
        node_health=[health],
        events=[event("Evicted", "The node was low on resource: memory. Threshold quantity: "
                      "100Mi, available: 91244Ki.")],
    )  # fmt: skip
    d = check(c, Category.NODE_NOT_READY)
    assert "renderer-1" in d.root_cause and "MemoryPressure" in d.root_cause


def test_a_python_crash_names_the_programs_own_frame_past_the_libraries() -> None:
    logs = """Traceback (most recent call last):
  File "/app/billing/run.py", line 88, in main
    amount = proration.prorate(plan.price, days, period)
  File "/app/billing/proration.py", line 37, in prorate
    return (price * days / period).quantize(CENT)
  File "/usr/local/lib/python3.12/site-packages/moneyed/classes.py", line 12, in __truediv__
    raise DivisionByZero
decimal.DivisionByZero: [<class 'decimal.DivisionByZero'>]
"""
    c = ctx(pods=[pod(POD, container(last_exit_code=1, restart_count=6))], logs=[log(logs)])
    d = check(c, Category.APP_CRASH_EXCEPTION)
    assert "billing/proration.py:37 in prorate" in d.root_cause


def test_a_forbidden_request_names_the_role_bound_that_lacks_it() -> None:
    from oncallm.models.evidence import RoleBindingSnapshot

    line = (
        'leases.coordination.k8s.io "reaper" is forbidden: User '
        '"system:serviceaccount:orders:api" cannot get resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "orders"'
    )
    binding = RoleBindingSnapshot(
        name="api-leader-election", namespace=NS, role_name="api-leader-election",
        subjects=["ServiceAccount orders/api"],
        rules=[(["get", "update"], ["configmaps"], [""])],
    )  # fmt: skip
    d = check(ctx(logs=[log(line)], role_bindings=[binding]), Category.RBAC_FORBIDDEN)
    assert "Role api-leader-election" in d.root_cause


def test_an_autoscaler_at_its_group_maximum_names_the_node_group_the_pod_may_use() -> None:
    pending = pod(
        POD,
        container(state="waiting", reason="", message="", restart_count=0, last_state=None),
        phase="Pending", node_name=None, placement=["nodeSelector pool=render"],
    )  # fmt: skip
    render = NodeSnapshot(
        name="render-1", labels={"pool": "render", "eks.amazonaws.com/nodegroup": "render-r6i"}
    )
    general = NodeSnapshot(name="general-1", labels={"eks.amazonaws.com/nodegroup": "general"})
    c = ctx(
        pods=[pending],
        nodes=[render, general],
        events=[
            event("FailedScheduling", "0/5 nodes are available: 2 Insufficient memory, 3 "
                  "node(s) didn't match Pod's node affinity/selector."),
            event("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size "
                  "reached, 1 node(s) didn't match Pod's node affinity/selector", type="Normal"),
        ],
    )  # fmt: skip
    d = check(c, Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE)
    assert "render-r6i" in d.root_cause and "general" not in d.root_cause.split("render-r6i")[1]


def test_an_optional_configmap_volume_that_is_missing_names_the_file_the_program_wants() -> None:
    crashed = container(last_exit_code=1, restart_count=4, mounts={"/etc/rules": "rules"})
    logs = "FileNotFoundError: [Errno 2] No such file or directory: '/etc/rules/rules.json'\n"
    c = ctx(
        pods=[pod(POD, crashed, volume_sources={"rules": "ConfigMap inventory-rules"},
                  config_maps=["inventory-rules"])],
        logs=[log(logs)],
        missing_objects=["ConfigMap orders/inventory-rules"],
    )  # fmt: skip
    d = check(c, Category.MISSING_SECRET_OR_CONFIGMAP)
    assert "rules.json" in d.root_cause and "never runs" not in d.root_cause


def test_a_policy_webhook_denying_the_pods_is_the_template_not_the_webhook() -> None:
    c = ctx(
        pods=[],
        events=[
            event(
                "FailedCreate",
                'Error creating: admission webhook "validation.gatekeeper.sh" denied the request: '
                '[container-limits] container <statsd-exporter> does not have <{"memory"}> '
                "limits defined",
                kind="ReplicaSet",
                name="api-6d8f7c9b5",
            )
        ],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
    )
    d = check(c, Category.BAD_CONFIG)
    assert "validation.gatekeeper.sh" in d.root_cause and "statsd-exporter" in d.root_cause


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (
            'Error creating: pods "api-6d8f7c9b5-9kqzt" is forbidden: violates PodSecurity '
            '"restricted:latest": allowPrivilegeEscalation != false (container "api" must set '
            "securityContext.allowPrivilegeEscalation=false)",
            "PodSecurity admission at level restricted:latest",
        ),
        (
            'Error creating: pods "api-6d8f7c9b5-9kqzt" is forbidden: ValidatingAdmissionPolicy '
            "'require-limits' with binding 'require-limits-all' denied request: containers must "
            "set memory limits",
            "ValidatingAdmissionPolicy require-limits",
        ),
        (  # a template naming a class that does not exist (deleted, renamed)
            'Error creating: pods "api-6d8f7c9b5-" is forbidden: no PriorityClass with name '
            "orders-critical was found",
            "priorityClassName orders-critical names no PriorityClass",
        ),
        (
            'Error creating: pods "api-6d8f7c9b5-" is forbidden: pod rejected: RuntimeClass '
            '"gvisor" not found',
            "runtimeClassName gvisor names no RuntimeClass",
        ),
    ],
)
def test_built_in_admission_denying_the_pods_is_the_template(message: str, named: str) -> None:
    c = ctx(
        pods=[],
        events=[event("FailedCreate", message, kind="ReplicaSet", name="api-6d8f7c9b5")],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
    )
    d = check(c, Category.BAD_CONFIG)
    assert named in d.root_cause


def test_an_init_container_template_missing_a_variable_is_bad_config() -> None:
    logs = (
        "Error: renderTemplate: failed to render template /templates/app.yml.tmpl: template: "
        '/templates/app.yml.tmpl:5:71: executing "/templates/app.yml.tmpl" at <.Env.DB_PORT>: '
        'map has no entry for key "DB_PORT"\n'
    )
    init = container(name="render-config", init=True, last_exit_code=1, restart_count=12,
                     state="waiting", reason="CrashLoopBackOff")  # fmt: skip
    c = ctx(pods=[pod(POD, init, phase="Pending")],
            logs=[log(logs, container_name="render-config")])  # fmt: skip
    d = check(c, Category.BAD_CONFIG)
    assert "DB_PORT" in d.root_cause


@pytest.mark.parametrize(
    ("trace", "where"),
    [
        (
            "Unhandled exception. System.NullReferenceException: Object reference not set\n"
            "   at Acme.Export.LineMapper.Map(InvoiceLine line) in /src/Acme.Export/"
            "LineMapper.cs:line 57\n"
            "   at System.Linq.Enumerable.SelectListIterator`2.MoveNext()\n",
            "LineMapper.cs:57 in Acme.Export.LineMapper.Map",
        ),
        (
            "TypeError: Cannot read properties of undefined (reading 'split')\n"
            "    at renderTemplate (/app/dist/handlers/render.js:42:50)\n"
            "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n",
            "render.js:42 in renderTemplate",
        ),
        (
            'Exception in thread "main" java.lang.IllegalStateException: no rate for BGN\n'
            "\tat java.base/java.util.Optional.orElseThrow(Optional.java:403)\n"
            "\tat com.acme.fx.RateTable.lookup(RateTable.java:88)\n",
            "RateTable.java:88 in com.acme.fx.RateTable.lookup",
        ),
    ],
)
def test_a_crash_names_the_programs_own_frame_in_each_language(trace: str, where: str) -> None:
    c = ctx(pods=[pod(POD, container(last_exit_code=1, restart_count=3))], logs=[log(trace)])
    d = check(c, Category.APP_CRASH_EXCEPTION)
    assert where in d.root_cause


def test_a_wildcard_certificate_of_the_search_domain_for_a_public_name_is_dns() -> None:
    line = (
        'level=ERROR msg="partner health check failed" err="Get '
        '\\"https://api.partner.com/v3/health\\": tls: failed to verify certificate: x509: '
        'certificate is valid for *.corp.acme.example, corp.acme.example, not api.partner.com"'
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=1, restart_count=5))], logs=[log(line)])
    d = check(c, Category.DNS_FAILURE)
    assert "ndots" in d.root_cause and "corp.acme.example" in d.root_cause


def test_pid_pressure_with_threads_refused_is_the_node() -> None:
    node = NodeSnapshot(name=NODE, conditions={
        "Ready": ("True", "KubeletReady", ""),
        "PIDPressure": ("True", "KubeletHasInsufficientPID", "kubelet has insufficient PID "
                        "available")})  # fmt: skip
    logs = (
        "[268.118s][warning][os,thread] Failed to start thread - pthread_create failed (EAGAIN)\n"
        'Exception in thread "main" java.lang.OutOfMemoryError: unable to create native thread: '
        "possibly out of memory or process/resource limits reached\n"
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=1, restart_count=4))], nodes=[node],
            logs=[log(logs)])  # fmt: skip
    check(c, Category.NODE_NOT_READY)


def test_a_statefulset_with_on_delete_waits_for_its_pods_to_be_deleted() -> None:
    sts = WorkloadSnapshot(
        kind="StatefulSet", name="clickhouse", namespace=NS, desired=3, ready=3, updated=0,
        update_strategy="OnDelete", current_revision="clickhouse-6f9d", update_revision="clickhouse-7c8b",
        selector={"app": "clickhouse"},
    )  # fmt: skip
    running = pod("clickhouse-0", container(state="running", ready=True, restart_count=0),
                  owner_kind="StatefulSet", owner_name="clickhouse",
                  conditions={"Ready": ("True", "", "")})  # fmt: skip
    c = ctx(pods=[running], workload=sts,
            alert=alert("KubeStatefulSetUpdateNotRolledOut", pod="", container="",
                        statefulset="clickhouse"))  # fmt: skip
    d = check(c, Category.ROLLOUT_STUCK)
    assert "OnDelete" in d.root_cause


def test_a_daemonset_with_on_delete_and_healthy_old_pods_is_the_rollout_itself() -> None:
    ds = WorkloadSnapshot(kind="DaemonSet", name="fluent-bit", namespace=NS, desired=4, ready=4,
                          updated=0, available=4, update_strategy="OnDelete",
                          selector={"app": "fluent-bit"})  # fmt: skip
    running = pod("fluent-bit-x7k2p", container(state="running", ready=True, restart_count=0),
                  owner_kind="DaemonSet", owner_name="fluent-bit",
                  conditions={"Ready": ("True", "", "")})  # fmt: skip
    c = ctx(
        pods=[running],
        workload=ds,
        alert=alert("KubeDaemonSetRolloutStuck", pod="", container="", daemonset="fluent-bit"),
    )
    d = check(c, Category.ROLLOUT_STUCK)
    assert "OnDelete" in d.root_cause and "0/4 updated" in d.root_cause
    # the same DaemonSet rolling by itself is not held by its strategy
    ds_rolling = ds.model_copy(update={"update_strategy": "RollingUpdate", "updated": 4})
    c = ctx(
        pods=[running],
        workload=ds_rolling,
        alert=alert("KubeDaemonSetRolloutStuck", pod="", container="", daemonset="fluent-bit"),
    )
    assert "OnDelete" not in diagnose(c).root_cause


def test_a_name_that_aliases_an_external_record_that_is_gone_is_dns_not_a_dead_service() -> None:
    # an ExternalName Service has no endpoints by design: the failure is its external name
    alias = ServiceSnapshot(name="warehouse-db", namespace=NS, type="ExternalName",
                            external_name="wh-pg-01.db.corp.internal", relation="dependency")  # fmt: skip
    logs = (
        "sync.sh: connecting to warehouse-db:5432 as etl\n"
        'psql: error: could not translate host name "warehouse-db" to address: Name or service '
        "not known\n"
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=2, restart_count=3))], logs=[log(logs)],
            services=[alias])  # fmt: skip
    d = check(c, Category.DNS_FAILURE)
    assert "ExternalName" in d.root_cause and "wh-pg-01.db.corp.internal" in d.root_cause
    assert Category.DEPENDENCY_UNREACHABLE not in [f.category for f in evaluate(c)]


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_a_scrape_refused_by_a_server_bound_to_loopback_is_its_configuration(bind: str) -> None:
    # kubeadm's kube-controller-manager: healthy, serving its secure port on 127.0.0.1 only
    svc = ServiceSnapshot(name="kps-kube-controller-manager", namespace=NS, cluster_ip="None",
                          selector={"component": "kube-controller-manager"},
                          ports=["10257/TCP->10257"], ready_endpoints=1, matching_pods=[POD],
                          relation="target")  # fmt: skip
    kcm = container(name="kube-controller-manager", state="running", ready=True,
                    restart_count=0, reason="", message="", last_state=None,
                    last_reason="", last_exit_code=None,
                    command=["kube-controller-manager", "--allocate-node-cidrs=true",
                             f"--bind-address={bind}", "--leader-elect=true"])  # fmt: skip
    serving = f"I1127 22:19:57.992039 1 secure_serving.go:213] Serving securely on {bind}:10257\n"
    c = ctx(pods=[pod(POD, kcm, conditions={"Ready": ("True", "", "")})],
            logs=[log(serving, container_name="kube-controller-manager", previous=False)], services=[svc],
            alert=alert("TargetDown", pod="", container="", job="kube-controller-manager",
                        service="kps-kube-controller-manager"))  # fmt: skip
    if bind == "0.0.0.0":
        assert "scrape-on-loopback" not in [f.rule for f in evaluate(c)]
        return
    d = check(c, Category.BAD_CONFIG)
    assert "--bind-address=127.0.0.1" in d.root_cause and "10257" in d.root_cause


def test_timeouts_under_several_egress_policies_name_them_all() -> None:
    deny = NetworkPolicySnapshot(name="default-deny-all", namespace=NS, policy_types=["Egress"],
                                 selects_target=True)  # fmt: skip
    dns = NetworkPolicySnapshot(name="allow-dns", namespace=NS, policy_types=["Egress"],
                                selects_target=True, egress=["namespaces kube-system ports 53/UDP"])  # fmt: skip
    pg = NetworkPolicySnapshot(name="allow-egress-postgres", namespace=NS, policy_types=["Egress"],
                               selects_target=True, egress=["ipBlock 10.80.0.0/16 ports 5432/TCP"])  # fmt: skip
    logs = "2025-07-01T10:00:00Z ERROR dial tcp 10.80.4.2:3307: i/o timeout\n"
    c = ctx(network_policies=[deny, dns, pg], logs=[log(logs)])
    d = check(c, Category.NETWORK_POLICY_BLOCK)
    assert "allow-egress-postgres" in d.root_cause and "5432/TCP" in d.root_cause


VAULT_403 = """
2026-11-20T09:57:02.114Z [INFO]  agent.auth.handler: authenticating
2026-11-20T09:57:02.131Z [ERROR] agent.auth.handler: error authenticating:
  error=
  | Error making API request.
  |
  | URL: PUT https://vault.vault.svc:8200/v1/auth/kubernetes/login
  | Code: 403. Errors:
  |
  | * permission denied
   backoff=1s
2026-11-20T09:57:02.131Z [INFO]  agent: exit_after_auth is true and auth failed, exiting
"""


def test_vault_refusing_the_pods_service_account_is_rbac_with_the_renamed_account() -> None:
    agent = container(name="vault-agent-init", init=True, last_exit_code=1)
    renamed = deployment(
        revisions=[
            RevisionSnapshot(
                name="api-7d9f8c6b5",
                revision=12,
                changes=["serviceAccountName: api -> api-v2"],
            )
        ]
    )
    c = ctx(
        pods=[
            pod(POD, agent, service_account="api-v2", identity={"vault.hashicorp.com/role": "api"})
        ],
        logs=[log(VAULT_403, container_name="vault-agent-init")],
        workload=renamed,
    )
    d = check(c, Category.RBAC_FORBIDDEN)
    assert "ServiceAccount orders/api-v2" in d.root_cause and "Vault role api" in d.root_cause
    assert "serviceAccountName: api -> api-v2" in d.root_cause
    assert "revision/api-7d9f8c6b5" in d.evidence
    assert "system:auth-delegator" in " ".join(d.immediate_actions)


def test_a_file_permission_denied_is_not_a_refused_identity() -> None:
    c = ctx(logs=[log("open /vault/secrets/db.env: permission denied\npanic: cannot read secrets")])
    assert diagnose(c).category is not Category.RBAC_FORBIDDEN


@pytest.mark.parametrize(
    "line",
    [
        "kubernetes.client.exceptions.ApiException: (401)",
        'HTTP response body: {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        '"message":"Unauthorized","reason":"Unauthorized","code":401}',
        "E1120 reflector.go:147] failed to list *v1.ConfigMap: Unauthorized: the server has "
        "asked for the client to provide credentials",
        "io.fabric8.kubernetes.client.KubernetesClientException: Failure executing: GET at: "
        "https://10.96.0.1:443/api/v1/namespaces/orders/configmaps. Message: Unauthorized.",
    ],
)
def test_the_kubernetes_api_refusing_the_pods_token_is_an_auth_failure(line: str) -> None:
    c = ctx(logs=[log(f"2026-11-20 08:40:05 ERROR list configmaps failed\n{line}")])
    d = check(c, Category.RBAC_FORBIDDEN)
    assert "401 Unauthorized" in d.root_cause and "token" in d.root_cause
    assert any("rollout restart" in cmd for cmd in d.commands)


def test_a_401_from_another_http_api_is_not_the_pods_token() -> None:
    c = ctx(logs=[log("ERROR POST https://api.partner.example/v2/orders -> 401 Unauthorized")])
    assert diagnose(c).category is not Category.RBAC_FORBIDDEN


def test_a_dependency_outage_the_program_copes_with_is_not_its_crash() -> None:
    logs = (
        '{"level":"WARN","msg":"pricing rules unavailable, using defaults","err":"Get '
        '\\"http://pricing.orders.svc/rules\\": dial tcp 10.96.35.9:80: connect: connection '
        'refused"}\n'
        "panic: assignment to entry in nil map\n\ngoroutine 1 [running]:\n"
        "github.com/acme/orders-api/internal/catalog.(*Index).AddFacet(0xc0001a2000)\n"
        "\t/src/internal/catalog/index.go:88 +0x1c5\n"
    )
    pricing = ServiceSnapshot(
        name="pricing",
        namespace=NS,
        selector={"app": "pricing"},
        ports=["80/TCP->8080"],
        relation="dependency",
    )
    c = ctx(logs=[log(logs)], services=[pricing])
    d = check(c, Category.APP_CRASH_EXCEPTION)
    assert "nil map" in d.root_cause
    # The same outage, with no word that the program copes, is the dependency.
    crashed = logs.replace("using defaults", "exiting")
    check(ctx(logs=[log(crashed)], services=[pricing]), Category.DEPENDENCY_UNREACHABLE)


def test_a_readiness_probe_the_app_answers_with_500_proves_no_cause_by_itself() -> None:
    ready_probe = event(
        "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500", count=96
    )
    c = ctx(pods=[pod(POD, container(state="running", reason="", restart_count=0))],
            events=[ready_probe])  # fmt: skip
    d = diagnose(c)
    assert d.category is Category.UNKNOWN
    assert "statuscode: 500" in d.summary
    # A probe that times out is the probe's own failure.
    slow = event(
        "Unhealthy",
        'Readiness probe failed: Get "http://10.42.1.17:8080/ready": context deadline exceeded',
        count=96,
    )
    c = ctx(pods=[pod(POD, container(state="running", reason="", restart_count=0))],
            events=[slow])  # fmt: skip
    assert diagnose(c).category is Category.FAILING_PROBE


def test_a_node_at_its_pod_limit_is_unschedulable_capacity_naming_who_fills_it() -> None:
    full = node().model_copy(update={"allocatable": {"cpu": "1930m", "memory": "3Gi",
                                                     "pods": "17"}, "pods": 17})  # fmt: skip
    workers = [
        pod(f"thumbs-5d8f7c9b6-{i:05d}", container(state="running", reason="", restart_count=0),
            owner_kind="Deployment", owner_name="thumbs")
        for i in range(15)
    ]  # fmt: skip
    a = Alert.model_validate(
        {"status": "firing", "startsAt": "2025-05-14T09:40:00Z", "fingerprint": "0c1d2e3f4a5b6c7d",
         "labels": {"alertname": "KubeletTooManyPods", "node": NODE, "severity": "info"}}
    )  # fmt: skip
    c = ctx(alert=a, target=TargetRef(kind="Node", name=NODE), pods=workers, nodes=[full],
            workload=None)  # fmt: skip
    d = check(c, Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE)
    assert "17 pods of 17 allocatable" in d.root_cause
    assert f"Deployment {NS}/thumbs (15)" in d.root_cause
    # The same node with room for pods is no finding.
    roomy = full.model_copy(update={"allocatable": {"pods": "110"}})
    assert diagnose(ctx(alert=a, target=TargetRef(kind="Node", name=NODE), pods=workers,
                        nodes=[roomy], workload=None)).category is Category.UNKNOWN  # fmt: skip


def test_a_sidecar_configured_with_an_instance_that_does_not_exist_is_bad_config() -> None:
    proxy = container(
        name="cloud-sql-proxy",
        command=["/cloud-sql-proxy", "--port=5432", "acme-prod:europe-west1:orders-pg-15"],
        env={},
        last_exit_code=1,
    )
    app = container(env={"DB_HOST": "127.0.0.1"})
    c = ctx(
        pods=[pod(POD, app, proxy)],
        logs=[
            log(
                '{"severity":"ERROR","message":"failed to get instance metadata (connection name '
                '= \\"acme-prod:europe-west1:orders-pg-15\\"): googleapi: Error 404: The Cloud '
                'SQL instance does not exist., instanceDoesNotExist"}',
                container_name="cloud-sql-proxy",
            ),
            log(
                "psycopg.OperationalError: connection failed: connection to server at "
                '"127.0.0.1", port 5432 failed: Connection refused'
            ),
        ],
    )
    d = check(c, Category.BAD_CONFIG)
    assert "cloud-sql-proxy" in d.root_cause and "orders-pg-15" in d.root_cause
    assert "DB_HOST" not in d.root_cause


def test_a_refused_connection_quoting_an_env_value_does_not_blame_the_value() -> None:
    c = ctx(
        pods=[pod(POD, container(env={"DB_HOST": "10.0.4.12"}))],
        logs=[log('psycopg.OperationalError: connection to server at "10.0.4.12", port 5432 '
                  "failed: Connection refused")],
    )  # fmt: skip
    d = diagnose(c)
    assert not (d.category is Category.BAD_CONFIG and "DB_HOST" in d.root_cause)


def test_a_database_volume_filled_by_an_inactive_replication_slot() -> None:
    a = alert("KubePersistentVolumeFillingUp", persistentvolumeclaim="data-pg-0")
    line = ('2026-11-20 09:40:41 GMT [1042] WARNING:  max_slot_wal_keep_size is -1; replication '
            'slot "debezium_orders" (inactive) retains 187 GB of WAL')  # fmt: skip
    c = ctx(
        alert=a,
        target=TargetRef(kind="PersistentVolumeClaim", namespace=NS, name="data-pg-0"),
        logs=[log(line, previous=False)],
    )
    d = check(c, Category.DISK_PRESSURE)
    assert "debezium_orders" in d.root_cause and "data-pg-0" in d.root_cause
    # The same line under another alert is not this finding.
    assert diagnose(ctx(logs=[log(line, previous=False)])).category is not Category.DISK_PRESSURE


@pytest.mark.parametrize(
    "line",
    [
        "worker.py: error: unrecognized arguments: --batch-size=500",
        "etl: error: argument --mode: invalid choice: 'full' (choose from 'incremental', 'rebuild')",
        "Error: No such option: --dry-run",
        "flag needs an argument: -config",
        'Error: unknown command "serve" for "ledgerd"',
        "Unrecognized VM option 'UseCGroupMemoryLimitForHeap'",
        "node: bad option: --experimental-loader-x",
    ],
)
def test_a_program_refusing_its_command_line_is_bad_config(line: str) -> None:
    c = ctx(logs=[log(f"2025-05-14T09:49:00Z starting\n{line}")])
    check(c, Category.BAD_CONFIG)


def test_a_server_container_whose_command_completes_is_restarted_in_a_loop_bad_config() -> None:
    web = container(
        name="web",
        command=["python", "manage.py", "migrate", "--noinput"],
        last_reason="Completed",
        last_exit_code=0,
        restart_count=6,
    )
    c = ctx(pods=[pod(POD, web)], logs=[log("Operations to perform:\n  No migrations to apply.",
                                            container_name="web")])  # fmt: skip
    d = check(c, Category.BAD_CONFIG)
    assert "manage.py migrate" in d.root_cause and "exit 0" in d.root_cause
    # The same exit 0 after the kubelet killed it for a failing liveness probe is the probe's.
    killed = c.model_copy(update={"events": [event(
        "Unhealthy", 'Liveness probe failed: Get "http://10.0.0.5:8080/health": 404', count=9
    )]})  # fmt: skip
    assert diagnose(killed).category is not Category.BAD_CONFIG


def test_a_client_without_its_service_account_token_is_bad_config() -> None:
    line = ('ERROR setup unable to get kubeconfig {"error": "open /var/run/secrets/kubernetes.io/'
            'serviceaccount/token: no such file or directory"}')  # fmt: skip
    no_token = pod(POD, container(last_exit_code=255)).model_copy(update={"automount_token": False})
    d = check(ctx(pods=[no_token], logs=[log(line)]), Category.BAD_CONFIG)
    assert "automountServiceAccountToken: false" in d.root_cause


def test_a_bootstrap_check_on_a_kernel_setting_is_bad_config_with_its_detail() -> None:
    logs = ("ERROR: [1] bootstrap checks failed\n[1]: max virtual memory areas vm.max_map_count "
            "[65530] is too low, increase to at least [262144]\n")  # fmt: skip
    d = check(ctx(pods=[pod(POD, container(last_exit_code=78))], logs=[log(logs)]),
              Category.BAD_CONFIG)  # fmt: skip
    assert "vm.max_map_count" in d.root_cause


def test_a_statefulset_pod_failing_on_a_superseded_revision_is_the_stuck_rollout() -> None:
    sts = WorkloadSnapshot(
        kind="StatefulSet", name="store", namespace=NS, desired=3, ready=2, updated=0,
        current_revision="store-6d5c8b7f9", update_revision="store-7b9d6c5f48",
        update_strategy="RollingUpdate",
    )  # fmt: skip
    broken = pod("store-2", container(last_exit_code=1),
                 labels={"controller-revision-hash": "store-84f7c6d9b5"})  # fmt: skip
    flag = "Unrecognized VM option 'MaxGCPauseMilis=50'\nError: Could not create the Java VM."
    c = ctx(workload=sts, pods=[broken], logs=[log(flag, pod_name="store-2")],
            alert=alert("KubeStatefulSetUpdateNotRolledOut", pod="", container="",
                        statefulset="store"))  # fmt: skip
    d = check(c, Category.ROLLOUT_STUCK)
    assert "store-84f7c6d9b5" in d.root_cause and "delete pod store-2" in " ".join(d.commands)
    # The same failure on the revision the StatefulSet wants is the pod's own config.
    current = broken.model_copy(update={"labels": {"controller-revision-hash": "store-7b9d6c5f48"}})
    check(c.model_copy(update={"pods": [current]}), Category.BAD_CONFIG)


def _disk_ctx(uses: list[EphemeralStorageUse]) -> Context:
    name = "orders-worker-2"
    pressure = node(name, DiskPressure=("True", "KubeletHasDiskPressure", "disk pressure"))
    pressure.allocatable["ephemeral-storage"] = "76224326324"  # 71 GiB
    victim = pod(
        POD,
        container(state="terminated", reason="ContainerStatusUnknown", exit_code=137),
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: ephemeral-storage. Threshold quantity: "
        "8294266880, available: 7761604Ki. Container api was using 84Ki, request is 0, has "
        "larger consumption of ephemeral-storage. ",
        node_name=name,
    )
    return ctx(
        pods=[victim],
        nodes=[pressure],
        node_storage=[NodeStorageSnapshot(node=name, disk_pressure=True, evictions=2, pods=uses)],
        alert=alert("KubeDeploymentReplicasMismatch", pod="", container="", deployment="api"),
        target=TargetRef(kind="Deployment", namespace=NS, name="api"),
    )


def _use(pod_name: str, used: str | None, **kw: Any) -> EphemeralStorageUse:
    return EphemeralStorageUse(
        pod=pod_name,
        namespace=NS,
        owner_kind="Deployment",
        owner_name=pod_name.rsplit("-", 2)[0],
        usage={"main": used} if used else {},
        used_bytes=parse_quantity(used) if used else None,
        **kw,
    )


def test_an_evicted_pod_that_used_most_of_the_nodes_disk_is_its_filler_not_a_victim() -> None:
    filler = _use("transcoder-7cf277c8d9-x7rz8", "61203348Ki", evicted=True, phase="Failed")
    victim = _use(f"{POD}", "84Ki", evicted=True, phase="Failed")
    d = check(_disk_ctx([filler, victim]), Category.DISK_PRESSURE)
    assert "transcoder-7cf277c8d9-x7rz8" in d.root_cause


def test_an_evicted_pod_using_a_little_is_a_victim_beside_an_unbounded_writer() -> None:
    evicted = _use("jupyter-apatel-5c9d8-abcde", "1302116Ki", evicted=True, phase="Failed")
    writer = _use(
        "jupyter-dkowalski-6f7b9-fghij",
        None,
        phase="Running",
        empty_dirs=[EmptyDirVolume(name="scratch")],
    )
    d = check(_disk_ctx([evicted, writer]), Category.DISK_PRESSURE)
    assert "jupyter-dkowalski-6f7b9-fghij" in d.root_cause
    assert "jupyter-apatel" not in d.root_cause


# --- session 6: the volume that fills, the store that is full, probes of a new revision ----------


def _volume_metrics(free: float, size: float, per_hour: float) -> list[MetricSnapshot]:
    key = f'namespace="{NS}",persistentvolumeclaim="uploads"'
    return [
        MetricSnapshot(name="volume_available_bytes", query="q", values={key: free}),
        MetricSnapshot(name="volume_capacity_bytes", query="q", values={key: size}),
        MetricSnapshot(name="volume_available_per_hour", query="q", values={key: per_hour}),
    ]


def _filling_ctx(metrics: list[MetricSnapshot]) -> Context:
    return ctx(
        alert=alert("KubePersistentVolumeFillingUp", persistentvolumeclaim="uploads", pod=""),
        target=TargetRef(kind="PersistentVolumeClaim", namespace=NS, name="uploads"),
        pods=[pod(POD, container(ready=True, state="running", restart_count=0), pvcs=["uploads"])],
        metrics=metrics,
    )


def test_a_claim_filling_with_no_deeper_cause_is_disk_pressure_with_its_pace() -> None:
    gib = 1024**3
    d = check(_filling_ctx(_volume_metrics(20 * gib, 200 * gib, -2 * gib)), Category.DISK_PRESSURE)
    assert "uploads" in d.root_cause and "10%" in d.root_cause
    assert "full in about 10 hours" in d.root_cause and POD in d.root_cause


def test_a_broker_volume_filled_by_a_queue_nobody_consumes_names_the_queue() -> None:
    gib = 1024**3

    def queue(name: str) -> str:
        return f'{{queue="{name}",vhost="/"}}'

    metrics = [
        *_volume_metrics(4 * gib, 50 * gib, -0.1 * gib),
        MetricSnapshot(name="queue_messages", query="q",
                       values={queue("invoices.dlq"): 2_415_772, queue("invoices.render"): 40}),
        MetricSnapshot(name="queue_consumers", query="q",
                       values={queue("invoices.dlq"): 0, queue("invoices.render"): 8}),
    ]  # fmt: skip
    d = check(_filling_ctx(metrics), Category.DISK_PRESSURE)
    assert "queue invoices.dlq: 2,415,772 messages ready and no consumer" in d.root_cause
    assert "invoices.dlq" in d.immediate_actions[0]
    # consumed, the queue explains nothing
    metrics[-1] = MetricSnapshot(name="queue_consumers", query="q",
                                 values={queue("invoices.dlq"): 2})  # fmt: skip
    assert "invoices.dlq" not in diagnose(_filling_ctx(metrics)).root_cause


def test_a_claim_that_has_space_again_is_not_filling() -> None:
    gib = 1024**3
    d = diagnose(_filling_ctx(_volume_metrics(235 * gib, 500 * gib, 0.0)))
    assert d.category is not Category.DISK_PRESSURE


def test_an_inodes_alert_is_judged_on_inodes_and_the_writers_enospc_proves_it() -> None:
    """Bytes are plentiful, inodes are used up: the inodes alert stands on the inode stats,
    and the writer's ENOSPC makes the filled volume the cause over an old probe failure."""
    gib = 1024**3
    key = f'namespace="{NS}",persistentvolumeclaim="uploads"'
    metrics = [
        *_volume_metrics(120 * gib, 200 * gib, -0.1 * gib),
        MetricSnapshot(name="volume_inodes_free", query="q", values={key: 1210}),
        MetricSnapshot(name="volume_inodes", query="q", values={key: 1_310_720}),
    ]
    c = _filling_ctx(metrics)
    c.alert = alert("KubePersistentVolumeInodesFillingUp", persistentvolumeclaim="uploads", pod="")
    c.logs = [log("error--- ENOSPC: no space left on device, mkdir '/data/a/b'", previous=False)]
    c.events = [event("Unhealthy", "Liveness probe failed: context deadline exceeded", count=1)]
    d = check(c, Category.DISK_PRESSURE)
    assert "1,210 of 1,310,720 inodes free" in d.root_cause and "ENOSPC" in d.root_cause
    assert d.confidence >= 0.9
    c.metrics = [
        *metrics[:3],
        MetricSnapshot(name="volume_inodes_free", query="q", values={key: 900_000}),
        MetricSnapshot(name="volume_inodes", query="q", values={key: 1_310_720}),
    ]
    assert "inodes free" not in diagnose(c).root_cause


def test_a_store_refusing_writes_for_disk_names_the_fullest_claim_not_the_env_value() -> None:
    line = (
        "elasticsearch.helpers.BulkIndexError: 500 document(s) failed to index. First error: "
        "{'index': {'_index': 'products-v7', 'status': 429, 'error': {'type': "
        "'cluster_block_exception', 'reason': 'index [products-v7] blocked by: "
        "[TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has "
        "read-only-allow-delete block];'}}}"
    )
    fullest = MetricSnapshot(
        name="fullest_volumes",
        query="q",
        values={
            f'namespace="{NS}",persistentvolumeclaim="data-es-1"': 0.029,
            f'namespace="{NS}",persistentvolumeclaim="data-es-0"': 0.41,
        },
    )
    c = ctx(
        pods=[pod(POD, container(env={"INDEX": "products-v7"}))],
        logs=[log(f"2025-05-14 09:49:00,112 INFO indexer: starting\n{line}")],
        metrics=[fullest],
    )
    d = check(c, Category.DISK_PRESSURE)
    assert "data-es-1" in d.root_cause and "flood-stage" in d.root_cause
    assert "INDEX" not in d.root_cause


def test_a_missing_name_logged_at_info_level_is_a_fallback_not_bad_config() -> None:
    c = ctx(
        pods=[pod(POD, container(env={"INDEX": "products-v7"}))],
        logs=[log("2025-05-14 09:49:00,112 INFO indexer: alias products-live not found, "
                  "writing to products-v7 directly\nTraceback (most recent call last):\n"
                  "RuntimeError: bulk write failed")],
    )  # fmt: skip
    d = diagnose(c)
    assert not (d.category is Category.BAD_CONFIG and "products-v7" in d.root_cause)


def test_a_liveness_probe_that_restarts_a_new_revisions_pods_wins_over_its_readiness() -> None:
    rev = RevisionSnapshot(
        name="api-7d9f8c6b5",
        revision=13,
        images={"api": "ghcr.io/acme/orders-api:2.15.0"},
        changes=["api.env.MANAGEMENT_PORT: (unset) -> 8081"],
    )
    c = ctx(
        workload=deployment(revisions=[rev]),
        events=[
            event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404",
                  count=96),
            event("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404",
                  count=24),
            event("Killing", "Container api failed liveness probe, will be restarted", count=7),
        ],
    )  # fmt: skip
    d = check(c, Category.FAILING_PROBE)
    assert "liveness" in d.summary and "8081" in d.root_cause


def test_a_liveness_restart_that_cleared_the_failures_is_a_passing_state() -> None:
    running = container(
        ready=True, state="running", restart_count=1, started_at="2025-05-14T09:51:00Z"
    )
    c = ctx(
        alert=alert("KubePodNotReady"),
        pods=[pod(POD, running, conditions={"Ready": ("True", "", "")})],
        events=[
            event("Unhealthy", "Liveness probe failed: context deadline exceeded", count=3),
            event("Killing", "Container api failed liveness probe, will be restarted", count=1),
        ],
    )
    assert diagnose(c).category is not Category.FAILING_PROBE


def test_an_untrusted_server_certificate_names_the_ca_bundle_the_pod_mounts() -> None:
    c = ctx(
        pods=[pod(POD, container(), config_maps=["internal-ca-bundle", "api-config"])],
        logs=[log("curl: (60) SSL certificate problem: unable to get local issuer certificate")],
    )
    d = check(c, Category.CERT_EXPIRED)
    assert "internal-ca-bundle" in d.root_cause and "api-config" not in d.root_cause


def test_a_service_port_no_pod_declares_says_which_ports_they_do() -> None:
    redis = ServiceSnapshot(
        name="cart-redis",
        namespace=NS,
        relation="dependency",
        ready_endpoints=1,
        unserved_ports=["6379->6379"],
        declared_ports=[6380],
    )
    c = ctx(
        services=[redis],
        logs=[log("redis.exceptions.ConnectionError: Error 111 connecting to cart-redis:6379. "
                  "Connection refused.")],
    )  # fmt: skip
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "they declare 6380" in d.root_cause


def test_a_long_error_keeps_the_api_error_code_cut_from_its_middle() -> None:
    from oncallm.analysis.rules.base import quote_line

    text = (
        'failed to provision volume with StorageClass "gp3": rpc error: code = Internal desc = '
        'Could not create volume "pvc-1": could not create volume in EC2: operation error EC2: '
        "CreateVolume, https response error StatusCode: 400, RequestID: 5f1c, api error "
        "VolumeLimitExceeded: You have exceeded your maximum gp3 storage limit of 50 TiB in this "
        "region. Please contact AWS Support to request an Elastic Block Store service limit "
        "increase."
    )
    assert "VolumeLimitExceeded" in quote_line(text, 200)


def test_a_probe_timing_out_in_a_throttled_container_is_the_cpu_limit() -> None:
    throttled = MetricSnapshot(
        name="cpu_throttled_ratio",
        query="sum by (pod, container) (increase(container_cpu_cfs_throttled_periods_total[5m]))",
        values={f'container="api",pod="{POD}"': 0.62},
    )
    timeout = (
        'Liveness probe failed: Get "http://10.42.1.7:8080/healthz": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )
    events = [
        event("Unhealthy", timeout, count=14),
        event("Killing", "Container api failed liveness probe, will be restarted", count=4),
    ]
    d = check(ctx(events=events, metrics=[throttled]), Category.CPU_THROTTLING)
    assert "62%" in d.root_cause and "500m" in d.root_cause
    # without the throttling, the same timeouts are the probe's
    assert diagnose(ctx(events=events)).category is Category.FAILING_PROBE


def test_a_readiness_probe_whose_command_the_image_lacks_is_a_proven_probe_fault() -> None:
    errored = (
        "Readiness probe errored: rpc error: code = Unknown desc = failed to exec in container: "
        "OCI runtime exec failed: exec failed: unable to start container process: exec: "
        '"/bin/grpc_health_probe": stat /bin/grpc_health_probe: no such file or directory: unknown'
    )
    running = container(ready=False, state="running", restart_count=0)
    d = check(
        ctx(pods=[pod(POD, running)], events=[event("Unhealthy", errored, count=40)]),
        Category.FAILING_PROBE,
    )
    assert "cannot run the probe's command" in d.root_cause


def test_a_liveness_probe_that_kills_a_container_mid_start_says_where_the_start_was() -> None:
    refused = (
        'Liveness probe failed: Get "http://10.31.6.201:8081/health": dial tcp '
        "10.31.6.201:8081: connect: connection refused"
    )
    api = container(
        last_exit_code=143,
        liveness_probe="http GET /health port 8081 delay=45s timeout=2s period=10s failureThreshold=3",
    )
    starting = [
        "2025-05-14T09:40:10Z INFO Starting ledger-api 4.19.0",
        "2025-05-14T09:40:18Z INFO HikariPool-1 - Start completed.",
        "2025-05-14T09:40:19Z INFO Migrating schema ledger to version 142 - backfill currency",
    ]
    probe_events = [
        event("Unhealthy", refused, count=24),
        event("Killing", "Container api failed liveness probe, will be restarted", count=8),
    ]
    d = check(
        ctx(pods=[pod(POD, api)], events=probe_events, logs=[log("\n".join(starting))]),
        Category.FAILING_PROBE,
    )
    assert "still starting" in d.root_cause and "version 142" in d.root_cause
    assert "75 s" in d.root_cause and "startupProbe" in d.immediate_actions[0]
    # a previous instance that said it serves was not killed mid-start
    served = [*starting, "2025-05-14T09:40:31Z INFO Started LedgerApi in 21.9 seconds"]
    d = diagnose(ctx(pods=[pod(POD, api)], events=probe_events, logs=[log("\n".join(served))]))
    assert d.category is Category.FAILING_PROBE and "still starting" not in d.root_cause


def test_a_server_bound_to_loopback_refusing_its_probe_is_bad_config() -> None:
    refused = (
        'Readiness probe failed: Get "http://10.64.2.143:8000/healthz/": dial tcp '
        "10.64.2.143:8000: connect: connection refused"
    )
    web = container(
        ready=False,
        state="running",
        restart_count=0,
        config_env={"GUNICORN_CMD_ARGS": "--bind 127.0.0.1:8000 --workers 4"},
        config_env_source={"GUNICORN_CMD_ARGS": "web-gunicorn"},
    )
    d = check(
        ctx(pods=[pod(POD, web)], events=[event("Unhealthy", refused, count=90)]),
        Category.BAD_CONFIG,
    )
    assert "GUNICORN_CMD_ARGS" in d.root_cause and "web-gunicorn" in d.root_cause
    # bound to all addresses, the refusal is the probe's own
    web.config_env["GUNICORN_CMD_ARGS"] = "--bind 0.0.0.0:8000"
    assert diagnose(ctx(pods=[pod(POD, web)], events=[event("Unhealthy", refused)])).category is (
        Category.FAILING_PROBE
    )


def test_an_hpa_on_memory_under_a_fixed_jvm_heap_is_bad_config_not_load() -> None:
    hpa = HPASnapshot(
        name="api",
        namespace=NS,
        target_kind="Deployment",
        target_name="api",
        min_replicas=2,
        max_replicas=6,
        current_replicas=6,
        desired_replicas=6,
        conditions={"ScalingLimited": ("True", "TooManyReplicas", "the desired replica count is more than the maximum replica count")},
        metrics=["cpu current 7", "memory current 88", "cpu target 60", "memory target 70"],
    )  # fmt: skip
    jvm = container(
        ready=True,
        state="running",
        restart_count=0,
        requests={"cpu": "1", "memory": "2Gi"},
        env={"JAVA_TOOL_OPTIONS": "-Xms1536m -Xmx1536m -XX:+AlwaysPreTouch"},
    )
    c = ctx(
        alert=alert("KubeHpaMaxedOut", pod="", container="", horizontalpodautoscaler="api"),
        target=TargetRef(kind="HorizontalPodAutoscaler", namespace=NS, name="api"),
        pods=[pod(POD, jvm, conditions={"Ready": ("True", "", "")})],
        hpas=[hpa],
    )
    d = check(c, Category.BAD_CONFIG)
    assert "-Xms1536m" in d.root_cause and "75%" in d.root_cause
    # a heap below the target leaves the HPA to real load
    jvm.env["JAVA_TOOL_OPTIONS"] = "-Xms512m -Xmx1536m"
    assert diagnose(c).category is Category.HPA_MAXED


def test_an_ordered_ready_statefulset_waiting_for_a_quorum_is_the_stuck_rollout() -> None:
    from oncallm.models.evidence import DNSSnapshot

    zk = WorkloadSnapshot(
        kind="StatefulSet", name="zk", namespace=NS, desired=3, ready=0,
        pod_management_policy="OrderedReady",
    )  # fmt: skip
    zk0 = pod(
        "zk-0",
        container(name="zk", ready=False, state="running", restart_count=0, reason="",
                  message="", last_state=None, last_reason="", last_exit_code=None,
                  readiness_probe="exec sh -c echo srvr | nc 127.0.0.1 2181 | grep Mode"),
        owner_kind="StatefulSet", owner_name="zk",
    )  # fmt: skip
    unknown_host = (
        "WARN  Cannot open channel to 1 at election address "
        "zk-1.zk-headless.orders.svc.cluster.local:3888 java.net.UnknownHostException: "
        "zk-1.zk-headless.orders.svc.cluster.local"
    )
    c = ctx(
        alert=alert("KubeStatefulSetReplicasMismatch", pod="", container="", statefulset="zk"),
        target=TargetRef(kind="StatefulSet", namespace=NS, name="zk"),
        workload=zk,
        pods=[zk0],
        logs=[log(unknown_host, pod_name="zk-0", container_name="zk", previous=False)],
        dns=DNSSnapshot(trigger=unknown_host, absent_pod=f"{NS}/zk-1"),
        events=[event("Unhealthy", "Readiness probe failed: ", name="zk-0", count=200)],
    )
    d = check(c, Category.ROLLOUT_STUCK)
    assert "OrderedReady" in d.root_cause and "zk-1" in d.root_cause
    # with Parallel, the missing members are not the policy's doing
    zk.pod_management_policy = "Parallel"
    assert diagnose(c).category is not Category.ROLLOUT_STUCK


def test_a_throttling_limit_the_limitranger_set_names_its_limitrange() -> None:
    from oncallm.models.evidence import LimitRangeSnapshot

    throttled = MetricSnapshot(
        name="cpu_throttled_ratio", query="q", values={f'container="api",pod="{POD}"': 0.87}
    )
    api = container(
        ready=True, state="running", restart_count=0, limits={"cpu": "200m"},
        defaulted=["cpu limit"],
    )  # fmt: skip
    c = ctx(
        alert=alert("CPUThrottlingHigh"),
        pods=[pod(POD, api, conditions={"Ready": ("True", "", "")})],
        metrics=[throttled],
        limit_ranges=[
            LimitRangeSnapshot(
                name="container-defaults", namespace=NS, limits=["Container default cpu=200m"]
            )
        ],
    )
    d = check(c, Category.CPU_THROTTLING)
    assert "LimitRange container-defaults" in d.root_cause and "200m" in d.root_cause


def test_an_aws_api_refusing_a_pods_irsa_role_is_its_identity_refused() -> None:
    line = (
        'level=error caller=flush.go:261 msg="failed to flush" err="store put chunk: '
        'AccessDenied: Access Denied\\n\\tstatus code: 403, request id: 5FF05E38A527D8CA"'
    )
    role = "arn:aws:iam::604118230871:role/orders-s3"
    irsa = container(ready=True, state="running", restart_count=0, env={"AWS_ROLE_ARN": role})
    d = check(ctx(pods=[pod(POD, irsa)], logs=[log(line, previous=False)]), Category.RBAC_FORBIDDEN)
    assert "orders-s3" in d.root_cause and "AccessDenied" in d.root_cause
    # without an IAM role of the pod's, an AccessDenied is not its identity
    plain = container(ready=True, state="running", restart_count=0)
    assert (
        diagnose(ctx(pods=[pod(POD, plain)], logs=[log(line, previous=False)])).category
        is not Category.RBAC_FORBIDDEN
    )


def test_an_exit_137_with_memory_measured_far_below_the_limit_is_not_an_oom() -> None:
    killed = container(last_reason="Error", last_exit_code=137, limits={"memory": "2Gi"})
    used = MetricSnapshot(
        name="memory_working_set_bytes",
        query="q",
        values={f'container="api",pod="{POD}"': 560 * 1024**2},
    )
    assert diagnose(ctx(pods=[pod(POD, killed)], metrics=[used])).category is not (
        Category.OOM_KILLED
    )
    near = MetricSnapshot(
        name="memory_working_set_bytes", query="q", values={f'container="api",pod="{POD}"': 2e9}
    )
    assert diagnose(ctx(pods=[pod(POD, killed)], metrics=[near])).category is Category.OOM_KILLED


def test_run_as_non_root_with_an_image_running_as_root_is_bad_config() -> None:
    refused = container(
        restart_count=0,
        reason="CreateContainerConfigError",
        message='container has runAsNonRoot and image will run as root (pod: "x", container: api)',
        last_state=None,
        last_reason="",
        last_exit_code=None,
    )
    d = check(ctx(pods=[pod(POD, refused)]), Category.BAD_CONFIG)
    assert "runAsNonRoot" in d.root_cause


@pytest.mark.parametrize(
    ("listens", "blamed"),
    [
        ("Listening on 127.0.0.1:5432", "IPv4 only"),
        ("Listening on 127.0.0.1:5433", "listens on port 5433"),
        ("Listening on [::]:5432", None),
    ],
)
def test_a_refused_dial_of_the_pods_loopback_against_where_the_sidecar_listens(
    listens: str, blamed: str | None
) -> None:
    """The program dials ::1:5432 (localhost resolving to IPv6 first) and the proxy sidecar
    says where it listens: another family or another port is the configuration's fault; a
    dual-stack listener on the port is not, whatever else refuses the connection."""
    app = container(
        state="running",
        ready=False,
        restart_count=0,
        last_state=None,
        last_exit_code=None,
        env={"PGHOST": "localhost", "PGPORT": "5432"},
    )
    proxy = container(name="db-proxy", state="running", ready=True, restart_count=0)
    c = ctx(
        pods=[pod(POD, app, proxy)],
        logs=[
            log(
                "2026-11-22T09:07:00Z pg pool: initial connection failed\n"
                "Error: connect ECONNREFUSED ::1:5432",
                previous=False,
            ),
            log(f"2026-11-22T09:07:00Z {listens}", container_name="db-proxy", previous=False),
        ],
    )
    d = diagnose(c)
    if blamed is None:
        assert "sidecar" not in d.root_cause
        return
    d = check(c, Category.BAD_CONFIG)
    assert "db-proxy" in d.root_cause and blamed in d.root_cause
    assert "PGHOST=localhost" in d.root_cause


# --- session 11: client-go 401, scrape scheme, a config error listed under its summary -------


def test_client_go_unauthorized_with_a_mounted_legacy_token_names_the_secret() -> None:
    line = (
        "W1124 08:19:00.025423       1 reflector.go:561] k8s.io/client-go@v0.31.2/tools/cache/"
        "reflector.go:243: failed to list *v1.Secret: Unauthorized"
    )
    legacy = pod(
        POD,
        container(state="running", ready=False),
        automount_token=False,
        volume_sources={"api-token": "Secret api-token", "config": "ConfigMap api-config"},
    )
    c = ctx(pods=[legacy], logs=[log(line, previous=False)])
    d = check(c, Category.RBAC_FORBIDDEN)
    assert "legacy token Secret api-token" in d.summary
    assert any("legacy-token-invalid-since-" in a for a in d.immediate_actions)
    # the projected token (automount on): no Secret to blame, the rotation story instead
    projected = pod(
        POD, container(state="running", ready=False), volume_sources=legacy.volume_sources
    )
    d = check(ctx(pods=[projected], logs=[log(line, previous=False)]), Category.RBAC_FORBIDDEN)
    assert "api-token" not in d.summary and "rotates the file" in d.root_cause


def _scrape(**kw: Any) -> Any:
    from oncallm.models.evidence import NetworkPathSnapshot, PeerPod

    base: dict[str, Any] = {
        "destination": "api-metrics.orders",
        "kind": "scrape",
        "source_pod": "prometheus-k8s-0",
        "source_namespace": "monitoring",
        "namespace": NS,
        "service": "api-metrics",
        "service_exists": True,
        "port": 8443,
        "target_port": 8443,
        "pods": [PeerPod(name=POD, labels={"app": "api"})],
        "monitor": "api",
        "scheme": "http",
        "port_name": "https",
    }
    base.update(kw)
    return NetworkPathSnapshot(**base)


def test_a_servicemonitor_speaking_http_to_a_tls_port_is_bad_config() -> None:
    down = alert("TargetDown", job="api-metrics", service="api-metrics", namespace=NS)
    target = TargetRef(kind="Service", namespace=NS, name="api-metrics")
    running = pod(POD, container(state="running", ready=True))
    c = ctx(alert=down, target=target, pods=[running], network_paths=[_scrape()])
    d = check(c, Category.BAD_CONFIG)
    assert "ServiceMonitor api" in d.summary and "scheme: https" in d.summary
    # the monitor already speaks https, or the port is plain: not this cause
    for path in (_scrape(scheme="https"), _scrape(port_name="metrics")):
        c = ctx(alert=down, target=target, pods=[running], network_paths=[path])
        assert "scheme: https" not in diagnose(c).summary


def test_a_config_error_listed_under_its_summary_line_is_quoted_with_it() -> None:
    logs = (
        "Error: failed to get config: cannot unmarshal the configuration: decoding failed due "
        "to the following error(s):\n\n"
        '\'exporters\' unknown type: "logging" for id: "logging" (valid values: [nop otlp '
        "debug otlphttp file])\n"
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=1))], logs=[log(logs)])
    d = check(c, Category.BAD_CONFIG)
    # the word "debug" in the list of valid values does not make the line noise
    assert 'unknown type: "logging"' in d.root_cause


def test_a_claim_a_running_pod_mounts_is_not_pending_whatever_its_phase_says() -> None:
    # a snapshot without the claim's status (phase unset) and no StorageClass object: the pod
    # that mounts it runs, so the claim was bound; the crash is the cause
    claim = PVCSnapshot(
        name="data-api-0", namespace=NS, phase="", storage_class="gp3", storage_class_exists=False
    )
    running = pod(
        POD, container(last_exit_code=2), pvcs=["data-api-0"], phase="Running", node_name=NODE
    )
    logs = [log("flag provided but not defined: -metrics-adress\n")]
    assert diagnose(ctx(pods=[running], pvcs=[claim], logs=logs)).category == Category.BAD_CONFIG
    waiting = pending_pod(pvcs=["data-api-0"])
    d = diagnose(ctx(pods=[waiting], pvcs=[claim]))
    assert d.category == Category.PVC_PENDING


def test_kingpins_unknown_long_flag_is_bad_config() -> None:
    line = (
        "node_exporter: error: unknown long flag '--collector.netdev.device-blacklist', try --help"
    )
    c = ctx(pods=[pod(POD, container(last_exit_code=1))], logs=[log(line)])
    d = check(c, Category.BAD_CONFIG)
    assert "device-blacklist" in d.root_cause


def test_connections_to_a_host_outside_the_cluster_timing_out_are_that_dependency() -> None:
    from oncallm.models.evidence import PolicyPeer, PolicyPort, PolicyRule

    api = pod(
        POD,
        container(
            state="running", ready=True, env={"CARRIER_API_BASE": "https://api.parcelhub.io/v3"}
        ),
    )
    line = "2026-12-04 13:14:02,118 ERROR quotes.api upstream=api.parcelhub.io error=ConnectTimeout"
    c = ctx(pods=[api], logs=[log(line, previous=False)])
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "api.parcelhub.io:443" in d.summary
    # an egress policy that admits any public address on 443 is not the cause either ...
    out = NetworkPolicySnapshot(
        name="api-egress",
        namespace=NS,
        policy_types=["Egress"],
        selects_target=True,
        egress=["ipBlock 0.0.0.0/0 ports 443/TCP"],
        egress_rules=[
            PolicyRule(
                peers=[PolicyPeer(ip_block="0.0.0.0/0", ip_block_except=["169.254.169.254/32"])],
                ports=[PolicyPort(port="443")],
            )
        ],
    )
    c = ctx(pods=[api], logs=[log(line, previous=False)], network_policies=[out])
    assert check(c, Category.DEPENDENCY_UNREACHABLE)
    # ... while one that admits only DNS is
    shut = out.model_copy(
        update={
            "egress": ["anywhere ports 53/UDP"],
            "egress_rules": [PolicyRule(ports=[PolicyPort(protocol="UDP", port="53")])],
        }
    )
    c = ctx(pods=[api], logs=[log(line, previous=False)], network_policies=[shut])
    assert diagnose(c).category == Category.NETWORK_POLICY_BLOCK


def test_pg_isready_no_response_through_a_mismatched_target_port_is_the_service() -> None:
    # pg_isready prints "host:port - no response" when nothing answers the connection
    db = ServiceSnapshot(name="billing-db", namespace=NS, relation="dependency", ready_endpoints=1,
                         unserved_ports=["5432->5433"], declared_ports=[5432])  # fmt: skip
    c = ctx(services=[db], logs=[log("waiting for billing-db\nbilling-db:5432 - no response\n")])
    d = check(c, Category.DEPENDENCY_UNREACHABLE)
    assert "5432->5433" in d.root_cause and "they declare 5432" in d.root_cause


@pytest.mark.parametrize(
    ("url", "line", "refused"),
    [
        # SQLAlchemy 1.4 dropped the postgres:// alias of postgresql://
        ("postgres://app@db:5432/app",
         "sqlalchemy.exc.NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:postgres", True),
        ("amqps://mq:5671", 'ValueError: unsupported scheme "amqps" in broker URL', True),
        # the scheme is fine; the error is about something else the URL names
        ("postgresql://app@db:5432/app",
         "sqlalchemy.exc.NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:postgres", False),
    ],
)  # fmt: skip
def test_an_exception_naming_the_scheme_of_a_url_setting_is_bad_config(
    url: str, line: str, refused: bool
) -> None:
    api = container(env={"DATABASE_URL": url})
    c = ctx(pods=[pod(POD, api)], logs=[log(f"Traceback (most recent call last):\n{line}\n")])
    d = diagnose(c)
    if refused:
        assert d.category is Category.BAD_CONFIG
        assert "DATABASE_URL" in d.root_cause and url.split("//")[0] in d.root_cause
    else:
        assert d.category is not Category.BAD_CONFIG


def test_an_unrecognized_feature_gate_is_bad_config() -> None:
    logs = (
        'I1204 06:48:12.001845 1 flags.go:64] FLAG: --feature-gates="HTTP3Upstream=true"\n'
        'E1204 06:48:12.002214 1 run.go:72] "command failed" err="failed to set feature gates '
        'from initial flags-based config: unrecognized feature gate: HTTP3Upstream"\n'
    )
    d = check(ctx(pods=[pod(POD, container())], logs=[log(logs)]), Category.BAD_CONFIG)
    assert "HTTP3Upstream" in d.root_cause


def test_a_probe_refused_on_a_port_the_container_does_not_declare_is_the_probe() -> None:
    refused = (
        'Readiness probe failed: Get "http://10.92.2.140:8081/readyz": dial tcp '
        "10.92.2.140:8081: connect: connection refused"
    )
    api = container(ready=False, state="running", restart_count=0, reason="", message="",
                    ports={"http": 8080},
                    readiness_probe="http GET /readyz port 8081 timeout=1s")  # fmt: skip
    rollout = deployment()
    d = check(
        ctx(pods=[pod(POD, api)], workloads=[rollout], events=[event("Unhealthy", refused)],
            alert=alert("KubeDeploymentRolloutStuck", pod="", container="", deployment="api")),
        Category.FAILING_PROBE,
    )  # fmt: skip
    assert "8081" in d.root_cause and "http=8080" in d.root_cause
    # the port is declared: the refusal proves no misconfiguration (the program may be slow)
    api.ports = {"http": 8080, "admin": 8081}
    d = diagnose(ctx(pods=[pod(POD, api)], events=[event("Unhealthy", refused)]))
    assert "does not declare" not in d.root_cause


def test_a_file_a_cert_manager_secret_never_holds_is_the_config_that_names_it() -> None:
    from oncallm.models.evidence import CertificateSnapshot

    nginx = container(name="nginx", mounts={"/etc/nginx/conf.d": "conf", "/etc/nginx/certs": "tls"})
    logs = ('nginx: [emerg] cannot load certificate key "/etc/nginx/certs/privkey.pem": '
            "BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory)\n")  # fmt: skip
    p = pod(POD, nginx, volume_sources={"conf": "ConfigMap gw-nginx", "tls": "Secret gw-tls"})
    cert = CertificateSnapshot(name="gw-tls", namespace=NS, secret_name="gw-tls")
    c = ctx(pods=[p], logs=[log(logs, container_name="nginx")], certificates=[cert])
    d = check(c, Category.BAD_CONFIG)
    assert "gw-nginx" in d.root_cause and "privkey.pem" in d.root_cause
    # a Secret nobody manages may simply lack the key
    c = ctx(pods=[p], logs=[log(logs, container_name="nginx")])
    check(c, Category.MISSING_SECRET_OR_CONFIGMAP)


@pytest.mark.parametrize(("var", "named"), [("SERVER_HOST", True), ("DB_HOST", False)])
def test_a_host_setting_with_the_loopback_address_is_named_as_the_bind(
    var: str, named: bool
) -> None:
    refused = ('Readiness probe failed: Get "http://10.64.2.143:8080/ready": dial tcp '
               "10.64.2.143:8080: connect: connection refused")  # fmt: skip
    web = container(ready=False, state="running", restart_count=0, config_env={var: "127.0.0.1"},
                    config_env_source={var: "web-env"})  # fmt: skip
    logs = "INFO:     Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)\n"
    c = ctx(pods=[pod(POD, web)], events=[event("Unhealthy", refused)],
            logs=[log(logs, previous=False)])  # fmt: skip
    d = check(c, Category.BAD_CONFIG)
    assert (var in d.root_cause) is named and "Uvicorn running on" in d.root_cause


def test_a_write_refused_by_a_read_only_root_filesystem_is_the_hardening() -> None:
    logs = "OSError: [Errno 30] Read-only file system: '/app/.prometheus_multiproc'\n"
    api = container(read_only_root=True, mounts={"/tmp": "tmp"})
    d = check(ctx(pods=[pod(POD, api)], logs=[log(logs)]), Category.BAD_CONFIG)
    assert "readOnlyRootFilesystem" in d.root_cause and "/app/.prometheus_multiproc" in d.root_cause
    # without the setting, or writing into a read-only volume, it is not this mechanism
    for other in (container(), container(read_only_root=True, mounts={"/app": "config"})):
        d = diagnose(ctx(pods=[pod(POD, other)], logs=[log(logs)]))
        assert "readOnlyRootFilesystem" not in d.root_cause


def test_spring_boots_no_such_method_analysis_names_both_jars() -> None:
    logs = (
        "java.lang.NoSuchMethodError: 'com.acme.json.Codec com.acme.json.Mapper.codec()'\n"
        "***************************\nAPPLICATION FAILED TO START\n***************************\n"
        "The calling method's class, com.acme.kit.Module, was loaded from the following location:\n"
        "\n    jar:nested:/app/app.jar/!BOOT-INF/lib/acme-kit-3.1.0.jar!/com/acme/kit/Module.class\n"
        "The called method's class, com.acme.json.Mapper, is available from the following locations:\n"
        "\n    jar:nested:/app/app.jar/!BOOT-INF/lib/acme-json-1.4.2.jar!/com/acme/json/Mapper.class\n"
    )
    d = check(ctx(pods=[pod(POD, container())], logs=[log(logs)]), Category.APP_CRASH_EXCEPTION)
    assert "acme-kit-3.1.0.jar" in d.root_cause and "acme-json-1.4.2.jar" in d.root_cause


def test_an_expired_server_certificate_names_the_secret_the_server_mounts() -> None:
    from oncallm.models.evidence import TLSPeerSnapshot

    server = TLSPeerSnapshot(destination="fx-rates.fx", service="fx-rates", namespace="fx",
                             pods=["fx-rates-1"], secrets=["fx-rates-tls"])  # fmt: skip
    line = ('ERROR fx quote failed: Get "https://fx-rates.fx.svc.cluster.local:8443/q": x509: '
            "certificate has expired or is not yet valid\n")  # fmt: skip
    c = ctx(pods=[pod(POD, container(state="running", ready=True))], logs=[log(line, previous=False)],
            tls_peers=[server])  # fmt: skip
    d = check(c, Category.CERT_EXPIRED)
    assert any("fx-rates-tls" in a for a in d.immediate_actions)
    assert any("-n fx get secret fx-rates-tls" in cmd for cmd in d.commands)


def test_a_parse_error_in_a_mounted_file_is_its_content_not_a_missing_key() -> None:
    am = container(name="alertmanager", mounts={"/etc/alertmanager": "config"})
    p = pod(POD, am, volume_sources={"config": "ConfigMap am-config"}, config_maps=["am-config"])
    line = ('level=error msg="Loading configuration file failed" file=/etc/alertmanager/am.yml '
            'err="yaml: unmarshal errors:\\n  line 14: field recievers not found in type config.plain"\n')  # fmt: skip
    d = check(ctx(pods=[p], logs=[log(line, container_name="alertmanager")]), Category.BAD_CONFIG)
    assert "recievers" in d.root_cause


def test_a_settings_field_the_error_names_is_its_env_var() -> None:
    logs = (
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
        "pydantic_settings.sources.SettingsError: error parsing value for field "
        '"cors_allowed_origins" from source "EnvSettingsSource"\n'
    )
    api = container(config_env={"APP_CORS_ALLOWED_ORIGINS": "https://a.example,https://b.example",
                                "APP_LOG_LEVEL": "info"},
                    config_env_source={"APP_CORS_ALLOWED_ORIGINS": "api-env"})  # fmt: skip
    d = check(ctx(pods=[pod(POD, api)], logs=[log(logs)]), Category.BAD_CONFIG)
    assert "APP_CORS_ALLOWED_ORIGINS=https://a.example" in d.root_cause
    assert "from ConfigMap api-env" in d.root_cause


def test_a_config_path_no_mount_covers_is_the_setting_and_mount_disagreeing() -> None:
    logs = ("Error: failed to get config: cannot retrieve the configuration: unable to read the "
            "file file:/conf/agent.yaml: open /conf/agent.yaml: no such file or directory\n")  # fmt: skip
    agent = container(name="agent", command=["--config=/conf/agent.yaml"],
                      mounts={"/etc/agent": "config"})  # fmt: skip
    p = pod(POD, agent, volume_sources={"config": "ConfigMap agent-config"})
    d = check(ctx(pods=[p], logs=[log(logs, container_name="agent")]), Category.BAD_CONFIG)
    assert "no volume mount covers" in d.root_cause and "/etc/agent" in d.root_cause
    # mounted where it reads: a key missing from the ConfigMap, not this mechanism
    agent.mounts = {"/conf": "config"}
    d = diagnose(ctx(pods=[p], logs=[log(logs, container_name="agent")]))
    assert "no volume mount covers" not in d.root_cause


def test_a_start_failure_on_a_value_a_mounted_config_file_sets_is_that_setting() -> None:
    pg = container(name="postgres", mounts={"/etc/postgresql": "conf"})
    exporter = container(name="exporter", state="running", ready=True, restart_count=0)
    p = pod(POD, pg, exporter, volume_sources={"conf": "ConfigMap pg-config"})
    conf = {"pg-config": {"postgresql.conf": "max_connections = 200\n"
                          "shared_preload_libraries = 'pg_stat_statements,pg_cron'\n"}}  # fmt: skip
    logs = [
        log('2026-12-09 08:47:31 UTC [1] FATAL:  could not access file "pg_cron": No such file '
            "or directory\n", container_name="postgres"),
        # the sidecar's own config complaint is not why postgres exits
        log('level=warn msg="Error loading config" err="open postgres_exporter.yml: no such '
            'file or directory"\n', container_name="exporter", previous=False),
    ]  # fmt: skip
    d = check(ctx(pods=[p], logs=logs, mounted_config=conf), Category.BAD_CONFIG)
    assert "shared_preload_libraries" in d.root_cause and "pg-config" in d.root_cause
    assert "postgres_exporter" not in d.root_cause
    # a value it used to connect, and failed, is not this mechanism
    logs[0] = log('FATAL: could not connect to "pg_cron": connection refused\n',
                  container_name="postgres")  # fmt: skip
    d = diagnose(ctx(pods=[p], logs=logs, mounted_config=conf))
    assert "shared_preload_libraries" not in d.root_cause


def test_a_probe_on_a_port_bound_to_loopback_beside_a_serving_port_is_the_probe() -> None:
    refused = ('Readiness probe failed: Get "http://10.42.3.7:9901/ready": dial tcp '
               "10.42.3.7:9901: connect: connection refused")  # fmt: skip
    envoy = container(name="envoy", ready=False, state="running", restart_count=0,
                      ports={"http": 10000, "admin": 9901},
                      readiness_probe="http GET /ready port 9901")  # fmt: skip
    logs = [log("[info][admin] admin address: 127.0.0.1:9901\n", container_name="envoy",
                previous=False)]  # fmt: skip
    c = ctx(pods=[pod(POD, envoy)], logs=logs, events=[event("Unhealthy", refused)])
    d = check(c, Category.FAILING_PROBE)
    assert "9901 (admin)" in d.root_cause and "http=10000" in d.root_cause
    # the only port it declares, bound to loopback: the server's bind is the fault
    envoy.ports = {"admin": 9901}
    check(ctx(pods=[pod(POD, envoy)], logs=logs, events=[event("Unhealthy", refused)]),
          Category.BAD_CONFIG)  # fmt: skip


def test_an_exception_logged_at_info_level_was_handled_and_is_no_crash() -> None:
    logs = ("[2026-12-09 16:27:16,081: INFO/ForkPoolWorker-4] Task fetch[5a5f] retry: Retry in "
            "30s: HTTPError('503 Server Error: Service Unavailable')\n")  # fmt: skip
    d = diagnose(ctx(pods=[pod(POD, container())], logs=[log(logs)]))
    assert d.category is not Category.APP_CRASH_EXCEPTION and "HTTPError" not in d.root_cause[:200]
    crash = logs.replace("INFO", "ERROR")
    check(ctx(pods=[pod(POD, container())], logs=[log(crash)]), Category.APP_CRASH_EXCEPTION)


def test_an_expired_certificate_of_a_server_named_by_its_service_dns_name() -> None:
    from oncallm.models.evidence import TLSPeerSnapshot

    brokers = [
        TLSPeerSnapshot(destination=f"{name}.events", service=name, namespace="events",
                        pods=["kafka-0"], secrets=["kafka-broker-tls"])
        for name in ("kafka-bootstrap", "kafka-headless")
    ]  # fmt: skip
    line = ("[sarama] Failed to connect to broker kafka-bootstrap.events.svc:9094: tls: failed to "
            "verify certificate: x509: certificate has expired or is not yet valid\n")  # fmt: skip
    c = ctx(pods=[pod(POD, container(state="running", ready=True))],
            logs=[log(line, previous=False)], tls_peers=brokers)  # fmt: skip
    d = check(c, Category.CERT_EXPIRED)
    assert "kafka-bootstrap.events.svc:9094" in d.root_cause
    assert any("kafka-broker-tls" in a for a in d.immediate_actions)
