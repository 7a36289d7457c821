"""Daily token budgets per policy: in memory, or shared by every replica through a store.

``AnalysisPolicy.spec.llm.daily_token_budget`` caps the prompt + completion tokens a policy's
analyses may spend per UTC day.

- :class:`TokenLedger` keeps the day's spending in the process: a restart forgets it. For
  tests and for running without an API server.
- :class:`SharedTokenLedger` keeps it in a :class:`LedgerStore` (the operator's is a
  ConfigMap, ``pipeline/ledger.py``), updated with optimistic concurrency, so every replica
  and every restart shares one budget per policy and day. Each analysis **reserves** an upper
  bound of what it may spend before its first request (:func:`reservation_tokens`) and
  **reconciles** to what it spent after the last: N replicas at once never spend more than
  the budget, and a replica killed mid-call leaves its whole reservation counted (the budget
  errs toward the rules, never toward overspending).

Both answer the model path's questions (``remaining``, ``spent``, ``spend``) the same way;
inside :meth:`TokenLedger.reserved` they answer for the reservation of that analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from oncallm.llm.settings import LLMSettings
from oncallm.models.policy import AnalysisPolicy, Depth

log = logging.getLogger(__name__)

#: Conditional writes tried before a reservation gives up (each retry re-reads the ledger).
#: Then the analysis is retried later (a transient failure, like the API server's).
MAX_CONFLICTS = 20
#: First pause after a conflicting write, doubled each time up to CONFLICT_BACKOFF_MAX, with
#: full jitter: without it, ONCALLM_CONCURRENCY analyses on several replicas that reserve at
#: once re-read and re-write in lock step and keep conflicting (a loaded CI machine saw 20
#: conflicts in a row). 20 tries span about 10 s at most.
CONFLICT_BACKOFF_SECONDS = 0.02
CONFLICT_BACKOFF_MAX = 0.5
#: Longest an analysis waits for room that other analyses' reservations hold (they settle to
#: what they spent, usually far less) before the budget counts as spent for it: a few model
#: calls' time. Without it, ONCALLM_CONCURRENCY analyses per replica reserving at once would
#: find a budget of a few reservations "spent" while most of it is still there.
RESERVATION_WAIT_SECONDS = 60.0
#: How often a waiting reservation reads the ledger again.
RESERVATION_POLL_SECONDS = 0.5
#: Suffix of the key counting reservations not yet settled (``<day>.<policy>.reserved``).
RESERVED = ".reserved"
#: Requests one standard or quick analysis may send: the answer, one shorter retry of a reply
#: cut at the token cap, one correction of an invalid reply (``llm/analyse.py``).
BASE_REQUESTS = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


def reservation_tokens(settings: LLMSettings, policy: AnalysisPolicy) -> int:
    """The most tokens one analysis under ``policy`` may spend: every request it may send,
    each with the whole prompt budget of its depth and the whole output cap (a deep analysis:
    one more request per tool round and one refusal, the tool results on top). Tokens are
    estimated as the prompt is (characters / 4): a server that counts more may exceed it."""
    depth = policy.spec.depth
    requests, extra = BASE_REQUESTS, 0
    if depth is Depth.DEEP:
        rounds = policy.spec.llm.max_tool_rounds
        requests += rounds + 1
        extra = rounds * settings.max_tool_calls_per_round * settings.max_tool_result_chars // 4
    per_request = settings.prompt_budget(str(depth)) + settings.max_output_tokens + extra
    return requests * per_request


class TokenLedger:
    """Tokens spent, keyed by policy name and UTC day, in this process."""

    def __init__(self, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._now = now
        self._spent: dict[tuple[str, date], int] = {}

    def today(self) -> date:
        """The current UTC day."""
        return self._now().astimezone(UTC).date()

    def spent(self, policy: str) -> int:
        """Tokens the policy spent today."""
        return self._spent.get((policy, self.today()), 0)

    def remaining(self, policy: str, daily_budget: int) -> int:
        """Tokens left today under ``daily_budget`` (never below 0)."""
        return max(0, daily_budget - self.spent(policy))

    def spend(self, policy: str, tokens: int) -> None:
        """Record tokens spent now; days before today are forgotten."""
        day = self.today()
        for key in [k for k in self._spent if k[1] < day]:
            del self._spent[key]
        key = (policy, day)
        self._spent[key] = self._spent.get(key, 0) + max(0, tokens)

    @contextlib.asynccontextmanager
    async def reserved(self, policy: str, daily_budget: int, tokens: int) -> AsyncIterator[None]:
        """Around one analysis' model calls. In memory nothing is reserved: the check before
        the call and the spending after it are the whole ledger."""
        yield


class LedgerConflict(Exception):
    """The store changed since it was read: read again and retry."""


class LedgerStore(Protocol):
    """Where a :class:`SharedTokenLedger` keeps the counts: ``day.policy`` -> tokens."""

    async def load(self) -> tuple[dict[str, int], str | None]:
        """The counts and their version (None: nothing stored yet)."""
        ...

    async def save(self, counts: dict[str, int], version: str | None) -> str:
        """Store ``counts`` if the version is still ``version`` (None: create); the new
        version. Raises :class:`LedgerConflict` otherwise."""
        ...


@dataclass
class _Grant:
    """One analysis' reservation: ``tokens`` set aside, ``used`` of them spent so far."""

    policy: str
    day: date
    tokens: int
    used: int = 0


