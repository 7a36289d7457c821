"""The client-side rate limit: a token bucket, in order, with the completing writes first."""

from __future__ import annotations

import asyncio
import time

from oncallm.kube.api import RateLimiter


async def test_waiters_are_served_in_order_with_marked_ones_first() -> None:
    limiter = RateLimiter(qps=40, burst=1)
    await limiter.acquire()  # the bucket is empty now
    order: list[str] = []

    async def one(name: str, first: bool = False) -> None:
        await limiter.acquire(first=first)
        order.append(name)

    # created in one go: each queues before the first token accrues (25 ms)
    await asyncio.gather(one("read-1"), one("read-2"), one("done", first=True), one("read-3"))
    assert order == ["done", "read-1", "read-2", "read-3"]


async def test_a_cancelled_waiter_gives_its_turn_away_and_the_rate_holds() -> None:
    limiter = RateLimiter(qps=50, burst=1)
    await limiter.acquire()
    started = time.monotonic()
    gone = asyncio.create_task(limiter.acquire())  # runs first, and queues

    async def after_it_is_cancelled() -> float:
        gone.cancel()
        for _ in range(3):
            await limiter.acquire()
        return time.monotonic() - started

    took = await asyncio.create_task(after_it_is_cancelled())  # runs after `gone` queued
    assert gone.cancelled()
    assert took >= 3 / 50 * 0.9  # three tokens at 50/s: the rate holds past a skipped waiter
