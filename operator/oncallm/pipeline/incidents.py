"""Run analyses as incidents: one primary diagnoses a shared cause once, members share it.

Each analysis is placed by the cheapest proof that holds, in this order:

1. **its pod fails as an incident's pods do**: the same revision, container, state, reasons
   and exit codes (on the same node when the cause is the node): it joins without gathering;
2. **a quick gather proves an open incident's cause**: everything but logs and metrics, the
   rules' root cause scores as proven and has the incident's key: it joins;
3. **the full analysis** (logs included): it joins the open incident of its cause, or opens
   one as its primary; a cause without a key (``unknown``) is analysed on its own.

The primary asks the model once (after ``settle_seconds``, so the prompt lists the members'
symptoms) and writes the incident's report; as soon as its diagnosis is known every member
completes with one status write: the incident's root cause, its own symptom first in the
chain, a link to the primary. A member that arrives later joins at once. After a restart the
completed primaries and members seen in the watch rebuild the open incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from annotated_types import MaxLen

from oncallm.analysis import commands as kc
from oncallm.analysis.baseline import Baseline, build_baseline
from oncallm.analysis.evidence import ALERT_ID, index_evidence
from oncallm.gathering.sources import SOURCES
from oncallm.gathering.sources.pods import pod_snapshot
from oncallm.gathering.target import resolve_target
from oncallm.incidents import (
    MEMBERS_IN_PROMPT,
    CauseKey,
    Incident,
    IncidentRegistry,
    Outcome,
    Signature,
    Symptom,
    cause_key,
    describe_failure,
    member_result,
    members_item,
    signature,
)
from oncallm.kube.api import ApiError
from oncallm.kube.resources import resource
from oncallm.llm.analyse import ModelOutcome
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    Category,
    Condition,
    Diagnosis,
    EvidenceRef,
    IncidentRef,
    IncidentRole,
    Phase,
    StageTimings,
    TargetRef,
)
from oncallm.models.evidence import Context, PodSnapshot
from oncallm.models.policy import AnalysisPolicy
from oncallm.pipeline import metrics
from oncallm.pipeline.claims import IncidentClaims
from oncallm.pipeline.run import Pipeline, RunResult, history_objects, now_text, shorten
from oncallm.pipeline.settings import IncidentSettings
from oncallm.pipeline.writes import patch_status, report_name, write_report
from oncallm.reports import render_report

log = logging.getLogger(__name__)

#: Sources a quick look reads: everything but the per-pod logs and Prometheus, which cost a
#: request (or a query) per alert and are only needed to prove a cause no incident has yet.
QUICK_SOURCES = tuple(s for s in SOURCES if s.name not in ("logs", "metrics"))
#: Longest an analysis waits for another that is deciding the same cause.
DECIDING_WAIT = 30.0
#: Member symptoms listed in a primary's report by the operator (the web view lists all).
REPORT_MEMBERS = 200
#: Label on a completed primary, so a restarting operator lists only the primaries to rebuild
#: the open incidents from, before it runs anything (``AnalysisService.load_incidents``).
PRIMARY_LABEL = "oncallm.io/incident-primary"


@dataclass
class _Parked:
    """A member whose incident's cause is not known yet."""

    analysis: AlertAnalysis
    policy: AnalysisPolicy
    attempt: int
    target: TargetRef
    symptom: Symptom
    own: list[EvidenceRef]
    commands: list[str]
    reason: str
    started: float


@dataclass
class _Live:
    """What the flow keeps for an open incident beside the registry's bookkeeping."""

    known: asyncio.Event = field(default_factory=asyncio.Event)
    parked: list[_Parked] = field(default_factory=list)
    #: the primary as completed (for refreshing its member count and report)
    final: AlertAnalysis | None = None
    history: list[AlertAnalysis] = field(default_factory=list)
    written_members: int = 0
    refresh: asyncio.Task[None] | None = None
    timeout: asyncio.TimerHandle | None = None


