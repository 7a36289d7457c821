"""Shard ownership through ``coordination.k8s.io/v1`` Leases, as plain decisions.

Two kinds of Lease live in OnCallM's namespace, told apart by the label ``oncallm.io/lease``:

- ``oncallm-replica-<identity>`` (``replica``): one per operator replica, renewed while it
  lives. The replicas count each other through these, to divide the shards fairly;
- ``oncallm-shard-<n>`` (``shard``): one per shard; its ``holderIdentity`` runs the shard's
  analyses. An empty holder is a shard given back.

Each replica, every ``renew_seconds``: renews its Leases (a PUT carrying the resourceVersion
it read, so a Lease someone else took meanwhile answers 409 and is given up), counts the live
replicas, and moves toward its fair share, ``ceil(shards / live replicas)``: it takes free or
expired shard Leases while it holds fewer, gives back idle ones while it holds more.

A Lease is expired when its record has not changed for ``leaseDurationSeconds`` *as seen by
this replica* (the time it first saw the current resourceVersion, on its own monotonic
clock), as client-go's leader election judges it: no two clocks are compared.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Label telling OnCallM's Leases apart from others in the namespace, with their kind.
LEASE_LABEL = "oncallm.io/lease"
SHARD_KIND, REPLICA_KIND = "shard", "replica"
SHARD_PREFIX, REPLICA_PREFIX = "oncallm-shard-", "oncallm-replica-"


def shard_lease_name(shard: int) -> str:
    return f"{SHARD_PREFIX}{shard}"


def replica_lease_name(identity: str) -> str:
    """A DNS-1123 name for the replica's Lease (a pod name already is one)."""
    clean = re.sub(r"[^a-z0-9.-]+", "-", identity.lower()).strip("-.")
    if len(clean) > 63 - len(REPLICA_PREFIX) or clean != identity:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        clean = f"{clean[: 63 - len(REPLICA_PREFIX) - 9].strip('-.')}-{digest}"
    return f"{REPLICA_PREFIX}{clean}"


@dataclass(frozen=True)
class LeaseRecord:
    """One Lease as listed, and when this replica first saw its current version."""

    name: str
    holder: str
    duration: float
    version: str
    transitions: int
    acquire_time: str | None
    observed: float
    kind: str = SHARD_KIND

    def expired(self, now: float) -> bool:
        """Free to take: given back (no holder), or not renewed for its duration."""
        return not self.holder or now - self.observed > self.duration

    @property
    def shard(self) -> int | None:
        if self.kind != SHARD_KIND or not self.name.startswith(SHARD_PREFIX):
            return None
        tail = self.name[len(SHARD_PREFIX) :]
        return int(tail) if tail.isdigit() else None


@dataclass
class Observer:
    """When each Lease's current version was first seen (a Lease's own renewTime is another
    replica's wall clock; this replica's monotonic clock is the only one it trusts)."""

    seen: dict[str, tuple[str, float]] = field(default_factory=dict)

    def record(
        self, lease: dict[str, Any], now: float, wall: float | None = None, trust: float = 0.0
    ) -> LeaseRecord:
        """The Lease as a record; ``now`` on this replica's monotonic clock. A version seen
        for the first time counts from its ``renewTime`` when that is at most ``trust``
        seconds before this replica's wall clock ``wall`` (a round sees a renewal up to one
        interval late; with ``trust`` one renewal interval, a wrong clock can make a takeover
        at most that much early, which the holder's own margin covers: ``pipeline/shards.py``),
        else from now."""
        meta = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        name, version = str(meta.get("name", "")), str(meta.get("resourceVersion", ""))
        before = self.seen.get(name)
        if before is not None and before[0] == version:
            observed = before[1]
        else:
            observed = now - _lag(spec.get("renewTime"), wall, trust)
        self.seen[name] = (version, observed)
        return LeaseRecord(
            name=name,
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or 0),
            version=version,
            transitions=int(spec.get("leaseTransitions") or 0),
            acquire_time=spec.get("acquireTime"),
            observed=observed,
            kind=str((meta.get("labels") or {}).get(LEASE_LABEL, "")),
        )

    def forget_others(self, names: set[str]) -> None:
        for gone in set(self.seen) - names:
            del self.seen[gone]


