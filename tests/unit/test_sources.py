"""The context sources one by one, over an in-memory cluster: what each reads, what it leaves
alone, and the evidence items it makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oncallm.analysis import diagnose
from oncallm.analysis.evidence import index_evidence
from oncallm.gathering.gather import gather
from oncallm.gathering.memory import MemoryReader
from oncallm.gathering.sources.dns import NAME_RESOLUTION_FAILURE
from oncallm.models.alert import Alert
from oncallm.models.analysis import Category
from oncallm.models.evidence import Context
from oncallm.models.policy import DEFAULT_POLICY

NOW = datetime(2025, 5, 14, 9, 52, tzinfo=UTC)


def t(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def alert(**labels: str) -> Alert:
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "warning", **labels},
            "startsAt": t(-5),
            "fingerprint": "5f3a9c1e2b7d4a60",
        }
    )


async def gathered(a: Alert, objects: list[dict[str, Any]], **logs: str) -> Context:
    reader = MemoryReader(objects)
    for key, text in logs.items():
        ns, pod, container = key.split("__")
        reader.add_log(ns, pod, container, text)
    return await gather(a, reader, DEFAULT_POLICY, now=NOW)


def ids(ctx: Context) -> list[str]:
    return index_evidence(ctx).ids


# -- the target: a node given by its IP ------------------------------------------------------


async def test_a_node_exporter_ip_becomes_the_node_before_the_sources_read() -> None:
    node = {
        "kind": "Node",
        "metadata": {"name": "worker-2"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.1.12"}],
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
        },
    }
    ctx = await gathered(
        alert(alertname="NodeFilesystemAlmostOutOfSpace", job="node-exporter",
              instance="10.0.1.12:9100"),
        [node],
    )  # fmt: skip
    assert ctx.target.name == "worker-2"
    assert [n.name for n in ctx.nodes] == ["worker-2"]
    assert "node/worker-2/Ready" in ids(ctx)
    assert not ctx.missing


# -- helpers ---------------------------------------------------------------------------------


def pod(
    name: str,
    ns: str = "shop",
    *,
    node: str = "worker-1",
    labels: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    created: float = -60,
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "labels": labels or {},
        "creationTimestamp": t(created),
    }
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    cs = containers or [{"name": "app", "image": "app:1"}]
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "containers": cs, "volumes": volumes or [], **spec},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": c["name"], "ready": True, "restartCount": 0, "state": {"running": {}}}
                for c in cs
            ],
            **(status or {}),
        },
    }


def resources(**kinds: dict[str, str]) -> dict[str, Any]:
    return {"resources": kinds}


def node_obj(name: str = "worker-1", **conditions: str) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {
                    "type": c,
                    "status": s,
                    "reason": f"Kubelet{c}",
                    "message": f"{c} is {s}",
                    "lastHeartbeatTime": t(-20),
                    "lastTransitionTime": t(-19),
                }
                for c, s in ({"Ready": "True"} | conditions).items()
            ]
        },
    }


def event(
    kind: str, name: str, reason: str, message: str, ns: str | None = "shop", minutes: float = -2
) -> dict[str, Any]:
    return {
        "kind": "Event",
        "metadata": {"name": f"{name}.{reason}", "namespace": ns or "default"},
        "involvedObject": {"kind": kind, "name": name, "namespace": ns},
        "type": "Warning",
        "reason": reason,
        "message": message,
        "count": 1,
        "lastTimestamp": t(minutes),
    }


# -- quota consumers -------------------------------------------------------------------------


def quota(used: str, hard: str, resource: str = "requests.cpu") -> dict[str, Any]:
    return {
        "kind": "ResourceQuota",
        "metadata": {"name": "compute", "namespace": "shop"},
        "status": {"hard": {resource: hard}, "used": {resource: used}},
    }


async def test_a_full_quota_names_its_largest_and_oldest_consumers() -> None:
    cpu = [{"name": "app", "image": "a", **resources(requests={"cpu": "1"})}]
    small = [{"name": "app", "image": "a", **resources(requests={"cpu": "250m"})}]
    web = {"pod-template-hash": "7d9f8c6b5", "app": "web"}
    objects = [
        quota("4250m", "4"),
        *(
            pod(f"web-7d9f8c6b5-{i}", labels=web, owner=("ReplicaSet", "web-7d9f8c6b5"),
                containers=cpu, created=-30)
            for i in range(3)
        ),
        pod("report-1", owner=("Job", "report"), containers=small, created=-600),
        pod("done-1", owner=("Job", "old"), containers=cpu, phase="Succeeded"),
        pod("lonely", containers=cpu, created=-5),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="lonely"), objects)
    [snap] = ctx.quota_consumers
    assert (snap.quota, snap.resource, snap.used, snap.hard) == ("compute", "requests.cpu",
                                                                 "4250m", "4")  # fmt: skip
    found = [(c.kind, c.name, c.amount_text, len(c.pods)) for c in snap.consumers]
    assert found == [
        ("Deployment", "web", "3", 3),
        ("Pod", "lonely", "1", 1),
        ("Job", "report", "250m", 1),
    ]
    assert snap.consumers[0].labels == web
    assert snap.consumers[2].oldest == t(-600)
    evidence = ids(ctx)
    assert "quota/compute/requests.cpu/Deployment/web" in evidence
    assert evidence.index("quota/compute/requests.cpu/Deployment/web") < evidence.index(
        "quota/compute/requests.cpu/Job/report"
    )


async def test_a_replicaset_whose_deployment_is_gone_is_named_as_an_orphan() -> None:
    cpu = [{"name": "app", "image": "a", **resources(requests={"cpu": "1"})}]
    old = {"pod-template-hash": "6d9c7b8f45", "app": "checkout"}
    new = {"pod-template-hash": "7f8b9c6d5", "app": "checkout-api"}

    def replicaset(name: str, owner: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": "shop"}
        if owner:
            meta["ownerReferences"] = [{"kind": "Deployment", "name": owner, "controller": True}]
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta}

    objects = [
        quota("4", "4"),
        replicaset("checkout-6d9c7b8f45", None),
        replicaset("checkout-api-7f8b9c6d5", "checkout-api"),
        *(pod(f"checkout-6d9c7b8f45-{i}", labels=old, containers=cpu, created=-9000,
              owner=("ReplicaSet", "checkout-6d9c7b8f45")) for i in range(3)),
        pod("checkout-api-7f8b9c6d5-a", labels=new, containers=cpu,
            owner=("ReplicaSet", "checkout-api-7f8b9c6d5")),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="checkout-api-7f8b9c6d5-a"), objects)
    [snap] = ctx.quota_consumers
    found = [(c.kind, c.name, c.orphaned) for c in snap.consumers]
    assert found == [
        ("ReplicaSet", "checkout-6d9c7b8f45", True),
        ("Deployment", "checkout-api", False),
    ]


async def test_a_quota_with_room_reads_no_consumers() -> None:
    reader = MemoryReader([quota("1", "4"), pod("lonely")])
    ctx = await gather(alert(namespace="shop", pod="lonely"), reader, DEFAULT_POLICY, now=NOW)
    assert ctx.quota_consumers == []


# -- node storage ----------------------------------------------------------------------------

EVICTED = (
    "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: "
    "4Gi. Container transcoder was using 28Gi, request is 0, has larger consumption of "
    "ephemeral-storage. "
)


async def test_disk_pressure_names_who_uses_the_nodes_ephemeral_storage() -> None:
    scratch = [{"name": "scratch", "emptyDir": {}}]
    limited = [{"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}}]
    capped = [{"name": "app", "image": "a", **resources(limits={"ephemeral-storage": "1Gi"})}]
    objects = [
        node_obj(DiskPressure="True"),
        pod("transcoder-1", owner=("ReplicaSet", "transcoder-5c9"), volumes=scratch,
            labels={"pod-template-hash": "5c9"}, phase="Failed",
            status={"reason": "Evicted", "message": EVICTED}),
        pod("cache-1", ns="other", volumes=limited, containers=capped),
        pod("plain-1", ns="other"),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="transcoder-1"), objects)
    [snap] = ctx.node_storage
    assert snap.disk_pressure and snap.evictions == 1
    assert (snap.threshold, snap.available) == ("10Gi", "4Gi")
    first, second = snap.pods
    assert (first.pod, first.evicted, first.usage, first.owner_name) == (
        "transcoder-1", True, {"transcoder": "28Gi"}, "transcoder")  # fmt: skip
    assert [(v.name, v.size_limit) for v in second.empty_dirs] == [("cache", "2Gi")]
    assert second.limits == {"app": "1Gi"}
    evidence = ids(ctx)
    assert {"storage/worker-1", "storage/worker-1/transcoder-1", "storage/worker-1/cache-1"} <= set(
        evidence
    )
    assert "storage/worker-1/plain-1" not in evidence


async def test_a_healthy_node_reads_no_storage() -> None:
    ctx = await gathered(alert(namespace="shop", pod="a"), [node_obj(), pod("a")])
    assert ctx.node_storage == [] and ctx.node_health == []


# -- node health -----------------------------------------------------------------------------


async def test_a_not_ready_node_shows_its_heartbeat_oom_kills_and_unbounded_pods() -> None:
    bounded = [{"name": "app", "image": "a", **resources(limits={"memory": "1Gi"})}]
    greedy = [{"name": "java", "image": "j", **resources(requests={"memory": "512Mi"})}]
    objects = [
        node_obj(Ready="Unknown"),
        pod("api-1", containers=bounded),
        pod("batch-1", ns="jobs", containers=greedy, owner=("Job", "batch")),
        event("Node", "worker-1", "SystemOOM",
              "System OOM encountered, victim process: java, pid: 4121", ns=None, minutes=-300),
        event("Node", "worker-1", "OOMKilling",
              "Memory cgroup out of memory: Killed process 4188 (python3) total-vm:1kB",
              ns=None, minutes=-290),
        event("Node", "worker-1", "NodeNotReady", "Node worker-1 status is now: NodeNotReady",
              ns=None),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="api-1"), objects)
    [health] = ctx.node_health
    assert [e.reason for e in health.oom_events] == ["OOMKilling", "SystemOOM"]
    assert health.oom_victims == ["python3 (pid 4188)", "java (pid 4121)"]
    [unbounded] = health.pods_without_memory_limit
    assert (unbounded.pod, unbounded.containers, unbounded.memory_request) == (
        "batch-1", ["java"], "512Mi")  # fmt: skip
    ready = next(c for c in health.conditions if c.type == "Ready")
    assert (ready.status, ready.last_heartbeat) == ("Unknown", t(-20))
    evidence = ids(ctx)
    for expected in ("node/worker-1/heartbeat", "node/worker-1/oom",
                     "node/worker-1/no-memory-limit/batch-1"):  # fmt: skip
        assert expected in evidence
    # The OOM kills are older than the event window, yet they are the lead.
    assert "event/Node/worker-1/SystemOOM" not in evidence


async def test_a_not_ready_node_names_what_node_problem_detector_saw_on_it() -> None:
    objects = [
        node_obj(Ready="Unknown"),
        pod("api-1"),
        event("Node", "worker-1", "TaskHung",
              "kernel: INFO: task jbd2/sda1-8:311 blocked for more than 120 seconds.",
              ns=None, minutes=-30),
        event("Node", "worker-1", "TaskHung",
              "kernel: INFO: task kubelet:1422 blocked for more than 120 seconds.",
              ns=None, minutes=-25),
        event("Node", "worker-1", "NodeNotReady", "Node worker-1 status is now: NodeNotReady",
              ns=None),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="api-1"), objects)
    [health] = ctx.node_health
    assert [e.message.split()[3] for e in health.problem_events] == [
        "kubelet:1422",
        "jbd2/sda1-8:311",
    ]
    assert "node/worker-1/problems" in ids(ctx)
    d = diagnose(ctx)
    assert d.category is Category.NODE_NOT_READY and "task kubelet:1422 blocked" in d.root_cause


# -- scheduling ------------------------------------------------------------------------------


async def test_failed_scheduling_is_parsed_into_reasons_with_node_counts() -> None:
    message = (
        "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
        "2 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    )
    pending = pod("train-0", node="", phase="Pending")
    pending["spec"].pop("nodeName")
    ctx = await gathered(
        alert(namespace="shop", pod="train-0"),
        [pending, event("Pod", "train-0", "FailedScheduling", message)],
    )
    [snap] = ctx.scheduling
    assert (snap.available, snap.total) == (0, 6)
    assert [(r.kind, r.nodes, r.resource, r.taint) for r in snap.reasons] == [
        ("taint", 1, None, "dedicated=gpu"),
        ("insufficient", 2, "nvidia.com/gpu", None),
        ("node_affinity", 3, None, None),
    ]
    assert snap.preemption.startswith("0/6 nodes are available")
    item = next(e for e in index_evidence(ctx).items if e.id == "scheduling/train-0")
    assert "insufficient nvidia.com/gpu on 2 nodes" in item.excerpt


# -- DNS -------------------------------------------------------------------------------------


def coredns(name: str, *, crashing: bool = False) -> dict[str, Any]:
    obj = pod(name, ns="kube-system", labels={"k8s-app": "kube-dns"},
              containers=[{"name": "coredns", "image": "coredns:1.11"}])  # fmt: skip
    if crashing:
        obj["status"]["containerStatuses"][0] |= {
            "ready": False,
            "restartCount": 9,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }
    return obj


def corefile(forward: str) -> dict[str, Any]:
    text = f".:53 {{\n    errors\n    forward . {forward} {{\n       max_concurrent 1000\n    }}\n"
    text += "    cache 30\n    loop\n    reload\n}\ncorp.example:53 {\n    forward . 10.20.0.9\n}\n"
    return {
        "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "data": {"Corefile": text},
    }


KUBE_DNS = [
    {"kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
     "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"}}},
    {"kind": "Endpoints", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
     "subsets": [{"notReadyAddresses": [{"ip": "10.244.1.2"}]}]},
]  # fmt: skip


def crashed_app() -> dict[str, Any]:
    app = pod("bridge-1")
    app["status"]["containerStatuses"][0] |= {
        "ready": False,
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    return app


async def test_name_resolution_failures_bring_in_coredns_and_its_dead_upstream() -> None:
    ctx = await gathered(
        alert(namespace="shop", pod="bridge-1"),
        [crashed_app(), coredns("coredns-a"), corefile("10.20.0.2 10.20.0.3"), *KUBE_DNS],
        **{
            "shop__bridge-1__app": "dial tcp: lookup hub.example.net on 10.96.0.10:53: "
            "server misbehaving",
            "kube-system__coredns-a__coredns": "[ERROR] plugin/errors: 2 hub.example.net. A: "
            "read udp 10.244.1.12:44811->10.20.0.2:53: i/o timeout",
        },
    )
    dns = ctx.dns
    assert dns is not None and "server misbehaving" in dns.trigger
    assert [(f.zone, f.targets) for f in dns.forwards] == [
        (".", ["10.20.0.2", "10.20.0.3"]),
        ("corp.example", ["10.20.0.9"]),
    ]
    assert dns.loop_plugin and not dns.forwards_to_resolv_conf
    assert dns.dead_upstreams == ["10.20.0.2"]
    assert dns.service is not None and dns.service.ready_endpoints == 0
    evidence = ids(ctx)
    for expected in ("dns/corefile", "dns/upstream/10.20.0.2", "dns/service",
                     "dns/coredns/coredns-a", "dns/log/coredns-a/coredns/current#L1"):  # fmt: skip
        assert expected in evidence, expected


async def test_a_forward_loop_is_flagged() -> None:
    objects = [crashed_app(), coredns("coredns-a", crashing=True), corefile("/etc/resolv.conf")]
    reader = MemoryReader(objects)
    reader.add_log("shop", "bridge-1", "app", "getaddrinfo EAI_AGAIN kafka.shop.svc", previous=True)
    reader.add_log(
        "kube-system", "coredns-a", "coredns",
        '[FATAL] plugin/loop: Loop (127.0.0.1:40414 -> :53) detected for zone ".", see '
        "https://coredns.io/plugins/loop#troubleshooting.", previous=True,
    )  # fmt: skip
    ctx = await gather(alert(namespace="shop", pod="bridge-1"), reader, DEFAULT_POLICY, now=NOW)
    dns = ctx.dns
    assert dns is not None and dns.forwards_to_resolv_conf and dns.loop_detected
    item = next(e for e in index_evidence(ctx).items if e.id == "dns/loop")
    assert "/etc/resolv.conf" in item.excerpt


async def test_a_coredns_loop_outranks_the_dependency_its_lookups_never_reached() -> None:
    objects = [
        crashed_app(),
        coredns("coredns-a", crashing=True),
        corefile("/etc/resolv.conf"),
        {"kind": "Service", "metadata": {"name": "kafka", "namespace": "shop"},
         "spec": {"clusterIP": "10.96.4.4", "ports": [{"port": 9092}]}},
        {"kind": "Endpoints", "metadata": {"name": "kafka", "namespace": "shop"},
         "subsets": [{"addresses": [{"ip": "10.1.9.44"}], "ports": [{"port": 9092}]}]},
    ]  # fmt: skip
    reader = MemoryReader(objects)
    reader.add_log(
        "shop", "bridge-1", "app",
        "ERROR could not connect to kafka.shop.svc:9092\n"
        "getaddrinfo EAI_AGAIN kafka.shop.svc", previous=True,
    )  # fmt: skip
    reader.add_log(
        "kube-system", "coredns-a", "coredns",
        '[FATAL] plugin/loop: Loop (127.0.0.1:40414 -> :53) detected for zone ".", see '
        "https://coredns.io/plugins/loop#troubleshooting.", previous=True,
    )  # fmt: skip
    ctx = await gather(alert(namespace="shop", pod="bridge-1"), reader, DEFAULT_POLICY, now=NOW)
    d = diagnose(ctx)
    assert d.category is Category.DNS_FAILURE, d.root_cause
    assert "dns/loop" in d.evidence


async def test_without_resolution_failures_coredns_is_not_read() -> None:
    reader = MemoryReader([crashed_app(), coredns("coredns-a")], forbidden={"ConfigMap"})
    reader.add_log("shop", "bridge-1", "app", "panic: nil map", previous=True)
    ctx = await gather(alert(namespace="shop", pod="bridge-1"), reader, DEFAULT_POLICY, now=NOW)
    assert ctx.dns is None
    assert not [m for m in ctx.missing if "coredns" in m.source or "ConfigMap" in m.source]


# -- admission webhooks ----------------------------------------------------------------------

WEBHOOK_ERROR = (
    'Error creating: Internal error occurred: failed calling webhook "check.example.io": '
    'failed to call webhook: Post "https://checker.guard.svc:443/validate?timeout=10s": tls: '
    "failed to verify certificate: x509: certificate has expired or is not yet valid: current "
    "time 2025-05-14T09:51:20Z is after 2025-05-14T02:11:40Z"
)


def self_signed_ca(days: int) -> str:
    """A base64 PEM CA certificate valid from a year ago for ``days`` days."""
    import base64
    from datetime import timedelta as td

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    start = NOW - td(days=365)  # the analysis judges expiry at its own now
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + td(days=days))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def webhook_config(ca_days: int) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard", "annotations": {"cert-manager.io/inject-ca-from":
                                                       "guard/checker-cert"}},
        "webhooks": [
            {"name": "other.example.io", "clientConfig": {"url": "https://x"}},
            {
                "name": "check.example.io",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "rules": [{"operations": ["CREATE"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"team": "shop"}},
                "clientConfig": {
                    "service": {"namespace": "guard", "name": "checker", "port": 443,
                                "path": "/validate"},
                    "caBundle": self_signed_ca(ca_days),
                },
            },
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("peers", "blocked"),
    [
        ([{"namespaceSelector": {"matchLabels": {"mesh-member": "true"}}}], True),
        ([{"ipBlock": {"cidr": "10.0.0.0/8"}}], False),
    ],
)
async def test_a_webhook_call_timing_out_behind_a_network_policy_names_the_policy(
    peers: list[dict[str, Any]], blocked: bool
) -> None:
    """The webhook's Service has ready endpoints and the call times out: a NetworkPolicy that
    selects its pods and admits only pods and namespaces never admits the API server (it calls
    from the control plane's network); an ipBlock may, so it is not blamed."""
    timeout = (
        "create Pod search-2 in StatefulSet search failed error: Internal error "
        'occurred: failed calling webhook "check.example.io": failed to call webhook: '
        'Post "https://checker.guard.svc:443/validate?timeout=10s": context deadline '
        "exceeded"
    )
    config = webhook_config(ca_days=700)
    checker = pod("checker-0", ns="guard", labels={"app": "checker"})
    objects = [
        {"kind": "StatefulSet", "metadata": {"name": "search", "namespace": "shop"},
         "spec": {"selector": {"matchLabels": {"app": "search"}}, "replicas": 3}},
        event("StatefulSet", "search", "FailedCreate", timeout),
        config,
        checker,
        {"kind": "Service", "metadata": {"name": "checker", "namespace": "guard"},
         "spec": {"selector": {"app": "checker"},
                  "ports": [{"port": 443, "targetPort": 8443}]}},
        {"kind": "Endpoints", "metadata": {"name": "checker", "namespace": "guard"},
         "subsets": [{"addresses": [{"ip": "10.1.0.9", "targetRef": {"kind": "Pod",
                                                                     "name": "checker-0"}}]}]},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "baseline-deny", "namespace": "guard"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]}},
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", statefulset="search",
                               alertname="KubeStatefulSetReplicasMismatch"), objects)  # fmt: skip
    [hook] = ctx.webhooks
    assert bool(hook.blocked_by) is blocked
    d = diagnose(ctx)
    if blocked:
        assert d.category is Category.NETWORK_POLICY_BLOCK and "baseline-deny" in d.root_cause
    else:
        assert d.category is not Category.NETWORK_POLICY_BLOCK


