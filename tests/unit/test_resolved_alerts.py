"""A resolved alert is not analysed after the fact, by the operator and by the offline eval
alike: both ask ``pipeline.run.resolved_skip_reason``, so both give the same answer."""

from __future__ import annotations

from pathlib import Path

from oncallm.evaluation.runner import evaluate_offline
from oncallm.models.analysis import AlertAnalysisSpec, AlertSpec, Phase
from oncallm.pipeline.run import resolved_skip_reason
from oncallm.scenarios.model import load_scenario

SCENARIO = Path(__file__).parents[1] / "scenarios" / "reports-oom.yaml"


def spec(status: str, received: str, resolved: str | None) -> AlertAnalysisSpec:
    alert = AlertSpec.model_validate(
        {
            "status": status,
            "labels": {"alertname": "KubePodCrashLooping"},
            "startsAt": received,
            "fingerprint": "3f1c2a9b7d6e5f40",
        }
    )
    return AlertAnalysisSpec(alert=alert, received_at=received, resolved_at=resolved)


def test_why_a_resolved_alert_is_skipped() -> None:
    t0, t1 = "2026-12-02T08:00:00Z", "2026-12-02T08:05:00Z"
    assert resolved_skip_reason(spec("firing", t0, None), None) is None
    first_seen = resolved_skip_reason(spec("resolved", t0, t0), None)
    assert first_seen == "the alert was already resolved when OnCallM first saw it"
    later = resolved_skip_reason(spec("resolved", t0, t1), Phase.PENDING)
    assert later == "the alert was resolved before the analysis started"
    # an analysis under way finishes: its alert resolving meanwhile changes nothing
    assert resolved_skip_reason(spec("resolved", t0, t1), Phase.ANALYZING) is None


async def test_offline_an_alert_first_seen_resolved_is_skipped_as_on_the_cluster() -> None:
    scenario = load_scenario(SCENARIO)
    firing = await evaluate_offline(scenario)
    assert firing.error is None and firing.got == scenario.expect.category.value
    resolved = scenario.model_copy(update={"alert": {**scenario.alert, "status": "resolved"}})
    result = await evaluate_offline(resolved)
    assert result.got is None and not result.correct
    assert result.error == "phase Skipped: the alert was already resolved when OnCallM first saw it"