class IncidentFlow:
    """The pipeline with incidents: ``run`` places and completes one analysis."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: IncidentSettings | None = None,
        *,
        idle: Callable[[], bool] = lambda: True,
        resubmit: Callable[[AlertAnalysis, int], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings or IncidentSettings()
        self.registry = IncidentRegistry(self.settings.window_seconds, self.settings.max_incidents)
        self.idle = idle
        self.resubmit = resubmit
        self.clock = clock
        self._live: dict[str, _Live] = {}
        self._deciding: dict[CauseKey, asyncio.Future[None]] = {}
        #: members seen completed before their primary (after a restart), by primary
        self._orphans: dict[str, dict[str, Symptom]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: who diagnoses a cause, agreed through the API server between replicas
        #: (``pipeline/claims.py``); None: this replica alone decides
        self.claims: IncidentClaims | None = None
        #: incidents whose primary runs on another replica: resolved when its completed
        #: status is seen in the watch
        self._remote: set[str] = set()

    # -- placing one analysis ---------------------------------------------------------------

    async def run(self, analysis: AlertAnalysis, policy: AnalysisPolicy, attempt: int) -> RunResult:
        """Analyse ``analysis`` as part of an incident. Raises ApiError (retry later)."""
        p = self.pipeline
        skipped = await p.skip_if_due(analysis, policy)
        if skipped is not None:
            return skipped
        started = time.perf_counter()
        alert = analysis.spec.alert.to_alert()
        target = resolve_target(alert)
        pod = await self._target_pod(target)
        sig = signature(pod, target.container) if pod is not None else None
        node = pod.node_name if pod is not None else None
        self._expire()

        def joinable(incident: Incident | None) -> Incident | None:
            # an incident this analysis is the claimed primary of (claimed on another replica
            # before it ran here) is led, not joined
            return incident if incident is not None and incident.primary != analysis.name else None

        def by_signature() -> Incident | None:
            return joinable(
                self.registry.by_signature(sig.on_node(node) if sig else None, self.clock())
            )

        async def join_by_signature(incident: Incident) -> RunResult:
            assert sig is not None
            detail = describe_failure(_container(pod, target.container), pod.phase if pod else "")
            return await self._join(
                analysis,
                policy,
                attempt,
                incident,
                Context(alert=alert, target=target, pods=[pod] if pod else []),
                started,
                reason=f"its pod runs {sig.owner.split('/', 1)[1]} and fails as the primary's "
                f"pods do ({detail})",
                sig=None,
                node=None,
            )

        if (incident := by_signature()) is not None:
            return await join_by_signature(incident)

        quick = await p.gather(analysis, policy, QUICK_SOURCES)
        rules = build_baseline(quick, p.evidence_settings, p.rule_settings)
        key = cause_key(rules.diagnosis, quick, analysis.spec.group_key)
        if key is not None and key in self._deciding:
            await self._decided(key)  # the first of a burst decides; then look again
        if (incident := by_signature()) is not None:
            return await join_by_signature(incident)
        if key is not None and rules.diagnosis.confidence >= p.rule_settings.proven_cause_score:
            incident = joinable(self.registry.find(key, self.clock()))
            if incident is not None:
                return await self._join(
                    analysis,
                    policy,
                    attempt,
                    incident,
                    quick,
                    started,
                    reason=f"the same cause is proven for it: {rules.diagnosis.summary}",
                    sig=sig,
                    node=node,
                )

        claim = self._claim(key)
        try:
            await p.mark_gathering(analysis, policy, attempt + 1)
            ctx = await p.gather(analysis, policy)
            gathered = time.perf_counter()
            metrics.STAGE_SECONDS.labels("gathering").observe(gathered - started)
            rules = build_baseline(ctx, p.evidence_settings, p.rule_settings)
            full_key = cause_key(rules.diagnosis, ctx, analysis.spec.group_key)
            incident = joinable(self.registry.find(full_key, self.clock()))
            if incident is None and full_key is not None and full_key != key:
                incident = joinable(await self._decided(full_key))
            if incident is not None:
                self._release(claim)
                return await self._join(
                    analysis,
                    policy,
                    attempt,
                    incident,
                    ctx,
                    started,
                    reason=f"the same cause is proven for it: {rules.diagnosis.summary}",
                    sig=sig,
                    node=node,
                )
            if full_key is None:
                self._release(claim)
                return await p.conclude(
                    analysis, policy, ctx, rules, started=started, gathered=gathered
                )
            holder = await self._claim_cause(full_key, analysis)
            if holder != analysis.name:  # another replica's analysis diagnoses this cause
                incident = joinable(
                    self.registry.find(full_key, self.clock())
                ) or self._remote_incident(full_key, analysis.namespace, holder, rules)
                self._release(claim)
                return await self._join(
                    analysis,
                    policy,
                    attempt,
                    incident,
                    ctx,
                    started,
                    reason=f"the same cause is proven for it: {rules.diagnosis.summary}",
                    sig=sig,
                    node=node,
                )
            incident = self.registry.open(
                full_key,
                analysis.namespace,
                self._symptom(analysis, ctx),
                rules.diagnosis,
                self.clock(),
            )
            if incident.primary != analysis.name:  # opened meanwhile by another analysis
                return await self._join(
                    analysis,
                    policy,
                    attempt,
                    incident,
                    ctx,
                    started,
                    reason=f"the same cause is proven for it: {rules.diagnosis.summary}",
                    sig=sig,
                    node=node,
                )
            if incident.id in self._remote:  # claimed by this analysis before it ran here
                self._remote.discard(incident.id)
                incident.primary_symptom = self._symptom(analysis, ctx)
            self.registry.remember(incident, sig, node)
            self._adopt_orphans(incident)
            log.info("incident of %s opened by %s", full_key.text, analysis.name)
        finally:
            self._release(claim)
        return await self._lead(analysis, policy, incident, ctx, rules, started, gathered)

    async def _claim_cause(self, key: CauseKey, analysis: AlertAnalysis) -> str:
        """The analysis that diagnoses ``key``: this one, unless another replica's claimed it
        first (``pipeline/claims.py``). A claim that cannot be made leaves this replica to
        decide alone, as with one replica."""
        if self.claims is None:
            return analysis.name
        found = self.registry.find(key, self.clock())
        if found is not None and found.id not in self._remote:
            return analysis.name  # open here already (then never joinable: ours to lead)
        try:
            return await self.claims.claim(key, analysis)
        except ApiError as err:
            log.warning(
                "the incident of %s was not claimed (%s); %s diagnoses it here, and another "
                "replica may diagnose it too until the API server answers",
                key.text,
                err,
                analysis.name,
            )
            return analysis.name

    def _remote_incident(
        self, key: CauseKey, namespace: str, primary: str, rules: Baseline
    ) -> Incident:
        """An incident whose primary runs on another replica: its members wait here for the
        primary's completed status (``observe``), at most ``member_wait_seconds``."""
        incident = self.registry.open(
            key,
            namespace,
            Symptom(analysis=primary, alert="", target=""),
            rules.diagnosis,
            self.clock(),
        )
        if incident.primary == primary and incident.outcome is None:
            self._remote.add(incident.id)
            self._arm_timeout(
                incident,
                Outcome(rules.diagnosis, _cited(rules.diagnosis, rules.evidence.items), "rules"),
            )
            log.info("incident of %s is diagnosed by %s on another replica", key.text, primary)
        return incident

    async def _target_pod(self, target: TargetRef) -> PodSnapshot | None:
        if target.kind != "Pod" or not target.namespace:
            return None
        try:
            raw = await self.pipeline.reader.get("Pod", target.namespace, target.name)
        except Exception:  # a read that fails only costs the shortcut
            return None
        return pod_snapshot(raw) if raw is not None else None

    def _claim(self, key: CauseKey | None) -> asyncio.Future[None] | None:
        """Say that this analysis decides ``key``: others with it wait instead of gathering."""
        if key is None or key in self._deciding:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deciding[key] = future
        return future

    def _release(self, claim: asyncio.Future[None] | None) -> None:
        if claim is None or claim.done():
            return
        claim.set_result(None)
        for key, future in list(self._deciding.items()):
            if future is claim:
                del self._deciding[key]

    async def _decided(self, key: CauseKey) -> Incident | None:
        """Wait for the analysis deciding ``key``, if any; the incident it opened."""
        future = self._deciding.get(key)
        if future is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), DECIDING_WAIT)
        return self.registry.find(key, self.clock())

    # -- the primary ------------------------------------------------------------------------

    async def _lead(
        self,
        analysis: AlertAnalysis,
        policy: AnalysisPolicy,
        incident: Incident,
        ctx: Context,
        rules: Baseline,
        started: float,
        gathered: float,
    ) -> RunResult:
        p = self.pipeline
        live = self._live_of(incident)
        asks_model = p.model is not None and policy.spec.llm.enabled
        if asks_model:
            await patch_status(
                p.api,
                analysis,
                AlertAnalysisStatus(phase=Phase.ANALYZING, short_root_cause="analysing…"),
            )
            await self._settle(incident)
        item = members_item(incident) if asks_model else None
        baseline_items = _cited(rules.diagnosis, rules.evidence.items)
        self._arm_timeout(incident, Outcome(rules.diagnosis, baseline_items, "rules"))

        def known(outcome: ModelOutcome, evidence: list[EvidenceRef]) -> None:
            self._resolve(
                incident,
                Outcome(
                    outcome.diagnosis,
                    _cited(outcome.diagnosis, [*evidence, *outcome.tool_evidence]),
                    outcome.analyzer,
                    report_config_map=report_name(analysis.name),
                ),
            )

        members = incident.member_count
        try:
            result = await p.conclude(
                analysis,
                policy,
                ctx,
                rules,
                started=started,
                gathered=gathered,
                prompt_extra=[item] if item is not None else None,
                incident=self._ref(incident, IncidentRole.PRIMARY),
                members=self._member_objects(incident, analysis),
                on_outcome=known,
            )
        finally:
            if incident.outcome is None:  # the model path failed: the rules' diagnosis stands
                self._resolve(incident, Outcome(rules.diagnosis, baseline_items, "rules"))
        if result.status is not None:
            live.final = analysis.model_copy(update={"status": result.status})
            live.history = history_objects(analysis, ctx.history)
            live.written_members = members
            if incident.member_count != members:
                self._schedule_refresh(incident)
            await self._label_primary(analysis)
        return result

    async def _label_primary(self, analysis: AlertAnalysis) -> None:
        """Mark a completed primary (``PRIMARY_LABEL``). Its status is written already: a
        failed patch only costs the next restart its head start on this incident (kopf's
        listing still restores it), so it is logged, not retried."""
        try:
            await self.pipeline.api.request(
                "PATCH",
                resource("AlertAnalysis").path(analysis.namespace, analysis.name),
                body={"metadata": {"labels": {PRIMARY_LABEL: "true"}}},
                content_type="application/merge-patch+json",
            )
        except ApiError as err:
            log.warning("primary %s not labelled %s: %s", analysis.name, PRIMARY_LABEL, err)

    async def _settle(self, incident: Incident) -> None:
        """Wait up to ``settle_seconds`` from the incident's opening for members to arrive;
        stop early when nothing else waits to be analysed, or when the prompt's list of
        member symptoms is full (every member still shares the answer)."""
        deadline = incident.opened + self.settings.settle_seconds
        while self.clock() < deadline:
            if self.idle() and not self._deciding:
                return
            if incident.member_count >= MEMBERS_IN_PROMPT:
                return
            await asyncio.sleep(0.1)

    def _resolve(self, incident: Incident, outcome: Outcome) -> None:
        if incident.outcome is not None:
            return
        incident.outcome = outcome
        live = self._live_of(incident)
        if live.timeout is not None:
            live.timeout.cancel()
        live.known.set()
        parked, live.parked = live.parked, []
        for member in parked:
            self._spawn(self._complete(incident, member))

    def _arm_timeout(self, incident: Incident, fallback: Outcome) -> None:
        live = self._live_of(incident)
        if live.timeout is None and incident.outcome is None:
            live.timeout = asyncio.get_running_loop().call_later(
                self.settings.member_wait_seconds,
                lambda: self._resolve(incident, _with_note(fallback, self.settings)),
            )

    # -- members ----------------------------------------------------------------------------

    async def _join(
        self,
        analysis: AlertAnalysis,
        policy: AnalysisPolicy,
        attempt: int,
        incident: Incident,
        ctx: Context,
        started: float,
        *,
        reason: str,
        sig: Signature | None,
        node: str | None,
    ) -> RunResult:
        symptom = self._symptom(analysis, ctx)
        self.registry.join(incident, symptom, self.clock())
        self.registry.remember(incident, sig, node)
        own, commands = self._own_evidence(ctx)
        member = _Parked(
            analysis, policy, attempt, ctx.target, symptom, own, commands, reason, started
        )
        self._schedule_refresh(incident)
        if incident.outcome is None:
            self._live_of(incident).parked.append(member)
            return RunResult(Phase.ANALYZING)
        return await self._complete(incident, member)

    async def _complete(self, incident: Incident, member: _Parked) -> RunResult:
        """One status write: the incident's diagnosis with the member's own symptom."""
        outcome = incident.outcome
        assert outcome is not None
        result = member_result(outcome, member.symptom, member.own, member.commands)
        d = result.diagnosis
        done = time.perf_counter()
        analysis, p = member.analysis, self.pipeline
        status = AlertAnalysisStatus(
            phase=Phase.COMPLETED,
            reason="",
            target=member.target,
            target_display=member.target.display,
            severity=analysis.spec.alert.labels.get("severity"),
            summary=d.summary,
            root_cause=d.root_cause,
            short_root_cause=shorten(d.root_cause),
            category=d.category,
            confidence=round(d.confidence, 2),
            impact=d.impact,
            immediate_actions=d.immediate_actions,
            recommendations=d.recommendations,
            evidence=result.evidence,
            chain=d.chain or None,
            secondary_causes=d.secondary or None,
            incident=self._ref(incident, IncidentRole.MEMBER, member.reason),
            commands=d.commands,
            analyzer=outcome.analyzer,
            policy=member.policy.name,
            notes=[
                f"Member of the incident of {incident.key.object}, diagnosed once by "
                f"{incident.primary}: {member.reason}.",
                *outcome.notes,
            ],
            report_config_map=outcome.report_config_map or report_name(incident.primary),
            report_url=p.report_url(analysis),
            started_at=_since(member.started),
            completed_at=now_text(),
            attempts=member.attempt + 1,
            timings=StageTimings(total=round(done - member.started, 3)),
            conditions=[
                _condition(
                    "Analyzed", "True", "Completed", f"joined the incident of {incident.primary}"
                ),
            ],
            observed_generation=analysis.metadata.get("generation"),
        )
        try:
            await patch_status(p.api, analysis, status)
        except ApiError as err:
            if err.status == 404:
                return RunResult(Phase.FAILED)
            if self.resubmit is None:
                raise
            log.warning("completing member %s failed (%s); it is retried", analysis.name, err)
            self.resubmit(analysis, member.attempt + 1)
            return RunResult(Phase.ANALYZING)
        metrics.ANALYSES.labels("completed", "incident").inc()
        return RunResult(Phase.COMPLETED, status=status)

    def _own_evidence(self, ctx: Context) -> tuple[list[EvidenceRef], list[str]]:
        """A member's own items (its alert, its pod and container) and its own commands."""
        focus = next((pod for pod in ctx.pods if pod.name == ctx.target.name), None)
        minimal = Context(alert=ctx.alert, target=ctx.target, pods=[focus] if focus else [])
        items = index_evidence(minimal, self.pipeline.evidence_settings).items
        own = [
            e
            for e in items
            if e.id == ALERT_ID
            or (focus is not None and e.id.startswith((f"container/{focus.name}/", "pod/")))
        ]
        commands: list[str] = []
        if focus is not None:
            commands.append(kc.describe("pod", focus.namespace, focus.name))
            c = _container(focus, ctx.target.container)
            if c is not None and c.restart_count:
                commands.append(kc.logs(focus.namespace, focus.name, c.name, previous=True))
        return own[:6], commands

    def _symptom(self, analysis: AlertAnalysis, ctx: Context) -> Symptom:
        focus = next((pod for pod in ctx.pods if pod.name == ctx.target.name), None)
        detail = (
            describe_failure(_container(focus, ctx.target.container), focus.phase) if focus else ""
        )
        return Symptom(
            analysis=analysis.name,
            alert=analysis.spec.alert.labels.get("alertname", ""),
            target=ctx.target.display,
            detail=detail,
        )

    def _ref(self, incident: Incident, role: IncidentRole, reason: str = "") -> IncidentRef:
        return IncidentRef(
            cause=incident.key.object[:300],
            role=role,
            primary=incident.primary,
            members=incident.member_count,
            reason=reason[:600],
        )

    # -- the primary's report, brought up to date -------------------------------------------

    def _schedule_refresh(self, incident: Incident) -> None:
        live = self._live_of(incident)
        if live.final is None or (live.refresh is not None and not live.refresh.done()):
            return
        live.refresh = self._spawn(self._refresh(incident, live))

    async def _refresh(self, incident: Incident, live: _Live) -> None:
        await asyncio.sleep(self.settings.refresh_seconds)
        final = live.final
        if final is None or incident.member_count == live.written_members:
            return
        count = incident.member_count
        ref = self._ref(incident, IncidentRole.PRIMARY)
        status = final.status.model_copy(update={"incident": ref})
        updated = final.model_copy(update={"status": status})
        p = self.pipeline
        try:
            files = render_report(
                updated,
                live.history,
                max_bytes=p.report_settings.max_bytes,
                members=self._member_objects(incident, final),
            )
            await write_report(p.api, final, files)
            await patch_status(p.api, final, AlertAnalysisStatus(incident=ref))
        except ApiError as err:
            log.warning("updating incident %s failed (%s)", incident.id, err)
            return
        live.final, live.written_members = updated, count
        if incident.member_count != count:
            self._schedule_refresh(incident)

    def _member_objects(self, incident: Incident, primary: AlertAnalysis) -> list[AlertAnalysis]:
        """The members as the report lists them (name, alert, target)."""
        out = []
        for s in list(incident.symptoms.values())[:REPORT_MEMBERS]:
            spec = primary.spec.model_copy(
                update={
                    "alert": primary.spec.alert.model_copy(
                        update={"labels": {"alertname": s.alert}}
                    )
                }
            )
            out.append(
                AlertAnalysis(
                    metadata={"name": s.analysis, "namespace": primary.namespace},
                    spec=spec,
                    status=AlertAnalysisStatus(
                        phase=Phase.COMPLETED if incident.known else Phase.ANALYZING,
                        target_display=s.target,
                        report_url=self.pipeline.report_url(
                            AlertAnalysis(
                                metadata={"name": s.analysis, "namespace": primary.namespace},
                                spec=AlertAnalysisSpec(alert=spec.alert),
                            )
                        ),
                    ),
                )
            )
        return out

    # -- after a restart: incidents rebuilt from what the watch shows -----------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Every AlertAnalysis event, as the raw object: completed primaries and members
        rebuild open incidents; a deleted analysis leaves its incident. Only a primary to
        restore is parsed whole; members are read from a few fields."""
        meta = body.get("metadata") or {}
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
        if event_type == "DELETED":
            self.registry.leave(name)
            self._orphans.pop(name, None)
            return
        status = body.get("status") or {}
        ref = status.get("incident") or {}
        if not ref or status.get("phase") != Phase.COMPLETED or not status.get("category"):
            return
        known = self.registry.of(name, self.clock())
        waited = known is not None and known.primary == name and known.id in self._remote
        if known is not None and not waited:
            return
        if not _recent(status.get("completedAt"), self.settings.window_seconds):
            return
        labels = ((body.get("spec") or {}).get("alert") or {}).get("labels") or {}
        symptom = Symptom(
            analysis=name,
            alert=str(labels.get("alertname", "")),
            target=str(status.get("targetDisplay") or ""),
        )
        if ref.get("role") == IncidentRole.MEMBER:
            primary_name = str(ref.get("primary", ""))
            primary = self._incident_of_primary(primary_name)
            if primary is not None:
                self.registry.join(primary, symptom, self.clock())
                self._schedule_refresh(primary)  # a member another replica completed
            else:
                self._orphans.setdefault(primary_name, {})[name] = symptom
            return
        try:
            analysis = AlertAnalysis.model_validate(body)
        except ValueError:
            return
        parsed, incident_ref = analysis.status, analysis.status.incident
        diagnosis = _diagnosis_of(parsed)
        if diagnosis is None or incident_ref is None or parsed.category is None:
            return
        outcome = Outcome(
            diagnosis,
            list(parsed.evidence or []),
            parsed.analyzer or "rules",
            parsed.report_config_map,
        )
        if waited and known is not None:  # the other replica's primary completed
            self._remote.discard(known.id)
            self._resolve(known, outcome)
            return
        key = CauseKey(parsed.category, incident_ref.cause)
        incident = self.registry.open(key, namespace, symptom, diagnosis, self.clock())
        if incident.primary != name:
            return  # another incident of the same cause is open already
        self._resolve(
            incident,
            Outcome(
                diagnosis,
                list(parsed.evidence or []),
                parsed.analyzer or "rules",
                parsed.report_config_map,
            ),
        )
        live = self._live_of(incident)
        live.final, live.written_members = analysis, incident_ref.members
        self._adopt_orphans(incident)
        log.info("incident of %s restored from %s", key.text, name)

    def _incident_of_primary(self, primary: str) -> Incident | None:
        incident = self.registry.of(primary, self.clock())
        return incident if incident is not None and incident.primary == primary else None

    def _adopt_orphans(self, incident: Incident) -> None:
        for symptom in self._orphans.pop(incident.primary, {}).values():
            self.registry.join(incident, symptom, self.clock())

    def waiting_members(self) -> list[AlertAnalysis]:
        """Members placed here that wait for their incident's diagnosis: still running."""
        return [m.analysis for live in self._live.values() for m in live.parked]

    # -- housekeeping -----------------------------------------------------------------------

    def _live_of(self, incident: Incident) -> _Live:
        live = self._live.get(incident.id)
        if live is None:
            live = self._live[incident.id] = _Live()
        return live

    def _expire(self) -> None:
        metrics.INCIDENTS.set(len(self.registry))
        if self.registry.expire(self.clock()) or len(self._live) > len(self.registry):
            open_ids = {i.id for i in self.registry.incidents()}
            self._remote &= open_ids
            for gone in [k for k in self._live if k not in open_ids]:
                live = self._live.pop(gone)
                if live.timeout is not None:
                    live.timeout.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for live in self._live.values():
            if live.timeout is not None:
                live.timeout.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _container(pod: PodSnapshot | None, name: str | None) -> Any:
    if pod is None:
        return None
    chosen = next((c for c in pod.containers if name and c.name == name), None)
    return chosen or next((c for c in pod.containers if not c.init), None)