_GRANT: contextvars.ContextVar[_Grant | None] = contextvars.ContextVar("grant", default=None)


class SharedTokenLedger(TokenLedger):
    """One budget per policy and day for every replica, kept in a :class:`LedgerStore`."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        now: Callable[[], datetime] = _utc_now,
        wait_seconds: float = RESERVATION_WAIT_SECONDS,
        poll_seconds: float = RESERVATION_POLL_SECONDS,
    ) -> None:
        super().__init__(now=now)
        self.store = store
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        #: the counts as last read or written (for ``spent`` outside a reservation)
        self._seen: dict[str, int] = {}

    @staticmethod
    def key(day: date, policy: str) -> str:
        """``<day>.<policy>``, a valid ConfigMap key (``[-._a-zA-Z0-9]+``): a policy name is
        one as it is; another (the built-in default's ``(built-in default)``) has the other
        characters replaced and a short hash added, so two names never share a count."""
        safe = re.sub(r"[^-._a-zA-Z0-9]", "_", policy)
        if safe != policy:
            safe += "-" + hashlib.sha256(policy.encode()).hexdigest()[:8]
        return f"{day.isoformat()}.{safe}"

    def spent(self, policy: str) -> int:
        """Tokens spent or reserved today by every replica, as last read."""
        return self._seen.get(self.key(self.today(), policy), 0)

    def remaining(self, policy: str, daily_budget: int) -> int:
        grant = _GRANT.get()
        if grant is not None and grant.policy == policy:
            return max(0, grant.tokens - grant.used)
        return super().remaining(policy, daily_budget)

    def spend(self, policy: str, tokens: int) -> None:
        grant = _GRANT.get()
        if grant is not None and grant.policy == policy:
            grant.used += max(0, tokens)

    @contextlib.asynccontextmanager
    async def reserved(self, policy: str, daily_budget: int, tokens: int) -> AsyncIterator[None]:
        """Reserve ``tokens`` of today's budget before the model is asked, reconcile to what
        was spent after. Room held only by other analyses' reservations is waited for (up to
        ``wait_seconds``); without room the analysis is given none, and the model path finds
        the budget spent. Raises what the store raises (the API server down: the analysis is
        retried later)."""
        day = self.today()
        granted = await self._reserve(day, policy, daily_budget, tokens)
        grant = _Grant(policy, day, granted)
        token = _GRANT.set(grant)
        try:
            yield
        finally:
            _GRANT.reset(token)
            if granted:
                try:
                    await self._update(
                        day, policy, lambda total, held: (grant.used - granted, -granted)
                    )
                except Exception as err:  # the reservation stays counted: never overspent
                    log.warning(
                        "policy %s: %d unused reserved tokens not given back to today's "
                        "budget (%s); they count as spent, which errs toward the rules. Check "
                        "the API server",
                        policy,
                        granted - grant.used,
                        err,
                    )

    async def _reserve(self, day: date, policy: str, budget: int, tokens: int) -> int:
        waiting = False
        deadline = time.monotonic() + self.wait_seconds

        def change(total: int, held: int) -> tuple[int, int]:
            nonlocal waiting
            waiting = False
            if total + tokens <= budget:
                return tokens, tokens
            # room once the reservations in flight settle: wait for them
            waiting = total - held + tokens <= budget
            return 0, 0

        while True:
            granted = await self._update(day, policy, change)
            if granted or not waiting or time.monotonic() > deadline:
                return granted
            await asyncio.sleep(self.poll_seconds)

    async def _update(
        self, day: date, policy: str, change: Callable[[int, int], tuple[int, int]]
    ) -> int:
        """Add ``change(total, reserved)`` to the policy's count of today (spent and reserved)
        and to its reservations not settled yet, with a conditional write; the first change
        made."""
        key = self.key(day, policy)
        held_key = key + RESERVED
        for attempt in range(MAX_CONFLICTS):
            if attempt:
                pause = min(CONFLICT_BACKOFF_MAX, CONFLICT_BACKOFF_SECONDS * 2 ** (attempt - 1))
                await asyncio.sleep(random.uniform(0, pause))
            counts, version = await self.store.load()
            total, held = counts.get(key, 0), counts.get(held_key, 0)
            delta, held_delta = change(total, held)
            self._seen = counts
            if delta == 0 and held_delta == 0:
                return 0
            # days before this one are dropped as the ledger is written
            updated = {k: v for k, v in counts.items() if k >= day.isoformat()}
            updated[key] = max(0, total + delta)
            updated[held_key] = max(0, held + held_delta)
            try:
                await self.store.save(updated, version)
            except LedgerConflict:
                continue
            self._seen = updated
            return delta
        raise LedgerConflict(
            f"the token ledger kept changing during {MAX_CONFLICTS} tries; the analysis is "
            "retried later"
        )
