"""Real Alertmanager (and Prometheus) deliver to the sidecar: stored once, resolved, retried."""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.cluster import free_port
from oncallm.gathering.gather import alert_expression
from oncallm.intake import metrics
from oncallm.intake.app import API_KEY
from oncallm.intake.server import RunningSidecar, running_sidecar
from oncallm.intake.settings import IntakeSettings
from oncallm.kube.api import ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.pipeline.prometheus import PrometheusSource
from tests.helpers.monitoring import alertmanager, needs_alertmanager, needs_prometheus, prometheus
from tests.helpers.planting import ts, wait_for

pytestmark = [pytest.mark.cluster, needs_alertmanager]

TOKEN = "am-" + secrets.token_hex(8)


@pytest.fixture
async def sidecar(
    control_plane: LocalControlPlane, namespace: str
) -> AsyncIterator[RunningSidecar]:
    settings = IntakeSettings(namespace=namespace, token=TOKEN, host="127.0.0.1", port=free_port())
    async with running_sidecar(
        settings, ClientSettings(kubeconfig=str(control_plane.kubeconfig))
    ) as sc:
        yield sc


def post_alerts(am_url: str, alerts: list[dict[str, Any]]) -> None:
    """What Prometheus does: POST /api/v2/alerts."""
    request = urllib.request.Request(
        am_url + "/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


def crashloop(pod: str, **extra: Any) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": "KubePodCrashLooping",
            "namespace": "orders",
            "pod": pod,
            "container": "api",
            "job": "kube-state-metrics",
            "severity": "warning",
        },
        "annotations": {"summary": "Pod is crash looping."},
        "generatorURL": "http://prometheus.monitoring.svc:9090/graph?g0.expr=up",
        **extra,
    }


