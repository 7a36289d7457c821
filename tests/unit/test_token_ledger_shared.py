"""The shared daily token ledger (llm/budget.py) over an in-memory store that keeps versions
as the API server does: reserve before the call, reconcile after, one budget for every
replica and restart."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest

from oncallm.llm.budget import (
    LedgerConflict,
    SharedTokenLedger,
    TokenLedger,
    reservation_tokens,
)
from oncallm.llm.settings import LLMSettings
from oncallm.models.policy import AnalysisPolicy


class MemoryStore:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.version = 0
        self.conflicts = 0

    async def load(self) -> tuple[dict[str, int], str | None]:
        await asyncio.sleep(0)  # let another replica interleave
        return dict(self.counts), (str(self.version) if self.version else None)

    async def save(self, counts: dict[str, int], version: str | None) -> str:
        await asyncio.sleep(0)
        if version != (str(self.version) if self.version else None):
            self.conflicts += 1
            raise LedgerConflict("changed")
        self.counts, self.version = dict(counts), self.version + 1
        return str(self.version)


DAY = datetime(2026, 12, 2, 10, tzinfo=UTC)


async def call(ledger: TokenLedger, budget: int, reserve: int, spend: int) -> bool:
    """One analysis as llm/analyse.py does it: check, call, spend. True when it called."""
    async with ledger.reserved("default", budget, reserve):
        if ledger.remaining("default", budget) < 1:
            return False
        ledger.spend("default", spend)
        return True


async def test_replicas_share_one_budget_and_never_spend_more_than_it() -> None:
    store = MemoryStore()
    replicas = [SharedTokenLedger(store, now=lambda: DAY, wait_seconds=0.0) for _ in range(3)]
    # 30 analyses at once over three replicas, each reserving 1,000 and spending 400
    called = await asyncio.gather(*(call(replicas[i % 3], 5000, 1000, 400) for i in range(30)))
    spent = 400 * sum(called)
    assert spent <= 5000
    assert store.counts["2026-12-02.default"] == spent  # every reservation reconciled
    assert store.conflicts > 0  # they did race, and the conditional writes held
    # afterwards, sequentially, the rest of the budget is used until a reservation no longer fits
    while await call(replicas[0], 5000, 1000, 400):
        spent += 400
    assert 5000 - 1000 < spent <= 5000


async def test_a_restart_keeps_the_days_spending() -> None:
    store = MemoryStore()
    first = SharedTokenLedger(store, now=lambda: DAY)
    assert await call(first, 1500, 1000, 900)
    restarted = SharedTokenLedger(store, now=lambda: DAY)
    assert not await call(restarted, 1500, 1000, 900)  # 900 + 1000 > 1500
    assert restarted.spent("default") == 900


async def test_a_replica_killed_mid_call_leaves_its_reservation_counted() -> None:
    store = MemoryStore()
    ledger = SharedTokenLedger(store, now=lambda: DAY)
    reservation = ledger.reserved("default", 5000, 1000)
    await reservation.__aenter__()  # and never leaves: the process died
    assert store.counts["2026-12-02.default"] == 1000
    assert store.counts["2026-12-02.default.reserved"] == 1000


async def test_room_held_by_reservations_in_flight_is_waited_for() -> None:
    """Eight analyses at once, each reserving 1,000 of a 3,000 budget and spending 100: none
    is refused for room the others only reserved."""
    store = MemoryStore()
    replicas = [
        SharedTokenLedger(store, now=lambda: DAY, wait_seconds=5.0, poll_seconds=0.01)
        for _ in range(2)
    ]

    async def slow_call(ledger: SharedTokenLedger) -> bool:
        async with ledger.reserved("default", 3000, 1000):
            if ledger.remaining("default", 3000) < 1:
                return False
            await asyncio.sleep(0.05)  # the model answering
            ledger.spend("default", 100)
            return True

    called = await asyncio.gather(*(slow_call(replicas[i % 2]) for i in range(8)))
    assert all(called)
    assert store.counts["2026-12-02.default"] == 800
    assert store.counts["2026-12-02.default.reserved"] == 0


async def test_days_before_today_are_dropped_as_the_ledger_is_written() -> None:
    store = MemoryStore()
    store.counts, store.version = {"2026-12-01.default": 4999}, 1
    ledger = SharedTokenLedger(store, now=lambda: DAY)
    assert await call(ledger, 5000, 1000, 10)
    assert store.counts == {"2026-12-02.default": 10, "2026-12-02.default.reserved": 0}


async def test_the_in_memory_ledger_is_as_before() -> None:
    ledger = TokenLedger(now=lambda: DAY)
    assert await call(ledger, 5000, 10**9, 400)  # no reservation in memory
    assert ledger.spent("default") == 400


def test_the_reservation_bounds_every_request_an_analysis_may_send() -> None:
    settings = LLMSettings()
    standard = AnalysisPolicy.model_validate({"metadata": {"name": "p"}, "spec": {}})
    per_request = settings.prompt_tokens_standard + settings.max_output_tokens
    assert reservation_tokens(settings, standard) == 3 * per_request
    deep = AnalysisPolicy.model_validate(
        {"metadata": {"name": "p"}, "spec": {"depth": "deep", "llm": {"maxToolRounds": 2}}}
    )
    assert reservation_tokens(settings, deep) > 6 * settings.prompt_tokens_deep


@pytest.mark.parametrize("budget", [0, 999])
async def test_no_room_for_the_reservation_means_the_budget_is_spent(budget: int) -> None:
    ledger = SharedTokenLedger(MemoryStore(), now=lambda: DAY)
    assert not await call(ledger, budget, 1000, 1)


async def test_the_built_in_default_policy_has_a_valid_configmap_key() -> None:
    store = MemoryStore()
    ledger = SharedTokenLedger(store, now=lambda: DAY)
    async with ledger.reserved("(built-in default)", 50_000, 1000):
        ledger.spend("(built-in default)", 10)
    assert list(store.counts) == [
        key
        for key in store.counts
        if re.fullmatch(r"[-._a-zA-Z0-9]+", key) and key.startswith("2026-12-02._built-in")
    ]
    assert SharedTokenLedger.key(DAY.date(), "default") == "2026-12-02.default"


async def test_many_reservations_at_once_settle_without_running_out_of_tries() -> None:
    # 60 analyses over four replicas reserve in the same instant: the jittered backoff between
    # conflicting writes spreads them, so none gives up (a lock-step retry loop did, on CI)
    store = MemoryStore()
    replicas = [SharedTokenLedger(store, now=lambda: DAY, wait_seconds=0.0) for _ in range(4)]
    called = await asyncio.gather(*(call(replicas[i % 4], 1_000_000, 1000, 400) for i in range(60)))
    assert all(called)
    assert store.counts["2026-12-02.default"] == 60 * 400
    assert store.conflicts > 0  # they did collide
