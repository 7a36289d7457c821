"""The circuit breaker (on an injected clock) and the daily token ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oncallm.llm.breaker import BreakerState, CircuitBreaker
from oncallm.llm.budget import TokenLedger
from tests.unit.llm_fixtures import FakeClock


def test_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=60, clock=clock)
    for _ in range(2):
        assert breaker.before_call()
        breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    assert breaker.state is BreakerState.OPEN
    assert not breaker.before_call()

    clock.advance(59.9)
    assert breaker.is_open
    assert breaker.seconds_until_retry() > 0
    clock.advance(0.2)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.is_open
    assert breaker.before_call(), "one trial call"
    assert not breaker.before_call(), "only one trial at a time"
    assert breaker.is_open


def test_half_open_success_closes_failure_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN, "a failed trial opens it for another cooldown"
    clock.advance(9)
    assert breaker.is_open
    clock.advance(1)
    assert breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert not breaker.is_open


def test_released_trial_lets_another_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=clock)
    breaker.record_failure()
    clock.advance(5)
    assert breaker.before_call()
    breaker.release()
    assert breaker.before_call()


def test_ledger_per_policy_and_utc_day() -> None:
    now = datetime(2024, 5, 1, 23, 59, tzinfo=UTC)
    ledger = TokenLedger(now=lambda: now)
    ledger.spend("shop-critical", 1500)
    ledger.spend("shop-critical", 500)
    ledger.spend("batch-jobs", 100)
    assert ledger.spent("shop-critical") == 2000
    assert ledger.remaining("shop-critical", 2500) == 500
    assert ledger.remaining("shop-critical", 1000) == 0
    assert ledger.spent("batch-jobs") == 100

    now += timedelta(minutes=2)  # 00:01 UTC: a new day
    assert ledger.spent("shop-critical") == 0
    assert ledger.remaining("shop-critical", 2500) == 2500
