"""The operator on a real API server: from an AlertAnalysis to a completed report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.alert import Alert
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec
from oncallm.scenarios.model import Scenario, ShiftedScenario
from oncallm.scenarios.plant import plant
from tests.helpers.operator import operator_process, operator_running
from tests.helpers.planting import wait_for
from tests.helpers.storm import Storm, build_storm

pytestmark = pytest.mark.cluster

DATA = Path(__file__).parent / "data"


def scenario(namespace: str, file: str = "db-down.yaml") -> ShiftedScenario:
    text = (DATA / file).read_text().replace("NS", namespace)
    return Scenario.model_validate(yaml.safe_load(text)).shift()


async def plant_scenario(kube: KubeAPI, plane: LocalControlPlane, shifted: ShiftedScenario) -> None:
    await plant(
        kube,
        shifted,
        node_status=plane.node_status(),
        plant_log=lambda ns, pod, c, text, prev: plane.plant_log(ns, pod, c, text, previous=prev),
    )


async def create_analysis(kube: KubeAPI, namespace: str, alert: Alert) -> str:
    name = analysis_name(alert)
    body = AlertAnalysis(
        metadata={"name": name, "namespace": namespace, "labels": analysis_labels(alert)},
        spec=AlertAnalysisSpec(alert=AlertSpec.from_alert(alert), receiver="oncallm"),
    ).to_kube()
    body.pop("status", None)
    await kube.request("POST", resource("AlertAnalysis").path(namespace), body=body)
    return name


async def get_analysis(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = await kube.request(
        "GET", resource("AlertAnalysis").path(namespace, name)
    )
    return result


async def wait_phase(
    kube: KubeAPI, namespace: str, name: str, phases: set[str], timeout: float = 60
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        aa = await get_analysis(kube, namespace, name)
        return aa if (aa.get("status") or {}).get("phase") in phases else None

    result: dict[str, Any] = await wait_for(
        check, timeout=timeout, what=f"{name} to reach {phases}"
    )
    return result


async def test_alert_to_completed_report(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str
) -> None:
    shifted = scenario(namespace)
    await plant_scenario(kube, control_plane, shifted)
    with operator_running(namespace):
        name = await create_analysis(kube, namespace, shifted.alert)
        aa = await wait_phase(kube, namespace, name, {"Completed", "Failed"})
    status = aa["status"]
    assert status["phase"] == "Completed", status
    assert status["category"] == "dependency_unreachable"
    assert "orders-db" in status["rootCause"]
    assert status["analyzer"] == "rules"
    assert status["targetDisplay"] == f"pod/{namespace}/api-7d9f8c6b5-x2kqp"
    assert status["evidence"] and all(e["excerpt"] for e in status["evidence"])
    assert any(f"-n {namespace}" in c for c in status["commands"])
    assert status["timings"]["total"] > 0
    cm = await kube.request("GET", resource("ConfigMap").path(namespace, status["reportConfigMap"]))
    assert set(cm["data"]) == {"report.md", "report.html"}
    assert "orders-db" in cm["data"]["report.md"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == aa["metadata"]["uid"]
    events = await kube.request(
        "GET",
        resource("Event").path(namespace),
        query={"fieldSelector": f"involvedObject.name={name}"},
    )
    assert [e["reason"] for e in events["items"]] == ["AnalysisCompleted"]

    table = control_plane.kubectl_run("get", "alertanalyses", "-n", namespace)
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "ALERT", "TARGET", "SEVERITY"]
    assert "KubePodCrashLooping" in row and "Completed" in row and "orders-db" in row


async def test_policy_and_resolved_alerts_are_skipped(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str
) -> None:
    shifted = scenario(namespace)
    control_plane.kubectl_run(
        "apply",
        "-f",
        "-",
        input_text=yaml.safe_dump(
            {
                "apiVersion": "oncallm.io/v1alpha1",
                "kind": "AnalysisPolicy",
                "metadata": {"name": "mute-info", "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"severity": "info"}},
                    "priority": 10,
                    "analyze": False,
                },
            }
        ),
    )
    info = shifted.alert.model_copy(
        update={
            "labels": {**shifted.alert.labels, "severity": "info"},
            "fingerprint": "1c0ffee1c0ffee00",
        }
    )
    resolved = shifted.alert.model_copy(
        update={"status": "resolved", "fingerprint": "2c0ffee1c0ffee00"}
    )
    with operator_running(namespace):
        muted = await create_analysis(kube, namespace, info)
        done = await create_analysis(kube, namespace, resolved)
        aa_muted = await wait_phase(kube, namespace, muted, {"Skipped", "Completed", "Failed"})
        aa_done = await wait_phase(kube, namespace, done, {"Skipped", "Completed", "Failed"})
    assert aa_muted["status"]["phase"] == "Skipped"
    assert "mute-info" in aa_muted["status"]["reason"]
    assert aa_muted["status"]["policy"] == "mute-info"
    assert aa_done["status"]["phase"] == "Skipped"
    assert "resolved" in aa_done["status"]["reason"]


async def test_sigkill_while_gathering_then_restart_completes_once(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    shifted = scenario(namespace)
    await plant_scenario(kube, control_plane, shifted)
    # A slow kubelet holds the analysis in Gathering while the operator is killed.
    delay = control_plane.logs_folder / namespace / "api-7d9f8c6b5-x2kqp" / "api.delay"
    delay.write_text("60")
    log = tmp_path / "operator.log"
    first = operator_process(namespace, control_plane.kubeconfig, log)
    try:
        name = await create_analysis(kube, namespace, shifted.alert)
        await wait_phase(kube, namespace, name, {"Gathering"}, timeout=60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    delay.unlink()
    second = operator_process(namespace, control_plane.kubeconfig, log)
    try:
        aa = await wait_phase(kube, namespace, name, {"Completed", "Failed"}, timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert aa["status"]["phase"] == "Completed", log.read_text()[-3000:]
    assert aa["status"]["attempts"] >= 1
    cms = await kube.request(
        "GET",
        resource("ConfigMap").path(namespace),
        query={"labelSelector": f"oncallm.io/analysis={name}"},
    )
    assert len(cms["items"]) == 1
    events = await kube.request(
        "GET",
        resource("Event").path(namespace),
        query={"fieldSelector": f"involvedObject.name={name}"},
    )
    assert [e["reason"] for e in events["items"]] == ["AnalysisCompleted"]
    with pytest.raises(ApiError):
        await kube.request("GET", resource("ConfigMap").path(namespace, f"{name}-report-2"))


async def test_sigkill_mid_incident_completes_every_member_exactly_once(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A storm of three incidents; the operator, slowed to four API requests a second (its
    reads wait for them, never time out), is killed once an incident has some members completed and some not. The next one completes the rest: every analysis reaches
    Completed exactly once, each member names the one primary of its cause, the unrelated
    alerts stay alone."""
    storm = build_storm(namespace, per_incident=(4, 4, 4), unrelated=2, node_workloads=2)
    try:
        await _storm_incidents(kube, control_plane, namespace, tmp_path, storm)
    finally:  # the storm's Nodes (and their Events, in default) outlive the namespace
        for shifted in storm.scenarios:
            for event in shifted.event_objects():
                if event["involvedObject"].get("kind") == "Node":
                    with contextlib.suppress(ApiError):
                        await kube.request(
                            "DELETE",
                            resource("Event").path(
                                event["metadata"]["namespace"], event["metadata"]["name"]
                            ),
                        )
            for obj in shifted.objects:
                if obj["kind"] == "Node":
                    with contextlib.suppress(ApiError):
                        await kube.request(
                            "DELETE", resource("Node").path(None, obj["metadata"]["name"])
                        )