async def test_a_failing_webhook_brings_its_configuration_service_and_certificates() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "replicas": 2},
        "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                   "reason": "FailedCreate", "message": WEBHOOK_ERROR}]},
    }  # fmt: skip
    objects = [
        deployment,
        webhook_config(ca_days=30),
        {"kind": "Service", "metadata": {"name": "checker", "namespace": "guard"}, "spec": {}},
        {"kind": "Endpoints", "metadata": {"name": "checker", "namespace": "guard"}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
         "metadata": {"name": "checker-cert", "namespace": "guard"},
         "spec": {"secretName": "checker-tls", "issuerRef": {"name": "guard-ca"}},
         "status": {"notAfter": "2025-05-14T02:11:40Z",
                    "conditions": [{"type": "Ready", "status": "False", "reason": "Expired",
                                    "message": "Certificate expired"}]}},
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", deployment="web"), objects)
    [hook] = ctx.webhooks
    assert (hook.found, hook.kind, hook.configuration) == (True, "ValidatingWebhookConfiguration",
                                                           "guard")  # fmt: skip
    assert (hook.failure_policy, hook.timeout_seconds, hook.rules) == ("Fail", 10, ["CREATE pods"])
    assert (hook.service_namespace, hook.service_name, hook.path) == ("guard", "checker",
                                                                      "/validate")  # fmt: skip
    assert hook.service_exists and hook.ready_endpoints == 0
    assert hook.ca_expired is True and hook.ca_not_after
    assert hook.serving_not_after == "2025-05-14T02:11:40Z"
    assert hook.inject_ca_from == "guard/checker-cert"
    # the Certificate the CA comes from, and its missing Issuer
    [cert] = ctx.certificates
    assert cert.name == "checker-cert" and "check.example.io" in cert.why
    [issuer] = ctx.issuers
    assert (issuer.kind, issuer.name, issuer.exists) == ("Issuer", "guard-ca", False)
    evidence = ids(ctx)
    for expected in ("webhook/check.example.io", "webhook/check.example.io/service",
                     "certificate/checker-cert", "issuer/Issuer/guard-ca"):  # fmt: skip
        assert expected in evidence, expected
    assert not [e for e in evidence if e.startswith("netpath/")]  # the API server calls it


async def test_no_webhook_message_reads_no_webhook_configuration() -> None:
    reader = MemoryReader([pod("a"), node_obj()], forbidden={"ValidatingWebhookConfiguration"})
    ctx = await gather(alert(namespace="shop", pod="a"), reader, DEFAULT_POLICY, now=NOW)
    assert ctx.webhooks == []
    assert not [m for m in ctx.missing if "webhook" in m.source.lower()], ctx.missing


# -- network paths ---------------------------------------------------------------------------


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def policy(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


async def test_a_namespace_selector_that_misses_the_real_labels_denies_the_path() -> None:
    app = crashed_app()
    broker = pod("kafka-0", ns="brokers", labels={"app": "kafka"},
                 containers=[{"name": "kafka", "image": "k",
                              "ports": [{"name": "client", "containerPort": 9092}]}])  # fmt: skip
    objects = [
        app,
        broker,
        namespace("shop", team="shopping"),
        namespace("brokers", team="data"),
        {"kind": "Service", "metadata": {"name": "kafka", "namespace": "brokers"},
         "spec": {"selector": {"app": "kafka"},
                  "ports": [{"port": 9092, "targetPort": "client"}]}},
        policy("clients", "brokers", {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                  "values": ["kafka"]}]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}],
                         "ports": [{"port": "client"}]}],
        }),
        policy("unrelated", "brokers", {"podSelector": {"matchLabels": {"app": "zookeeper"}}}),
    ]  # fmt: skip
    line = "WARN connection to kafka.brokers.svc.cluster.local:9092 could not be established"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [path] = ctx.network_paths
    assert (path.kind, path.namespace, path.service, path.port, path.target_port) == (
        "service", "brokers", "kafka", 9092, 9092)  # fmt: skip
    assert path.egress_allowed is None  # no egress policy on the source
    assert [p.name for p in path.ingress_policies] == ["clients"]
    assert path.ingress_allowed is False
    assert {n.name: n.labels["team"] for n in ctx.namespaces} == {"shop": "shopping",
                                                                  "brokers": "data"}  # fmt: skip
    evidence = ids(ctx)
    for expected in ("netpath/kafka.brokers:9092", "netpath/kafka.brokers:9092/ingress/clients",
                     "namespace/brokers"):  # fmt: skip
        assert expected in evidence, expected


async def test_egress_without_dns_and_outside_the_ip_block_are_denied() -> None:
    app = crashed_app()
    app["metadata"]["labels"] = {"app": "batch"}
    objects = [
        app,
        policy("batch-egress", "shop", {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.49.0.0/16"]}}],
                        "ports": [{"protocol": "TCP", "port": 5432}]}],
        }),
    ]  # fmt: skip
    log = (
        "getaddrinfo EAI_AGAIN db.example.com\n"
        "connect to 10.49.200.17:5432 failed: dial tcp 10.49.200.17:5432: i/o timeout\n"
        "connect to 10.50.0.9:5432 failed: dial tcp 10.50.0.9:5432: i/o timeout"
    )
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": log})  # fmt: skip
    paths = {p.destination: p for p in ctx.network_paths}
    assert paths["dns"].egress_allowed is False and paths["dns"].protocol == "UDP"
    assert paths["10.49.200.17:5432"].egress_allowed is False  # the except
    assert paths["10.50.0.9:5432"].egress_allowed is True
    assert paths["10.50.0.9:5432"].egress_allowed_by == ["batch-egress"]


# -- pull credentials and the custom resources behind them -----------------------------------


def pulling(name: str, secret: str, message: str) -> dict[str, Any]:
    obj = pod(name, owner=("ReplicaSet", "agent-5c9"), labels={"pod-template-hash": "5c9"},
              imagePullSecrets=[{"name": secret}])  # fmt: skip
    obj["spec"]["containers"][0]["image"] = "registry.example.com/edge/agent:3.3.0"
    obj["status"]["containerStatuses"][0] |= {
        "ready": False,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}},
    }
    return obj


