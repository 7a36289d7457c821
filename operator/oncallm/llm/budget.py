"""Daily token budgets per policy, tracked in memory.

``AnalysisPolicy.spec.llm.daily_token_budget`` caps the prompt + completion tokens a policy's
analyses may spend per UTC day. The ledger lives in the operator's memory: a restart forgets
the day's spending, which at worst doubles one day's spend, and needs no storage.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenLedger:
    """Tokens spent, keyed by policy name and UTC day."""

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
