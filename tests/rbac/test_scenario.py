"""OnCallM with nothing but its ServiceAccount's rights: alert in, completed report out.

The operator and the webhook run as subprocesses, each with a kubeconfig that holds only a
TokenRequest token of the ServiceAccount from manifests/, exactly the credentials their
containers get in a pod. Alertmanager's notification goes to the webhook over HTTP.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.cluster import free_port
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.scenarios.model import Scenario, ShiftedScenario
from oncallm.scenarios.plant import plant
from tests.helpers.operator import operator_process
from tests.helpers.planting import wait_for
from tests.rbac.install import NAMESPACE

pytestmark = pytest.mark.cluster

SCENARIO = Path(__file__).parents[1] / "cluster" / "data" / "db-down.yaml"
WEBHOOK_TOKEN = "am-oncallm-" + "9c2f47d1e8b3a605"
#: What kopf and OnCallM log when the API server refuses a request.
#: How a refused API request reads in a log line: the status 403 as a word of its own (a
#: log timestamp's milliseconds, ``20:15:43,403``, are not one).
REFUSALS = re.compile(r"forbidden|Not enough permissions|(?<![\d,.:])\b403\b", re.I)


def refusals(text: str, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Log lines that report a refused API request, but those containing ``ignore``."""
    return [
        line
        for line in text.splitlines()
        if REFUSALS.search(line) and not any(i in line for i in ignore)
    ]


def scenario(namespace: str) -> ShiftedScenario:
    text = SCENARIO.read_text().replace("NS", namespace)
    return Scenario.model_validate(yaml.safe_load(text)).shift()


def notification(shifted: ShiftedScenario) -> dict[str, Any]:
    """The scenario's alert as Alertmanager 0.27 posts it to a webhook receiver."""
    alert = shifted.alert.model_dump(mode="json", by_alias=True, exclude_none=True)
    alert["endsAt"] = "0001-01-01T00:00:00Z"  # Go's zero time: still firing
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncallm",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": dict(shifted.alert.labels),
        "commonAnnotations": dict(shifted.alert.annotations),
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [alert],
    }


@contextmanager
def running(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@asynccontextmanager
async def webhook_process(
    kubeconfig: Path, tmp_path: Path
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``oncallm webhook`` on a free port, ready (its /readyz answers 200)."""
    port = free_port()
    token_file = tmp_path / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    url = f"http://127.0.0.1:{port}"
    env = {
        "KUBECONFIG": str(kubeconfig),
        "ONCALLM_NAMESPACE": NAMESPACE,
        "ONCALLM_HOST": "127.0.0.1",
        "ONCALLM_PORT": str(port),
        "ONCALLM_WEBHOOK_TOKEN_FILE": str(token_file),
        "ONCALLM_REPORT_BASE_URL": url,
    }
    log = tmp_path / "webhook.log"
    with running([sys.executable, "-m", "oncallm", "webhook"], env, log) as proc:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"the webhook exited:\n{log.read_text()[-3000:]}")
                try:
                    async with session.get(url + "/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, timeout=60, interval=0.2, what="the webhook's /readyz")
        yield url, proc


async def get_analysis(kube: KubeAPI, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = await kube.request(
            "GET", resource("AlertAnalysis").path(NAMESPACE, name)
        )
    except ApiError as err:
        if err.status == 404:
            return None
        raise
    return result


async def test_alert_to_report_with_the_service_accounts_rights_only(
    kube: KubeAPI,
    installed: LocalControlPlane,
    sa_kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    plane = installed
    shifted = scenario(namespace)
    await plant(
        kube,
        shifted,
        node_status=plane.node_status(),
        plant_log=lambda ns, pod, c, text, prev: plane.plant_log(ns, pod, c, text, previous=prev),
    )
    operator_log = tmp_path / "operator.log"
    webhook_log = tmp_path / "webhook.log"
    name = ""
    try:
        async with webhook_process(sa_kubeconfig, tmp_path) as (url, webhook):
            operator = operator_process(NAMESPACE, sa_kubeconfig, operator_log)
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.post(
                        url + "/webhook",
                        json=notification(shifted),
                        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                    ) as resp:
                        body = await resp.json(content_type=None)
                        assert resp.status == 200, body
                    stored_ns, name = body[0]["analysis"].split("/")
                    assert stored_ns == NAMESPACE

                    async def finished() -> dict[str, Any] | None:
                        for proc, log in ((operator, operator_log), (webhook, webhook_log)):
                            if proc.poll() is not None:
                                raise AssertionError(
                                    f"{log.stem} exited:\n{log.read_text()[-3000:]}"
                                )
                        aa = await get_analysis(kube, name)
                        phase = ((aa or {}).get("status") or {}).get("phase")
                        return aa if phase in ("Completed", "Failed") else None

                    aa = await wait_for(
                        finished, timeout=60, interval=0.2, what=f"{name} to finish"
                    )
                    # The web view, served from the webhook's own watch of the analyses.
                    async with session.get(body[0]["reportURL"]) as page:
                        html = await page.text()
                        assert page.status == 200, html[:500]
                    # Read the report's ConfigMap and Events before the analysis is deleted
                    # below: the ConfigMap is owned by it, and the garbage collector removes it.
                    report = (aa.get("status") or {}).get("reportConfigMap")
                    cm = (
                        await kube.request("GET", resource("ConfigMap").path(NAMESPACE, report))
                        if report
                        else {}
                    )
                    events = await kube.request(
                        "GET",
                        resource("Event").path(NAMESPACE),
                        query={"fieldSelector": f"involvedObject.name={name}"},
                    )
            finally:
                stop(operator)
        webhook_text = webhook_log.read_text()
    finally:
        if name:
            await kube.request("DELETE", resource("AlertAnalysis").path(NAMESPACE, name))

    status = aa["status"]
    operator_text = operator_log.read_text()
    assert status["phase"] == "Completed", operator_text[-3000:]
    missing = status.get("missingEvidence") or []
    assert not [m for m in missing if "forbidden" in m["reason"].lower()], missing
    assert status["category"] == "dependency_unreachable"
    assert "orders-db" in status["rootCause"]
    assert "orders-db" in html
    # Every write the report needs went through: the ConfigMap and the Event.
    assert "orders-db" in cm["data"]["report.md"]
    assert "AnalysisCompleted" in [e["reason"] for e in events["items"]]
    refused = refusals(operator_text + webhook_text)
    assert not refused, "\n".join(refused)


async def test_operator_starts_without_cluster_scope_scanning(
    installed: LocalControlPlane, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    """With only its namespaced grants, the operator watches its namespace at once."""
    log = tmp_path / "operator.log"
    operator = operator_process(NAMESPACE, sa_kubeconfig, log)
    try:

        async def policies_seen() -> bool:
            if operator.poll() is not None:
                raise AssertionError(f"the operator exited:\n{log.read_text()[-3000:]}")
            # manifests/policies/ installed two AnalysisPolicies; kopf reports each.
            return log.read_text().count("Handler 'track_policy' succeeded") >= 2

        await wait_for(policies_seen, timeout=15, interval=0.2, what="the policies to be read")
    finally:
        stop(operator)
    refused = refusals(log.read_text())
    assert not refused, "\n".join(refused)
