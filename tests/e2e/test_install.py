"""End to end on a real cluster: build the image, install the manifests, send an alert to
the webhook through the Service, and read the finished report.

The same test runs on two clusters, each skipped (saying why) where it cannot run:

- ``kind``: needs Docker, kind on PATH and pytest-kind (`pip install pytest-kind`); the image
  is built by `docker build`. ONCALLM_E2E_KEEP_CLUSTER=1 keeps the cluster afterwards for a
  look around (`kind get kubeconfig --name oncallm-e2e`).
- ``node``: the local control plane with a real node (`oncallm controlplane up --node`, the
  ``node_plane`` fixture); needs root and the node's Debian packages. The image is built from
  the same Dockerfile by buildah on a Debian python3 base made here, and imported into the
  node's containerd.

Run it with `.venv/bin/pytest -q tests/e2e` (docs/install.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from oncallm.controlplane import LocalControlPlane, images

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OVERLAY = Path(__file__).parent / "overlay"
IMAGE = "oncallm:e2e"
CLUSTER = "oncallm-e2e"
#: The token tests/e2e/overlay puts in the Secret oncallm/oncallm.
WEBHOOK_TOKEN = "e2e-webhook-7f3c91d2a4b8"
APP_NAMESPACE = "e2e-orders"
#: Build, cluster start and first rollout on a laptop; generous for a cold Docker cache.
BUILD_TIMEOUT = 1200
ROLLOUT_TIMEOUT = "300s"
ANALYSIS_TIMEOUT = 180.0

#: A crash-looping API whose database Service has no endpoints, like
#: tests/cluster/data/db-down.yaml, but running for real. It reuses the OnCallM image so
#: the cluster pulls nothing from the internet (`python3`: both the python image of Docker
#: Hub and the Debian base built here have it).
APP = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {APP_NAMESPACE}}}
---
apiVersion: v1
kind: Service
metadata: {{name: orders-db, namespace: {APP_NAMESPACE}}}
spec:
  selector: {{app: orders-db}}
  ports: [{{port: 5432, targetPort: 5432}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: {APP_NAMESPACE}, labels: {{app: api}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: {IMAGE}
          imagePullPolicy: Never
          env:
            - name: DATABASE_URL
              value: postgres://orders@orders-db.{APP_NAMESPACE}.svc.cluster.local:5432/orders
          command: [python3, -c]
          args:
            - |
              import socket, sys
              db = "orders-db.{APP_NAMESPACE}.svc.cluster.local"
              print("orders-api 1.42.0 starting", flush=True)
              try:
                  socket.create_connection((db, 5432), 3)
              except OSError as err:
                  print(f"ERROR dial tcp {{db}}:5432: {{err}}", flush=True)
                  print("FATAL could not connect to database, exiting", flush=True)
                  sys.exit(1)
"""


def _missing_tools() -> str | None:
    """Why this machine cannot run the suite, or None."""
    try:
        import pytest_kind  # noqa: F401
    except ImportError:
        return "pytest-kind is not installed: pip install pytest-kind"
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"docker info failed (is the Docker daemon running?): {info.stderr.strip()[:200]}"
    if shutil.which("kind") is None:
        return "kind is not on PATH: install it from https://kind.sigs.k8s.io"
    return None


class Cluster(Protocol):
    """What the test needs of a cluster: kubectl, and the webhook's URL from this machine."""

    def kubectl(self, *args: str, input: str | None = None) -> str: ...

    def webhook(self) -> AbstractContextManager[str]: ...


class Kind:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(
            self.cluster.kubectl(*args, input=input) if input else self.cluster.kubectl(*args)
        )

    @contextmanager
    def webhook(self) -> Iterator[str]:
        with self.cluster.port_forward("service/oncallm", 8080, "-n", "oncallm") as port:
            yield f"http://127.0.0.1:{port}"


class Node:
    def __init__(self, plane: LocalControlPlane) -> None:
        self.plane = plane

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.plane.kubectl_run(*args, input_text=input)

    @contextmanager
    def webhook(self) -> Iterator[str]:
        # kube-proxy serves ClusterIPs to this machine too: no port-forward needed.
        ip = self.kubectl("-n", "oncallm", "get", "service", "oncallm", "-o",
                          "jsonpath={.spec.clusterIP}")  # fmt: skip
        yield f"http://{ip}:8080"


