"""The operator's service: policies, the queue of analyses, incidents, retries, sweeps.

The kopf handlers hold one :class:`AnalysisService` in ``memo`` and hand it every
AlertAnalysis event (:meth:`AnalysisService.accept`); it queues what is to be analysed and
returns at once. Everything here is plain asyncio, tested without kopf.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.llm.budget import LedgerConflict
from oncallm.models.analysis import AlertAnalysis, Phase
from oncallm.models.policy import AnalysisPolicy, select_policy
from oncallm.pipeline import metrics
from oncallm.pipeline.history import HistoryIndex
from oncallm.pipeline.incidents import PRIMARY_LABEL, IncidentFlow
from oncallm.pipeline.queue import AnalysisQueue, Deferred, RetryLater
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.settings import IncidentSettings, OperatorSettings
from oncallm.sharding import shard_of_body

log = logging.getLogger(__name__)

REANALYZE_ANNOTATION = "oncallm.io/reanalyze"
#: How long startup keeps trying to read the policies while the API server is busy or
#: initialising; kopf itself would only retry the whole startup a minute later.
POLICY_LOAD_SECONDS = 30.0
MODEL_PENDING_LABEL = "oncallm.io/model-pending"


__all__ = ["REANALYZE_ANNOTATION", "AllShards", "AnalysisService", "RetryLater", "ShardOwner"]

#: Completed primaries per page when a restart lists them: the page of kopf's own first list
#: (``handlers/startup.py``'s ``LIST_CHUNK``), so neither holds more than 500 parsed at once.
PRIMARIES_PAGE = 500
#: Phases after which an analysis is left alone (unless a re-analysis is asked for).
FINISHED = frozenset(p.value for p in Phase if p.finished)


class ShardOwner(Protocol):
    """Which shards this replica runs now (``pipeline/shards.py``'s ``ShardKeeper``)."""

    def owns(self, shard: int) -> bool: ...


class AllShards:
    """One replica that runs everything: the service's owner until a keeper is given."""

    def owns(self, shard: int) -> bool:
        return True


class AnalysisService:
    def __init__(
        self,
        api: KubeAPI,
        pipeline: Pipeline,
        settings: OperatorSettings,
        incidents: IncidentSettings | None = None,
    ) -> None:
        self.api = api
        self.pipeline = pipeline
        self.settings = settings
        self.incident_settings = incidents or IncidentSettings()
        self.policies: dict[str, AnalysisPolicy] = {}
        #: the shards this replica runs, of ``shard_count`` (docs/ha.md)
        self.shards: ShardOwner = AllShards()
        self.shard_count = 1
        #: unfinished analyses of shards another replica runs, with their force flag and
        #: arrival: queued here, in the order they arrived, the moment this replica takes
        #: their shard (as after a restart, a primary listed before its incident's new alerts
        #: runs first: docs/incidents.md#restarts)
        self._parked: dict[int, dict[tuple[str, str], tuple[int, AlertAnalysis, bool]]] = {}
        self._arrival = itertools.count()
        self.history = HistoryIndex()
        if pipeline.history is None:
            pipeline.history = self.history
        self.queue = AnalysisQueue(self._run_entry, settings.concurrency)
        self.incidents = IncidentFlow(
            pipeline,
            self.incident_settings,
            idle=self.queue.idle,
            resubmit=lambda analysis, attempt: self.queue.submit(
                analysis, force=True, attempt=attempt
            ),
        )

    # -- events (every AlertAnalysis event, from kopf) -------------------------------------
    def accept(self, event_type: str | None, body: dict[str, Any]) -> bool:
        """Take one AlertAnalysis event; True when it queued an analysis. Never raises: a
        malformed object is logged and left alone. A finished one is not parsed whole (most
        events of a storm are the echoes of the operator's own writes)."""
        self.history.apply(event_type, body)
        metrics.KNOWN.set(len(self.history))
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        self.incidents.observe(event_type, body)
        shard = shard_of_body(body, self.shard_count)
        if event_type == "DELETED":
            self.queue.forget(namespace, name)
            self._unpark(shard, namespace, name)
            return False
        forced = (meta.get("annotations") or {}).get(REANALYZE_ANNOTATION) == "true"
        phase = (body.get("status") or {}).get("phase")
        if phase in FINISHED and not forced:
            self.queue.finished(namespace, name)
            self._unpark(shard, namespace, name)
            return False
        # A queued analysis waits with its body; the API server's managedFields (about a
        # third of a parsed new analysis) are never read, so they do not wait with it.
        lean = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        try:
            analysis = AlertAnalysis.model_validate(lean)
        except ValidationError as err:
            log.warning("AlertAnalysis %s/%s is malformed and left alone: %s", namespace, name, err)
            return False
        # The annotation asks a finished analysis to run again; on an analysis in progress it
        # is the echo of that run's own writes, which must not ask for yet another run.
        force = forced and phase in FINISHED
        if not self.shards.owns(shard):
            self._park(shard, analysis, force)
            return False
        self._unpark(shard, namespace, name)
        return self.queue.submit(analysis, force=force)

    # -- shards (kept by pipeline/shards.py's ShardKeeper) --------------------------------
    def shard_of(self, analysis: AlertAnalysis) -> int:
        body = {
            "metadata": analysis.metadata,
            "spec": {"alert": {"fingerprint": analysis.spec.alert.fingerprint}},
        }
        return shard_of_body(body, self.shard_count)

    def adopt(self, owned: set[int]) -> int:
        """Queue the parked analyses of the shards owned now; how many were queued."""
        waiting = sorted(
            (entry for shard in owned for entry in self._parked.pop(shard, {}).values()),
            key=lambda entry: entry[0],
        )
        queued = 0
        for _, analysis, force in waiting:
            queued += self.queue.submit(analysis, force=force)
        if queued:
            log.info("queued %d analyses of shards this replica took", queued)
        return queued

    def busy(self, shard: int) -> bool:
        """Something of ``shard`` runs here: an analysis, or a member waiting for its
        primary. Its Lease is given back only once this is False."""
        running = [*self.queue.running_analyses(), *self.incidents.waiting_members()]
        return any(self.shard_of(a) == shard for a in running)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the analyses running here to finish (the
        shards are marked draining first, so nothing new starts); False if some still run."""
        deadline = time.monotonic() + timeout
        while self.queue.running or any(True for _ in self.incidents.waiting_members()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def _park(self, shard: int, analysis: AlertAnalysis, force: bool) -> None:
        parked = self._parked.setdefault(shard, {})
        key = (analysis.namespace, analysis.name)
        arrival = parked[key][0] if key in parked else next(self._arrival)
        parked[key] = (arrival, analysis, force)

    def _unpark(self, shard: int, namespace: str, name: str) -> None:
        parked = self._parked.get(shard)
        if parked is not None:
            parked.pop((namespace, name), None)
            if not parked:
                del self._parked[shard]

    def start(self) -> None:
        """Start the queue's workers (after the policies are loaded)."""
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.incidents.close()

    async def _run_entry(self, analysis: AlertAnalysis, attempt: int, force: bool) -> None:
        shard = self.shard_of(analysis)
        if not self.shards.owns(shard):
            # its shard moved to another replica while it waited: it runs there
            self._park(shard, analysis, force)
            raise Deferred(f"shard {shard} is run by another replica now")
        if force and (analysis.metadata.get("annotations") or {}).get(REANALYZE_ANNOTATION):
            # consumed before the run: its own status writes then carry no request to run again
            await self.clear_reanalyze(analysis)
        await self.analyse(analysis, attempt, force=force)

    # -- policies (kept current by the policy handlers) -----------------------------------
    async def load_policies(self) -> None:
        """Read every AnalysisPolicy of the namespace once (the watch keeps them current)."""
        path = resource("AnalysisPolicy").path(self.settings.namespace)
        deadline = time.monotonic() + POLICY_LOAD_SECONDS
        while True:
            try:
                listing = await self.api.request("GET", path)
                break
            except ApiError as err:
                # Right after the CRDs are installed the API server answers 429 for a while.
                if not err.transient or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        for item in listing.get("items", []):
            try:
                self.set_policy(AnalysisPolicy.model_validate(item))
            except ValueError as err:
                log.warning(
                    "AnalysisPolicy %s is ignored until it is fixed: %s",
                    item.get("metadata", {}).get("name"),
                    err,
                )

    async def load_incidents(self, page: int = PRIMARIES_PAGE) -> int:
        """Rebuild the open incidents from the completed primaries (labelled
        ``oncallm.io/incident-primary``) before any analysis runs: kopf lists by name, and a
        new alert listed before its incident's primary would otherwise open the incident a
        second time. Members and the history come with kopf's own listing. Returns how many
        primaries were read. A failed list is logged, not raised: kopf's listing still
        restores every primary, only later."""
        path = resource("AlertAnalysis").path(self.settings.namespace)
        seen = 0
        cont: str | None = None
        while True:
            try:
                listing = await self.api.request(
                    "GET",
                    path,
                    query={
                        "limit": page,
                        "continue": cont,
                        "labelSelector": f"{PRIMARY_LABEL}=true",
                    },
                )
            except ApiError as err:
                log.warning("incident primaries not listed (%s); kopf's listing restores them", err)
                return seen
            for body in listing.get("items", []):
                seen += 1
                self.incidents.observe(None, body)
            cont = (listing.get("metadata") or {}).get("continue")
            if not cont:
                return seen

    def set_policy(self, policy: AnalysisPolicy) -> None:
        self.policies[policy.name] = policy

    def drop_policy(self, name: str) -> None:
        self.policies.pop(name, None)

    def policy_for(self, labels: dict[str, str]) -> AnalysisPolicy:
        return select_policy(list(self.policies.values()), labels)

    # -- analyses ------------------------------------------------------------------------
    async def analyse(self, analysis: AlertAnalysis, attempt: int, *, force: bool = False) -> Phase:
        """Run the analysis unless it already finished. Raises RetryLater on API trouble."""
        if analysis.status.phase is not None and analysis.status.phase.finished and not force:
            return analysis.status.phase
        policy = self.policy_for(analysis.spec.alert.labels)
        log.info(
            "analysing %s/%s (attempt %d) with policy %s; known policies: %s",
            analysis.namespace,
            analysis.name,
            attempt + 1,
            policy.name,
            ", ".join(sorted(self.policies)) or "none",
        )
        try:
            if force or not self.incident_settings.enabled:
                result = await self.pipeline.run(analysis, policy, attempt + 1)
            else:
                result = await self.incidents.run(analysis, policy, attempt)
        except ApiError as err:
            if err.status == 404:
                return Phase.FAILED  # deleted meanwhile: nothing to write to
            reason = (
                f"the Kubernetes API failed during the analysis ({err}); "
                "check the API server and OnCallM's RBAC"
            )
            return await self._transient(
                analysis, attempt, reason, err.retry_after or self.settings.retry_delay, err
            )
        except LedgerConflict as err:  # other analyses kept writing the token ledger: transient
            reason = (
                f"{err}; many analyses reserved model tokens at once. Nothing is lost: it is "
                "retried; if it persists, lower ONCALLM_CONCURRENCY"
            )
            return await self._transient(analysis, attempt, reason, self.settings.retry_delay, err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug: say so, keep the operator alive
            log.exception("analysis %s/%s failed", analysis.namespace, analysis.name)
            reason = (
                f"OnCallM failed unexpectedly ({type(err).__name__}: {err}); "
                "please report it with this analysis' spec. "
                "`kubectl annotate aa NAME oncallm.io/reanalyze=true` tries again"
            )
            try:
                await self.pipeline.fail(analysis, reason)
            except ApiError:
                raise RetryLater(reason, self.settings.retry_delay) from err
            return Phase.FAILED
        await self._mark_model_pending(analysis, result.model_pending)
        return result.phase

    async def _transient(
        self, analysis: AlertAnalysis, attempt: int, reason: str, delay: float, err: Exception
    ) -> Phase:
        """A failure that passes: retried after ``delay`` until the attempts run out."""
        if attempt + 1 >= self.settings.max_attempts:
            await self.pipeline.fail(analysis, reason + f" — gave up after {attempt + 1} tries")
            return Phase.FAILED
        raise RetryLater(reason, delay) from err

    async def _mark_model_pending(self, analysis: AlertAnalysis, pending: bool) -> None:
        """Label analyses the rules finished while the model was down, so a sweep finds them."""
        path = resource("AlertAnalysis").path(analysis.namespace, analysis.name)
        labels = analysis.metadata.get("labels") or {}
        if pending == (MODEL_PENDING_LABEL in labels):
            return
        await self.api.request(
            "PATCH",
            path,
            body={"metadata": {"labels": {MODEL_PENDING_LABEL: "true" if pending else None}}},
            content_type="application/merge-patch+json",
        )

    async def clear_reanalyze(self, analysis: AlertAnalysis) -> None:
        path = resource("AlertAnalysis").path(analysis.namespace, analysis.name)
        await self.api.request(
            "PATCH",
            path,
            body={"metadata": {"annotations": {REANALYZE_ANNOTATION: None}}},
            content_type="application/merge-patch+json",
        )

    # -- sweeps --------------------------------------------------------------------------
    async def sweep_retention(self, now: datetime | None = None) -> int:
        """Delete finished analyses older than their policy's retention; returns how many."""
        now = now or datetime.now(UTC)
        path = resource("AlertAnalysis").path(self.settings.namespace)
        deleted = 0
        cont: str | None = None
        while True:
            page = await self.api.request("GET", path, query={"limit": 500, "continue": cont})
            for item in page.get("items", []):
                mine = self.shards.owns(shard_of_body(item, self.shard_count))
                if mine and self._expired(item, now):
                    name = item["metadata"]["name"]
                    try:
                        await self.api.request("DELETE", f"{path}/{name}")
                        deleted += 1
                    except ApiError as err:
                        if err.status != 404:
                            raise
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return deleted

    def _expired(self, item: dict[str, Any], now: datetime) -> bool:
        status = item.get("status") or {}
        phase = status.get("phase")
        if phase not in (Phase.COMPLETED, Phase.FAILED, Phase.SKIPPED):
            return False
        finished = status.get("completedAt") or item["metadata"].get("creationTimestamp")
        try:
            when = datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
        except ValueError:
            return False
        policy = self.policies.get(str(status.get("policy", "")))
        labels = ((item.get("spec") or {}).get("alert") or {}).get("labels") or {}
        hours = (policy or self.policy_for(labels)).spec.retention_hours
        return now - when > timedelta(hours=hours)

    async def sweep_model_pending(self) -> int:
        """Ask for a re-analysis of analyses waiting for the model, once it answers again."""
        model = self.pipeline.model
        if model is None or model.breaker.is_open:
            return 0
        path = resource("AlertAnalysis").path(self.settings.namespace)
        page = await self.api.request(
            "GET", path, query={"labelSelector": f"{MODEL_PENDING_LABEL}=true", "limit": 100}
        )
        items = page.get("items", [])
        if items:
            log.info(
                "the model answers again: re-analysing %d analyses done by the rules", len(items)
            )
        asked = 0
        for item in items:
            if not self.shards.owns(shard_of_body(item, self.shard_count)):
                continue  # its shard's owner asks for it
            meta = item["metadata"]
            try:
                # Conditional on the version listed: an analysis whose re-analysis finished in
                # the meantime (label and annotation removed) answers 409 and is left alone,
                # instead of being asked for a second re-analysis it does not need.
                await self.api.request(
                    "PATCH",
                    f"{path}/{meta['name']}",
                    body={
                        "metadata": {
                            "resourceVersion": meta.get("resourceVersion"),
                            "annotations": {REANALYZE_ANNOTATION: "true"},
                        }
                    },
                    content_type="application/merge-patch+json",
                )
                asked += 1
            except ApiError as err:
                if err.status != 409:
                    raise
                log.debug("%s changed since the sweep listed it; not re-analysed", meta["name"])
        return asked
