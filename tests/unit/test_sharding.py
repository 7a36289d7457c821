"""Shards and shard Leases without a cluster: the pure decisions, and ShardKeeper over an
in-memory Lease API that keeps resourceVersions as the API server does."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from oncallm.kube.api import ApiError
from oncallm.pipeline.shards import ShardKeeper
from oncallm.sharding import SHARD_LABEL, ShardSettings, shard_of, shard_of_body
from oncallm.sharding.leases import (
    LeaseRecord,
    Observer,
    claim_order,
    fair_share,
    lease_body,
    live_replicas,
    next_expiry,
    plan,
    replica_lease_name,
)


def test_a_fingerprint_always_lands_in_the_same_shard_and_shards_are_even() -> None:
    assert shard_of("4b1e0c0ffee", 8) == shard_of("4b1e0c0ffee", 8)
    counts = Counter(shard_of(f"{i:016x}", 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 850  # 1000 each on average


def test_the_label_decides_and_an_unlabelled_analysis_is_hashed() -> None:
    body = {"metadata": {"labels": {SHARD_LABEL: "5"}}, "spec": {"alert": {"fingerprint": "x"}}}
    assert shard_of_body(body, 8) == 5
    assert shard_of_body(body, 4) == 1  # written under 8 shards, read under 4
    unlabelled = {"metadata": {}, "spec": {"alert": {"fingerprint": "x"}}}
    assert shard_of_body(unlabelled, 8) == shard_of("x", 8)


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="ONCALLM_LEASE_RENEW_SECONDS"):
        ShardSettings(shards=8, lease_seconds=3, renew_seconds=3.0, identity="a").check()
    with pytest.raises(ValueError, match="ONCALLM_SHARDS"):
        ShardSettings(shards=0, identity="a").check()


def test_replica_lease_names_are_valid_and_distinct() -> None:
    assert (
        replica_lease_name("oncallm-7d9f8c6b5-x2kqp") == "oncallm-replica-oncallm-7d9f8c6b5-x2kqp"
    )
    odd = replica_lease_name("Host_Name.local-1234" + "x" * 80)
    assert len(odd) <= 63 and odd == odd.lower()
    assert replica_lease_name("a_b") != replica_lease_name("a-b")


def record(name: str, holder: str, observed: float, version: str = "1") -> LeaseRecord:
    return LeaseRecord(name, holder, 15.0, version, 0, None, observed)


def test_expiry_is_judged_on_the_observers_own_clock() -> None:
    observer = Observer()
    lease = lease_body("oncallm-shard-0", "ns", "shard", holder="a", duration=15, now_epoch=0)
    lease["metadata"]["resourceVersion"] = "7"
    first = observer.record(lease, now=100.0)
    assert observer.record(lease, now=110.0).observed == 100.0  # same version: same sighting
    assert not first.expired(114.0) and first.expired(115.1)
    lease["metadata"]["resourceVersion"] = "8"  # renewed
    assert observer.record(lease, now=120.0).observed == 120.0
    assert record("x", "", 0.0).expired(0.0)  # given back: free at once


def test_a_lone_replica_takes_every_shard() -> None:
    decided = plan("a", 8, {}, ["a"], now=0.0)
    assert sorted(decided.acquire) == list(range(8)) and decided.target == 8


def test_replicas_share_fairly_and_extras_are_given_back_when_idle() -> None:
    leases = {s: record(f"oncallm-shard-{s}", "a", 0.0) for s in range(8)}
    decided = plan("a", 8, leases, ["a", "b", "c"], now=1.0, busy={0, 1, 2, 3, 4, 5, 6, 7})
    assert decided.target == 3 and not decided.release and len(decided.drain) == 5
    decided = plan("a", 8, leases, ["a", "b", "c"], now=1.0)
    assert len(decided.release) == 5 and len(decided.renew) == 3 and not decided.drain
    assert fair_share(8, 3) == 3 and fair_share(8, 1) == 8 and fair_share(8, 16) == 1


def test_a_dead_replicas_shards_are_taken_only_after_its_lease_expired() -> None:
    leases = {
        s: record(f"oncallm-shard-{s}", "dead" if s < 4 else "b", 0.0 if s < 4 else 15.0)
        for s in range(8)
    }
    replicas = [record("oncallm-replica-b", "b", 20.0), record("oncallm-replica-dead", "dead", 0.0)]
    assert live_replicas("a", replicas, now=10.0) == ["a", "b", "dead"]
    assert plan("a", 8, leases, live_replicas("a", replicas, 10.0), now=10.0).acquire == []
    live = live_replicas("a", replicas, now=16.0)
    assert live == ["a", "b"]
    decided = plan("a", 8, leases, live, now=16.0)
    assert sorted(decided.acquire) == [0, 1, 2, 3]


class FakeLeases:
    """The Lease API of one namespace in memory: create, conditional replace, list, delete."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.down = False

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.down:
            raise ApiError(0, "API server unreachable")
        name = path.rsplit("/leases", 1)[1].strip("/")
        body = kwargs.get("body")
        if method == "GET" and not name:
            return {"items": [self._copy(o) for o in self.objects.values()]}
        if method == "GET":
            if name not in self.objects:
                raise ApiError(404, "not found")
            return self._copy(self.objects[name])
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.objects:
                raise ApiError(409, "already exists")
            return self._store(name, body)
        if method == "PUT":
            current = self.objects.get(name)
            if current is None:
                raise ApiError(404, "not found")
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "the object has been modified")
            return self._store(name, body)
        if method == "DELETE":
            current = self.objects.get(name)
            wanted = (body or {}).get("preconditions", {}).get("resourceVersion")
            if current is None:
                raise ApiError(404, "not found")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "precondition failed")
            del self.objects[name]
            return {}
        raise AssertionError(method)

    def _store(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = self._copy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        self.objects[name] = stored
        return self._copy(stored)

    @staticmethod
    def _copy(obj: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": dict(obj["metadata"]), "spec": dict(obj["spec"])}

    def holders(self) -> Counter[str]:
        return Counter(
            o["spec"].get("holderIdentity", "")
            for n, o in self.objects.items()
            if n.startswith("oncallm-shard-")
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keeper(api: FakeLeases, clock: Clock, me: str, busy: set[int] | None = None) -> ShardKeeper:
    settings = ShardSettings(shards=8, lease_seconds=15, renew_seconds=5.0, identity=me)
    return ShardKeeper(
        api,  # type: ignore[arg-type]
        "ns",
        settings,
        busy=lambda s: s in (busy or set()),
        clock=clock,
        wall=clock,
    )


async def rounds(keepers: list[ShardKeeper], clock: Clock, count: int) -> None:
    for _ in range(count):
        for k in keepers:
            await k.round()
        clock.now += 5.0


async def test_three_keepers_divide_eight_shards_each_held_once() -> None:
    api, clock = FakeLeases(), Clock()
    keepers = [keeper(api, clock, name) for name in ("a", "b", "c")]
    await rounds(keepers, clock, 4)
    owned = [k.owned() for k in keepers]
    assert sorted(len(o) for o in owned) == [2, 3, 3]
    assert set().union(*owned) == set(range(8))
    assert sum(len(o) for o in owned) == 8  # no shard owned twice
    assert set(api.holders()) == {"a", "b", "c"}


async def test_a_dead_keepers_shards_are_taken_over_after_the_lease_duration() -> None:
    api, clock = FakeLeases(), Clock()
    a, b, c = (keeper(api, clock, name) for name in ("a", "b", "c"))
    await rounds([a, b, c], clock, 4)
    dead = c.owned()
    assert dead
    killed_at = clock.now
    taken_at = None
    while taken_at is None and clock.now < killed_at + 60:
        await rounds([a, b], clock, 1)
        if dead <= a.owned() | b.owned():
            taken_at = clock.now
    assert taken_at is not None
    assert taken_at - killed_at <= 15 + 2 * 5  # the duration, seen at the next rounds
    assert a.owned() | b.owned() == set(range(8)) and not a.owned() & b.owned()


def test_survivors_divide_a_dead_replicas_shards_without_reaching_for_the_same_ones() -> None:
    holders = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c", 7: "c"}
    leases = {
        s: record(f"oncallm-shard-{s}", h, 0.0 if h == "c" else 14.0) for s, h in holders.items()
    }
    now = 15.5  # c's Leases expired at 15, the others' are fresh
    a = plan("a", 8, leases, ["a", "b"], now=now, grace=5.0).acquire
    b = plan("b", 8, leases, ["a", "b"], now=now, grace=5.0).acquire
    assert sorted(a + b) == [5, 6, 7] and not set(a) & set(b)
    assert (len(a), len(b)) == (1, 2)  # each up to its share of 4
    # b never takes its two: one renewal interval after they expired, a may take them too,
    # after its own
    assert claim_order("a", [5, 6, 7], leases, ["a", "b"], 4, now=15.5, grace=5.0) == a
    late = claim_order("a", [5, 6, 7], leases, ["a", "b"], 4, now=20.5, grace=5.0)
    assert late[:1] == a and set(late) == {5, 6, 7}


def test_the_next_look_is_when_another_replicas_lease_would_expire() -> None:
    records = [
        record("oncallm-shard-0", "b", 100.0),  # b's: expires at 115
        record("oncallm-shard-1", "c", 103.0),
        record("oncallm-shard-2", "a", 90.0),  # this replica's own: never waited for
        record("oncallm-shard-3", "", 50.0),  # given back: free already
        record("oncallm-shard-4", "d", 80.0),  # expired at 95: taken now or never waited for
    ]
    assert next_expiry("a", records, now=101.0) == 115.0
    assert next_expiry("a", records, now=116.0) == 118.0
    assert next_expiry("a", records[2:], now=101.0) is None


async def test_a_dead_keepers_shards_are_looked_at_again_the_moment_its_lease_expires() -> None:
    api, clock = FakeLeases(), Clock()
    a, b, c = (keeper(api, clock, name) for name in ("a", "b", "c"))
    await rounds([a, b, c], clock, 4)
    dead = c.owned()
    last_renewal = clock.now - 5.0  # c's last round
    await a.round()
    await b.round()
    # c's Leases are the soonest to expire: a and b each wake then, not at their next round
    assert a._wake_at == pytest.approx(last_renewal + 15 + 0.02)
    clock.now = a._wake_at
    await a.round()
    await b.round()
    assert dead <= a.owned() | b.owned() and not a.owned() & b.owned()


class RacedLeases(FakeLeases):
    """Another replica takes shard 0 between this replica's listing and its take."""

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if (
            method in ("POST", "PUT")
            and (kwargs.get("body") or {}).get("metadata", {}).get("name") == "oncallm-shard-0"
            and "oncallm-shard-0" not in self.objects
        ):
            self._store(
                "oncallm-shard-0",
                lease_body("oncallm-shard-0", "ns", "shard", holder="z", duration=15, now_epoch=0),
            )
            raise ApiError(409, "already exists")
        return await super().request(method, path, **kwargs)


async def test_a_take_lost_to_another_replica_is_retried_at_once() -> None:
    api, clock = RacedLeases(), Clock()
    a = keeper(api, clock, "a")
    await a.round()
    assert 0 not in a.owned() and len(a.owned()) == 7
    assert a._wake_at == pytest.approx(clock.now + 0.05)


async def test_a_stopping_keeper_gives_its_shards_back_and_they_move_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = keeper(api, clock, "a"), keeper(api, clock, "b")
    await rounds([a, b], clock, 3)
    await b.stop()
    assert "b" not in api.holders()
    await a.round()
    assert a.owned() == set(range(8))


async def test_a_busy_shard_is_drained_before_it_is_given_back() -> None:
    api, clock = FakeLeases(), Clock()
    busy: set[int] = set(range(8))
    a = keeper(api, clock, "a", busy)
    await a.round()
    assert a.owned() == set(range(8))
    b = keeper(api, clock, "b")
    await b.round()  # b is seen live now: a's share falls to 4
    await a.round()
    assert len(a.owned()) == 4 and len(a.draining) == 4  # held, nothing new starts there
    assert api.holders()["a"] == 8
    busy.clear()
    await a.round()
    await b.round()
    assert len(a.owned()) == 4 and len(b.owned()) == 4


async def test_a_keeper_cut_off_stops_owning_before_others_may_take_over() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, clock, "a")
    await a.round()
    api.down = True
    clock.now += 9.9
    assert a.owned() == set(range(8))
    clock.now += 0.2  # past the renewal sent + 15 s - 5 s
    assert a.owned() == set()
    await a.round()  # the failure is counted, nothing raised


async def test_a_lease_changed_by_another_is_given_up() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, clock, "a")
    await a.round()
    taken = api.objects["oncallm-shard-0"]
    taken["spec"]["holderIdentity"] = "b"
    taken["metadata"]["resourceVersion"] = "999"
    await a.round()
    assert 0 not in a.owned()


def test_a_renewal_seen_late_counts_from_its_renew_time_within_one_interval() -> None:
    observer = Observer()
    lease = lease_body("oncallm-shard-0", "ns", "shard", holder="a", duration=15, now_epoch=500.0)
    lease["metadata"]["resourceVersion"] = "1"
    assert observer.record(lease, now=10.0, wall=500.4, trust=5.0).observed == pytest.approx(9.6)
    lease["metadata"]["resourceVersion"] = "2"  # a clock far ahead: trusted one interval only
    assert observer.record(lease, now=20.0, wall=900.0, trust=5.0).observed == 15.0
    lease["metadata"]["resourceVersion"] = "3"  # a clock behind: never later than seen
    assert observer.record(lease, now=30.0, wall=100.0, trust=5.0).observed == 30.0
