"""The webhook sidecar against a real API server: one AlertAnalysis per alert, none lost."""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.cluster import free_port
from oncallm.intake.server import RunningSidecar, running_sidecar
from oncallm.intake.settings import IntakeSettings
from oncallm.kube.api import ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from tests.helpers.planting import ts, wait_for

pytestmark = pytest.mark.cluster

TOKEN = "am-webhook-" + "4f1c9e2a7b3d"


def notification(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    """A webhook payload as Alertmanager 0.27 sends it."""
    return {
        "receiver": "oncallm",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": {"severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "version": "4",
        "groupKey": '{}/{severity=~"warning|critical"}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
    }


def crashloop_alert(
    pod: str, *, status: str = "firing", starts: str | None = None
) -> dict[str, Any]:
    fingerprint = secrets.token_hex(8)
    return {
        "status": status,
        "labels": {
            "alertname": "KubePodCrashLooping",
            "container": "api",
            "job": "kube-state-metrics",
            "namespace": "orders",
            "pod": pod,
            "severity": "warning",
        },
        "annotations": {
            "description": f'Pod orders/{pod} (api) is in waiting state (reason: "CrashLoopBackOff").',
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
            "summary": "Pod is crash looping.",
        },
        "startsAt": starts or ts(timedelta(minutes=-3)),
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else ts(),
        "generatorURL": "http://prometheus.monitoring.svc:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1",
        "fingerprint": fingerprint,
    }


@pytest.fixture
async def sidecar(
    control_plane: LocalControlPlane, namespace: str
) -> AsyncIterator[RunningSidecar]:
    settings = IntakeSettings(namespace=namespace, token=TOKEN, host="127.0.0.1", port=0)
    client = ClientSettings(kubeconfig=str(control_plane.kubeconfig))
    async with running_sidecar(settings, client) as running:
        await wait_for(lambda: _true(running.store.synced), what="the store to sync")
        yield running


async def _true(value: bool) -> bool:
    return value


async def post(
    url: str, body: Any, token: str | None = TOKEN, raw: bytes | None = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + "/webhook",
            data=raw if raw is not None else None,
            json=None if raw is not None else body,
            headers=headers,
        ) as resp:
            text = await resp.text()
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = text
            return resp.status, data, dict(resp.headers)


async def list_analyses(kube: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    result = await kube.request("GET", resource("AlertAnalysis").path(namespace))
    return list(result["items"])


def api_of(sidecar: RunningSidecar) -> KubeAPI:
    from oncallm.intake.app import API_KEY

    return sidecar.app[API_KEY]


async def test_one_analysis_per_alert_with_labels_and_notification_fields(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    alerts = [crashloop_alert("api-7d9f8c6b5-x2kqp"), crashloop_alert("api-7d9f8c6b5-q8wzn")]
    status, body, _ = await post(sidecar.url, notification(alerts))
    assert status == 200, body
    assert [b["fingerprint"] for b in body] == [a["fingerprint"] for a in alerts]
    assert all(
        b["reportURL"].endswith(b["analysis"].replace(f"{namespace}/", f"{namespace}/"))
        for b in body
    )
    stored = await list_analyses(kube, namespace)
    assert len(stored) == 2
    aa = next(a for a in stored if a["spec"]["alert"]["fingerprint"] == alerts[0]["fingerprint"])
    assert aa["metadata"]["labels"]["oncallm.io/alertname"] == "KubePodCrashLooping"
    assert aa["metadata"]["labels"]["oncallm.io/severity"] == "warning"
    assert aa["metadata"]["labels"]["oncallm.io/alert-namespace"] == "orders"
    assert aa["spec"]["receiver"] == "oncallm"
    assert aa["spec"]["externalURL"] == "http://alertmanager.monitoring.svc:9093"
    assert aa["spec"]["groupKey"].startswith("{}/")
    assert aa["spec"]["alert"]["labels"]["pod"] == "api-7d9f8c6b5-x2kqp"
    assert "endsAt" not in aa["spec"]["alert"]  # Go's zero time means "still firing"


async def test_repeats_are_answered_without_writes_and_new_firings_stored(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    alert = crashloop_alert("api-7d9f8c6b5-x2kqp")
    status, first, _ = await post(sidecar.url, notification([alert]))
    assert status == 200
    api = api_of(sidecar)
    writes_before = api.calls["POST"] + api.calls["PATCH"] + api.calls["PUT"]
    for _ in range(3):
        status, again, _ = await post(sidecar.url, notification([alert]))
        assert status == 200 and again[0]["analysis"] == first[0]["analysis"]
        assert again[0]["outcome"] == "repeat"
    assert api.calls["POST"] + api.calls["PATCH"] + api.calls["PUT"] == writes_before

    refired = dict(alert, startsAt=ts(timedelta(minutes=30)))
    status, second, _ = await post(sidecar.url, notification([refired]))
    assert status == 200 and second[0]["analysis"] != first[0]["analysis"]
    assert len(await list_analyses(kube, namespace)) == 2


async def test_resolved_marks_the_analysis_and_unseen_resolved_is_recorded(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    alert = crashloop_alert("api-7d9f8c6b5-x2kqp")
    await post(sidecar.url, notification([alert]))
    resolved = dict(alert, status="resolved", endsAt=ts())
    status, body, _ = await post(sidecar.url, notification([resolved], status="resolved"))
    assert status == 200 and body[0]["outcome"] == "resolved"
    name = body[0]["analysis"].split("/")[1]
    aa = await kube.request("GET", resource("AlertAnalysis").path(namespace, name))
    assert aa["spec"]["alert"]["status"] == "resolved"
    assert aa["spec"]["alert"]["endsAt"] == resolved["endsAt"]
    assert aa["spec"]["resolvedAt"]

    never_seen = crashloop_alert("api-7d9f8c6b5-zz9kd", status="resolved")
    status, body, _ = await post(sidecar.url, notification([never_seen], status="resolved"))
    assert status == 200 and body[0]["outcome"] == "recorded-resolved"
    assert len(await list_analyses(kube, namespace)) == 2


async def test_bad_requests_get_clear_4xx(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    good = notification([crashloop_alert("api-7d9f8c6b5-x2kqp")])
    status, body, _ = await post(sidecar.url, good, token=None)
    assert status == 401 and "bearer token" in body["error"]
    status, body, _ = await post(sidecar.url, good, token="wrong")
    assert status == 401

    status, body, _ = await post(sidecar.url, None, raw=b'{"receiver": "oncallm", "alerts": [')
    assert status == 400 and "not JSON" in body["error"]

    broken = copy.deepcopy(good)
    del broken["alerts"][0]["labels"]["alertname"]
    broken["alerts"][0]["startsAt"] = "yesterday"
    status, body, _ = await post(sidecar.url, broken)
    assert status == 422
    fields = {f["field"] for f in body["fields"]}
    assert {"alerts.0.labels", "alerts.0.startsAt"} <= fields
    assert "alerts.0.labels" in body["error"]
    assert await list_analyses(kube, namespace) == []


async def test_too_large_is_413(control_plane: LocalControlPlane, namespace: str) -> None:
    settings = IntakeSettings(namespace=namespace, host="127.0.0.1", port=0, max_body_bytes=4096)
    async with running_sidecar(
        settings, ClientSettings(kubeconfig=str(control_plane.kubeconfig))
    ) as sc:
        alerts = [crashloop_alert(f"api-7d9f8c6b5-{i:05d}") for i in range(40)]
        status, body, _ = await post(sc.url, notification(alerts), token=None)
        assert status == 413 and "ONCALLM_MAX_BODY_BYTES" in body["error"]


async def test_unreachable_api_server_is_503_with_retry_after(
    control_plane: LocalControlPlane, tmp_path: Path, namespace: str
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    settings = IntakeSettings(namespace=namespace, host="127.0.0.1", port=0, retry_after_seconds=7)
    async with running_sidecar(
        settings, ClientSettings(kubeconfig=str(dead), request_timeout=2)
    ) as sc:
        status, body, headers = await post(
            sc.url, notification([crashloop_alert("api-7d9f8c6b5-x2kqp")]), token=None
        )
        assert status == 503, body
        assert headers["Retry-After"] == "7"
        assert "retry" in body["error"]
        async with aiohttp.ClientSession() as session:
            async with session.get(sc.url + "/readyz") as resp:
                assert resp.status == 503


async def test_retry_after_partial_success_stores_each_alert_once(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    alerts = [crashloop_alert(f"api-7d9f8c6b5-{i:05d}") for i in range(5)]
    # An earlier delivery stored two of them, and the sidecar restarted (empty index).
    await post(sidecar.url, notification(alerts[:2]))
    sidecar.store.replace([])
    status, body, _ = await post(sidecar.url, notification(alerts))
    assert status == 200 and len(body) == 5
    stored = await list_analyses(kube, namespace)
    assert sorted(a["spec"]["alert"]["fingerprint"] for a in stored) == sorted(
        a["fingerprint"] for a in alerts
    )


async def test_health_ready_and_metrics(sidecar: RunningSidecar) -> None:
    await post(sidecar.url, notification([crashloop_alert("api-7d9f8c6b5-x2kqp")]))
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(sidecar.url + "/readyz") as resp:
            assert resp.status == 200, await resp.text()
        async with session.get(sidecar.url + "/metrics") as resp:
            text = await resp.text()
    for name in (
        'oncallm_webhook_alerts_received_total{status="firing"}',
        "oncallm_analyses_created_total",
        "oncallm_webhook_repeats_skipped_total",
        "oncallm_webhook_rejected_total",
        "oncallm_webhook_request_duration_seconds_bucket",
    ):
        assert name in text


async def test_a_thousand_alerts_in_one_notification(
    sidecar: RunningSidecar, kube: KubeAPI, namespace: str
) -> None:
    alerts = [crashloop_alert(f"api-{i:04d}-x2kqp") for i in range(1000)]
    status, body, _ = await post(sidecar.url, notification(alerts))
    assert status == 200 and len(body) == 1000
    assert len({b["analysis"] for b in body}) == 1000
    assert len(await list_analyses(kube, namespace)) == 1000
    # How fast: bench/bench_intake.py measures it; tests assert only that nothing is lost.
