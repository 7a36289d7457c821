"""The local control plane behaves as a real cluster where OnCallM depends on it."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from tests.helpers.planting import crashloop_pod, create, node, ts, wait_for

pytestmark = pytest.mark.cluster


def test_readyz_and_crds_answer(control_plane: LocalControlPlane) -> None:
    assert control_plane.kubectl_run("get", "--raw", "/readyz").strip() == "ok"
    out = control_plane.kubectl_run("get", "alertanalyses", "-A")
    assert out == "" or "NAME" in out
    crds = control_plane.kubectl_run("get", "crd", "-o", "name")
    assert "customresourcedefinition.apiextensions.k8s.io/alertanalyses.oncallm.io" in crds
    assert "analysispolicies.oncallm.io" in crds


def test_wrong_policy_is_refused_naming_the_field(
    control_plane: LocalControlPlane, namespace: str
) -> None:
    bad = f"""
apiVersion: oncallm.io/v1alpha1
kind: AnalysisPolicy
metadata: {{name: too-deep, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{severity: critical}}}}
  depth: bottomless
  sources: {{logLines: -5}}
"""
    with pytest.raises(subprocess.CalledProcessError) as err:
        control_plane.kubectl_run("apply", "-f", "-", input_text=bad)
    message = err.value.stderr
    assert "spec.depth" in message and "bottomless" in message
    assert "spec.sources.logLines" in message


async def test_owned_configmap_is_garbage_collected(kube: KubeAPI, namespace: str) -> None:
    aa = await kube.request(
        "POST",
        resource("AlertAnalysis").path(namespace),
        body={
            "apiVersion": "oncallm.io/v1alpha1",
            "kind": "AlertAnalysis",
            "metadata": {"name": "kube-pod-crash-looping-1a2b3c4d5e"},
            "spec": {
                "alert": {
                    "status": "firing",
                    "labels": {"alertname": "KubePodCrashLooping", "namespace": "orders"},
                    "startsAt": ts(),
                    "fingerprint": "5f3a9c1e2b7d4a60",
                }
            },
        },
    )
    cm_path = resource("ConfigMap").path(namespace, "kube-pod-crash-looping-1a2b3c4d5e-report")
    await kube.request(
        "POST",
        resource("ConfigMap").path(namespace),
        body={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "kube-pod-crash-looping-1a2b3c4d5e-report",
                "ownerReferences": [
                    {
                        "apiVersion": "oncallm.io/v1alpha1",
                        "kind": "AlertAnalysis",
                        "name": aa["metadata"]["name"],
                        "uid": aa["metadata"]["uid"],
                    }
                ],
            },
            "data": {"report.md": "# report"},
        },
    )
    await kube.request("DELETE", resource("AlertAnalysis").path(namespace, aa["metadata"]["name"]))

    async def gone() -> bool:
        try:
            await kube.request("GET", cm_path)
        except ApiError as err:
            return err.status == 404
        return False

    await wait_for(gone, timeout=60, what="the garbage collector to delete the report")


async def test_planted_pod_status_and_logs(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str
) -> None:
    node_name = f"{namespace}-worker-1"
    await node(kube, control_plane, node_name, DiskPressure="True")
    pod = await create(kube, crashloop_pod(namespace, "api-7d9f8c6b5-x2kqp", node_name))
    state = pod["status"]["containerStatuses"][0]
    assert state["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert state["lastState"]["terminated"]["exitCode"] == 1

    control_plane.plant_log(
        namespace, "api-7d9f8c6b5-x2kqp", "api", "starting\nconnecting to orders-db:5432\n"
    )
    control_plane.plant_log(
        namespace,
        "api-7d9f8c6b5-x2kqp",
        "api",
        "FATAL: could not connect to orders-db:5432: connection refused\n",
        previous=True,
    )
    log_path = resource("Pod").path(namespace, "api-7d9f8c6b5-x2kqp") + "/log"
    current = await kube.text(log_path, query={"container": "api"})
    previous = await kube.text(log_path, query={"container": "api", "previous": "true"})
    tail = await kube.text(log_path, query={"container": "api", "tailLines": 1})
    assert current == "starting\nconnecting to orders-db:5432\n"
    assert "connection refused" in previous
    assert tail == "connecting to orders-db:5432\n"

    # Nothing rewrote the planted node: no taints added, conditions as planted.
    got = await kube.request("GET", resource("Node").path(None, node_name))
    assert "taints" not in got["spec"]
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "True"}


async def test_services_get_cluster_ips_from_the_kind_range(kube: KubeAPI, namespace: str) -> None:
    svc = await create(
        kube,
        {
            "kind": "Service",
            "metadata": {"name": "orders-db", "namespace": namespace},
            "spec": {"selector": {"app": "orders-db"}, "ports": [{"port": 5432}]},
        },
    )
    octets = [int(x) for x in svc["spec"]["clusterIP"].split(".")]
    assert octets[0] == 10 and 96 <= octets[1] <= 111  # 10.96.0.0/12
    # No endpoint controller: a planted Service keeps the Endpoints the test gives it.
    with pytest.raises(ApiError) as err:
        await kube.request("GET", resource("Endpoints").path(namespace, "orders-db"))
    assert err.value.status == 404
    assert ts(timedelta(0))
