"""Real failures, caused for real on the local node, diagnosed end to end.

Each file of ``failures/`` is one kind of failure: ordinary manifests (Deployments, Jobs,
StatefulSets, Secrets, quotas) applied to a fresh namespace, nothing planted. The node produces
the failure itself: the kernel OOM-kills, the kubelet backs off, fails probes and mounts, the
scheduler refuses, the controllers give up. Once the failure shows (``wait``), its alert goes to
a real Alertmanager, which delivers it to OnCallM's webhook; the operator gathers from the live
cluster and the test checks the completed report (``expect``: the category and the names a
person needs to read in it).

The alert's labels are those kube-prometheus's rule would carry. Prometheus does not raise
them here: kube-state-metrics, which those rules read, is not served by the Go module proxy
this machine reaches (``k8s.io/kube-state-metrics/v2``: 403 "This module version is not
available"), so the test posts the alert to Alertmanager as Prometheus would.

Each result is written to ``artifacts/node-failures.json``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.evaluation.runner import wait_finished
from oncallm.evaluation.stack import Stack, running_stack
from oncallm.kube.api import KubeAPI
from oncallm.kube.resources import resource
from tests.helpers.monitoring import Server, alertmanager, needs_alertmanager
from tests.helpers.operator import environment

pytestmark = [pytest.mark.cluster, pytest.mark.slow, needs_alertmanager]

FAILURES = sorted((Path(__file__).parent / "failures").glob("*.yaml"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
#: How long the node may take to produce a failure (image pulls back off, probes, deadlines).
FAILURE_TIMEOUT = 240.0
#: How long one analysis may take once the alert is in.
ANALYSIS_TIMEOUT = 120.0
TOKEN = "am-" + secrets.token_hex(8)
_results: list[dict[str, Any]] = []


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    assert doc["name"] == path.stem, f"{path.name}: name must be the file name"
    return doc


@pytest.fixture(scope="module")
def analyses_namespace(node_plane: LocalControlPlane) -> str:
    name = f"oncallm-{secrets.token_hex(3)}"
    node_plane.kubectl_run("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
async def stack(node_plane: LocalControlPlane, analyses_namespace: str) -> AsyncIterator[Stack]:
    """OnCallM's operator and webhook (in this process) against the node's control plane."""
    # ONCALLM_KUBE_POOL: the watch-backed caches (kube/cache.py) hold about nine watches per
    # namespace an analysis reads, each on a connection of the client's pool (64 by default);
    # past seven namespaces every other request waits for a free connection until it times out
    # ("API server unreachable"). This suite reads fourteen namespaces at once.
    # Module-scoped, and every variable put back afterwards: the suites after this one must
    # not see the node's KUBECONFIG or this webhook token.
    with environment(
        KUBECONFIG=str(node_plane.kubeconfig),
        ONCALLM_NAMESPACE=analyses_namespace,
        ONCALLM_OPERATOR_METRICS_PORT="0",
        ONCALLM_WEBHOOK_TOKEN=TOKEN,
        ONCALLM_KUBE_POOL="256",
    ):
        async with running_stack(str(node_plane.kubeconfig), analyses_namespace) as running:
            yield running


@pytest.fixture(scope="module")
def caused(node_plane: LocalControlPlane) -> Iterator[dict[str, str]]:
    """Every failure's manifests, applied at once at the start, each kind in a namespace of
    its own: the node produces them side by side, so the suite takes about as long as the
    slowest failure, not the sum of all."""
    namespaces: dict[str, str] = {}
    for path in FAILURES:
        name = f"f-{secrets.token_hex(3)}-{path.stem}"[:63]
        node_plane.kubectl_run("create", "namespace", name)
        namespaces[path.stem] = name
    for path in FAILURES:
        name = namespaces[path.stem]
        # Pods are admitted only once the namespace has its default ServiceAccount.
        node_plane.kubectl_run("-n", name, "wait", "--for=create", "serviceaccount/default")
        manifests = yaml.safe_dump_all(load(path)["manifests"])
        node_plane.kubectl_run("-n", name, "apply", "-f", "-", input_text=manifests)
    yield namespaces
    for name in namespaces.values():
        node_plane.kubectl_run("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def real_alertmanager(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("alertmanager")
    with alertmanager(folder, stack.url + "/webhook", TOKEN, group_by=["..."]) as am:
        yield am
    (ARTIFACTS).mkdir(exist_ok=True)
    (ARTIFACTS / "node-failures.json").write_text(json.dumps(_results, indent=2))


async def kubectl(plane: LocalControlPlane, *args: str, input_text: str | None = None) -> str:
    return await asyncio.to_thread(plane.kubectl_run, *args, input_text=input_text)


async def get_json(plane: LocalControlPlane, namespace: str, *what: str) -> dict[str, Any]:
    out = await kubectl(plane, "-n", namespace, "get", *what, "-o", "json")
    result: dict[str, Any] = json.loads(out)
    return result


def _container_shows(pod: dict[str, Any], wait: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for status in statuses:
        if wait.get("container") and status["name"] != wait["container"]:
            continue
        state, last = status.get("state", {}), status.get("lastState", {})
        if "waiting" in wait and state.get("waiting", {}).get("reason") != wait["waiting"]:
            continue
        if "terminated" in wait and wait["terminated"] not in (
            state.get("terminated", {}).get("reason"),
            last.get("terminated", {}).get("reason"),
        ):
            continue
        if status.get("restartCount", 0) < wait.get("restarts", 0):
            continue
        return True
    return False


async def failure_shows(plane: LocalControlPlane, namespace: str, wait: dict[str, Any]) -> str:
    """'' once every part of ``wait`` holds, else what is still missing."""
    if "selector" in wait and {"container", "waiting", "terminated", "restarts"} & set(wait):
        pods = (await get_json(plane, namespace, "pods", "-l", wait["selector"]))["items"]
        if not any(_container_shows(p, wait) for p in pods):
            return f"no pod {wait['selector']} shows {wait}"
    if "event" in wait:
        events = (await get_json(plane, namespace, "events"))["items"]
        if not any(e.get("reason") == wait["event"] for e in events):
            return f"no {wait['event']} event yet"
    for kind in ("job", "deployment"):
        if kind in wait:
            obj = await get_json(plane, namespace, kind, wait[kind])
            conditions = obj.get("status", {}).get("conditions") or []
            if not any(
                c["type"] == wait["condition"]
                and (c["status"] == "True" if "reason" not in wait else True)
                and c.get("reason", "") == wait.get("reason", c.get("reason", ""))
                for c in conditions
            ):
                return f"{kind} {wait[kind]} has no {wait['condition']} {wait.get('reason', '')}"
    return ""


async def alert_for(
    plane: LocalControlPlane, namespace: str, spec: dict[str, Any]
) -> dict[str, Any]:
    labels = {k: v for k, v in spec.items() if k != "pod_from"}
    labels.update(namespace=namespace, job="kube-state-metrics", severity="warning")
    if "pod_from" in spec:
        pods = (await get_json(plane, namespace, "pods", "-l", spec["pod_from"]))["items"]
        assert pods, f"no pod {spec['pod_from']}"
        labels["pod"] = sorted(p["metadata"]["name"] for p in pods)[0]
    subject = labels.get("pod") or labels.get("deployment") or labels.get("job_name") or ""
    return {
        "labels": labels,
        "annotations": {
            "summary": f"{labels['alertname']} for {namespace}/{subject}",
            "description": f"{labels['alertname']} fired for {namespace}/{subject}.",
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/"
            + labels["alertname"].lower(),
        },
        "startsAt": datetime.now(UTC).isoformat(),
        "generatorURL": "http://prometheus-k8s-0:9090/graph?g0.expr=kube_pod_info",
    }


def post_alert(am: Server, alert: dict[str, Any]) -> None:
    """What Prometheus does: POST /api/v2/alerts."""
    request = urllib.request.Request(
        am.url + "/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


async def analysis_of(kube: KubeAPI, analyses: str, namespace: str, am: Server) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = (await kube.request("GET", resource("AlertAnalysis").path(analyses)))["items"]
        for item in items:
            if item["spec"]["alert"]["labels"].get("namespace") == namespace:
                return await wait_finished(
                    kube, analyses, item["metadata"]["name"], ANALYSIS_TIMEOUT
                )
        await asyncio.sleep(0.5)
    raise AssertionError(f"Alertmanager delivered no alert for {namespace}:\n{am.tail()}")


@pytest.mark.parametrize("path", FAILURES, ids=[p.stem for p in FAILURES])
async def test_real_failure_is_diagnosed(
    path: Path,
    node_plane: LocalControlPlane,
    node_kube: KubeAPI,
    caused: dict[str, str],
    analyses_namespace: str,
    real_alertmanager: Server,
) -> None:
    failure = load(path)
    node_namespace = caused[path.stem]
    started = time.monotonic()
    missing = "not checked yet"
    while time.monotonic() - started < FAILURE_TIMEOUT:
        missing = await failure_shows(node_plane, node_namespace, failure["wait"])
        if not missing:
            break
        await asyncio.sleep(1)
    assert not missing, f"the node did not produce {failure['name']}: {missing}"
    produced = time.monotonic() - started

    post_alert(real_alertmanager, await alert_for(node_plane, node_namespace, failure["alert"]))
    alerted = time.monotonic()
    aa = await analysis_of(node_kube, analyses_namespace, node_namespace, real_alertmanager)
    status = aa.get("status") or {}
    report = ""
    if status.get("reportConfigMap"):
        cm = await node_kube.request(
            "GET", resource("ConfigMap").path(analyses_namespace, status["reportConfigMap"])
        )
        report = cm.get("data", {}).get("report.md", "")
    text = report.replace("\\", "").lower()
    events = (await get_json(node_plane, node_namespace, "events"))["items"]
    pods = (await get_json(node_plane, node_namespace, "pods"))["items"]
    missing_mentions = [m for m in failure["expect"]["mention"] if m.lower() not in text]
    _results.append(
        {
            "failure": failure["name"],
            "expected": failure["expect"]["category"],
            "got": status.get("category"),
            "phase": status.get("phase"),
            "mentions_missing": missing_mentions,
            "root_cause": status.get("rootCause"),
            "seconds_to_fail": round(produced, 1),
            "seconds_alert_to_report": round(time.monotonic() - alerted, 1),
            # What the node really said, to compare with what tests/scenarios plant.
            "events": sorted({f"{e.get('reason')}: {e.get('message')}" for e in events}),
            "container_states": [
                {"pod": p["metadata"]["name"], **c.get("state", {}), "last": c.get("lastState")}
                for p in pods
                for c in p.get("status", {}).get("containerStatuses") or []
            ],
        }
    )
    assert status.get("phase") == "Completed", (
        f"{failure['name']}: analysis {aa['metadata']['name']} is {status.get('phase')} after "
        f"{ANALYSIS_TIMEOUT:.0f} s: {status.get('reason')}"
    )
    assert status.get("category") == failure["expect"]["category"], (
        f"{failure['name']}: {status.get('category')} instead of "
        f"{failure['expect']['category']}: {status.get('rootCause')}"
    )
    assert not missing_mentions, f"the report lacks {missing_mentions}:\n{report[:3000]}"
