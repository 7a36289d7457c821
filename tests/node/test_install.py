"""OnCallM installed on the local node as a user installs it, and diagnosing a real failure.

The image is built from the repository's Dockerfile (on a Debian bookworm python3 base built
here) and imported into the node's containerd under the reference ``manifests/`` names, so
``kubectl apply -k manifests/`` runs it unchanged: the Deployment's securityContext (non-root,
read-only root file system), its projected ServiceAccount token, its probes. A real
Alertmanager on this machine sends to OnCallM's Service (its ClusterIP, through kube-proxy),
and the web view is read from the pod.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.controlplane import LocalControlPlane, images
from oncallm.kube.api import KubeAPI
from oncallm.kube.resources import resource
from tests.helpers.monitoring import alertmanager, needs_alertmanager
from tests.node.test_failures import (
    FAILURE_TIMEOUT,
    FAILURES,
    alert_for,
    failure_shows,
    kubectl,
    load,
    post_alert,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, needs_alertmanager]

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "oncallm"


def manifests_image() -> str:
    """The reference ``manifests/base`` gives the image (its kustomize ``images`` entry)."""
    kustomization = yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())
    entry = next(i for i in kustomization["images"] if i["name"] == "oncallm")
    return f"{entry['newName']}:{entry['newTag']}"


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


@pytest.mark.timeout(1200)  # a cold build of the image (its base by mmdebstrap) takes minutes
async def test_oncallm_runs_as_pods_and_diagnoses_a_real_failure(
    node_plane: LocalControlPlane, node_kube: KubeAPI, node_namespace: str, tmp_path: Path
) -> None:
    image = await asyncio.to_thread(images.oncallm)
    node = node_plane.node
    await asyncio.to_thread(node.import_image, image)
    node.ctr("images", "tag", "--force", image.ref, manifests_image())

    token = secrets.token_hex(16)
    await kubectl(node_plane, "delete", "namespace", NAMESPACE, "--ignore-not-found")
    await kubectl(node_plane, "create", "namespace", NAMESPACE)
    await kubectl(
        node_plane,
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "oncallm",
        f"--from-literal=webhook-token={token}",
    )
    try:
        await kubectl(node_plane, "apply", "-k", str(REPO / "manifests"))
        await kubectl(
            node_plane, "-n", NAMESPACE, "rollout", "status", "deployment/oncallm", "--timeout=300s"
        )
        pod = json.loads(
            await kubectl(
                node_plane,
                "-n",
                NAMESPACE,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=oncallm",
                "-o",
                "json",
            )
        )["items"][0]
        assert all(s["ready"] for s in pod["status"]["containerStatuses"]), pod["status"]
        assert any("projected" in v for v in pod["spec"]["volumes"]), pod["spec"]["volumes"]
        whoami = await kubectl(
            node_plane,
            "-n",
            NAMESPACE,
            "exec",
            pod["metadata"]["name"],
            "-c",
            "webhook",
            "--",
            "python3",
            "-c",
            "import os\ntry:\n open('/x','w')\nexcept OSError as e:\n print(os.getuid(), e.errno)",
        )
        assert whoami.split() == ["65532", "30"], whoami  # EROFS: the root is read-only

        service = json.loads(
            await kubectl(node_plane, "-n", NAMESPACE, "get", "service", "oncallm", "-o", "json")
        )
        url = f"http://{service['spec']['clusterIP']}:8080"

        failure = load(next(p for p in FAILURES if p.stem == "crashloop-app-error"))
        await kubectl(
            node_plane,
            "-n",
            node_namespace,
            "apply",
            "-f",
            "-",
            input_text=yaml.safe_dump_all(failure["manifests"]),
        )
        deadline = time.monotonic() + FAILURE_TIMEOUT
        while missing := await failure_shows(node_plane, node_namespace, failure["wait"]):
            assert time.monotonic() < deadline, missing
            await asyncio.sleep(1)

        with alertmanager(tmp_path / "am", url + "/webhook", token) as am:
            post_alert(am, await alert_for(node_plane, node_namespace, failure["alert"]))
            deadline = time.monotonic() + 180
            done: dict[str, Any] = {}
            while not done:
                assert time.monotonic() < deadline, f"no completed analysis:\n{am.tail()}"
                items = (await node_kube.request("GET", resource("AlertAnalysis").path(NAMESPACE)))[
                    "items"
                ]
                for item in items:
                    if (item.get("status") or {}).get("phase") in ("Completed", "Failed"):
                        done = item
                await asyncio.sleep(1)
        status = done["status"]
        assert status["phase"] == "Completed", status
        assert status["category"] == failure["expect"]["category"], status.get("rootCause")

        code, page = await asyncio.to_thread(http_get, url + "/")
        assert code == 200 and done["metadata"]["name"] in page, page[:500]
        code, page = await asyncio.to_thread(
            http_get, f"{url}/analyses/{NAMESPACE}/{done['metadata']['name']}"
        )
        assert code == 200 and "nil pointer dereference" in page, page[:500]
    except BaseException:
        for container in ("operator", "webhook"):
            try:
                log = await kubectl(
                    node_plane, "-n", NAMESPACE, "logs", "deploy/oncallm", "-c", container
                )
            except subprocess.CalledProcessError as err:
                log = err.stderr
            print(f"--- {container} ---\n{log[-3000:]}")
        raise
    finally:
        await kubectl(node_plane, "delete", "namespace", NAMESPACE, "--timeout=120s")
