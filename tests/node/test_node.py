"""The local node works as a cluster's node: Ready, runs pods of images built here, serves
their logs, and gives them Services, DNS and the API server."""

from __future__ import annotations

import json

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.images import BUSYBOX
from oncallm.controlplane.node import NODE_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _apply(plane: LocalControlPlane, namespace: str, manifest: str) -> None:
    plane.kubectl_run("-n", namespace, "apply", "-f", "-", input_text=manifest)


def test_the_node_is_ready_with_containerd(node_plane: LocalControlPlane) -> None:
    node = json.loads(node_plane.kubectl_run("get", "node", NODE_NAME, "-o", "json"))
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert not node["spec"].get("taints"), node["spec"].get("taints")


def test_a_pod_of_a_local_image_runs_and_serves_its_logs(
    node_plane: LocalControlPlane, node_namespace: str
) -> None:
    _apply(
        node_plane,
        node_namespace,
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: hello}}
spec:
  restartPolicy: Never
  containers:
    - name: hello
      image: {BUSYBOX}
      command: [sh, -c, 'echo "hello from $(hostname)"; echo "to stderr" >&2']
""",
    )
    node_plane.kubectl_run(
        "-n",
        node_namespace,
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/hello",
        "--timeout=120s",
    )
    logs = node_plane.kubectl_run("-n", node_namespace, "logs", "hello")
    # stdout and stderr are two pipes: the kubelet's log keeps each line, not their order
    assert sorted(logs.splitlines()) == ["hello from hello", "to stderr"]


def test_deployments_services_and_dns(node_plane: LocalControlPlane, node_namespace: str) -> None:
    """The workload controllers make the pods, the endpoint controllers the endpoints,
    kube-proxy the ClusterIP, CoreDNS the name; the API server answers through its Service."""
    _apply(
        node_plane,
        node_namespace,
        f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: {BUSYBOX}
          command: [sh, -c, 'echo ok > /www/index.html; exec httpd -f -p 8080 -h /www']
          readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
""",
    )
    node_plane.kubectl_run(
        "-n", node_namespace, "rollout", "status", "deployment/web", "--timeout=120s"
    )
    _apply(
        node_plane,
        node_namespace,
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
    - name: client
      image: {BUSYBOX}
      command:
        - sh
        - -c
        - |
          wget -qO- http://web/index.html
          wget -qO- http://web.{node_namespace}.svc.cluster.local/index.html
          nslookup kubernetes.default.svc.cluster.local | grep -q 'Address: 10.96.0.1$' && echo dns
          nc -w 5 kubernetes.default 443 </dev/null && echo apiserver
""",
    )
    node_plane.kubectl_run(
        "-n",
        node_namespace,
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/client",
        "--timeout=120s",
    )
    logs = node_plane.kubectl_run("-n", node_namespace, "logs", "client").split()
    assert logs == ["ok", "ok", "dns", "apiserver"], logs
