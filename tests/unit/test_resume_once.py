"""A run resumed by another replica is the same run: it keeps its startedAt, and its Event's
name, so the Event is posted once whoever finishes the run."""

from __future__ import annotations

from typing import Any, cast

from oncallm.gathering.memory import MemoryReader
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.models.analysis import AlertAnalysis
from oncallm.models.policy import AnalysisPolicy
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.writes import event_name, post_event


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, Any]] = []
        self.names: set[str] = set()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        self.writes.append((method, path, body))
        if path.endswith("/events"):
            name = body["metadata"]["name"]
            if name in self.names:
                raise ApiError(409, "already exists")
            self.names.add(name)
        return {}


def analysis(status: dict[str, Any] | None = None) -> AlertAnalysis:
    return AlertAnalysis.model_validate(
        {
            "metadata": {"name": "kube-pod-crash-looping-4b1e", "namespace": "ns", "uid": "u1"},
            "spec": {
                "alert": {
                    "status": "firing",
                    "labels": {"alertname": "KubePodCrashLooping", "namespace": "ns", "pod": "p"},
                    "startsAt": "2026-12-02T04:00:00Z",
                    "fingerprint": "4b1e0c0ffee",
                }
            },
            "status": status or {},
        }
    )


def test_the_event_name_is_the_runs() -> None:
    run = "2026-12-02T04:01:00Z"
    first = event_name(analysis(), "AnalysisCompleted", run)
    assert first == event_name(analysis(), "AnalysisCompleted", run)
    assert first != event_name(analysis(), "AnalysisCompleted", "2026-12-02T05:00:00Z")
    assert first != event_name(analysis(), "AnalysisFailed", run)
    assert event_name(analysis(), "AnalysisCompleted", None) != event_name(
        analysis(), "AnalysisCompleted", None
    )


async def test_a_resumed_run_keeps_its_start_and_posts_no_second_event() -> None:
    api = Recorder()
    pipeline = Pipeline(api=cast(KubeAPI, api), reader=MemoryReader([]), namespace="ns")
    policy = AnalysisPolicy.model_validate({"metadata": {"name": "default"}, "spec": {}})
    # interrupted while gathering on a replica that died
    interrupted = analysis({"phase": "Gathering", "startedAt": "2026-12-02T04:01:00Z"})
    await pipeline.mark_gathering(interrupted, policy, 1)
    assert api.writes[-1][2]["status"]["startedAt"] == "2026-12-02T04:01:00Z"
    for _ in range(2):  # the first owner posted it, the new owner tries again
        await post_event(
            cast(KubeAPI, api),
            interrupted,
            warning=False,
            reason="AnalysisCompleted",
            message="done",
            run=interrupted.status.started_at,
        )
    assert len(api.names) == 1
    # a finished analysis asked to run again is a new run
    again = analysis({"phase": "Completed", "startedAt": "2026-12-02T04:01:00Z"})
    await pipeline.mark_gathering(again, policy, 0)
    assert api.writes[-1][2]["status"]["startedAt"] != "2026-12-02T04:01:00Z"