async def analyses(kube: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    result = await kube.request("GET", resource("AlertAnalysis").path(namespace))
    return list(result["items"])


def _counter(counter: Any, *labels: str) -> float:
    metric = counter.labels(*labels) if labels else counter
    return float(metric._value.get())


async def test_alertmanager_delivers_repeats_and_resolutions(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str, tmp_path: Path
) -> None:
    pods = ["api-7d9f8c6b5-x2kqp", "api-7d9f8c6b5-q8wzn", "api-7d9f8c6b5-m4ttc"]
    with alertmanager(tmp_path / "am", sidecar.url + "/webhook", TOKEN) as am:
        post_alerts(am.url, [crashloop(p) for p in pods])

        async def stored() -> list[dict[str, Any]] | None:
            items = await analyses(kube, namespace)
            return items if len(items) == 3 else None

        items = await wait_for(stored, timeout=30, what=f"3 analyses\n{am.tail()}")
        assert {i["spec"]["alert"]["labels"]["pod"] for i in items} == set(pods)
        assert all(i["spec"]["receiver"] == "oncallm" for i in items)
        assert all(i["spec"]["externalURL"].startswith("http") for i in items)
        assert len({i["spec"]["groupKey"] for i in items}) == 1  # fired together

        # Alertmanager re-sends the group every repeat_interval: answered without writes.
        api = sidecar.app[API_KEY]
        writes = api.calls["POST"] + api.calls["PATCH"]
        repeats = _counter(metrics.REPEATS_SKIPPED)

        async def resent() -> bool:
            return _counter(metrics.REPEATS_SKIPPED) >= repeats + 3

        await wait_for(resent, timeout=30, what="Alertmanager to re-send the group")
        assert api.calls["POST"] + api.calls["PATCH"] == writes
        assert len(await analyses(kube, namespace)) == 3

        # Resolving two of them: Alertmanager sends them resolved (send_resolved: true).
        post_alerts(am.url, [crashloop(p, endsAt=ts(timedelta(seconds=-1))) for p in pods[:2]])

        async def resolved() -> list[str] | None:
            items = await analyses(kube, namespace)
            done = [
                i["spec"]["alert"]["labels"]["pod"]
                for i in items
                if i["spec"]["alert"]["status"] == "resolved"
            ]
            return done if len(done) == 2 else None

        assert sorted(await wait_for(resolved, timeout=30, what="resolved analyses")) == sorted(
            pods[:2]
        )
        assert len(await analyses(kube, namespace)) == 3


async def test_api_server_down_then_back_stores_every_alert_once(
    control_plane: LocalControlPlane,
    sidecar: RunningSidecar,
    kube: KubeAPI,
    namespace: str,
    tmp_path: Path,
) -> None:
    if not control_plane._procs:
        pytest.skip("the control plane was started by another process; it cannot be restarted here")
    pods = [f"api-7d9f8c6b5-{i:05d}" for i in range(4)]
    rejected = _counter(metrics.REJECTED, "api_unavailable")
    with alertmanager(tmp_path / "am", sidecar.url + "/webhook", TOKEN, repeat_interval="1h") as am:
        control_plane.stop_apiserver()
        try:
            post_alerts(am.url, [crashloop(p) for p in pods])

            async def refused() -> bool:
                return _counter(metrics.REJECTED, "api_unavailable") > rejected

            await wait_for(refused, timeout=30, what=f"a 503 to Alertmanager\n{am.tail()}")
        finally:
            control_plane.start_apiserver()

        async def stored() -> list[dict[str, Any]] | None:
            items = await analyses(kube, namespace)
            return items if len(items) >= 4 else None

        items = await wait_for(stored, timeout=90, what=f"Alertmanager's retry\n{am.tail()}")
        assert sorted(i["spec"]["alert"]["labels"]["pod"] for i in items) == pods
        assert "status=503" in am.log.read_text() or "503" in am.log.read_text()


@needs_prometheus
async def test_prometheus_rule_fires_into_an_analysis(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str, tmp_path: Path
) -> None:
    # kube-state-metrics as Prometheus scrapes it, for one crash-looping pod.
    exposition = (
        "# HELP kube_pod_container_status_waiting_reason Describes the reason the container is waiting.\n"
        "# TYPE kube_pod_container_status_waiting_reason gauge\n"
        f'kube_pod_container_status_waiting_reason{{namespace="{namespace}",pod="api-7d9f8c6b5-x2kqp",'
        'container="api",reason="CrashLoopBackOff"} 1\n'
    )

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(text=exposition, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rules = {
        "groups": [
            {
                "name": "kubernetes-apps",
                "rules": [
                    {
                        "alert": "KubePodCrashLooping",
                        "expr": 'max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff", job="kube-state-metrics"}[1m]) >= 1',
                        "for": "0s",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Pod is crash looping.",
                            "description": 'Pod {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}) is in waiting state (reason: "CrashLoopBackOff").',
                        },
                    }
                ],
            }
        ]
    }
    try:
        with (
            alertmanager(tmp_path / "am", sidecar.url + "/webhook", TOKEN) as am,
            prometheus(tmp_path / "prom", am.url, [f"127.0.0.1:{port}"], rules) as prom,
        ):

            async def stored() -> list[dict[str, Any]] | None:
                items = await analyses(kube, namespace)
                return items or None

            items = await wait_for(
                stored, timeout=60, what=f"the rule to fire\n{prom.tail()}\n{am.tail()}"
            )
            # Gathering's metrics source reads the alert's own expression from generatorURL.
            expr = alert_expression(items[0]["spec"]["alert"]["generatorURL"])
            assert expr is not None and "CrashLoopBackOff" in expr
            async with aiohttp.ClientSession() as session:
                values = await PrometheusSource(prom.url, session).query(expr)
            assert any("api-7d9f8c6b5-x2kqp" in key for key in values), values
            assert set(values.values()) == {1.0}
    finally:
        await runner.cleanup()
    alert = items[0]["spec"]["alert"]
    assert alert["labels"]["alertname"] == "KubePodCrashLooping"
    assert alert["labels"]["pod"] == "api-7d9f8c6b5-x2kqp"
    assert alert["labels"]["namespace"] == namespace
    assert "CrashLoopBackOff" in alert["annotations"]["description"]
    assert alert["generatorURL"].startswith(prom.url)