async def _storm_incidents(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str, tmp_path: Path, storm: Storm
) -> None:
    for shifted in storm.scenarios:
        await plant_scenario(kube, control_plane, shifted)
    transitions: Counter[str] = Counter()
    watch = asyncio.create_task(_count_completions(kube, namespace, transitions))
    log = tmp_path / "operator.log"
    names = []
    slow = {"ONCALLM_KUBE_QPS": "4", "ONCALLM_KUBE_BURST": "1", "ONCALLM_SOURCE_TIMEOUT": "300"}
    first = operator_process(namespace, control_plane.kubeconfig, log, **slow)
    try:
        for raw in storm.alerts:
            names.append(await create_analysis(kube, namespace, Alert.model_validate(raw)))

        groups = [storm.expected[raw["fingerprint"]] for raw in storm.alerts]

        async def an_incident_half_done() -> bool:
            # members complete together once their incident's cause is known, each by its own
            # status write: at four requests a second an incident of four spends about a
            # second with some members written and some not
            done = Counter(g for n, g in zip(names, groups, strict=True) if n in transitions)
            return any(0 < done[g] < groups.count(g) for g in ("node", "dependency", "rollout"))

        await wait_for(
            an_incident_half_done, timeout=120, interval=0.02, what="an incident half completed"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    done_at_kill = {n for n in names if n in transitions}
    groups_at_kill = Counter(
        (storm.expected[raw["fingerprint"]], name in done_at_kill)
        for name, raw in zip(names, storm.alerts, strict=True)
    )
    # mid-incident: an incident with members completed and members still to complete
    assert any(
        groups_at_kill[(group, True)] and groups_at_kill[(group, False)]
        for group in ("node", "dependency", "rollout")
    ), groups_at_kill
    second = operator_process(namespace, control_plane.kubeconfig, log)
    try:
        for name in names:
            await wait_phase(kube, namespace, name, {"Completed", "Failed"}, timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        watch.cancel()
    assert {n: transitions[n] for n in names} == {n: 1 for n in names}, log.read_text()[-3000:]
    statuses = {n: (await get_analysis(kube, namespace, n))["status"] for n in names}
    by_incident: dict[str, set[str]] = {}
    for name, raw in zip(names, storm.alerts, strict=True):
        by_incident.setdefault(storm.expected[raw["fingerprint"]], set()).add(
            statuses[name]["incident"]["primary"]
        )
    assert all(len(primaries) == 1 for primaries in by_incident.values()), by_incident
    assert len({p for ps in by_incident.values() for p in ps}) == 3 + 2
    events = await kube.request(
        "GET",
        resource("Event").path(namespace),
        query={"fieldSelector": "reason=AnalysisCompleted"},
    )
    completed_events = Counter(e["involvedObject"]["name"] for e in events["items"])
    assert set(completed_events.values()) <= {1}


async def _count_completions(kube: KubeAPI, namespace: str, seen: Counter[str]) -> None:
    """Count, per analysis, the watch events that take it into phase Completed."""
    path = resource("AlertAnalysis").path(namespace)
    phases: dict[str, str | None] = {}
    version = (await kube.request("GET", path))["metadata"]["resourceVersion"]
    while True:
        try:
            async for event in kube.watch(path, resource_version=version):
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                name = str((obj.get("metadata") or {}).get("name"))
                phase = (obj.get("status") or {}).get("phase")
                if phase == "Completed" and phases.get(name) != "Completed":
                    seen[name] += 1
                phases[name] = phase
        except ApiError:
            await asyncio.sleep(0.2)