def cronjob(name: str, secret: str, *, suspend: bool = False) -> dict[str, Any]:
    return {
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "shop", "annotations": {"ops/why": "CHG-1"}},
        "spec": {"schedule": "0 */6 * * *", "suspend": suspend, "jobTemplate": {"spec": {
            "template": {"spec": {"containers": [{"name": "refresh", "args": [
                f"kubectl create secret docker-registry {secret} --dry-run=client -o yaml"]}]}}}}},
        "status": {"lastScheduleTime": t(-120), "lastSuccessfulTime": t(-800)},
    }  # fmt: skip


async def test_a_refused_pull_names_the_secrets_their_refresher_and_its_failed_jobs() -> None:
    refusal = (
        'Failed to pull image "registry.example.com/edge/agent:3.3.0": failed to authorize: '
        "unexpected status: 401 Unauthorized"
    )
    job = {
        "kind": "Job",
        "metadata": {"name": "refresh-1", "namespace": "shop", "creationTimestamp": t(-120),
                     "ownerReferences": [{"kind": "CronJob", "name": "refresh",
                                          "controller": True}]},
        "status": {"conditions": [{"type": "Failed", "status": "True",
                                   "reason": "BackoffLimitExceeded"}]},
    }  # fmt: skip
    objects = [
        pulling("agent-5c9-a", "registry-creds", "x"),
        {"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "shop"},
         "imagePullSecrets": [{"name": "sa-creds"}]},
        cronjob("refresh", "registry-creds"),
        cronjob("other", "unrelated-secret"),
        job,
        event("Pod", "agent-5c9-a", "Failed", refusal),
        event("Pod", "agent-5c9-a", "FailedToRetrieveImagePullSecret",
              "Unable to retrieve some image pull secrets (sa-creds); attempting to pull the "
              "image may not succeed."),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="agent-5c9-a"), objects)
    [creds] = ctx.pull_credentials
    assert (creds.registry, creds.service_account) == ("registry.example.com", "default")
    assert "401 Unauthorized" in creds.error
    by_name = {s.name: s for s in creds.secrets}
    assert (by_name["registry-creds"].via, by_name["registry-creds"].exists) == ("pod spec", None)
    assert (by_name["sa-creds"].via, by_name["sa-creds"].exists) == ("serviceaccount default",
                                                                     False)  # fmt: skip
    [refresher] = by_name["registry-creds"].refreshers
    assert (refresher.name, refresher.last_success, refresher.failed_jobs) == ("refresh",
                                                                               t(-800), 1)  # fmt: skip
    assert refresher.recent_jobs[0].startswith("refresh-1: failed (BackoffLimitExceeded)")
    assert refresher.annotations == {"ops/why": "CHG-1"}
    evidence = {e.id: e for e in index_evidence(ctx).items}
    assert "401 Unauthorized" in evidence["pullcreds/agent-5c9-a"].excerpt
    assert "does not exist" in evidence["pullsecret/sa-creds"].excerpt
    assert "refresher/CronJob/refresh" in evidence and "refresher/CronJob/other" not in evidence


async def test_an_external_secret_behind_a_pull_secret_and_an_argo_application() -> None:
    external = {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "robot", "namespace": "shop"},
        "spec": {"refreshInterval": "1h", "target": {"name": "robot-creds"},
                 "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"}},
        "status": {"refreshTime": t(-20000), "conditions": [
            {"type": "Ready", "status": "False", "reason": "SecretSyncedError",
             "message": "could not get secret data from provider"}]},
    }  # fmt: skip
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "agent", "namespace": "argocd"},
        "spec": {"project": "edge", "source": {"repoURL": "https://git/edge", "path": "agent",
                                               "targetRevision": "main"}},
        "status": {"sync": {"status": "Synced", "revision": "abc123"},
                   "health": {"status": "Degraded"},
                   "resources": [{"kind": "Deployment", "name": "agent", "namespace": "shop",
                                  "status": "Synced", "health": {"status": "Degraded"}}]},
    }  # fmt: skip
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "agent", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}},
    }
    puller = pulling("agent-5c9-a", "robot-creds", "x")
    puller["metadata"]["labels"]["app"] = "agent"
    refusal = 'Failed to pull image "x": 403 Forbidden: denied'
    objects = [puller, deployment, external, app, event("Pod", "agent-5c9-a", "Failed", refusal)]
    ctx = await gathered(alert(namespace="shop", deployment="agent"), objects)
    [es] = ctx.external_secrets
    assert (es.name, es.target, es.store) == ("robot", "robot-creds", "ClusterSecretStore/vault")
    assert ctx.pull_credentials[0].secrets[0].external_secrets == ["robot"]
    [application] = ctx.argo_applications
    assert (application.health_status, application.resource_health) == ("Degraded", "Degraded")
    evidence = {e.id: e for e in index_evidence(ctx).items}
    assert "ExternalSecret robot" in evidence["pullsecret/robot-creds"].excerpt
    assert "SecretSyncedError" in evidence["externalsecret/robot"].excerpt
    assert "health Degraded" in evidence["argocd/agent"].excerpt


async def test_without_the_crds_custom_resources_are_quietly_absent() -> None:
    puller = pulling("agent-5c9-a", "robot-creds", "x")
    del puller["metadata"]["ownerReferences"]
    ctx = await gathered(
        alert(namespace="shop", pod="agent-5c9-a"),
        [puller, node_obj(), event("Pod", "agent-5c9-a", "Failed", "pull: 401 Unauthorized")],
    )
    assert ctx.pull_credentials
    assert ctx.external_secrets == [] and ctx.certificates == [] and ctx.argo_applications == []
    assert not ctx.missing


# -- a dependency in another namespace -------------------------------------------------------


async def test_a_service_of_another_namespace_the_app_names_is_read_with_its_endpoints() -> None:
    app = crashed_app()
    app["spec"]["containers"][0]["env"] = [
        {"name": "LEDGER_URL", "value": "http://ledger-api.finance.svc.cluster.local:8080"},
        {"name": "CACHE_ADDR", "value": "session-cache.platform:6379"},
        {"name": "SENTRY_HOST", "value": "sentry.example.com:443"},
        {"name": "CONFIG", "value": "/etc/app/config.yaml"},
    ]
    ledger = {
        "kind": "Service",
        "metadata": {"name": "ledger-api", "namespace": "finance"},
        "spec": {"selector": {"app": "ledger-api"}, "ports": [{"port": 8080}]},
    }
    cache = {
        "kind": "Service",
        "metadata": {"name": "session-cache", "namespace": "platform"},
        "spec": {"selector": {"app": "session-cache"}, "ports": [{"port": 6379}]},
    }
    ctx = await gathered(
        alert(namespace="shop", pod="bridge-1"),
        [
            app,
            ledger,
            {"kind": "Endpoints", "metadata": {"name": "ledger-api", "namespace": "finance"}},
            cache,
            {
                "kind": "Endpoints",
                "metadata": {"name": "session-cache", "namespace": "platform"},
                "subsets": [{"addresses": [{"ip": "10.244.3.9"}]}],
            },
            pod("session-cache-0", "platform", labels={"app": "session-cache"}),
        ],
        **{"shop__bridge-1__app": "Error: connect ECONNREFUSED ledger-api.finance.svc:8080"},
    )
    deps = {(s.namespace, s.name): s for s in ctx.services if s.relation == "dependency"}
    assert set(deps) == {("finance", "ledger-api"), ("platform", "session-cache")}
    assert deps["finance", "ledger-api"].ready_endpoints == 0
    assert deps["platform", "session-cache"].ready_endpoints == 1
    assert deps["platform", "session-cache"].matching_pods == ["session-cache-0"]
    d = diagnose(ctx)
    assert d.category == Category.DEPENDENCY_UNREACHABLE, d.root_cause
    assert "finance/ledger-api" in d.root_cause


def target_down(service: str, ns: str) -> Alert:
    """TargetDown as kube-prometheus-stack sends it: by job, namespace and service."""
    return alert(alertname="TargetDown", job=service, namespace=ns, service=service,
                 prometheus="monitoring/kube-prometheus-stack-prometheus")  # fmt: skip


async def test_a_scrape_blocked_by_the_targets_ingress_policy_without_prometheus_listed() -> None:
    """OnCallM may not see the Prometheus pods: the target's ingress policy is judged against
    the labels the Prometheus Operator always sets and the namespace the alert names."""
    gateway = pod("gateway-1", ns="edge", labels={"app": "gateway"},
                  containers=[{"name": "gateway", "image": "g",
                               "ports": [{"name": "metrics", "containerPort": 9102}]}])  # fmt: skip
    objects = [
        gateway,
        namespace("edge"),
        namespace("monitoring"),
        {"kind": "Service", "metadata": {"name": "gateway-metrics", "namespace": "edge"},
         "spec": {"selector": {"app": "gateway"},
                  "ports": [{"name": "metrics", "port": 9102, "targetPort": "metrics"}]}},
        policy("gateway-ingress", "edge", {
            "podSelector": {"matchLabels": {"app": "gateway"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "ingress-nginx"}}}],
                "ports": [{"port": 8080}]}],
        }),
    ]  # fmt: skip
    a = target_down("gateway-metrics", "edge")
    ctx = await gathered(a, objects)
    [path] = ctx.network_paths
    assert (path.source_namespace, path.target_port, path.ingress_allowed) == (
        "monitoring", 9102, False)  # fmt: skip
    d = diagnose(ctx)
    assert d.category == Category.NETWORK_POLICY_BLOCK and "gateway-ingress" in d.root_cause


async def test_a_scrape_without_an_endpoint_label_follows_the_port_its_servicemonitor_scrapes() -> (
    None
):
    """TargetDown aggregates ``endpoint`` away: the scraped port is the ServiceMonitor's, not
    the Service's first port, so a policy admitting only the application port blocks it."""
    invoicer = pod("invoicer-1", ns="billing", labels={"app": "invoicer"},
                   containers=[{"name": "invoicer", "image": "i",
                                "ports": [{"name": "http", "containerPort": 8080},
                                          {"name": "metrics", "containerPort": 9102}]}])  # fmt: skip
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "invoicer", "namespace": "billing"},
               "spec": {"selector": {"matchLabels": {"scrape": "yes"}},
                        "endpoints": [{"port": "scrape"}]}}  # fmt: skip
    objects = [
        invoicer,
        namespace("billing"),
        namespace("monitoring"),
        {"kind": "Service",
         "metadata": {"name": "invoicer", "namespace": "billing", "labels": {"scrape": "yes"}},
         "spec": {"selector": {"app": "invoicer"},
                  "ports": [{"name": "http", "port": 8080},
                            {"name": "scrape", "port": 9102, "targetPort": "metrics"}]}},
        policy("allow-web", "billing", {
            "podSelector": {"matchLabels": {"app": "invoicer"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 8080}]}],
        }),
    ]  # fmt: skip
    a = target_down("invoicer", "billing")
    [path] = (await gathered(a, [*objects, monitor])).network_paths
    assert (path.port, path.target_port, path.ingress_allowed) == (9102, 9102, False)
    # Without the ServiceMonitor the scrape is read on the first port, which the policy admits.
    [path] = (await gathered(a, objects)).network_paths
    assert (path.port, path.ingress_allowed) == (8080, True)


async def test_a_control_plane_component_down_reads_its_static_pods() -> None:
    """KubeSchedulerDown is ``absent(up{job="kube-scheduler"})``: no pod label, yet the
    component's kubeadm static pods (``component=kube-scheduler``) show why it is down."""
    flags = ["kube-scheduler", "--port=0"]
    crashed = {"name": "kube-scheduler", "ready": False, "restartCount": 9,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}  # fmt: skip
    objects = [
        pod(f"kube-scheduler-cp-{i}", "kube-system", node=f"cp-{i}",
            labels={"component": "kube-scheduler", "tier": "control-plane"},
            containers=[{"name": "kube-scheduler", "image": "k", "command": flags}],
            status={"phase": "Running", "containerStatuses": [crashed]})
        for i in (1, 2)
    ] + [pod("kube-proxy-x", "kube-system", labels={"k8s-app": "kube-proxy"})]  # fmt: skip
    a = Alert.model_validate(
        {"status": "firing", "labels": {"alertname": "KubeSchedulerDown", "job": "kube-scheduler",
         "severity": "critical"}, "startsAt": t(-5), "fingerprint": "2b4d6f8a0c1e3a57"}
    )  # fmt: skip
    reader = MemoryReader(objects)
    for i in (1, 2):
        reader.add_log("kube-system", f"kube-scheduler-cp-{i}", "kube-scheduler",
                       "Error: unknown flag: --port", previous=True)  # fmt: skip
    ctx = await gather(a, reader, DEFAULT_POLICY, now=NOW)
    assert sorted(p.name for p in ctx.pods) == ["kube-scheduler-cp-1", "kube-scheduler-cp-2"]
    d = diagnose(ctx)
    assert d.category == Category.BAD_CONFIG and "--port" in d.root_cause, d.root_cause


async def test_a_failure_naming_no_peer_follows_the_service_the_pods_are_configured_for() -> None:
    app = crashed_app()
    app["spec"]["containers"][0]["env"] = [
        {"name": "LEDGER_URL", "value": "https://ledger.books.svc.cluster.local:8443"}
    ]
    ledger = pod("ledger-1", ns="books", labels={"app": "ledger"},
                 containers=[{"name": "ledger", "image": "l",
                              "ports": [{"name": "https", "containerPort": 8443}]}])  # fmt: skip
    objects = [
        app,
        ledger,
        namespace("shop"),
        namespace("books"),
        {"kind": "Service", "metadata": {"name": "ledger", "namespace": "books"},
         "spec": {"selector": {"app": "ledger"}, "ports": [{"port": 8443}]}},
        policy("only-payments", "books", {
            "podSelector": {"matchLabels": {"app": "ledger"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "payments"}}}]}],
        }),
    ]  # fmt: skip
    line = "Caused by: java.net.http.HttpConnectTimeoutException: HTTP connect timed out"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [path] = ctx.network_paths
    assert (path.namespace, path.service, path.port, path.ingress_allowed) == (
        "books", "ledger", 8443, False)  # fmt: skip
    assert path.line == line


