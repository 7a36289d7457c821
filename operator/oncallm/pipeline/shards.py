"""Shard Leases on the API server: this replica's share of the analyses, kept current.

:class:`ShardKeeper` runs one round every ``renew_seconds`` (``sharding.leases`` decides,
this module writes): renew this replica's own Lease, list OnCallM's Leases, renew the shard
Leases it keeps, give back the ones beyond its fair share once nothing of theirs runs here,
take free or expired ones up to its share. After each round it tells the service which shards
it owns (``on_owned``), so analyses of a shard just taken are queued.

A shard counts as owned only until its last successful renewal (the time the request was
sent) plus the Lease's duration minus one renewal interval: a replica cut off from the API
server stops starting analyses of its shards before any other replica can take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.pipeline import metrics
from oncallm.sharding import ShardSettings
from oncallm.sharding.leases import (
    LEASE_LABEL,
    REPLICA_KIND,
    SHARD_KIND,
    LeaseRecord,
    Observer,
    lease_body,
    live_replicas,
    next_expiry,
    plan,
    replica_lease_name,
    shard_lease_name,
)

log = logging.getLogger(__name__)

#: An expired replica Lease (its replica died without deleting it) is deleted by whoever sees
#: it after this many Lease durations: long enough that a replica merely slow to renew is not
#: removed, short enough that `kubectl get leases` does not fill with the dead.
REPLICA_LEASE_GC_DURATIONS = 4

#: A round woken by a Lease's expiry runs this long after it: a Lease is expired only once
#: strictly more than its duration has passed, and a round at the very instant would find it
#: still held and wait a whole renewal interval.
EXPIRY_MARGIN_SECONDS = 0.02

#: A shard another replica took first (409 on the take) is looked at again this soon, not a
#: renewal interval later: the replicas that lose such a race take the next free shard at once.
RACE_RETRY_SECONDS = 0.05


class ShardKeeper:
    """This replica's shard Leases."""

    def __init__(
        self,
        api: KubeAPI,
        namespace: str,
        settings: ShardSettings,
        *,
        on_owned: Callable[[set[int]], object] = lambda owned: None,
        busy: Callable[[int], bool] = lambda shard: False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.settings = settings
        self.identity = settings.identity
        self.on_owned = on_owned
        self.busy = busy
        self.clock = clock
        self.wall = wall
        self.observer = Observer()
        #: shard -> the Lease as this replica last wrote it
        self.held: dict[int, LeaseRecord] = {}
        #: shard -> monotonic time until which it counts as owned
        self.valid_until: dict[int, float] = {}
        self.draining: set[int] = set()
        self._replica: LeaseRecord | None = None
        #: monotonic time of the next extra round: another replica's Lease expiring, or a
        #: shard lost in a race to take it
        self._wake_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._path = resource("Lease").path(namespace)

    # -- what the service asks ----------------------------------------------------------------

    def owns(self, shard: int) -> bool:
        """Analyses of ``shard`` may start here now."""
        return (
            shard in self.held
            and shard not in self.draining
            and self.clock() < self.valid_until.get(shard, 0.0)
        )

    def owned(self) -> set[int]:
        return {s for s in self.held if self.owns(s)}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """The first round now (so a lone replica owns every shard before its first analysis),
        then a round every ``renew_seconds``."""
        await self.round()
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Give every shard back and delete this replica's Lease, so the others take over at
        once instead of after a Lease duration. The service stops its analyses first."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for shard in list(self.held):
            await self._release(shard)
        if self._replica is not None:
            with contextlib.suppress(ApiError):
                await self._delete(self._replica)
        metrics.SHARDS_OWNED.set(0)

    async def _loop(self) -> None:
        # rounds on a fixed cadence, whatever a round takes, and an extra round when another
        # replica's Lease expires (or a take lost a race): a dead replica's shards move one
        # Lease duration after its last renewal, not up to a renewal interval after that
        due = self.clock() + self.settings.renew_seconds
        while True:
            wake = due if self._wake_at is None else min(due, self._wake_at)
            await asyncio.sleep(max(0.0, wake - self.clock()))
            if self.clock() >= due:
                due = max(due + self.settings.renew_seconds, self.clock())
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a round must never stop the keeper
                log.exception(
                    "a shard Lease round failed; the next runs in %.0f s (shards not renewed "
                    "lapse after ONCALLM_LEASE_SECONDS)",
                    self.settings.renew_seconds,
                )

    # -- one round ----------------------------------------------------------------------------

    async def round(self) -> set[int]:
        """Renew, list, decide, write; returns the shards owned afterwards."""
        try:
            await self._renew_replica()
            listing = await self._request("GET", self._path, query={"labelSelector": LEASE_LABEL})
        except ApiError as err:
            metrics.LEASE_RENEW_FAILURES.labels("error").inc()
            log.warning(
                "shard Leases not renewed (%s); analyses of this replica's shards stop starting "
                "in %.0f s unless the API server answers again: check it and the Role's grant "
                "on leases.coordination.k8s.io",
                err,
                max(0.0, min(self.valid_until.values(), default=self.clock()) - self.clock()),
            )
            return self._settle()
        now, wall = self.clock(), self.wall()
        records = [
            self.observer.record(item, now, wall, trust=self.settings.renew_seconds)
            for item in listing.get("items", [])
        ]
        self.observer.forget_others({r.name for r in records})
        replicas = [r for r in records if r.kind == REPLICA_KIND]
        shards = {r.shard: r for r in records if r.shard is not None}
        for shard in list(self.held):
            record = shards.get(shard)
            if record is None or record.holder != self.identity:
                self._lost(shard, f"held by {record.holder or 'nobody'} now" if record else "gone")
        live = live_replicas(self.identity, replicas, now)
        decided = plan(
            self.identity,
            self.settings.shards,
            shards,
            live,
            now,
            busy={s for s in self.held if self.busy(s)},
            grace=self.settings.renew_seconds,
        )
        # each Lease its own request, all at once: a round is as long as its slowest write
        results = await asyncio.gather(
            *(self._acquire(shard, shards.get(shard)) for shard in decided.acquire),
            *(self._renew(shard, shards[shard]) for shard in decided.renew),
            *(self._release(shard) for shard in decided.release),
        )
        self.draining = set(decided.drain)
        expiry = next_expiry(self.identity, records, now)
        self._wake_at = None if expiry is None else expiry + EXPIRY_MARGIN_SECONDS
        if False in results[: len(decided.acquire)]:  # another replica took one first
            self._wake_at = self.clock() + RACE_RETRY_SECONDS
        await self._collect(replicas, now)
        return self._settle()

    def _settle(self) -> set[int]:
        owned = self.owned()
        metrics.SHARDS_OWNED.set(len(owned))
        self.on_owned(owned)
        return owned

    async def _renew_replica(self) -> None:
        """This replica's own Lease: created, or renewed on the version last written. One
        left by an earlier process of the same identity (a restarted container) is taken as
        it is."""
        name = replica_lease_name(self.identity)
        version = self._replica.version if self._replica is not None else None
        acquired = self._replica.acquire_time if self._replica is not None else None
        for _ in range(3):
            body = lease_body(
                name,
                self.namespace,
                REPLICA_KIND,
                holder=self.identity,
                duration=self.settings.lease_seconds,
                now_epoch=self.wall(),
                acquire_time=acquired,
                version=version,
            )
            try:
                if version is None:
                    written = await self._request("POST", self._path, body=body)
                else:
                    written = await self._request("PUT", f"{self._path}/{name}", body=body)
            except ApiError as err:
                if err.status == 404:
                    version = None
                    continue
                if err.status != 409:
                    raise
                current = await self._request_or_none("GET", f"{self._path}/{name}")
                version = current["metadata"]["resourceVersion"] if current else None
                continue
            self._replica = self.observer.record(written, self.clock())
            return
        raise ApiError(409, f"Lease {name} keeps changing; is another replica named {name}?")

    async def _renew(self, shard: int, record: LeaseRecord) -> None:
        sent = self.clock()
        body = lease_body(
            record.name,
            self.namespace,
            SHARD_KIND,
            holder=self.identity,
            duration=self.settings.lease_seconds,
            now_epoch=self.wall(),
            transitions=record.transitions,
            acquire_time=record.acquire_time,
            version=record.version,
        )
        try:
            written = await self._request("PUT", f"{self._path}/{record.name}", body=body)
        except ApiError as err:
            reason = "conflict" if err.status in (404, 409) else "error"
            metrics.LEASE_RENEW_FAILURES.labels(reason).inc()
            if reason == "conflict":
                self._lost(shard, "changed by another replica since it was listed")
            else:
                log.warning(
                    "shard %d's Lease not renewed (%s); it is tried again in %.0f s",
                    shard,
                    err,
                    self.settings.renew_seconds,
                )
            return
        self._keep(shard, written, sent)

    async def _acquire(self, shard: int, record: LeaseRecord | None) -> bool:
        """Take a free or expired shard; False when another replica took it first."""
        sent = self.clock()
        name = shard_lease_name(shard)
        body = lease_body(
            name,
            self.namespace,
            SHARD_KIND,
            holder=self.identity,
            duration=self.settings.lease_seconds,
            now_epoch=self.wall(),
            transitions=(record.transitions + 1) if record is not None else 0,
            version=record.version if record is not None else None,
        )
        try:
            if record is None:
                written = await self._request("POST", self._path, body=body)
            else:
                written = await self._request("PUT", f"{self._path}/{name}", body=body)
        except ApiError as err:
            if err.status not in (404, 409):
                log.warning("shard %d's Lease not taken (%s); tried again next round", shard, err)
                return True
            return False  # 409: another replica took it first
        if record is not None and record.holder:
            metrics.TAKEOVERS.inc()
            log.info(
                "took over shard %d from %s, whose Lease was not renewed for %d s",
                shard,
                record.holder,
                self.settings.lease_seconds,
            )
        else:
            log.info("took shard %d", shard)
        self._keep(shard, written, sent)
        return True

    async def _release(self, shard: int) -> None:
        record = self.held.pop(shard, None)
        self.valid_until.pop(shard, None)
        self.draining.discard(shard)
        if record is None:
            return
        body = lease_body(
            record.name,
            self.namespace,
            SHARD_KIND,
            holder="",
            duration=self.settings.lease_seconds,
            now_epoch=self.wall(),
            transitions=record.transitions,
            acquire_time=record.acquire_time,
            version=record.version,
        )
        try:
            await self._request("PUT", f"{self._path}/{record.name}", body=body)
            log.info("gave shard %d back (fair share of the live replicas)", shard)
        except ApiError as err:
            # 409: someone took it already; else it lapses after its duration
            log.info("shard %d not given back (%s); it lapses on its own", shard, err)

    def _keep(self, shard: int, written: dict[str, Any], sent: float) -> None:
        self.held[shard] = self.observer.record(written, self.clock())
        self.valid_until[shard] = sent + self.settings.lease_seconds - self.settings.renew_seconds

    def _lost(self, shard: int, why: str) -> None:
        self.held.pop(shard, None)
        self.valid_until.pop(shard, None)
        self.draining.discard(shard)
        log.warning("lost shard %d's Lease (%s); its analyses run elsewhere now", shard, why)

    async def _collect(self, replicas: list[LeaseRecord], now: float) -> None:
        """Delete replica Leases expired long ago (their replica died without deleting them)."""
        horizon = REPLICA_LEASE_GC_DURATIONS * self.settings.lease_seconds
        for record in replicas:
            if record.holder != self.identity and now - record.observed > horizon:
                with contextlib.suppress(ApiError):
                    await self._delete(record)

    async def _delete(self, record: LeaseRecord) -> None:
        await self._request(
            "DELETE",
            f"{self._path}/{record.name}",
            body={"preconditions": {"resourceVersion": record.version}},
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        # Lease writes go ahead of analyses' reads waiting for the rate limit, and give up
        # within one renewal interval: a renewal that waits longer is already late.
        return await self.api.request(
            method, path, timeout=self.settings.renew_seconds, first=True, **kwargs
        )

    async def _request_or_none(self, method: str, path: str) -> Any:
        try:
            return await self._request(method, path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise
