"""Store the alerts of one notification as AlertAnalyses: once each, concurrently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from oncallm.intake import metrics
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.kube.store import AnalysisStore
from oncallm.models.alert import Alert, AlertStatus, WebhookPayload
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec, rfc3339
from oncallm.sharding import shard_label


@dataclass
class Stored:
    fingerprint: str
    analysis: str
    namespace: str
    #: "created", "repeat", "resolved" or "recorded-resolved"
    outcome: str


class AlertWriter:
    """Writes AlertAnalyses for alerts, skipping those the store already holds."""

    def __init__(
        self,
        api: KubeAPI,
        store: AnalysisStore,
        namespace: str,
        concurrency: int,
        *,
        shards: int = 8,
    ) -> None:
        self.api = api
        self.shards = shards
        self.store = store
        self.namespace = namespace
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._path = resource("AlertAnalysis").path(namespace)

    async def store_notification(self, payload: WebhookPayload) -> list[Stored]:
        """Store every alert; raises ApiError (after the rest finished) if any failed."""
        received = rfc3339(datetime.now(UTC))
        results = await asyncio.gather(
            *(self._store_one(alert, payload, received) for alert in payload.alerts),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            first = errors[0]
            if isinstance(first, ApiError):
                raise first
            raise first
        return [r for r in results if isinstance(r, Stored)]

    async def _store_one(self, alert: Alert, payload: WebhookPayload, received: str) -> Stored:
        metrics.ALERTS_RECEIVED.labels(alert.status.value).inc()
        name = analysis_name(alert)
        known = self.store.get(self.namespace, name)
        if alert.status == AlertStatus.FIRING:
            if known is not None:
                metrics.REPEATS_SKIPPED.inc()
                return Stored(alert.fingerprint, name, self.namespace, "repeat")
            await self._create(alert, payload, name, received)
            metrics.ANALYSES_CREATED.inc()
            return Stored(alert.fingerprint, name, self.namespace, "created")
        # Resolved.
        if known is not None:
            if known.spec.alert.status == AlertStatus.RESOLVED:
                metrics.REPEATS_SKIPPED.inc()
                return Stored(alert.fingerprint, name, self.namespace, "repeat")
            await self._resolve(alert, name, received)
            metrics.ANALYSES_RESOLVED.inc()
            return Stored(alert.fingerprint, name, self.namespace, "resolved")
        # A resolved alert OnCallM never saw firing: record it, the operator skips it.
        await self._create(alert, payload, name, received)
        return Stored(alert.fingerprint, name, self.namespace, "recorded-resolved")

    def _body(
        self, alert: Alert, payload: WebhookPayload, name: str, received: str
    ) -> dict[str, Any]:
        spec = AlertAnalysisSpec(
            alert=AlertSpec.from_alert(alert),
            receiver=payload.receiver,
            group_key=payload.group_key,
            external_url=payload.external_url,
            received_at=received,
            resolved_at=received if alert.status == AlertStatus.RESOLVED else None,
        )
        body = AlertAnalysis(
            metadata={
                "name": name,
                "namespace": self.namespace,
                # the shard: which operator replica runs it (docs/ha.md)
                "labels": analysis_labels(alert) | shard_label(alert.fingerprint, self.shards),
            },
            spec=spec,
        ).to_kube()
        body.pop("status", None)
        return body

    async def _create(
        self, alert: Alert, payload: WebhookPayload, name: str, received: str
    ) -> None:
        async with self._limit:  # build the body only when its request can go
            body = self._body(alert, payload, name, received)
            try:
                created = await self.api.request("POST", self._path, body=body)
            except ApiError as err:
                if err.status != 409:  # 409: stored by an earlier, partly failed delivery
                    raise
                created = None
        if created is not None:
            # Known at once, before our own watch event arrives: a quick re-send is a repeat.
            self.store.apply_event("ADDED", created)
        elif alert.status == AlertStatus.RESOLVED:
            await self._resolve(alert, name, received)

    async def _resolve(self, alert: Alert, name: str, received: str) -> None:
        ended = alert.ended or datetime.now(UTC)
        patch = {
            "spec": {
                "alert": {"status": "resolved", "endsAt": rfc3339(ended)},
                "resolvedAt": received,
            }
        }
        async with self._limit:
            try:
                updated = await self.api.request(
                    "PATCH",
                    f"{self._path}/{name}",
                    body=patch,
                    content_type="application/merge-patch+json",
                )
            except ApiError as err:
                if err.status == 404:  # deleted meanwhile (retention): nothing left to mark
                    return
                raise
        self.store.apply_event("MODIFIED", updated)