async def test_a_server_that_never_reloaded_its_renewed_certificate() -> None:
    """The client's handshake fails on an expired certificate; the server's Certificate
    renewed its Secret after the server's pods started: they still present the old one."""
    app = crashed_app()
    server = pod("rates-1", ns="rates", labels={"app": "rates"}, created=-60 * 24 * 80,
                 volumes=[{"name": "tls", "secret": {"secretName": "rates-tls"}}])  # fmt: skip
    server["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": t(-60 * 24 * 80)}}
    cert = {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "rates-tls", "namespace": "rates"},
        "spec": {"secretName": "rates-tls", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}},
        "status": {"notBefore": t(-60 * 24 * 15), "notAfter": t(60 * 24 * 75),
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
    }  # fmt: skip
    objects = [
        app,
        server,
        cert,
        {"kind": "Service", "metadata": {"name": "rates", "namespace": "rates"},
         "spec": {"selector": {"app": "rates"}, "ports": [{"port": 8443}]}},
    ]  # fmt: skip
    line = (
        'Get "https://rates.rates.svc:8443/v1/fx": tls: failed to verify certificate: x509: '
        "certificate has expired or is not yet valid: current time "
        f"{t(-1)} is after {t(-300)}"
    )
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [peer] = ctx.tls_peers
    assert (peer.service, peer.secrets, peer.certificates) == (
        "rates",
        ["rates-tls"],
        ["rates-tls"],
    )
    assert "tlspeer/rates.rates" in ids(ctx)
    d = diagnose(ctx)
    assert d.category == Category.CERT_EXPIRED
    assert "rates-tls" in d.root_cause and "reload" in d.root_cause


async def test_an_expired_server_certificate_the_error_does_not_name_is_followed_from_the_url() -> (
    None
):
    """Node.js says only CERT_HAS_EXPIRED; the pod's amqps:// setting names the server, whose
    Certificate did not renew because its Issuer is not Ready."""
    app = crashed_app()
    app["spec"]["containers"][0]["env"] = [
        {"name": "AMQP_URL", "value": "amqps://app@rabbitmq.mq.svc:5671/orders"}
    ]
    server = pod("rabbitmq-0", ns="mq", labels={"app": "rabbitmq"},
                 volumes=[{"name": "tls", "secret": {"secretName": "rabbitmq-tls"}}])  # fmt: skip
    cert = {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "rabbitmq-tls", "namespace": "mq"},
        "spec": {"secretName": "rabbitmq-tls", "issuerRef": {"name": "mq-ca", "kind": "Issuer"}},
        "status": {"notAfter": t(-30), "conditions": [
            {"type": "Ready", "status": "False", "reason": "Expired",
             "message": "Certificate expired"}]},
    }  # fmt: skip
    issuer = {
        "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "mq-ca", "namespace": "mq"},
        "spec": {"ca": {"secretName": "mq-ca-root"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ErrGetKeyPair",
                                   "message": 'secrets "mq-ca-root" not found'}]},
    }  # fmt: skip
    objects = [
        app, server, cert, issuer,
        {"kind": "Service", "metadata": {"name": "rabbitmq", "namespace": "mq"},
         "spec": {"selector": {"app": "rabbitmq"}, "ports": [{"port": 5671}]}},
    ]  # fmt: skip
    line = "ERROR amqp connect failed: Error: certificate has expired  code: 'CERT_HAS_EXPIRED'"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [peer] = ctx.tls_peers
    assert (peer.service, peer.certificates) == ("rabbitmq", ["rabbitmq-tls"])
    d = diagnose(ctx)
    assert d.category == Category.CERT_EXPIRED
    assert "rabbitmq-tls" in d.root_cause and "mq-ca" in d.root_cause


async def test_a_webhook_injecting_its_ca_from_a_certificate_that_is_gone() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "replicas": 2},
        "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                   "reason": "FailedCreate", "message": WEBHOOK_ERROR}]},
    }  # fmt: skip
    objects = [
        deployment,
        webhook_config(ca_days=30),
        {"kind": "Service", "metadata": {"name": "checker", "namespace": "guard"}, "spec": {}},
        {"kind": "Endpoints", "metadata": {"name": "checker", "namespace": "guard"},
         "subsets": [{"addresses": [{"ip": "10.1.2.3"}]}]},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
         "metadata": {"name": "checker-serving", "namespace": "guard"},
         "spec": {"secretName": "checker-tls", "issuerRef": {"name": "guard-ca"},
                  "dnsNames": ["checker.guard.svc", "checker.guard.svc.cluster.local"]},
         "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}},
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", deployment="web"), objects)
    certs = {c.name: c for c in ctx.certificates}
    assert certs["checker-cert"].exists is False
    assert "serving certificate" in certs["checker-serving"].why
    d = diagnose(ctx)
    assert "checker-cert" in d.root_cause and "checker-serving" in d.root_cause


async def test_an_image_filesystem_the_gc_cannot_free_names_the_largest_images() -> None:
    node = node_obj(DiskPressure="True")
    node["status"]["images"] = [
        {"names": ["ghcr.io/acme/trainer@sha256:1f10", "ghcr.io/acme/trainer:811"],
         "sizeBytes": 14231877120},
        {"names": ["registry.k8s.io/pause:3.9"], "sizeBytes": 321520},
    ]  # fmt: skip
    objects = [
        node,
        pod("docs-1", phase="Failed", status={"reason": "Evicted", "message": EVICTED}),
        pod("prepull-x1", ns="ci", owner=("DaemonSet", "prepuller"),
            containers=[{"name": "hold", "image": "ghcr.io/acme/trainer:811"}]),
        event("Node", "worker-1", "ImageGCFailed", "Failed to garbage collect required amount "
              "of images. Attempted to free 18274320384 bytes, but only found 0 bytes eligible "
              "to free.", ns=None),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="docs-1"), objects)
    [snap] = ctx.node_storage
    assert (
        snap.largest_images[0] == "ghcr.io/acme/trainer:811 (14.2 GB, used by DaemonSet prepuller)"
    )
    assert "used by" not in snap.largest_images[1]
    d = diagnose(ctx)
    assert d.category == Category.DISK_PRESSURE and "ghcr.io/acme/trainer:811" in d.root_cause


async def test_a_local_volume_pinned_to_a_node_that_is_gone() -> None:
    waiting = pod("pg-2", phase="Pending", node="",
                  volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-pg-2"}}])  # fmt: skip
    objects = [
        waiting,
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-pg-2", "namespace": "shop"},
         "spec": {"volumeName": "local-pv-3f9a", "storageClassName": "local-nvme"},
         "status": {"phase": "Bound"}},
        {"kind": "PersistentVolume", "metadata": {"name": "local-pv-3f9a"},
         "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
             {"key": "kubernetes.io/hostname", "operator": "In", "values": ["storage-3"]}]}]}}},
         "status": {"phase": "Bound"}},
        event("Pod", "pg-2", "FailedScheduling", "0/3 nodes are available: 3 node(s) had "
              "volume node affinity conflict. preemption: 0/3 nodes are available: 3 "
              "Preemption is not helpful for scheduling."),
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="pg-2"), objects)
    [claim] = ctx.pvcs
    assert claim.volume_nodes_missing == ["storage-3"]
    d = diagnose(ctx)
    assert d.category == Category.PVC_PENDING and "storage-3" in d.root_cause


async def test_a_dependency_without_pods_names_the_workload_scaled_to_zero() -> None:
    app = crashed_app()
    objects = [
        app,
        {"kind": "Service", "metadata": {"name": "orders-db", "namespace": "shop"},
         "spec": {"selector": {"app": "orders-db"}, "ports": [{"port": 5432}]}},
        {"kind": "Endpoints", "metadata": {"name": "orders-db", "namespace": "shop"}},
        {"kind": "StatefulSet", "metadata": {"name": "orders-db", "namespace": "shop"},
         "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "orders-db"}}}},
         "status": {}},
        {"kind": "HorizontalPodAutoscaler",
         "metadata": {"name": "keda-hpa-orders-db", "namespace": "shop",
                      "ownerReferences": [{"kind": "ScaledObject", "name": "nightly-off",
                                           "controller": True}]},
         "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "orders-db"}}},
    ]  # fmt: skip
    line = "could not connect to server: Connection refused, is orders-db:5432 running?"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [svc] = [s for s in ctx.services if s.name == "orders-db"]
    assert "StatefulSet shop/orders-db has 0 replicas (scaled to zero)" in svc.backing
    assert "HPA keda-hpa-orders-db scales it for ScaledObject nightly-off" in svc.backing
    assert "scaled to zero" in diagnose(ctx).root_cause


async def test_coredns_crash_looping_on_its_corefile_is_named_with_its_error() -> None:
    ctx = await gathered(
        alert(namespace="shop", pod="bridge-1"),
        [crashed_app(), coredns("coredns-a", crashing=True),
         corefile("consul-dns.consul.svc.cluster.local"), *KUBE_DNS],
        **{
            "shop__bridge-1__app": "socket.gaierror: [Errno -3] Temporary failure in name "
            "resolution",
            "kube-system__coredns-a__coredns": 'plugin/forward: not an IP address or file: '
            '"consul-dns.consul.svc.cluster.local"',
        },
    )  # fmt: skip
    d = diagnose(ctx)
    assert d.category == Category.DNS_FAILURE
    assert "crash-loop" in d.root_cause and "not an IP address" in d.root_cause
    assert set(d.evidence) <= set(ids(ctx))


@pytest.mark.parametrize(
    "line",
    [
        "dial tcp: lookup orders-db.shop.svc on 10.96.0.10:53: no such host",
        "Error: getaddrinfo EAI_AGAIN orders-db.shop.svc",
        "socket.gaierror: [Errno -5] No address associated with hostname",
        "failed to lookup address information: Name does not resolve",
        "wget: bad address 'config-svc'",
        "ERROR 2005 (HY000): Unknown MySQL server host 'mysql-primary' (-2)",
        'nginx: [emerg] host not found in upstream "api-backend:8080" in /etc/nginx/nginx.conf:12',
        "java.nio.channels.UnresolvedAddressException",
        "System.Net.Sockets.SocketException (00000001, 11): No such host is known",
        "Resolv::ResolvError: no address for redis.cache.svc",
        "queryA ETIMEOUT kafka.events.svc.cluster.local",
        "curl: (6) Could not resolve host: api.partner.example",
        "urllib3.exceptions.NameResolutionError: Failed to resolve 'auth.idp.svc'",
    ],
)
def test_name_resolution_failures_are_recognised_in_each_runtimes_wording(line: str) -> None:
    assert NAME_RESOLUTION_FAILURE.search(line)


@pytest.mark.parametrize(
    "line",
    [
        "Could not resolve placeholder 'DB_URL' in value \"${DB_URL}\"",
        "no record found for user 5512",
        "Could not resolve dependencies for project com.example:api",
        "dial tcp 10.0.4.12:5432: connect: connection refused",
    ],
)
def test_lines_that_only_look_like_name_resolution_are_not(line: str) -> None:
    assert not NAME_RESOLUTION_FAILURE.search(line)


# -- a node out of process IDs ----------------------------------------------------------------


class Processes:
    """Prometheus answering cAdvisor's container_processes per pod, and nothing else."""

    def __init__(self, per_pod: dict[str, float]) -> None:
        self.per_pod = per_pod
        self.queries: list[str] = []

    async def query(self, promql: str) -> dict[str, float]:
        self.queries.append(promql)
        if "container_processes" not in promql:
            return {}
        return {f'{{namespace="shop",pod="{p}"}}': v for p, v in self.per_pod.items()}


async def test_a_node_out_of_pids_names_the_pod_holding_the_most_processes() -> None:
    objects = [
        node_obj("worker-2", PIDPressure="True"),
        pod("api-7d9f8c6b5-k8w3v", node="worker-2", owner=("ReplicaSet", "api-7d9f8c6b5"),
            labels={"app": "api"}),
        pod("renderer-5d8f7c9b6-v6k2q", node="worker-2",
            owner=("ReplicaSet", "renderer-5d8f7c9b6")),
        {"kind": "ReplicaSet", "metadata": {"name": "renderer-5d8f7c9b6", "namespace": "shop",
         "ownerReferences": [{"kind": "Deployment", "name": "renderer", "controller": True}]}},
    ]  # fmt: skip
    prometheus = Processes({"renderer-5d8f7c9b6-v6k2q": 30400, "api-7d9f8c6b5-k8w3v": 212})
    ctx = await gather(
        alert(namespace="shop", pod="api-7d9f8c6b5-k8w3v", container="app"),
        MemoryReader(objects),
        DEFAULT_POLICY,
        metrics=prometheus,
        now=NOW,
    )
    health = next(s for s in ctx.node_health if s.node == "worker-2")
    assert health.pid_holders[0].startswith("pod shop/renderer-5d8f7c9b6-v6k2q")
    assert "30,400 processes" in health.pid_holders[0]
    assert "node/worker-2/pids" in ids(ctx)
    diagnosis = diagnose(ctx)
    assert diagnosis.category is Category.NODE_NOT_READY
    assert "renderer-5d8f7c9b6-v6k2q" in diagnosis.root_cause
    assert "node/worker-2/pids" in diagnosis.evidence


async def test_without_pid_pressure_no_process_count_is_asked() -> None:
    prometheus = Processes({"api-7d9f8c6b5-k8w3v": 212})
    await gather(
        alert(namespace="shop", pod="api-7d9f8c6b5-k8w3v", container="app"),
        MemoryReader([node_obj("worker-2", Ready="False"),
                      pod("api-7d9f8c6b5-k8w3v", node="worker-2")]),
        DEFAULT_POLICY,
        metrics=prometheus,
        now=NOW,
    )  # fmt: skip
    assert not [q for q in prometheus.queries if "container_processes" in q]


class Up:
    """Prometheus answering ``up == 0`` with the given series, and nothing else."""

    def __init__(self, down: list[str]) -> None:
        self.down = down
        self.queries: list[str] = []

    async def query(self, promql: str) -> dict[str, float]:
        self.queries.append(promql)
        return dict.fromkeys(self.down, 0.0) if promql.startswith("up{") else {}


async def test_a_target_down_no_rule_explains_names_the_targets_down_with_pod_and_node() -> None:
    """TargetDown counts the targets ("25% are down"): the report says which one and where."""
    exporters = [
        pod(f"node-exporter-{i}", "monitoring", node=f"worker-{i}",
            labels={"app.kubernetes.io/name": "prometheus-node-exporter"})
        for i in (1, 2, 3)
    ]  # fmt: skip
    svc = {"kind": "Service", "metadata": {"name": "node-exporter", "namespace": "monitoring"},
           "spec": {"selector": {"app.kubernetes.io/name": "prometheus-node-exporter"},
                    "ports": [{"name": "http-metrics", "port": 9100}]}}  # fmt: skip
    a = target_down("node-exporter", "monitoring")
    prometheus = Up(['instance="10.0.3.10:9100",job="node-exporter",pod="node-exporter-3"'])
    ctx = await gather(a, MemoryReader([*exporters, svc]), DEFAULT_POLICY, metrics=prometheus,
                       now=NOW)  # fmt: skip
    assert 'up{job="node-exporter",namespace="monitoring",service="node-exporter"} == 0' in (
        prometheus.queries
    )
    d = diagnose(ctx)
    assert d.category is Category.UNKNOWN
    assert "10.0.3.10:9100 (pod node-exporter-3 on node worker-3)" in d.root_cause
    assert "metric/targets_down" in d.evidence


# -- an injected sidecar is sized by pod annotations ------------------------------------------


async def test_an_oom_killed_mesh_sidecar_names_the_annotation_that_sizes_it() -> None:
    proxy = {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.3",
             "resources": {"limits": {"memory": "128Mi"}}}  # fmt: skip
    p = pod(
        "catalog-6c9b8d7f55-b5m9x",
        owner=("ReplicaSet", "catalog-6c9b8d7f55"),
        containers=[{"name": "app", "image": "app:1"}, proxy],
        status={
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {"name": "istio-proxy", "ready": False, "restartCount": 9,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                              "finishedAt": t(-3)}}},
            ]
        },
    )  # fmt: skip
    p["metadata"]["annotations"] = {"sidecar.istio.io/proxyMemoryLimit": "128Mi"}
    rs = {"kind": "ReplicaSet", "metadata": {"name": "catalog-6c9b8d7f55", "namespace": "shop",
          "ownerReferences": [{"kind": "Deployment", "name": "catalog", "controller": True}]}}  # fmt: skip
    deploy = {"kind": "Deployment", "metadata": {"name": "catalog", "namespace": "shop"}}
    ctx = await gathered(
        alert(namespace="shop", pod="catalog-6c9b8d7f55-b5m9x", container="istio-proxy"),
        [node_obj(), p, rs, deploy],
    )
    d = diagnose(ctx)
    assert d.category is Category.OOM_KILLED
    assert "sized by the pod annotation sidecar.istio.io/proxyMemoryLimit = 128Mi" in d.root_cause
    assert any("patch deployment/catalog" in cmd and "256Mi" in cmd for cmd in d.commands)
    assert not any("set resources" in cmd for cmd in d.commands)


