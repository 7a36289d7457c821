"""The operator's housekeeping on a real API server: retention and history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.policy import AnalysisPolicy
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.service import AnalysisService
from oncallm.pipeline.settings import OperatorSettings
from tests.cluster.test_operator import create_analysis, plant_scenario, scenario, wait_phase
from tests.helpers.operator import operator_running
from tests.helpers.planting import ts

pytestmark = pytest.mark.cluster


async def _finished(
    kube: KubeAPI, namespace: str, name: str, fingerprint: str, completed: str, policy: str
) -> None:
    await kube.request(
        "POST",
        resource("AlertAnalysis").path(namespace),
        body={
            "apiVersion": "oncallm.io/v1alpha1",
            "kind": "AlertAnalysis",
            "metadata": {"name": name},
            "spec": {
                "alert": {
                    "status": "firing",
                    "labels": {"alertname": "KubePodCrashLooping", "severity": "warning"},
                    "startsAt": completed,
                    "fingerprint": fingerprint,
                }
            },
        },
    )
    await kube.request(
        "PATCH",
        resource("AlertAnalysis").path(namespace, name) + "/status",
        body={"status": {"phase": "Completed", "completedAt": completed, "policy": policy}},
        content_type="application/merge-patch+json",
    )


async def test_finished_analyses_past_retention_are_deleted(kube: KubeAPI, namespace: str) -> None:
    service = AnalysisService(
        kube,
        Pipeline(api=kube, reader=None, namespace=namespace),
        OperatorSettings(namespace=namespace),  # type: ignore[arg-type]
    )
    service.set_policy(
        AnalysisPolicy.model_validate(
            {"metadata": {"name": "short"}, "spec": {"selector": {}, "retentionHours": 1}}
        )
    )
    await _finished(kube, namespace, "old-one", "f1", ts(timedelta(hours=-3)), "short")
    await _finished(kube, namespace, "recent-one", "f2", ts(timedelta(minutes=-10)), "short")
    # A running analysis is never deleted, however old.
    await kube.request(
        "POST",
        resource("AlertAnalysis").path(namespace),
        body={
            "apiVersion": "oncallm.io/v1alpha1",
            "kind": "AlertAnalysis",
            "metadata": {"name": "still-running"},
            "spec": {
                "alert": {
                    "status": "firing",
                    "labels": {"alertname": "X"},
                    "startsAt": ts(timedelta(hours=-5)),
                    "fingerprint": "f3",
                }
            },
        },
    )
    assert await service.sweep_retention() == 1
    names = {
        i["metadata"]["name"]
        for i in (await kube.request("GET", resource("AlertAnalysis").path(namespace)))["items"]
    }
    assert names == {"recent-one", "still-running"}


async def test_a_new_firing_sees_the_earlier_analysis(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str
) -> None:
    shifted = scenario(namespace)
    await plant_scenario(kube, control_plane, shifted)
    # Incidents off: a second firing of the same cause would join the first's incident and
    # write no report of its own; this is about the history source.
    with operator_running(namespace, ONCALLM_INCIDENTS="false"):
        first = await create_analysis(kube, namespace, shifted.alert)
        await wait_phase(kube, namespace, first, {"Completed"})
        again = shifted.alert.model_copy(
            update={"starts_at": shifted.alert.starts_at + timedelta(minutes=20)}
        )
        second = await create_analysis(kube, namespace, again)
        aa = await wait_phase(kube, namespace, second, {"Completed"})
    assert first != second
    cm: dict[str, Any] = await kube.request(
        "GET", resource("ConfigMap").path(namespace, aa["status"]["reportConfigMap"])
    )
    report = cm["data"]["report.md"]
    earlier = report.split("## Earlier analyses of this alert", 1)[1]
    assert "Completed" in earlier and "orders-db" in earlier
    with pytest.raises(ApiError):
        await kube.request("GET", resource("AlertAnalysis").path(namespace, "never-existed"))
