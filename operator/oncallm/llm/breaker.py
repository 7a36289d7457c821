"""A circuit breaker for the model endpoint.

While the endpoint is down, every analysis would otherwise wait through its timeouts and
retries before falling back to the rules. The breaker remembers: after
``failure_threshold`` consecutive failed calls it *opens* and analyses skip the model at once
(marked for a later upgrade). After ``cooldown_seconds`` it lets one trial call through
(*half-open*); success closes it, failure opens it for another cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed / open / half-open, on an injectable monotonic clock."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose cooldown has passed reads as half-open."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.cooldown_seconds
        ):
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        return self._state

    @property
    def is_open(self) -> bool:
        """True while calls must not be made: open, or half-open with its trial call out."""
        state = self.state
        return state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._probing)

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def seconds_until_retry(self) -> float:
        """How long until a trial call is allowed (0 when calls are allowed now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))

    def before_call(self) -> bool:
        """Ask to make a call: False while open; in half-open only the first caller gets True."""
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def release(self) -> None:
        """A call ended without a verdict (cancelled): let another trial call through."""
        self._probing = False

    def record_success(self) -> None:
        """The endpoint answered: close the breaker and forget earlier failures."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False

    def record_failure(self) -> None:
        """A call failed for good (retries exhausted): count it, open at the threshold."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probing = False