# -- a scrape sent to a port the pods do not serve --------------------------------------------


async def test_target_down_on_a_service_mapping_metrics_to_an_undeclared_port() -> None:
    containers = [{"name": "web", "image": "web:4",
                   "ports": [{"name": "http", "containerPort": 3000},
                             {"name": "metrics", "containerPort": 9464}]}]  # fmt: skip
    pods = [pod(f"web-7d9f8c6b5-{s}", labels={"app": "web"}, containers=containers,
                owner=("ReplicaSet", "web-7d9f8c6b5")) for s in ("a1b2c", "d3e4f")]  # fmt: skip
    svc = {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                              {"name": "metrics", "port": 9464, "targetPort": 9100}]}}  # fmt: skip
    endpoints = {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"},
                 "subsets": [{"addresses": [{"ip": "10.0.0.4"}, {"ip": "10.0.0.5"}],
                              "ports": [{"name": "metrics", "port": 9100}]}]}  # fmt: skip
    ctx = await gathered(
        alert(alertname="TargetDown", job="web", namespace="shop", service="web"),
        [node_obj(), *pods, svc, endpoints],
    )
    d = diagnose(ctx)
    assert d.category is Category.BAD_CONFIG, d.root_cause
    assert "9464->9100" in d.root_cause and "service/web" in d.evidence


# -- an HPA without metrics: metrics-server ---------------------------------------------------


def hpa_without_metrics() -> list[dict[str, Any]]:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2,
                    "maxReplicas": 10},
           "status": {"currentReplicas": 2, "desiredReplicas": 2}}  # fmt: skip
    failed = event(
        "HorizontalPodAutoscaler", "web", "FailedGetResourceMetric",
        "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch "
        "metrics from resource metrics API: the server is currently unable to handle the "
        "request (get pods.metrics.k8s.io)",
    )  # fmt: skip
    return [hpa, failed]


async def test_an_hpa_without_metrics_follows_to_metrics_server_refusing_its_flag() -> None:
    server = pod("metrics-server-5c6fdbb73d-xfm6j", ns="kube-system",
                 labels={"k8s-app": "metrics-server"},
                 containers=[{"name": "metrics-server", "image": "metrics-server:v0.7.2"}])  # fmt: skip
    server["status"]["containerStatuses"][0] |= {
        "ready": False, "restartCount": 12,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }  # fmt: skip
    reader = MemoryReader([*hpa_without_metrics(), server])
    reader.add_log(
        "kube-system", "metrics-server-5c6fdbb73d-xfm6j", "metrics-server",
        "Error: unknown flag: --deprecated-kubelet-completely-insecure\nUsage:\n   [flags]",
        previous=True,
    )  # fmt: skip
    a = alert(alertname="KubeHpaReplicasMismatch", namespace="shop",
              horizontalpodautoscaler="web")  # fmt: skip
    ctx = await gather(a, reader, DEFAULT_POLICY, now=NOW)
    assert ctx.metrics_api is not None
    assert [p.name for p in ctx.metrics_api.pods] == ["metrics-server-5c6fdbb73d-xfm6j"]
    d = diagnose(ctx)
    assert d.category is Category.BAD_CONFIG, d.root_cause
    assert "--deprecated-kubelet-completely-insecure" in d.root_cause
    assert "metricsapi/metrics-server-5c6fdbb73d-xfm6j" in d.evidence


async def test_metrics_server_is_not_read_while_the_hpas_get_their_metrics() -> None:
    reader = MemoryReader([hpa_without_metrics()[0]], forbidden={"Pod"})
    a = alert(alertname="KubeHpaMaxedOut", namespace="shop", horizontalpodautoscaler="web")
    ctx = await gather(a, reader, DEFAULT_POLICY, now=NOW)
    assert ctx.metrics_api is None


async def test_an_old_metrics_gap_of_an_hpa_that_scales_again_is_not_read() -> None:
    hpa, failed = hpa_without_metrics()
    hpa["status"]["conditions"] = [
        {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
         "message": "the HPA was able to successfully calculate a replica count from cpu"},
    ]  # fmt: skip
    reader = MemoryReader([hpa, failed], forbidden={"Pod"})
    a = alert(alertname="KubeHpaMaxedOut", namespace="shop", horizontalpodautoscaler="web")
    ctx = await gather(a, reader, DEFAULT_POLICY, now=NOW)
    assert ctx.metrics_api is None  # its current condition is the truth, not the old event


async def test_a_dependency_pending_on_a_claim_that_is_never_provisioned_is_pvc_pending() -> None:
    app = crashed_app()
    app["spec"]["containers"][0]["env"] = [{"name": "DB_HOST", "value": "orders-pg"}]
    db = pod("orders-pg-0", labels={"app": "orders-pg"}, phase="Pending",
             volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-orders-pg-0"}}],
             status={"conditions": [{"type": "PodScheduled", "status": "False",
                                     "reason": "SchedulerError",
                                     "message": 'running PreBind plugin "VolumeBinding": binding '
                                     'volumes: provisioning failed for PVC "data-orders-pg-0"'}],
                     "containerStatuses": []})  # fmt: skip
    del db["spec"]["nodeName"]
    objects = [
        app, db,
        {"kind": "Service", "metadata": {"name": "orders-pg", "namespace": "shop"},
         "spec": {"selector": {"app": "orders-pg"}, "ports": [{"port": 5432}]}},
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-orders-pg-0",
                                                       "namespace": "shop"},
         "spec": {"storageClassName": "gp3"}, "status": {"phase": "Pending"}},
        event("PersistentVolumeClaim", "data-orders-pg-0", "ProvisioningFailed",
              "failed to provision volume with StorageClass 'gp3': rpc error: code = "
              "ResourceExhausted desc = could not create volume in EC2: api error "
              "VolumeLimitExceeded: You have exceeded your maximum gp3 storage limit"),
    ]  # fmt: skip
    line = "pg_isready: orders-pg:5432 - no response; could not connect to orders-pg"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), objects,
                         **{"shop__bridge-1__app": line})  # fmt: skip
    [svc] = [s for s in ctx.services if s.name == "orders-pg"]
    assert svc.backend_claims and "VolumeLimitExceeded" in svc.backend_claims[0]
    d = diagnose(ctx)
    assert d.category is Category.PVC_PENDING, d.root_cause
    assert "data-orders-pg-0" in d.root_cause and "VolumeLimitExceeded" in d.root_cause


async def test_a_readiness_gate_held_by_the_load_balancer_names_the_ingress_health_check() -> None:
    gate = "target-health.elbv2.k8s.aws/k8s-shop-web-5c1e0d9a7b"
    web = pod("web-7d9f8c6b5-a1b2c", labels={"app": "web"}, owner=("ReplicaSet", "web-7d9f8c6b5"),
              containers=[{"name": "web", "image": "web:3",
                           "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}],
              readinessGates=[{"conditionType": gate}],
              status={"conditions": [
                  {"type": gate, "status": "False", "reason": "Target.FailedHealthChecks",
                   "message": "Health checks failed"},
                  {"type": "ContainersReady", "status": "True"},
                  {"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady",
                   "message": f'the status of pod readiness gate "{gate}" is not "True", but '
                              "False"}]})  # fmt: skip
    objects = [
        web,
        {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"kind": "Ingress", "metadata": {"name": "web", "namespace": "shop", "annotations": {
            "alb.ingress.kubernetes.io/healthcheck-path": "/status",
            "alb.ingress.kubernetes.io/scheme": "internet-facing"}},
         "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
             "service": {"name": "web", "port": {"number": 80}}}}]}}]}},
    ]  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="web-7d9f8c6b5-a1b2c",
                               alertname="KubePodNotReady"), objects)  # fmt: skip
    [g] = ctx.readiness_gates
    assert g.ingress == "web" and g.health_check == {
        "alb.ingress.kubernetes.io/healthcheck-path": "/status"}  # fmt: skip
    d = diagnose(ctx)
    assert d.category is Category.FAILING_PROBE, d.root_cause
    assert "checks /status" in d.root_cause and "/healthz" in d.root_cause


async def test_a_service_name_that_does_not_resolve_finds_where_the_service_went() -> None:
    app = crashed_app()
    app["spec"]["containers"][0]["env"] = [
        {"name": "LEDGER_URL", "value": "http://ledger-db.data.svc.cluster.local:5432/ledger"}
    ]
    moved = {"kind": "Service", "metadata": {"name": "ledger-db", "namespace": "db"},
             "spec": {"selector": {"app": "ledger-db"}, "ports": [{"port": 5432}]}}  # fmt: skip
    line = "java.net.UnknownHostException: ledger-db.data.svc.cluster.local"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), [app, moved],
                         **{"shop__bridge-1__app": line})  # fmt: skip
    assert ctx.dns is not None and ctx.dns.missing_service == "data/ledger-db"
    assert ctx.dns.same_name_elsewhere == ["db/ledger-db"]
    d = diagnose(ctx)
    assert d.category is Category.DNS_FAILURE
    assert "db/ledger-db" in d.root_cause and "LEDGER_URL" in d.root_cause


async def test_an_oom_at_a_limit_the_limit_range_set_names_the_limit_range() -> None:
    p = pod("cache-1", containers=[{"name": "redis", "image": "redis:7",
                                    "resources": {"limits": {"memory": "512Mi"}}}],
            status={"containerStatuses": [{
                "name": "redis", "ready": False, "restartCount": 9,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                             "finishedAt": t(-2)}}}]})  # fmt: skip
    p["metadata"]["annotations"] = {
        "kubernetes.io/limit-ranger": "LimitRanger plugin set: cpu, memory request for container "
        "redis; memory limit for container redis"
    }
    lr = {"kind": "LimitRange", "metadata": {"name": "cache-defaults", "namespace": "shop"},
          "spec": {"limits": [{"type": "Container", "default": {"memory": "512Mi"},
                               "defaultRequest": {"memory": "256Mi"}}]}}  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="cache-1", container="redis"), [p, lr])
    [c] = [c for c in ctx.pods[0].containers if c.name == "redis"]
    assert c.defaulted == ["cpu request", "memory request", "memory limit"]
    d = diagnose(ctx)
    assert d.category is Category.OOM_KILLED
    assert "LimitRange cache-defaults" in d.root_cause
    assert "its own memory limit" in d.immediate_actions[0]


