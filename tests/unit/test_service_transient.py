"""Failures that pass (the API server, a token ledger other analyses keep writing) are
retried, and only marked Failed once the attempts run out; a bug fails the analysis at once."""

from __future__ import annotations

from typing import Any, cast

import pytest

from oncallm.kube.api import KubeAPI
from oncallm.llm.budget import LedgerConflict
from oncallm.models.analysis import AlertAnalysis, Phase
from oncallm.pipeline.queue import RetryLater
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.service import AnalysisService
from oncallm.pipeline.settings import IncidentSettings, OperatorSettings


class RaisingPipeline:
    """Just what the service calls: ``run`` raises ``error``, ``fail`` records its reason."""

    history = None

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.failed: list[str] = []

    async def run(self, analysis: AlertAnalysis, policy: Any, attempt: int) -> Any:
        raise self.error

    async def fail(self, analysis: AlertAnalysis, reason: str) -> None:
        self.failed.append(reason)


def _analysis() -> AlertAnalysis:
    return AlertAnalysis.model_validate(
        {
            "metadata": {"name": "a", "namespace": "oncallm"},
            "spec": {
                "alert": {
                    "labels": {"alertname": "KubePodCrashLooping"},
                    "status": "firing",
                    "startsAt": "2026-12-02T03:00:00Z",
                    "fingerprint": "0123456789abcdef",
                }
            },
        }
    )


def _service(error: Exception) -> tuple[AnalysisService, RaisingPipeline]:
    pipeline = RaisingPipeline(error)
    service = AnalysisService(
        cast(KubeAPI, object()),
        cast(Pipeline, pipeline),
        OperatorSettings(max_attempts=3, retry_delay=0.5),
        IncidentSettings(enabled=False),
    )
    return service, pipeline


async def test_a_ledger_that_keeps_changing_is_retried_not_failed() -> None:
    service, pipeline = _service(LedgerConflict("the token ledger kept changing"))
    with pytest.raises(RetryLater) as retry:
        await service.analyse(_analysis(), attempt=0)
    assert retry.value.delay == 0.5
    assert "ONCALLM_CONCURRENCY" in str(retry.value)
    assert pipeline.failed == []


async def test_the_last_attempt_fails_the_analysis_saying_how_often_it_tried() -> None:
    service, pipeline = _service(LedgerConflict("the token ledger kept changing"))
    assert await service.analyse(_analysis(), attempt=2) == Phase.FAILED
    assert len(pipeline.failed) == 1 and "gave up after 3 tries" in pipeline.failed[0]


async def test_a_bug_fails_the_analysis_at_once() -> None:
    service, pipeline = _service(KeyError("boom"))
    assert await service.analyse(_analysis(), attempt=0) == Phase.FAILED
    assert "failed unexpectedly" in pipeline.failed[0]