def _cited(diagnosis: Diagnosis, items: list[EvidenceRef]) -> list[EvidenceRef]:
    known = {e.id: e for e in items}
    return [known[i] for i in diagnosis.evidence if i in known]


def _with_note(outcome: Outcome, settings: IncidentSettings) -> Outcome:
    note = (
        f"The primary's diagnosis was not known after {settings.member_wait_seconds:.0f} s; "
        "the rules' diagnosis of the incident stands."
    )
    return Outcome(outcome.diagnosis, outcome.evidence, outcome.analyzer, None, [note])


def _diagnosis_of(status: AlertAnalysisStatus) -> Diagnosis | None:
    """A completed primary's diagnosis as its status holds it, each field cut to the
    diagnosis' bounds (a status may hold longer text than a diagnosis allows, e.g. a model's
    words with the rules' notes)."""
    values: dict[str, Any] = {
        "category": status.category or Category.UNKNOWN,
        "summary": status.summary or "-",
        "root_cause": status.root_cause or "-",
        "confidence": status.confidence or 0.0,
        "impact": status.impact or "",
        "immediate_actions": status.immediate_actions or [],
        "recommendations": status.recommendations or [],
        "evidence": [e.id for e in status.evidence or []],
        "commands": status.commands or [],
        "chain": status.chain or [],
        "secondary": status.secondary_causes or [],
    }
    try:
        return Diagnosis(**{k: _within(k, v) for k, v in values.items()})
    except ValueError as err:
        log.info("a completed primary's status is not a diagnosis (%s); not restored", err)
        return None


def _within(field: str, value: Any) -> Any:
    """``value`` cut to the ``max_length`` that ``Diagnosis`` declares for ``field``."""
    bound = next(
        (m.max_length for m in Diagnosis.model_fields[field].metadata if isinstance(m, MaxLen)),
        None,
    )
    if bound is None or len(value) <= bound:
        return value
    return value[: bound - 1] + "…" if isinstance(value, str) else value[:bound]


def _recent(completed_at: str | None, window: float) -> bool:
    if not completed_at:
        return False
    try:
        when = datetime.fromisoformat(completed_at.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (datetime.now(UTC) - when).total_seconds() <= window


def _since(started: float) -> str:
    """The wall-clock time of ``started`` (a ``time.perf_counter()``), as Kubernetes writes it."""
    elapsed = time.perf_counter() - started
    when = datetime.now(UTC).timestamp() - elapsed
    return (
        datetime.fromtimestamp(when, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def _condition(
    kind: str, status: Literal["True", "False", "Unknown"], reason: str, message: str
) -> Condition:
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now_text(),
    )


__all__ = ["PRIMARY_LABEL", "QUICK_SOURCES", "IncidentFlow"]
