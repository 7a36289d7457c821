"""Bounded concurrency where waiting analyses go in order of severity, then arrival."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: Lower runs first. Unknown severities sit between warning and info.
SEVERITY_RANK = {
    "critical": 0,
    "page": 0,
    "high": 1,
    "error": 1,
    "warning": 2,
    "info": 4,
    "none": 5,
}


def severity_rank(severity: str | None) -> int:
    return SEVERITY_RANK.get((severity or "none").lower(), 3)


class PriorityGate:
    """At most ``limit`` holders; waiters are admitted critical first, then first come."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.active = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    @asynccontextmanager
    async def slot(self, severity: str | None) -> AsyncIterator[None]:
        if self.active < self.limit and not self.waiting:
            self.active += 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (severity_rank(severity), next(self._counter), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # admitted and cancelled at once: pass the slot on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                return
        self.active -= 1
