"""The evidence is built once per analysis, with the operator's settings, and everything cites
that one list: whatever ``ONCALLM_EVIDENCE_*`` says, a diagnosis never cites an id the report
does not hold (the pipeline and ``oncallm eval --offline`` both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oncallm.analysis import build_baseline, diagnose, index_evidence
from oncallm.analysis.baseline import Baseline
from oncallm.analysis.evidence import EvidenceSettings
from oncallm.gathering.gather import gather
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.pipeline import run as run_module
from oncallm.pipeline.run import Pipeline
from oncallm.scenarios.model import load_scenario

FOLDER = Path(__file__).resolve().parents[1] / "scenarios"
#: The tuned scenarios and the development corpus (never the blind split).
TUNED = sorted(FOLDER.glob("*.yaml"))
PATHS = TUNED + sorted((FOLDER / "corpus").glob("*.yaml"))

#: Settings far from the defaults: one error line, one last line, short excerpts.
SMALL = EvidenceSettings(max_error_lines=1, tail_lines=1, max_excerpt_chars=60)
LARGE = EvidenceSettings(max_error_lines=40, tail_lines=30, max_excerpt_chars=2000)


class RecordingAPI:
    """Answers every request with an empty object and keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.sent.append((method, path, kwargs.get("body")))
        return {}


async def test_small_settings_would_drop_cited_evidence_if_built_twice() -> None:
    """The trap this guards against is real: with the defaults' evidence the rules cite lines
    that the operator's smaller evidence does not hold."""
    dropped = 0
    for path in PATHS:
        shifted = load_scenario(path).shift()
        ctx = await gather(shifted.alert, shifted.memory_reader(), DEFAULT_POLICY)
        small = set(index_evidence(ctx, SMALL).ids)
        dropped += len(set(diagnose(ctx).evidence) - small)
    assert dropped > 0


@pytest.mark.parametrize("settings", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_the_diagnosis_cites_only_the_evidence_built(
    path: Path, settings: EvidenceSettings
) -> None:
    shifted = load_scenario(path).shift()
    ctx = await gather(shifted.alert, shifted.memory_reader(), DEFAULT_POLICY)
    result = build_baseline(ctx, settings)
    ids = set(result.evidence.ids)
    assert set(result.diagnosis.evidence) <= ids
    assert result.diagnosis.evidence, "a diagnosis cites at least the alert"
    assert [e.id for e in ctx.evidence] == result.evidence.ids


@pytest.mark.parametrize("path", TUNED, ids=[p.stem for p in TUNED])
async def test_the_pipeline_reports_every_id_its_diagnosis_cites(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipeline.run with small evidence settings: the status and the report carry every id the
    rules cited, because the rules cited the evidence the pipeline built."""
    built: list[Baseline] = []

    def recording(*args: Any, **kwargs: Any) -> Baseline:
        result = build_baseline(*args, **kwargs)
        built.append(result)
        return result

    monkeypatch.setattr(run_module, "build_baseline", recording)
    scenario = load_scenario(path)
    shifted = scenario.shift()
    api = RecordingAPI()
    pipeline = Pipeline(
        api=api,  # type: ignore[arg-type]
        reader=shifted.memory_reader(),
        namespace="oncallm",
        evidence_settings=SMALL,
    )
    analysis = AlertAnalysis(
        metadata={"name": scenario.name, "namespace": "oncallm", "uid": "u1"},
        spec=AlertAnalysisSpec(alert=AlertSpec.from_alert(shifted.alert)),
    )
    await pipeline.run(analysis, DEFAULT_POLICY, attempt=1)

    assert len(built) == 1, "the evidence is built once per analysis"
    cited = built[0].diagnosis.evidence
    assert set(cited) <= set(built[0].evidence.ids)
    final = [b for m, p, b in api.sent if m == "PATCH" and b["status"].get("phase") == "Completed"]
    assert [e["id"] for e in final[-1]["status"]["evidence"]] == cited
    report = next(b for m, _, b in api.sent if m == "POST" and b.get("kind") == "ConfigMap")
    for evidence_id in cited:
        assert evidence_id in report["data"]["report.md"], evidence_id


@pytest.mark.parametrize("path", TUNED, ids=[p.stem for p in TUNED])
async def test_offline_eval_reports_every_id_its_diagnosis_cites(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``oncallm eval --offline`` reads the evidence settings from the environment, as the
    operator does, and builds the evidence once."""
    from oncallm.evaluation import runner

    monkeypatch.setenv("ONCALLM_EVIDENCE_MAX_ERROR_LINES", "1")
    monkeypatch.setenv("ONCALLM_EVIDENCE_TAIL_LINES", "1")
    built: list[tuple[Any, Baseline]] = []
    reported: list[AlertAnalysis] = []

    def recording(ctx: Any, *args: Any, **kwargs: Any) -> Baseline:
        result = build_baseline(ctx, *args, **kwargs)
        built.append((ctx, result))
        return result

    def render(analysis: AlertAnalysis, *args: Any, **kwargs: Any) -> dict[str, str]:
        reported.append(analysis)
        return {"report.md": ""}

    monkeypatch.setattr(runner, "build_baseline", recording)
    monkeypatch.setattr(runner, "render_report", render)
    await runner.evaluate_offline(load_scenario(path))
    [(ctx, result)] = built
    small = EvidenceSettings(max_error_lines=1, tail_lines=1)
    assert result.evidence.ids == index_evidence(ctx, small).ids
    assert [e.id for e in reported[0].status.evidence] == result.diagnosis.evidence