async def test_a_cluster_scope_refusal_reads_the_accounts_cluster_role_binding() -> None:
    app = crashed_app()
    app["spec"]["serviceAccountName"] = "operator"
    crb = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "operator-manager"},
        "roleRef": {"kind": "ClusterRole", "name": "operator-manager"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "shop"}],
    }
    role = {
        "kind": "ClusterRole",
        "metadata": {"name": "operator-manager"},
        "rules": [{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["list"]}],
    }
    other = {"kind": "ClusterRoleBinding", "metadata": {"name": "someone-else"},
             "roleRef": {"kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}  # fmt: skip
    line = ('E1129 reflector.go:158] endpointslices.discovery.k8s.io is forbidden: User '
            '"system:serviceaccount:shop:operator" cannot list resource "endpointslices" in API '
            'group "discovery.k8s.io" at the cluster scope')  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), [app, crb, role, other],
                         **{"shop__bridge-1__app": line})  # fmt: skip
    assert [b.name for b in ctx.role_bindings] == ["operator-manager"]
    d = diagnose(ctx)
    assert d.category is Category.RBAC_FORBIDDEN
    assert "ClusterRole operator-manager (ClusterRoleBinding operator-manager)" in d.root_cause


async def test_unschedulable_nodes_in_a_scheduling_failure_are_named_as_cordoned() -> None:
    pending = pod("ingest-6f34b97b6b-kkgjd", phase="Pending", node="",
                  status={"containerStatuses": []})  # fmt: skip
    del pending["spec"]["nodeName"]
    cordoned = node_obj("worker-3")
    cordoned["spec"] = {"unschedulable": True}
    failed = event("Pod", "ingest-6f34b97b6b-kkgjd", "FailedScheduling",
                   "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient "
                   "memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful.")  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="ingest-6f34b97b6b-kkgjd",
                               alertname="KubePodNotReady"),
                         [pending, cordoned, node_obj("worker-1"), failed])  # fmt: skip
    assert ctx.cordoned_nodes == ["worker-3"]
    d = diagnose(ctx)
    assert d.category is Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE
    assert "cordoned: worker-3" in d.root_cause and "free memory on any node" in d.root_cause
    assert "kubectl uncordon worker-3" in d.commands


@pytest.mark.parametrize(("nodes", "down"), [(3, 1), (12, 1)])
async def test_pods_unplaced_while_nodes_are_down_point_at_the_nodes(nodes: int, down: int) -> None:
    """The scheduler skips a node for the unreachable taint and finds no room on the others:
    the node that is down is read (it hosts none of the gathered pods) and is the cause when it
    is a real share of the cluster; one node of twelve leaves the shortage the cause."""
    pending = pod("ingest-6f34b97b6b-kkgjd", phase="Pending", node="",
                  status={"containerStatuses": []})  # fmt: skip
    del pending["spec"]["nodeName"]
    failed = event("Pod", "ingest-6f34b97b6b-kkgjd", "FailedScheduling",
                   f"0/{nodes} nodes are available: {down} node(s) had untolerated taint "
                   "{node.kubernetes.io/unreachable: }, "
                   f"{nodes - down} Insufficient memory. preemption: 0/{nodes} nodes are "
                   f"available: {nodes} Preemption is not helpful for scheduling.")  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="ingest-6f34b97b6b-kkgjd",
                               alertname="KubePodNotReady"),
                         [pending, node_obj("worker-1"), node_obj("worker-3", Ready="Unknown"),
                          failed])  # fmt: skip
    assert [n.name for n in ctx.nodes] == ["worker-3"]
    assert [r.kind for r in ctx.scheduling[0].reasons] == ["not_ready", "insufficient"]
    d = diagnose(ctx)
    if nodes == 3:
        assert d.category is Category.NODE_NOT_READY
        assert "worker-3" in d.root_cause and "ingest-6f34b97b6b-kkgjd" in d.root_cause
    else:
        assert d.category is Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE


async def test_an_object_count_quota_names_the_objects_that_fill_it() -> None:
    q = {
        "kind": "ResourceQuota",
        "metadata": {"name": "objects", "namespace": "shop"},
        "spec": {"hard": {"count/jobs.batch": "4"}},
        "status": {"hard": {"count/jobs.batch": "4"}, "used": {"count/jobs.batch": "4"}},
    }
    jobs = [
        {
            "kind": "Job",
            "metadata": {
                "name": f"backfill-2026-11-0{i}",
                "namespace": "shop",
                "creationTimestamp": t(-600 + i),
            },
        }
        for i in range(1, 4)
    ]
    jobs.append(
        {
            "kind": "Job",
            "metadata": {
                "name": "extract-29047700",
                "namespace": "shop",
                "creationTimestamp": t(-30),
                "ownerReferences": [{"kind": "CronJob", "name": "extract", "controller": True}],
            },
        }
    )
    refused = event("CronJob", "extract", "FailedCreate",
                    'Error creating job: jobs.batch "extract-29047710" is forbidden: exceeded '
                    "quota: objects, requested: count/jobs.batch=1, used: count/jobs.batch=4, "
                    "limited: count/jobs.batch=4")  # fmt: skip
    ctx = await gathered(alert(alertname="KubeQuotaFullyUsed", namespace="shop",
                               resourcequota="objects", resource="count/jobs.batch"),
                         [q, *jobs, refused])  # fmt: skip
    [snap] = ctx.quota_consumers
    top = snap.consumers[0]
    assert (top.kind, top.name, top.amount) == ("Job", "backfill-*", 3.0)
    d = diagnose(ctx)
    assert d.category is Category.QUOTA_EXCEEDED
    assert "backfill-*" in d.root_cause


async def test_a_claim_waiting_for_its_csi_driver_names_the_crashing_controller() -> None:
    claim = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": "shop"},
        "spec": {"storageClassName": "gp3"},
        "status": {"phase": "Pending"},
    }
    sc = {"kind": "StorageClass", "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com"}
    db = pod("db-0", phase="Pending", status={"containerStatuses": []},
             volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}])  # fmt: skip
    controller = pod("ebs-csi-controller-cb8bff87c8-2b7gq", ns="kube-system",
                     containers=[{"name": "ebs-plugin", "image": "aws-ebs-csi-driver:v1.37.0"},
                                 {"name": "csi-provisioner", "image": "csi-provisioner:v5.1.0"}],
                     status={"containerStatuses": [
                         {"name": "ebs-plugin", "ready": False, "restartCount": 14,
                          "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                          "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                         {"name": "csi-provisioner", "ready": True, "restartCount": 0,
                          "state": {"running": {}}}]})  # fmt: skip
    other = pod("efs-csi-controller-7d9f8c6b5-x2kqp", ns="kube-system",
                containers=[{"name": "efs-plugin", "image": "aws-efs-csi-driver:v2"},
                            {"name": "csi-provisioner", "image": "csi-provisioner:v5.1.0"}])  # fmt: skip
    waiting = event("PersistentVolumeClaim", "data-db-0", "ExternalProvisioning",
                    'Waiting for a volume to be created either by the external provisioner '
                    '"ebs.csi.aws.com" or manually by the system administrator.')  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="db-0", alertname="KubePodNotReady"),
                         [claim, sc, db, controller, other, waiting])  # fmt: skip
    [snap] = ctx.pvcs
    assert snap.provisioner_pods == [
        "ebs-csi-controller-cb8bff87c8-2b7gq: ebs-plugin CrashLoopBackOff (exit 1), 14 restarts"
    ]
    d = diagnose(ctx)
    assert d.category is Category.PVC_PENDING and "ebs-csi-controller" in d.root_cause


async def test_a_csi_controller_scaled_to_zero_is_named_with_its_downscaler() -> None:
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-db-0", "namespace": "shop"},
             "spec": {"storageClassName": "gp3"}, "status": {"phase": "Pending"}}  # fmt: skip
    sc = {"kind": "StorageClass", "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com"}
    db = pod("db-0", phase="Pending", status={"containerStatuses": []},
             volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}])  # fmt: skip
    controller = {
        "kind": "Deployment",
        "metadata": {"name": "ebs-csi-controller", "namespace": "kube-system",
                     "annotations": {"downscaler/original-replicas": "2"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "ebs-csi-controller"}},
                 "template": {"spec": {"containers": [
                     {"name": "ebs-plugin", "image": "aws-ebs-csi-driver:v1.37.0"},
                     {"name": "csi-provisioner", "image": "csi-provisioner:v5.1.0"}]}}},
    }  # fmt: skip
    waiting = event("PersistentVolumeClaim", "data-db-0", "ExternalProvisioning",
                    'Waiting for a volume to be created either by the external provisioner '
                    '"ebs.csi.aws.com" or manually by the system administrator.')  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="db-0", alertname="KubePodNotReady"),
                         [claim, sc, db, controller, waiting])  # fmt: skip
    [snap] = ctx.pvcs
    assert snap.provisioner_pods == [
        "ebs-csi-controller: Deployment scaled to 0 replicas by kube-downscaler "
        "(downscaler/original-replicas=2): no controller pod runs"
    ]
    d = diagnose(ctx)
    assert "ebs-csi-controller" in d.root_cause
    assert "Scale the CSI driver's controller back up" in d.immediate_actions[0]


async def test_a_mounted_config_file_is_kept_for_the_rules() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "pg-config", "namespace": "shop"},
          "data": {"postgresql.conf": "shared_preload_libraries = 'pg_cron'\n"}}  # fmt: skip
    env = {"kind": "ConfigMap", "metadata": {"name": "pg-env", "namespace": "shop"},
           "data": {"PGDATA": "/var/lib/postgresql/data"}}  # fmt: skip
    db = pod("db-0", volumes=[{"name": "conf", "configMap": {"name": "pg-config"}}],
             containers=[{"name": "postgres", "image": "postgres:16",
                          "envFrom": [{"configMapRef": {"name": "pg-env"}}]}])  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="db-0"), [cm, env, db])
    assert ctx.mounted_config == {"pg-config": cm["data"]}  # the env-only ConfigMap is not a file


async def test_a_refused_vault_login_reads_who_may_review_tokens() -> None:
    app = crashed_app()
    moved = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vault-server-binding"},
        "roleRef": {"kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "vault", "namespace": "vault"}],
    }
    unrelated = {"kind": "ClusterRoleBinding", "metadata": {"name": "someone-else"},
                 "roleRef": {"kind": "ClusterRole", "name": "view"},
                 "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}  # fmt: skip
    vault_sa = {"kind": "ServiceAccount", "metadata": {"name": "vault", "namespace": "vault-2"}}
    log_text = "\n".join([
        "2025-07-22T08:55:12.131Z [ERROR] agent.auth.handler: error authenticating:",
        "  error=",
        "  | Error making API request.",
        "  |",
        "  | URL: PUT http://vault.vault-2.svc:8200/v1/auth/kubernetes/login",
        "  | Code: 403. Errors:",
        "  |",
        "  | * permission denied",
    ])  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), [app, moved, unrelated, vault_sa],
                         **{"shop__bridge-1__app": log_text})  # fmt: skip
    [binding] = ctx.role_bindings
    assert binding.name == "vault-server-binding"
    assert binding.missing_subjects == ["ServiceAccount vault/vault"]
    d = diagnose(ctx)
    assert d.category is Category.RBAC_FORBIDDEN
    assert "vault-server-binding" in d.root_cause and "tokenreviews" in d.root_cause
    # the binding naming an account that exists is not blamed
    moved["subjects"][0]["namespace"] = "vault-2"
    ctx = await gathered(alert(namespace="shop", pod="bridge-1"), [app, moved, vault_sa],
                         **{"shop__bridge-1__app": log_text})  # fmt: skip
    assert ctx.role_bindings[0].missing_subjects == []
    assert "vault-server-binding" not in diagnose(ctx).root_cause


def kubelet_csr(name: str, node: str, created: str, approved: bool = False) -> dict[str, Any]:
    return {
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {
            "signerName": "kubernetes.io/kubelet-serving",
            "username": f"system:node:{node}",
            "usages": ["digital signature", "server auth"],
        },
        "status": {"conditions": [{"type": "Approved", "status": "True"}]} if approved else {},
    }


async def test_a_kubelet_scrape_down_with_serving_csrs_pending_for_hours_is_an_expired_cert() -> (
    None
):
    objects = [
        kubelet_csr("csr-old", "worker-1", t(-60 * 24), approved=True),
        kubelet_csr("csr-n8zqf", "worker-2", t(-60 * 26)),
        kubelet_csr("csr-4vzzh", "worker-2", t(-60 * 2)),
        kubelet_csr("csr-fresh", "worker-3", t(-3)),  # asked minutes ago: not stuck
        {"kind": "CertificateSigningRequest", "metadata": {"name": "client", "creationTimestamp": t(-600)},
         "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                  "username": "system:node:worker-4"}, "status": {}},
    ]  # fmt: skip
    down = alert(alertname="TargetDown", job="kubelet", namespace="kube-system",
                 service="kube-prometheus-stack-kubelet")  # fmt: skip
    ctx = await gathered(down, objects)
    by_node = {s.node: s for s in ctx.kubelet_csrs if s.signer == "kubernetes.io/kubelet-serving"}
    assert set(by_node) == {"worker-1", "worker-2", "worker-3"}
    # the client signer is kept apart: its renewals are another certificate
    client = [s for s in ctx.kubelet_csrs if s.signer != "kubernetes.io/kubelet-serving"]
    assert [s.node for s in client] == ["worker-4"]
    assert by_node["worker-2"].pending == 2 and by_node["worker-2"].oldest_pending == t(-60 * 26)
    assert by_node["worker-1"].pending == 0 and by_node["worker-1"].last_issued == t(-60 * 24)
    d = diagnose(ctx)
    assert d.category is Category.CERT_EXPIRED
    assert "worker-2" in d.root_cause and "kubernetes.io/kubelet-serving" in d.root_cause
    assert "csr/worker-2" in d.evidence
    # a crash loop elsewhere reads no CSRs
    assert (await gathered(alert(namespace="shop", pod="bridge-1"), objects)).kubelet_csrs == []


def client_csr(name: str, node: str, created: str) -> dict[str, Any]:
    return {"kind": "CertificateSigningRequest", "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "username": f"system:node:{node}"}, "status": {}}  # fmt: skip


async def test_client_cert_expiring_with_kubelet_renewals_pending_and_no_selfnodeclient_binding() -> (
    None
):
    objects = [client_csr(f"csr-{i}", "worker-2", t(-60 * (30 - i))) for i in range(3)]
    expiring = alert(alertname="KubeClientCertificateExpiration", job="apiserver",
                     namespace="default", service="kubernetes", instance="10.0.0.1:6443")  # fmt: skip
    ctx = await gathered(expiring, objects)
    assert ctx.client_renewal_bindings == []
    d = diagnose(ctx)
    assert d.category is Category.CERT_EXPIRED
    assert "worker-2" in d.root_cause and "selfnodeclient" in d.root_cause
    assert "csr/worker-2/client" in d.evidence
    # with the binding in place the renewals are merely waiting: a weaker claim
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "kubeadm:node-autoapprove-certificate-rotation"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"},
               "subjects": [{"kind": "Group", "name": "system:nodes"}]}  # fmt: skip
    bound = diagnose(await gathered(expiring, [*objects, binding]))
    assert bound.category is Category.CERT_EXPIRED and bound.confidence < d.confidence


def peer_authentication(ns: str, mode: str, **selector: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"mtls": {"mode": mode}}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": ns, "creationTimestamp": t(-40)},
            "spec": spec}  # fmt: skip