@contextmanager
def kind_cluster() -> Iterator[Cluster]:
    """A kind cluster with the freshly built image loaded."""
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    from pytest_kind import KindCluster

    subprocess.run(["docker", "build", "-t", IMAGE, str(REPO)], check=True, timeout=BUILD_TIMEOUT)
    kubectl = shutil.which("kubectl")
    cluster = KindCluster(
        CLUSTER,
        kind_path=Path(shutil.which("kind") or "kind"),
        kubectl_path=Path(kubectl) if kubectl else None,
    )
    cluster.create()
    try:
        cluster.load_docker_image(IMAGE)
        yield Kind(cluster)
    finally:
        if os.environ.get("ONCALLM_E2E_KEEP_CLUSTER") != "1":
            cluster.delete()


@contextmanager
def node_cluster(plane: LocalControlPlane) -> Iterator[Cluster]:
    """The local node with the image built from the Dockerfile imported as oncallm:e2e."""
    image = images.oncallm()
    plane.node.import_image(image)
    # Kubernetes reads `oncallm:e2e` as docker.io/library/oncallm:e2e; present, never pulled.
    plane.node.ctr("images", "tag", "--force", image.ref, f"docker.io/library/{IMAGE}")
    node = Node(plane)
    try:
        yield node
    finally:
        for namespace in (APP_NAMESPACE, "oncallm"):
            node.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=120s")


@pytest.fixture(scope="module", params=["kind", "node"])
def e2e_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if request.param == "kind":
        with kind_cluster() as cluster:
            yield cluster
    else:
        with node_cluster(request.getfixturevalue("node_plane")) as cluster:
            yield cluster


def wait_for(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {last!r}")


def crash_looping_pod(cluster: Cluster) -> dict[str, Any] | None:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", APP_NAMESPACE, "-o", "json"))
    for pod in pods["items"]:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if statuses and statuses[0].get("restartCount", 0) >= 1:
            return dict(pod)
    return None


def notification(pod: str) -> dict[str, Any]:
    """What Alertmanager 0.27 posts for kube-prometheus' KubePodCrashLooping."""
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    return {
        "version": "4",
        "groupKey": '{}/{severity=~"warning|critical"}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncallm",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "container": "api",
                    "job": "kube-state-metrics",
                    "namespace": APP_NAMESPACE,
                    "pod": pod,
                    "severity": "warning",
                },
                "annotations": {
                    "summary": "Pod is crash looping.",
                    "description": f"Pod {APP_NAMESPACE}/{pod} (api) is in waiting state "
                    '(reason: "CrashLoopBackOff").',
                },
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.monitoring.svc:9090/graph",
                "fingerprint": "6a1f0c3e9b2d4f57",
            }
        ],
    }


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.timeout(1500)  # a cold image build (docker, or mmdebstrap and buildah) takes minutes
def test_alert_to_report(e2e_cluster: Cluster) -> None:
    cluster = e2e_cluster
    cluster.kubectl("apply", "--server-side", "-k", str(OVERLAY))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/alertanalyses.oncallm.io", "crd/analysispolicies.oncallm.io",
    )  # fmt: skip
    cluster.kubectl("apply", "--server-side", "-k", str(REPO / "manifests" / "policies"))
    cluster.kubectl("apply", "-f", "-", input=APP)
    cluster.kubectl(
        "-n", "oncallm", "rollout", "status", "deploy/oncallm", f"--timeout={ROLLOUT_TIMEOUT}"
    )
    pod = wait_for(lambda: crash_looping_pod(cluster), "the api pod to crash", 180)
    pod_name = pod["metadata"]["name"]

    with cluster.webhook() as url:
        stored = post(f"{url}/webhook", notification(pod_name))
    namespace, name = stored[0]["analysis"].split("/")
    assert namespace == "oncallm"

    def finished() -> dict[str, Any] | None:
        aa = json.loads(
            cluster.kubectl("get", "alertanalysis", name, "-n", "oncallm", "-o", "json")
        )
        return aa if aa.get("status", {}).get("phase") in ("Completed", "Failed") else None

    aa = wait_for(finished, f"analysis {name} to finish", ANALYSIS_TIMEOUT)
    status = aa["status"]
    logs = cluster.kubectl(
        "logs", "-n", "oncallm", "deploy/oncallm", "-c", "operator", "--tail=200"
    )
    assert status["phase"] == "Completed", logs
    missing = status.get("missingEvidence") or []
    assert not [m for m in missing if "forbidden" in m["reason"].lower()], missing
    assert status["targetDisplay"] == f"pod/{APP_NAMESPACE}/{pod_name}"
    report = json.loads(
        cluster.kubectl(
            "get", "configmap", status["reportConfigMap"], "-n", "oncallm", "-o", "json"
        )
    )
    # The crashing container's own log line reached the report.
    assert "orders-db" in report["data"]["report.md"]