def _lag(renew_time: Any, wall: float | None, trust: float) -> float:
    """Seconds since ``renew_time`` on the wall clock, within [0, trust]."""
    if wall is None or trust <= 0 or not renew_time:
        return 0.0
    try:
        renewed = datetime.fromisoformat(str(renew_time).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return min(max(0.0, wall - renewed), trust)


def next_expiry(me: str, records: list[LeaseRecord], now: float) -> float | None:
    """The soonest moment after ``now`` (this replica's monotonic clock) at which a Lease
    another replica holds expires, if it is not renewed before: when a replica dies, the
    others look again at that moment instead of at their next round, so a takeover comes one
    Lease duration after the dead replica's last renewal, not up to a renewal interval
    later."""
    return min(
        (
            r.observed + r.duration
            for r in records
            if r.holder and r.holder != me and r.observed + r.duration > now
        ),
        default=None,
    )


def live_replicas(me: str, replicas: list[LeaseRecord], now: float) -> list[str]:
    """The replicas alive now, this one always among them, sorted."""
    alive = {r.holder for r in replicas if r.holder and not r.expired(now)}
    return sorted(alive | {me})


def fair_share(shards: int, replicas: int) -> int:
    """Shards one replica should hold: an even split, rounded up so every shard has room."""
    return math.ceil(shards / max(1, replicas))


def preference(me: str, shard: int) -> int:
    """How much ``me`` wants ``shard`` (rendezvous hashing): replicas prefer different shards,
    so replicas that start together rarely reach for the same Lease."""
    return int.from_bytes(hashlib.sha256(f"{me}|{shard}".encode()).digest()[:8], "big")


@dataclass
class Plan:
    """What one round does with the shard Leases."""

    renew: list[int] = field(default_factory=list)
    #: free or expired shards to take (a missing Lease is created)
    acquire: list[int] = field(default_factory=list)
    #: held shards to give back now (nothing of theirs runs here)
    release: list[int] = field(default_factory=list)
    #: held shards to give back once their running analyses finish: start nothing new there
    drain: list[int] = field(default_factory=list)
    target: int = 0


def plan(
    me: str,
    shards: int,
    leases: dict[int, LeaseRecord],
    live: list[str],
    now: float,
    busy: set[int] | frozenset[int] = frozenset(),
    grace: float = 0.0,
) -> Plan:
    """One round's decisions over the shard Leases listed (``leases``: by shard, a shard
    without a Lease is absent), the live replicas and the held shards with analyses running
    (``busy``); a free shard another replica should take is taken here too once it has been
    free for ``grace`` seconds (one renewal interval)."""
    target = fair_share(shards, len(live))
    mine = sorted(
        (s for s, r in leases.items() if r.holder == me and s < shards),
        key=lambda s: -preference(me, s),
    )
    # held but beyond the shard count (ONCALLM_SHARDS lowered): given back like extras
    stray = sorted(s for s, r in leases.items() if r.holder == me and s >= shards)
    out = Plan(target=target)
    keep, extra = mine[:target], mine[target:]
    for shard in [*extra, *stray]:
        (out.drain if shard in busy else out.release).append(shard)
    out.renew = keep + out.drain
    if len(mine) < target:
        free = [s for s in range(shards) if s not in leases or leases[s].expired(now)]
        free = [s for s in free if s not in mine]
        out.acquire = claim_order(me, free, leases, live, target, now, grace)[: target - len(mine)]
    return out


def claim_order(
    me: str,
    free: list[int],
    leases: dict[int, LeaseRecord],
    live: list[str],
    target: int,
    now: float,
    grace: float,
) -> list[int]:
    """The free shards this replica reaches for, in order. Every live replica below its share
    divides the free shards the same way from the same listing (each shard to the one that
    prefers it most among those still short), so survivors of a dead replica take different
    shards at its Lease's expiry instead of racing for the same ones. A shard left free for
    ``grace`` seconds past its expiry (its replica did not take it) is open to anyone."""
    held = {r: 0 for r in live}
    for record in leases.values():
        if record.holder in held and not record.expired(now):
            held[record.holder] += 1
    need = {r: target - n for r, n in held.items()}
    assigned, stale = [], []
    for shard in sorted(free):
        takers = [r for r in live if need[r] > 0]
        winner = max(takers, key=lambda r: preference(r, shard)) if takers else None
        if winner is not None:
            need[winner] -= 1
        if winner == me:
            assigned.append(shard)
        elif _free_for(leases.get(shard), now) > grace:
            stale.append(shard)
    stale.sort(key=lambda s: -preference(me, s))
    return assigned + stale


def _free_for(record: LeaseRecord | None, now: float) -> float:
    """Seconds the shard has been free: since it was given back, or since its Lease expired;
    a shard with no Lease yet has always been free."""
    if record is None:
        return math.inf
    return now - record.observed - (record.duration if record.holder else 0.0)


def micro_time(epoch: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    name: str,
    namespace: str,
    kind: str,
    *,
    holder: str,
    duration: int,
    now_epoch: float,
    transitions: int = 0,
    acquire_time: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """A Lease as OnCallM writes it: created (no ``version``) or replaced conditionally on
    ``version``. An empty ``holder`` gives the Lease back."""
    now = micro_time(now_epoch)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/name": "oncallm", LEASE_LABEL: kind},
    }
    if version is not None:
        meta["resourceVersion"] = version
    spec: dict[str, Any] = {
        "holderIdentity": holder or None,
        "leaseDurationSeconds": duration,
        "leaseTransitions": transitions,
        "renewTime": now,
        "acquireTime": acquire_time or now,
    }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {k: v for k, v in spec.items() if v is not None},
    }