async def test_strict_mtls_resets_the_probes_istio_was_told_not_to_rewrite() -> None:
    sidecared = pod("quote-1", labels={"app": "quote"},
                    containers=[{"name": "app", "image": "quote:1",
                                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}},
                                {"name": "istio-proxy", "image": "istio/proxyv2:1.22.3"}])  # fmt: skip
    sidecared["metadata"]["annotations"] = {"sidecar.istio.io/rewriteAppHTTPProbers": "false"}
    sidecared["status"]["containerStatuses"][0] |= {"restartCount": 6}
    reset = ('Liveness probe failed: Get "http://10.244.1.123:8080/healthz": read tcp '
             "10.33.1.21:43812->10.244.1.123:8080: read: connection reset by peer")  # fmt: skip
    objects = [sidecared, event("Pod", "quote-1", "Unhealthy", reset),
               peer_authentication("shop", "STRICT"),
               peer_authentication("istio-system", "PERMISSIVE")]  # fmt: skip
    a = alert(namespace="shop", pod="quote-1", container="app")
    ctx = await gathered(a, objects)
    assert {(p.namespace, p.mode) for p in ctx.peer_authentications} == {
        ("shop", "STRICT"),
        ("istio-system", "PERMISSIVE"),
    }
    d = diagnose(ctx)
    assert d.category is Category.FAILING_PROBE
    assert "rewriteAppHTTPProbers" in d.root_cause and "STRICT" in d.root_cause
    assert "peerauth/shop/default" in d.evidence
    # PERMISSIVE in the namespace, which outranks the mesh-wide policy: plaintext is accepted
    objects[2] = peer_authentication("shop", "PERMISSIVE")
    objects[3] = peer_authentication("istio-system", "STRICT")
    assert "STRICT" not in diagnose(await gathered(a, objects)).root_cause
    # rewriting on (the default): the kubelet asks the agent, not the app port
    del sidecared["metadata"]["annotations"]
    assert "rewriteAppHTTPProbers" not in diagnose(await gathered(a, objects)).root_cause


async def test_a_lost_claim_names_the_job_that_logged_deleting_its_volume() -> None:
    volume = "pvc-0b7d3e51-9a2c-4f1e-8d63-5c2a91e0f4b7"
    broker = pod("kafka-2", phase="Pending", node="",
                 volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-kafka-2"}}],
                 status={"containerStatuses": []})  # fmt: skip
    del broker["spec"]["nodeName"]
    claim = {"kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-kafka-2", "namespace": "shop"},
             "spec": {"volumeName": volume, "storageClassName": "gp3",
                      "resources": {"requests": {"storage": "500Gi"}}},
             "status": {"phase": "Lost"}}  # fmt: skip
    janitor = pod("pv-janitor-29199660-x7k2p", labels={"job-name": "pv-janitor-29199660"},
                  containers=[{"name": "janitor", "image": "pv-janitor:0.9.2"}], phase="Succeeded")  # fmt: skip
    other = pod("report-29199661-abcde", labels={"job-name": "report-29199661"}, created=-30)
    log = "\n".join([
        f'{{"level":"warn","msg":"volume not attached for 72h+, treating as orphaned","pv":"{volume}"}}',
        f'{{"level":"info","msg":"deleted persistentvolume","pv":"{volume}"}}',
    ])  # fmt: skip
    ctx = await gathered(
        alert(alertname="KubePodNotReady", namespace="shop", pod="kafka-2"),
        [broker, claim, janitor, other],
        **{
            "shop__pv-janitor-29199660-x7k2p__janitor": log,
            "shop__report-29199661-abcde__app": f"read {volume} size",
        },
    )
    [snap] = ctx.pvcs
    assert snap.volume_missing
    assert snap.volume_deleted_by is not None
    assert snap.volume_deleted_by.startswith(
        "Job pv-janitor-29199660 (pod pv-janitor-29199660-x7k2p)"
    )
    d = diagnose(ctx)
    assert d.category is Category.PVC_PENDING
    assert "pv-janitor-29199660" in d.root_cause and "no longer exists" in d.root_cause


async def test_a_linkerd_proxy_without_identity_follows_the_identity_issuer_certificate() -> None:
    app = pod("router-1", containers=[{"name": "app", "image": "router:1"},
                                      {"name": "linkerd-proxy", "image": "linkerd/proxy:2.14"}])  # fmt: skip
    app["status"]["containerStatuses"][1]["ready"] = False
    app["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    cert = {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "linkerd-identity-issuer", "namespace": "mesh"},
        "spec": {"secretName": "linkerd-identity-issuer", "isCA": True,
                 "issuerRef": {"name": "linkerd-trust-anchor", "kind": "Issuer"}},
        "status": {"notAfter": t(-40), "conditions": [
            {"type": "Ready", "status": "False", "reason": "Expired",
             "message": "Certificate expired"}]},
    }  # fmt: skip
    anchor = {
        "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "linkerd-trust-anchor", "namespace": "mesh"},
        "spec": {"ca": {"secretName": "linkerd-trust-anchor"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ErrGetKeyPair",
                                   "message": 'secret "linkerd-trust-anchor" not found'}]},
    }  # fmt: skip
    log = "\n".join([
        "WARN identity:controller{addr=linkerd-identity-headless.mesh.svc.cluster.local:8080}: "
        "linkerd_app_core::control: Failed to resolve control-plane component",
        'WARN daemon:identity: linkerd_app: Failed to obtain identity error=status: Unknown, '
        'message: "issuer certificate is invalid: x509: certificate has expired or is not yet '
        'valid: current time 2025-07-31T09:20:44Z is after 2025-07-31T09:12:00Z"',
    ])  # fmt: skip
    ctx = await gathered(alert(alertname="KubePodNotReady", namespace="shop", pod="router-1"),
                         [app, cert, anchor], **{"shop__router-1__linkerd-proxy": log})  # fmt: skip
    assert [c.name for c in ctx.certificates] == ["linkerd-identity-issuer"]
    d = diagnose(ctx)
    assert d.category is Category.CERT_EXPIRED
    assert "linkerd-identity-issuer" in d.root_cause and "linkerd-trust-anchor" in d.root_cause


# -- session 6: a PodMonitor's pods, a pod of a headless Service ------------------------------


async def test_a_podmonitor_job_gathers_the_pods_its_selector_picks() -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "transcoder", "namespace": "media"},
        "spec": {"selector": {"matchLabels": {"app": "transcoder"}}},
    }
    objects = [
        monitor,
        pod("transcoder-0", "media", labels={"app": "transcoder"}),
        pod("uploader-0", "media", labels={"app": "uploader"}),
    ]
    ctx = await gathered(
        alert(alertname="TargetDown", job="media/transcoder", namespace="media"), objects
    )
    assert ctx.target.kind == "PodMonitor"
    assert [p.name for p in ctx.pods] == ["transcoder-0"]


def test_a_pod_of_a_headless_service_names_the_service() -> None:
    from oncallm.gathering.sources.dns import SERVICE_DNS

    m = SERVICE_DNS.search(
        "DNS resolution failed for kafka-2.kafka-headless.stream.svc.cluster.local"
    )
    assert m is not None and (m.group(1), m.group(2)) == ("kafka-headless", "stream")
    m = SERVICE_DNS.search("dial tcp: lookup orders-db.shop.svc.cluster.local: no such host")
    assert m is not None and (m.group(1), m.group(2)) == ("orders-db", "shop")


async def test_a_subpath_key_the_configmap_lost_is_that_key_missing() -> None:
    users = {
        "kind": "ConfigMap",
        "metadata": {"name": "ch-users", "namespace": "shop"},
        "data": {"users.yaml": "users: {}"},
    }
    failed = (
        "failed to create containerd task: failed to create shim task: OCI runtime create "
        "failed: runc create failed: unable to start container process: error during container "
        'init: error mounting "/var/lib/kubelet/pods/0f/volume-subpaths/users/ch/0" to rootfs '
        'at "/etc/ch/users.xml": not a directory: unknown: Are you trying to mount a directory '
        "onto a file (or vice-versa)?"
    )
    ch = pod(
        "ch-0",
        containers=[
            {
                "name": "ch",
                "image": "clickhouse:24",
                "volumeMounts": [
                    {"name": "users", "mountPath": "/etc/ch/users.xml", "subPath": "users.xml"}
                ],
            }
        ],
        volumes=[{"name": "users", "configMap": {"name": "ch-users"}}],
        status={
            "containerStatuses": [
                {
                    "name": "ch",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"reason": "StartError", "exitCode": 128, "message": failed}
                    },
                }
            ]
        },
    )
    ctx = await gathered(alert(namespace="shop", pod="ch-0", container="ch"), [users, ch])
    assert "ConfigMap shop/ch-users key users.xml" in ctx.missing_keys
    d = diagnose(ctx)
    assert d.category is Category.MISSING_SECRET_OR_CONFIGMAP
    assert "users.xml" in d.root_cause and "ch-users" in d.root_cause


async def test_a_drain_held_by_a_budget_allowing_no_disruption_is_the_stuck_rollout() -> None:
    def versioned(name: str, version: str, **spec: Any) -> dict[str, Any]:
        n = node_obj(name)
        n["status"]["nodeInfo"] = {"kubeletVersion": version}
        n["spec"] = spec
        return n

    draining = versioned(
        "worker-1",
        "v1.29.8",
        taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}],
    )
    pdb = {
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "api-pdb", "namespace": "shop"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "api"}}},
        "status": {"currentHealthy": 3, "desiredHealthy": 3, "disruptionsAllowed": 0,
                   "expectedPods": 3},
    }  # fmt: skip
    roomy = {
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "shop"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 1},
    }
    objects = [
        draining,
        versioned("worker-2", "v1.30.4"),
        pdb,
        roomy,
        pod("api-1", labels={"app": "api"}, node="worker-1"),
        pod("web-1", labels={"app": "web"}, node="worker-1"),
    ]
    ctx = await gathered(alert(alertname="KubeVersionMismatch"), objects)
    assert [b.name for d in ctx.drains for b in d.blocking] == ["api-pdb"]
    d = diagnose(ctx)
    assert d.category is Category.ROLLOUT_STUCK
    assert "api-pdb" in d.root_cause and "worker-1" in d.root_cause and "v1.30.4" in d.root_cause


