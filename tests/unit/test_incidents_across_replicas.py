"""Two operator replicas over one in-memory API server, each running half the shards: the
members of one incident land on both, and the claim of its cause (pipeline/claims.py, here in
memory) makes one primary for it, whichever replica sees a member first."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

from oncallm.incidents import CauseKey
from oncallm.models.analysis import AlertAnalysis
from oncallm.pipeline.service import AnalysisService
from tests.unit.test_incident_flow import (
    StoreAPI,
    _body,
    _by_expected,
    _service,
    _status,
    _storm,
    _until,
)


class Half:
    """Owns the shards of one parity."""

    def __init__(self, parity: int) -> None:
        self.parity = parity

    def owns(self, shard: int) -> bool:
        return shard % 2 == self.parity


class MemoryClaims:
    """The claim Leases in memory: the first claim of a cause holds."""

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}
        self.calls = 0

    async def claim(self, key: CauseKey, analysis: AlertAnalysis) -> str:
        self.calls += 1
        await asyncio.sleep(0.01)  # a round trip, so the replicas interleave
        return self.holders.setdefault(key.text, analysis.name)


async def watch(api: StoreAPI, services: list[AnalysisService]) -> None:
    """Every replica sees every change, as its kopf watch does."""
    seen: dict[str, Any] = {}
    while True:
        for name, obj in list(api.objects.items()):
            if seen.get(name) != obj:
                seen[name] = copy.deepcopy(obj)
                for service in services:
                    service.accept("MODIFIED", copy.deepcopy(obj))
        await asyncio.sleep(0.01)


async def test_members_on_two_replicas_share_one_primary_per_incident() -> None:
    storm = _storm()
    api = StoreAPI()
    claims = MemoryClaims()
    replicas = []
    for parity in (0, 1):
        service, _ = _service(api, storm.memory_reader())
        service.shards, service.shard_count = Half(parity), 2
        service.incidents.claims = claims  # type: ignore[assignment]
        replicas.append(service)
    bodies = [_body(a, group='{}:{alertname=~".*"}') for a in storm.alerts]
    for body in bodies:
        api.add(body)
    for service in replicas:
        service.start()
    watcher = asyncio.create_task(watch(api, replicas))
    try:
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
    finally:
        watcher.cancel()
        for service in replicas:
            await service.stop()

    groups = _by_expected(storm, bodies)
    shards = Counter(replicas[0].shard_of(AlertAnalysis.model_validate(b)) for b in bodies)
    assert set(shards) == {0, 1}  # both replicas ran some
    for expected, members in groups.items():
        primaries = {_status(api, b)["incident"]["primary"] for b in members}
        assert len(primaries) == 1, (expected, primaries)
    assert set(api.completed.values()) == {1} and len(api.completed) == len(bodies)
    reports = {body["metadata"]["name"] for m, p, body in api.writes if p.endswith("/configmaps")}
    assert len(reports) == 6  # 3 incidents, 3 unrelated alerts: one report each
    assert claims.calls >= 6
