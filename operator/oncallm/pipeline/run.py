"""Run one analysis: gather, diagnose with the rules, ask the model, report, record.

Idempotent: running it again on the same AlertAnalysis (after a crash, a retry or a
``oncallm.io/reanalyze`` annotation) reads the same evidence and replaces the one report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from oncallm.analysis.baseline import Baseline, build_baseline
from oncallm.analysis.evidence import EvidenceSettings
from oncallm.analysis.rules import RuleSettings
from oncallm.gathering.gather import gather
from oncallm.gathering.reader import KubeReader
from oncallm.gathering.scope import HistorySource, MetricsSource
from oncallm.gathering.settings import GatherSettings
from oncallm.gathering.sources import SOURCES, Source
from oncallm.gathering.target import resolve_target
from oncallm.intake.naming import LABEL_FINGERPRINT
from oncallm.kube.api import KubeAPI
from oncallm.llm.analyse import ModelOutcome, analyse_with_model, transcript_json
from oncallm.llm.budget import reservation_tokens
from oncallm.llm.client import ModelClient
from oncallm.llm.tools import ToolBackend
from oncallm.models.alert import Alert, AlertStatus
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    Condition,
    Diagnosis,
    EvidenceRef,
    IncidentRef,
    Phase,
    StageTimings,
    TargetRef,
    rfc3339,
)
from oncallm.models.evidence import Context, HistorySnapshot
from oncallm.models.policy import AnalysisPolicy
from oncallm.pipeline import metrics
from oncallm.pipeline.settings import OperatorSettings
from oncallm.pipeline.tools import KubeToolBackend
from oncallm.pipeline.writes import patch_status, post_event, write_report, write_transcript
from oncallm.reports import ReportSettings, render_report

log = logging.getLogger(__name__)

#: Root causes longer than this are cut for the ``kubectl get`` column.
SHORT_ROOT_CAUSE = 80
#: Condition on analyses the rules completed while the model was unavailable.
MODEL_PENDING = "ModelUpgradePending"


def now_text() -> str:
    return rfc3339(datetime.now(UTC).replace(microsecond=0))


def shorten(text: str, limit: int = SHORT_ROOT_CAUSE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class ApiHistory:
    """Earlier analyses of the same alert (same fingerprint), newest first."""

    def __init__(self, reader: KubeReader, namespace: str) -> None:
        self.reader = reader
        self.namespace = namespace

    async def earlier(self, alert: Alert, exclude: str | None) -> list[HistorySnapshot]:
        items = await self.reader.list(
            "AlertAnalysis",
            self.namespace,
            label_selector=f"{LABEL_FINGERPRINT}={alert.fingerprint}",
        )
        out = []
        for item in items:
            meta = item.get("metadata") or {}
            if meta.get("name") == exclude:
                continue
            status = item.get("status") or {}
            out.append(
                HistorySnapshot(
                    analysis=str(meta.get("name")),
                    starts_at=((item.get("spec") or {}).get("alert") or {}).get("startsAt"),
                    phase=status.get("phase"),
                    category=status.get("category"),
                    root_cause=status.get("rootCause"),
                )
            )
        out.sort(key=lambda h: h.starts_at or "", reverse=True)
        return out


def resolved_skip_reason(spec: AlertAnalysisSpec, phase: Phase | None) -> str | None:
    """Why an analysis not yet started is skipped because its alert is resolved, or None.

    A resolved alert is not analysed after the fact: the cluster has recovered, so what is
    gathered now no longer shows the failure, and a diagnosis of it would be a guess. The
    offline evaluation asks the same question, so both give the same answer."""
    if spec.alert.status != AlertStatus.RESOLVED or phase not in (None, Phase.PENDING):
        return None
    if spec.received_at != spec.resolved_at:
        return "the alert was resolved before the analysis started"
    return "the alert was already resolved when OnCallM first saw it"


@dataclass
class RunResult:
    phase: Phase
    #: completed by the rules while the model was unavailable: ask the model again later
    model_pending: bool = False
    #: the status written last (a completed analysis' whole status)
    status: AlertAnalysisStatus | None = None


@dataclass
class Pipeline:
    api: KubeAPI
    reader: KubeReader
    namespace: str
    report_base_url: str = ""
    model: ModelClient | None = None
    metrics_source: MetricsSource | None = None
    gather_settings: GatherSettings = field(default_factory=GatherSettings)
    evidence_settings: EvidenceSettings = field(default_factory=EvidenceSettings)
    rule_settings: RuleSettings = field(default_factory=RuleSettings)
    report_settings: ReportSettings = field(default_factory=ReportSettings)
    tools: ToolBackend | None = None
    #: earlier analyses of the same alert; None: a list call per analysis (ApiHistory)
    history: HistorySource | None = None

    @classmethod
    def from_env(
        cls,
        api: KubeAPI,
        reader: KubeReader,
        config: OperatorSettings,
        model: ModelClient | None,
        metrics_source: MetricsSource | None,
    ) -> Pipeline:
        """The operator's pipeline, every tunable read from the environment."""
        return cls(
            api=api,
            reader=reader,
            namespace=config.namespace,
            report_base_url=config.report_base_url,
            model=model,
            metrics_source=metrics_source,
            tools=KubeToolBackend(reader, metrics_source),
            gather_settings=GatherSettings.from_env(),
            evidence_settings=EvidenceSettings.from_env(),
            rule_settings=RuleSettings.from_env(),
            report_settings=ReportSettings.from_env(),
        )

    def report_url(self, analysis: AlertAnalysis) -> str:
        path = f"/analyses/{analysis.namespace}/{analysis.name}"
        return self.report_base_url.rstrip("/") + path if self.report_base_url else path

    async def skip(self, analysis: AlertAnalysis, reason: str, policy: str | None) -> None:
        alert = analysis.spec.alert.to_alert()
        target = resolve_target(alert)
        await patch_status(
            self.api,
            analysis,
            AlertAnalysisStatus(
                phase=Phase.SKIPPED,
                reason=reason,
                target=target,
                target_display=target.display,
                severity=alert.severity,
                short_root_cause=shorten(f"skipped: {reason}"),
                policy=policy,
                completed_at=now_text(),
                conditions=[_condition("Analyzed", "False", "Skipped", reason)],
            ),
        )
        metrics.ANALYSES.labels("skipped", "none").inc()

    async def run(self, analysis: AlertAnalysis, policy: AnalysisPolicy, attempt: int) -> RunResult:
        """Analyse; returns the final phase. Raises ApiError on API failures (retry later)."""
        skipped = await self.skip_if_due(analysis, policy)
        if skipped is not None:
            return skipped
        started = time.perf_counter()
        await self.mark_gathering(analysis, policy, attempt)
        ctx = await self.gather(analysis, policy)
        gathered = time.perf_counter()
        metrics.STAGE_SECONDS.labels("gathering").observe(gathered - started)
        await patch_status(
            self.api,
            analysis,
            AlertAnalysisStatus(phase=Phase.ANALYZING, short_root_cause="analysing…"),
        )
        # The evidence is built once, with the operator's settings, and the rules, the model
        # and the report all cite that one list.
        rules = build_baseline(ctx, self.evidence_settings, self.rule_settings)
        return await self.conclude(analysis, policy, ctx, rules, started=started, gathered=gathered)

    async def skip_if_due(
        self, analysis: AlertAnalysis, policy: AnalysisPolicy
    ) -> RunResult | None:
        """Skip an alert resolved before its analysis started, or one its policy does not
        analyse; None when it is to be analysed."""
        resolved = resolved_skip_reason(analysis.spec, analysis.status.phase)
        if resolved:
            await self.skip(analysis, resolved, policy.name)
            return RunResult(Phase.SKIPPED)
        if not policy.spec.analyze:
            await self.skip(
                analysis, f"policy {policy.name} has analyze: false for this alert", policy.name
            )
            return RunResult(Phase.SKIPPED)
        return None

    async def mark_gathering(
        self, analysis: AlertAnalysis, policy: AnalysisPolicy, attempt: int
    ) -> None:
        alert = analysis.spec.alert.to_alert()
        target = resolve_target(alert)
        # A run resumed (by another replica after a takeover, or after a retry) keeps the
        # startedAt of the run it continues: the run's identity, which names its one Event.
        status = analysis.status
        resumed = status.started_at and not (status.phase is not None and status.phase.finished)
        started_at = status.started_at if resumed else now_text()
        analysis.status.started_at = started_at
        await patch_status(
            self.api,
            analysis,
            AlertAnalysisStatus(
                phase=Phase.GATHERING,
                target=target,
                target_display=target.display,
                severity=alert.severity,
                policy=policy.name,
                started_at=started_at,
                attempts=attempt,
                short_root_cause="gathering evidence…",
            ),
        )

    async def gather(
        self,
        analysis: AlertAnalysis,
        policy: AnalysisPolicy,
        sources: tuple[Source, ...] = SOURCES,
    ) -> Context:
        """Everything the policy reads for the alert (``sources``: all by default)."""
        return await gather(
            analysis.spec.alert.to_alert(),
            self.reader,
            policy,
            settings=self.gather_settings,
            metrics=self.metrics_source,
            history=self.history or ApiHistory(self.reader, self.namespace),
            exclude_analysis=analysis.name,
            sources=sources,
        )

    async def conclude(
        self,
        analysis: AlertAnalysis,
        policy: AnalysisPolicy,
        ctx: Context,
        rules: Baseline,
        *,
        started: float,
        gathered: float,
        prompt_extra: list[EvidenceRef] | None = None,
        incident: IncidentRef | None = None,
        members: list[AlertAnalysis] | None = None,
        on_outcome: Callable[[ModelOutcome, list[EvidenceRef]], None] | None = None,
    ) -> RunResult:
        """From the rules' diagnosis to the completed analysis: ask the model (with
        ``prompt_extra`` after the alert, e.g. an incident's member symptoms), then the
        status, the report (listing ``members``), the Event. ``on_outcome`` hears the final
        diagnosis and the items it may cite as soon as it is known, before anything is
        written."""
        evidence = rules.evidence.items
        prompt = evidence
        if prompt_extra:
            prompt = [*evidence[:1], *prompt_extra, *evidence[1:]]
        outcome = await self._model(ctx, prompt, rules.diagnosis, policy)
        if prompt_extra:
            evidence = prompt
        if on_outcome is not None:
            on_outcome(outcome, evidence)
        analysed = time.perf_counter()
        metrics.STAGE_SECONDS.labels("analyzing").observe(analysed - gathered)

        # ctx.target: gathering may have refined the target (a node given by its IP).
        status = self._status(analysis, ctx, ctx.target, policy, outcome, evidence)
        status.incident = incident
        status.timings = StageTimings(
            gathering=round(gathered - started, 3),
            analyzing=round(analysed - gathered, 3),
            model=round(outcome.latency_seconds, 3) if outcome.calls else None,
        )
        if outcome.transcript and self.model is not None:
            # what left the cluster, beside the report: the exact redacted prompt and replies
            status.model_transcript = await write_transcript(
                self.api,
                analysis,
                transcript_json(outcome.transcript, self.model.settings.max_transcript_bytes),
            )
        final = analysis.model_copy(update={"status": status})
        files = render_report(
            final,
            history_objects(analysis, ctx.history),
            max_bytes=self.report_settings.max_bytes,
            members=members,
        )
        status.report_config_map = await write_report(self.api, analysis, files)
        reported = time.perf_counter()
        metrics.STAGE_SECONDS.labels("reporting").observe(reported - analysed)
        status.timings.reporting = round(reported - analysed, 3)
        status.timings.total = round(reported - started, 3)
        status.completed_at = now_text()
        # The Event before the status that finishes the run: a replica killed between the two
        # leaves the run unfinished, and whoever resumes it finds its Event posted (same name).
        await post_event(
            self.api,
            analysis,
            warning=False,
            reason="AnalysisCompleted",
            message=f"{status.category}: {status.root_cause} (report: {status.report_url})",
            run=analysis.status.started_at,
        )
        await patch_status(self.api, analysis, status)
        metrics.ANALYSES.labels("completed", status.analyzer or "rules").inc()
        return RunResult(Phase.COMPLETED, model_pending=outcome.upgrade_pending, status=status)

    async def _model(
        self, ctx: Context, evidence: list[EvidenceRef], baseline: Diagnosis, policy: AnalysisPolicy
    ) -> ModelOutcome:
        if self.model is None or not policy.spec.llm.enabled:
            return ModelOutcome(diagnosis=baseline)
        # The most this analysis may spend is set aside in the day's budget first (shared by
        # every replica with the operator's ledger), what it spent is settled after.
        async with self.model.ledger.reserved(
            policy.name,
            policy.spec.llm.daily_token_budget,
            reservation_tokens(self.model.settings, policy),
        ):
            return await analyse_with_model(
                ctx, evidence, baseline, policy, self.model, tools=self.tools
            )

    def _status(
        self,
        analysis: AlertAnalysis,
        ctx: Context,
        target: TargetRef,
        policy: AnalysisPolicy,
        outcome: ModelOutcome,
        evidence: list[EvidenceRef],
    ) -> AlertAnalysisStatus:
        diag = outcome.diagnosis
        known = {e.id: e for e in [*evidence, *outcome.tool_evidence]}
        cited = [known[i] for i in diag.evidence if i in known]
        notes = list(outcome.notes)
        conditions = [
            _condition("Analyzed", "True", "Completed", f"analysed by {outcome.analyzer}")
        ]
        if outcome.upgrade_pending:
            conditions.append(
                _condition(
                    MODEL_PENDING,
                    "True",
                    "ModelUnavailable",
                    "completed by the rules while the model was unavailable; "
                    "it is asked again once it answers",
                )
            )
        else:
            conditions.append(_condition(MODEL_PENDING, "False", "NotPending", ""))
        return AlertAnalysisStatus(
            phase=Phase.COMPLETED,
            reason="",
            target=target,
            target_display=target.display,
            severity=ctx.alert.severity,
            summary=diag.summary,
            root_cause=diag.root_cause,
            short_root_cause=shorten(diag.root_cause),
            category=diag.category,
            confidence=round(diag.confidence, 2),
            impact=diag.impact,
            immediate_actions=diag.immediate_actions,
            recommendations=diag.recommendations,
            evidence=cited,
            chain=diag.chain or None,
            secondary_causes=diag.secondary or None,
            missing_evidence=ctx.missing,
            commands=diag.commands,
            analyzer=outcome.analyzer,
            policy=policy.name,
            # the model asked, also when no call came back (a timeout, an outage)
            model=outcome.model if outcome.model and outcome.outcome != "disabled" else None,
            model_outcome=outcome.outcome if outcome.model else None,
            token_usage=outcome.token_usage if outcome.calls else None,
            model_calls=outcome.calls or None,
            notes=notes,
            report_url=self.report_url(analysis),
            conditions=conditions,
            observed_generation=analysis.metadata.get("generation"),
        )

    async def fail(self, analysis: AlertAnalysis, reason: str) -> None:
        await patch_status(
            self.api,
            analysis,
            AlertAnalysisStatus(
                phase=Phase.FAILED,
                reason=reason,
                short_root_cause=shorten(f"failed: {reason}"),
                completed_at=now_text(),
                conditions=[_condition("Analyzed", "False", "Failed", reason)],
            ),
        )
        metrics.ANALYSES.labels("failed", "none").inc()
        await post_event(
            self.api,
            analysis,
            warning=True,
            reason="AnalysisFailed",
            message=reason,
            run=analysis.status.started_at,
        )


def _condition(kind: str, status: str, reason: str, message: str) -> Condition:
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now_text(),
    )


def history_objects(analysis: AlertAnalysis, history: list[HistorySnapshot]) -> list[AlertAnalysis]:
    """Earlier analyses of the same alert, as the report's 'earlier analyses' section reads them."""
    out = []
    for h in history:
        spec = analysis.spec.model_copy(deep=True)
        spec.alert.starts_at = h.starts_at or spec.alert.starts_at
        out.append(
            AlertAnalysis(
                metadata={"name": h.analysis, "namespace": analysis.namespace},
                spec=spec,
                status=AlertAnalysisStatus.model_validate(
                    {"phase": h.phase, "category": h.category, "rootCause": h.root_cause}
                ),
            )
        )
    return out