async def test_a_token_refused_while_its_refresher_cronjob_fails_is_the_refreshers_role() -> None:
    cronjob = {
        "kind": "CronJob",
        "metadata": {"name": "token-refresh", "namespace": "shop"},
        "spec": {
            "schedule": "*/20 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "refresh", "image": "kubectl:1.31",
                 "args": ["apply", "secret", "api-token"]}]}}}},
        },
        "status": {"lastSuccessfulTime": t(-95)},
    }  # fmt: skip
    job = {
        "kind": "Job",
        "metadata": {
            "name": "token-refresh-2901",
            "namespace": "shop",
            "creationTimestamp": t(-15),
            "ownerReferences": [{"kind": "CronJob", "name": "token-refresh", "controller": True}],
        },
        "status": {
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        },
    }
    job_pod = pod("token-refresh-2901-x7k2p", labels={"job-name": "token-refresh-2901"},
                  containers=[{"name": "refresh", "image": "kubectl:1.31"}])  # fmt: skip
    app = pod(
        "sync-1",
        containers=[{"name": "app", "image": "sync:3", "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "t"}}}]}],
    )  # fmt: skip
    forbidden = (
        'Error from server (Forbidden): secrets "api-token" is forbidden: User '
        '"system:serviceaccount:shop:token-refresher" cannot patch resource "secrets" in API '
        'group "" in the namespace "shop"'
    )
    ctx = await gathered(
        alert(namespace="shop", pod="sync-1", container="app"),
        [cronjob, job, job_pod, app],
        **{
            "shop__token-refresh-2901-x7k2p__refresh": forbidden,
            "shop__sync-1__app": '{"level":"error","msg":"POST /v3/sync 401 Unauthorized",'
            '"body":{"error":"invalid_token"}}\nError: Request failed with status code 401',
        },
    )
    assert [s.refresher.name for s in ctx.credential_refreshers] == ["token-refresh"]
    d = diagnose(ctx)
    assert d.category is Category.RBAC_FORBIDDEN
    assert "token-refresher" in d.root_cause and "api-token" in d.root_cause


async def test_a_service_selecting_no_pod_names_the_relabelled_pods_that_serve_its_port() -> None:
    svc = {
        "kind": "Service",
        "metadata": {"name": "rabbitmq", "namespace": "shop"},
        "spec": {"selector": {"app.kubernetes.io/name": "rabbitmq"},
                 "ports": [{"port": 5672, "targetPort": 5672}]},
    }  # fmt: skip
    ep = {"kind": "Endpoints", "metadata": {"name": "rabbitmq", "namespace": "shop"}, "subsets": []}
    server = pod(
        "mq-server-0",
        labels={"app.kubernetes.io/name": "mq"},
        containers=[
            {"name": "rabbitmq", "image": "rabbitmq:3", "ports": [{"containerPort": 5672}]}
        ],
    )
    other = pod("web-0", labels={"app.kubernetes.io/name": "web"},
                containers=[{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}])  # fmt: skip
    client = pod(
        "api-0",
        containers=[
            {"name": "app", "image": "api:1", "env": [{"name": "MQ_HOST", "value": "rabbitmq"}]}
        ],
    )
    ctx = await gathered(
        alert(namespace="shop", pod="api-0", container="app"),
        [svc, ep, server, other, client],
        **{"shop__api-0__app": "dial tcp: connect to rabbitmq.shop.svc:5672: connection refused"},
    )
    backing = next(s.backing for s in ctx.services if s.name == "rabbitmq")
    assert backing is not None and "mq-server-0" in backing and "web-0" not in backing


def test_a_kubelet_serving_csr_is_the_nodes_by_its_subject_whoever_created_it() -> None:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from oncallm.gathering.sources.kubelet_certs import SIGNER, node_csrs

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:worker-7")])
    pem = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    request = base64.b64encode(pem.public_bytes(serialization.Encoding.PEM)).decode()
    csr = {
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-x1", "creationTimestamp": t(-120)},
        # the API server writes whoever created the object: an admin when it was planted
        "spec": {"signerName": SIGNER, "username": "kubernetes-admin", "request": request},
        "status": {},
    }
    [snap] = node_csrs([csr])
    assert snap.node == "worker-7" and snap.pending == 1


def test_a_containers_command_keeps_a_late_address_flag() -> None:
    from oncallm.gathering.sources.pods import MAX_COMMAND_WORDS, container_snapshot

    flags = [f"--flag-{i}=x" for i in range(20)]
    spec = {
        "name": "kube-controller-manager",
        "image": "registry.k8s.io/kube-controller-manager:v1.30.6",
        "command": [
            "kube-controller-manager",
            *flags[:12],
            "--bind-address=127.0.0.1",
            *flags[12:],
        ],
    }
    words = container_snapshot(spec, None).command
    assert words[:MAX_COMMAND_WORDS] == ["kube-controller-manager", *flags[: MAX_COMMAND_WORDS - 1]]
    assert words[MAX_COMMAND_WORDS:] == ["--bind-address=127.0.0.1"]


def _affinity(*exprs: dict[str, Any], fields: bool = False) -> dict[str, Any]:
    term = {"matchFields" if fields else "matchExpressions": list(exprs)}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


@pytest.mark.parametrize(
    ("spec", "node"),
    [
        # what the DaemonSet controller writes into each pod it creates
        (
            {
                "affinity": _affinity(
                    {"key": "metadata.name", "operator": "In", "values": ["worker-3"]}, fields=True
                )
            },
            "worker-3",
        ),
        ({"nodeSelector": {"kubernetes.io/hostname": "worker-1"}}, "worker-1"),
        (
            {
                "affinity": _affinity(
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-2"]}
                )
            },
            "worker-2",
        ),
        # several nodes, other keys, or nothing said: not pinned
        (
            {
                "affinity": _affinity(
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a", "b"]}
                )
            },
            None,
        ),
        (
            {
                "affinity": _affinity(
                    {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["a"]}
                )
            },
            None,
        ),
        ({"nodeSelector": {"pool": "gpu"}}, None),
        ({}, None),
    ],
)
def test_a_pod_pinned_to_one_node_by_its_spec_names_it(
    spec: dict[str, Any], node: str | None
) -> None:
    from oncallm.gathering.sources.pods import pinned_node

    assert pinned_node(spec) == node


def test_a_workload_kube_downscaler_scaled_to_zero_says_so() -> None:
    from oncallm.gathering.sources.services import _downscaled

    down = {
        "metadata": {
            "annotations": {
                "downscaler/original-replicas": "2",
                "downscaler/downtime": "Mon-Sun 01:00-06:00 UTC",
            }
        }
    }
    assert _downscaled(down) == (
        "; kube-downscaler scaled it down from 2 replicas (downtime Mon-Sun 01:00-06:00 UTC)"
    )
    assert _downscaled({"metadata": {"annotations": {"downscaler/uptime": "Mon-Fri"}}}) == ""
    assert _downscaled({"metadata": {}}) == ""


async def test_an_app_alert_naming_a_service_that_does_not_exist_reads_the_workload_of_that_name() -> (
    None
):
    labels = {"app": "notify-worker"}
    objects: list[dict[str, Any]] = [
        {"kind": "Deployment", "apiVersion": "apps/v1",
         "metadata": {"name": "notify-worker", "namespace": "shop", "uid": "d1"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                      {"name": "worker", "image": "worker:1"}]}}},
         "status": {"replicas": 1}},
        {"kind": "Pod", "apiVersion": "v1",
         "metadata": {"name": "notify-worker-0", "namespace": "shop", "labels": labels,
                      "ownerReferences": [{"kind": "Deployment", "name": "notify-worker",
                                           "uid": "d1", "controller": True}]},
         "spec": {"nodeName": "w1", "containers": [{"name": "worker", "image": "worker:1"}]},
         "status": {"phase": "Running"}},
    ]  # fmt: skip
    ctx = await gathered(
        alert(alertname="NotifyOutboxBacklogHigh", namespace="shop", service="notify-worker",
              job="notify-worker-metrics"),
        objects,
    )  # fmt: skip
    assert ctx.target.kind == "Service"
    assert [p.name for p in ctx.pods] == ["notify-worker-0"]


async def test_target_down_of_a_service_not_read_reads_the_daemonset_of_that_name() -> None:
    """node-exporter's chart names its Service after its DaemonSet: TargetDown for a Service
    that is not there still reaches the DaemonSet's pods, and the node one of them is on."""
    labels = {"app.kubernetes.io/name": "prometheus-node-exporter"}
    name = "kube-prometheus-stack-prometheus-node-exporter"
    objects: list[dict[str, Any]] = [
        {"kind": "DaemonSet", "apiVersion": "apps/v1",
         "metadata": {"name": name, "namespace": "monitoring", "uid": "ds1"},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                      {"name": "node-exporter", "image": "node-exporter:1.8"}]}}},
         "status": {"desiredNumberScheduled": 2, "numberReady": 1}},
        *[{"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": f"{name}-{n}", "namespace": "monitoring", "labels": labels,
                        "ownerReferences": [{"kind": "DaemonSet", "name": name, "uid": "ds1",
                                             "controller": True}]},
           "spec": {"nodeName": n, "containers": [{"name": "node-exporter", "image": "ne:1"}]},
           "status": {"phase": "Running"}} for n in ("w1", "w2")],
    ]  # fmt: skip
    ctx = await gathered(
        alert(alertname="TargetDown", namespace="monitoring", service=name, job="node-exporter"),
        objects,
    )  # fmt: skip
    assert ctx.target.display == f"service/monitoring/{name}"
    assert sorted(p.name for p in ctx.pods) == [f"{name}-w1", f"{name}-w2"]


async def test_a_secret_issued_in_another_namespace_names_the_mirror_that_skips_this_one() -> None:
    cert = {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "wildcard", "namespace": "cert-manager"},
        "spec": {"secretName": "wildcard-tls", "issuerRef": {"kind": "ClusterIssuer", "name": "le"},
                 "secretTemplate": {"annotations": {
                     "reflector.v1.k8s.emberstack.com/reflection-auto-namespaces": "shop-.*,blog"}}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
    }  # fmt: skip
    web = pod("docs-1", ns="docs", phase="Pending",
              volumes=[{"name": "tls", "secret": {"secretName": "wildcard-tls"}}])  # fmt: skip
    mount = event("Pod", "docs-1", "FailedMount",
                  'MountVolume.SetUp failed for volume "tls" : secret "wildcard-tls" not found',
                  ns="docs")  # fmt: skip
    ctx = await gathered(alert(namespace="docs", pod="docs-1"), [cert, web, mount])
    assert [c.name for c in ctx.certificates] == ["wildcard"]
    d = diagnose(ctx)
    assert d.category is Category.MISSING_SECRET_OR_CONFIGMAP
    assert "Certificate cert-manager/wildcard" in d.root_cause
    assert "docs is not among them" in d.root_cause
    assert "reflection-auto-namespaces" in d.immediate_actions[0]
    # a namespace the pattern covers: listed, so the copy itself is what is missing
    cert["metadata"]["namespace"] = "cert-manager"
    web["metadata"]["namespace"] = mount["involvedObject"]["namespace"] = "shop-eu"
    mount["metadata"]["namespace"] = "shop-eu"
    ctx = await gathered(alert(namespace="shop-eu", pod="docs-1"), [cert, web, mount])
    assert "shop-eu is listed, yet no copy exists" in diagnose(ctx).root_cause


async def test_a_statefulset_held_at_its_partition_says_what_the_update_changes() -> None:
    def revision(name: str, number: int, image: str) -> dict[str, Any]:
        return {"kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": "kafka"},
                             "ownerReferences": [{"kind": "StatefulSet", "name": "kafka",
                                                  "controller": True}]},
                "revision": number,
                "data": {"spec": {"template": {"$patch": "replace", "spec": {
                    "containers": [{"name": "kafka", "image": image}]}}}}}  # fmt: skip

    sts = {"kind": "StatefulSet", "metadata": {"name": "kafka", "namespace": "shop"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kafka"}},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 3}},
                    "template": {"spec": {"containers": [{"name": "kafka", "image": "kafka:3.8.1"}]}}},
           "status": {"replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 0,
                      "currentRevision": "kafka-old", "updateRevision": "kafka-new"}}  # fmt: skip
    pods = [pod(f"kafka-{i}", owner=("StatefulSet", "kafka"), labels={"app": "kafka"})
            for i in range(3)]  # fmt: skip
    objects = [sts, *pods, revision("kafka-old", 1, "kafka:3.8.0"),
               revision("kafka-new", 2, "kafka:3.8.1")]  # fmt: skip
    a = alert(alertname="KubeStatefulSetUpdateNotRolledOut", namespace="shop", statefulset="kafka")
    ctx = await gathered(a, objects)
    assert ctx.workload is not None
    assert [r.name for r in ctx.workload.revisions] == ["kafka-new", "kafka-old"]
    d = diagnose(ctx)
    assert d.category is Category.ROLLOUT_STUCK
    assert "kafka:3.8.0 -> kafka:3.8.1" in d.root_cause


async def test_a_link_local_nameserver_reads_the_node_local_dns_daemonset() -> None:
    web = pod("web-1", containers=[{"name": "web", "image": "web:1"}], dnsPolicy="None",
              dnsConfig={"nameservers": ["169.254.20.10"]})  # fmt: skip
    web["status"]["containerStatuses"][0] |= {"restartCount": 3, "ready": False}
    cache = {"kind": "DaemonSet",
             "metadata": {"name": "node-local-dns", "namespace": "kube-system",
                          "labels": {"k8s-app": "node-local-dns"}},
             "spec": {"template": {"spec": {"nodeSelector": {"pool": "old"}}}},
             "status": {"desiredNumberScheduled": 0, "numberReady": 0}}  # fmt: skip
    logs = {"shop__web-1__web": "ERROR lookup fraud.risk.svc.cluster.local on 169.254.20.10:53: "
            "read udp 10.0.0.4:41022->169.254.20.10:53: i/o timeout\n"}  # fmt: skip
    ctx = await gathered(alert(namespace="shop", pod="web-1"), [node_obj(), web, cache], **logs)
    assert ctx.dns is not None and ctx.dns.node_local is not None
    assert (
        "schedules 0 pods" in ctx.dns.node_local and "none on node worker-1" in ctx.dns.node_local
    )
    d = diagnose(ctx)
    assert d.category is Category.DNS_FAILURE and "node-local-dns" in d.root_cause
    assert "dns/node-local" in d.evidence


async def test_a_dotnet_not_time_valid_follows_the_connection_strings_tls_server() -> None:
    app = pod("orders-1", containers=[{"name": "orders", "image": "orders:1", "env": [
        {"name": "ConnectionStrings__Db",
         "value": "Host=pg.data.svc.cluster.local;Port=5432;SSL Mode=VerifyFull"}]}])  # fmt: skip
    app["status"]["containerStatuses"][0] |= {"restartCount": 2, "ready": False}
    pg = pod("pg-0", ns="data", labels={"app": "pg"},
             volumes=[{"name": "tls", "secret": {"secretName": "pg-server-tls"}}])  # fmt: skip
    svc = {"kind": "Service", "metadata": {"name": "pg", "namespace": "data"},
           "spec": {"selector": {"app": "pg"}}}  # fmt: skip
    logs = {"shop__orders-1__orders": "Npgsql.NpgsqlException: Failed to connect to 10.1.2.3:5432 "
            "---> System.Security.Authentication.AuthenticationException: The remote certificate "
            "is invalid because of errors in the certificate chain: NotTimeValid\n"}  # fmt: skip
    ctx = await gathered(
        alert(namespace="shop", pod="orders-1"), [node_obj(), app, pg, svc], **logs
    )
    assert [p.destination for p in ctx.tls_peers] == ["pg.data"]
    d = diagnose(ctx)
    assert d.category is Category.CERT_EXPIRED
    assert any("pg-server-tls" in a for a in d.immediate_actions)
