"""The operator's queue of analyses to run: bounded workers, critical first, one entry per
analysis, retries with a delay.

kopf hands every AlertAnalysis event to :meth:`AnalysisQueue.submit` and returns at once, so
kopf never holds a worker per analysis (a backlog of thousands at start-up costs one small
entry each here, and ``workers`` tasks). An analysis submitted again while it waits replaces
its entry (the newest body wins); one that finished is not run again unless forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from oncallm.models.analysis import AlertAnalysis
from oncallm.pipeline import metrics
from oncallm.pipeline.scheduler import severity_rank

log = logging.getLogger(__name__)

Key = tuple[str, str]


class RetryLater(Exception):
    """The API server failed; try the analysis again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Deferred(Exception):
    """Not this replica's to run now (its shard moved): neither finished nor retried here."""


@dataclass
class Entry:
    """One analysis waiting or running."""

    analysis: AlertAnalysis
    attempt: int = 0
    force: bool = False
    rank: int = 3
    seq: int = 0
    #: submitted again while running with force: run once more afterwards
    again: bool = field(default=False, compare=False)

    @property
    def key(self) -> Key:
        return (self.analysis.namespace, self.analysis.name)


#: Runs one analysis: (analysis, attempt, force). Raises RetryLater to be retried.
Runner = Callable[[AlertAnalysis, int, bool], Awaitable[object]]


class AnalysisQueue:
    """Analyses by severity, then arrival; ``workers`` of them at once."""

    def __init__(self, run: Runner, workers: int) -> None:
        self.run = run
        self.workers = max(1, workers)
        self._heap: list[tuple[int, int, Key]] = []
        self._waiting: dict[Key, Entry] = {}
        self._running: dict[Key, Entry] = {}
        self._finished: set[Key] = set()
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def running_analyses(self) -> list[AlertAnalysis]:
        return [entry.analysis for entry in self._running.values()]

    def idle(self) -> bool:
        """Nothing waits and at most the caller runs."""
        return not self._waiting and len(self._running) <= 1

    def submit(self, analysis: AlertAnalysis, *, force: bool = False, attempt: int = 0) -> bool:
        """Queue an analysis; False when it is already finished (and not forced) or queued."""
        key = (analysis.namespace, analysis.name)
        if force:
            self._finished.discard(key)
        elif key in self._finished:
            return False
        running = self._running.get(key)
        if running is not None:
            running.again = running.again or force
            return False
        queued = self._waiting.get(key)
        if queued is not None:
            queued.analysis = analysis  # the newest body
            queued.force = queued.force or force
            return False
        rank = severity_rank(analysis.spec.alert.labels.get("severity"))
        entry = Entry(analysis, attempt=attempt, force=force, rank=rank, seq=next(self._seq))
        self._waiting[key] = entry
        heapq.heappush(self._heap, (entry.rank, entry.seq, key))
        metrics.WAITING.set(len(self._waiting))
        metrics.QUEUED.inc()
        self._ready.set()
        return True

    def finished(self, namespace: str, name: str) -> None:
        """The analysis reached a finished phase (seen in an event): drop it from the queue."""
        key = (namespace, name)
        self._finished.add(key)
        self._waiting.pop(key, None)
        metrics.WAITING.set(len(self._waiting))

    def forget(self, namespace: str, name: str) -> None:
        """The analysis was deleted."""
        key = (namespace, name)
        self._finished.discard(key)
        self._waiting.pop(key, None)
        metrics.WAITING.set(len(self._waiting))

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _next(self) -> Entry | None:
        while self._heap:
            _, seq, key = heapq.heappop(self._heap)
            entry = self._waiting.get(key)
            if entry is not None and entry.seq == seq:
                del self._waiting[key]
                metrics.WAITING.set(len(self._waiting))
                return entry
        return None

    async def _worker(self) -> None:
        while True:
            entry = self._next()
            if entry is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            key = entry.key
            self._running[key] = entry
            metrics.RUNNING.set(len(self._running))
            try:
                await self.run(entry.analysis, entry.attempt, entry.force)
                self._finished.add(key)
            except RetryLater as err:
                log.info("%s/%s: %s; retrying in %.0f s", *key, err, err.delay)
                self._later(entry, err.delay)
            except Deferred as err:
                log.debug("%s/%s: %s", *key, err)
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner fails its analysis itself; this is a last resort
                log.exception("analysis %s/%s failed", *key)
                self._finished.add(key)
            finally:
                self._running.pop(key, None)
                metrics.RUNNING.set(len(self._running))
            if entry.again:
                self.submit(entry.analysis, force=True)

    def _later(self, entry: Entry, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def resubmit() -> None:
            self._timers.discard(handle)
            self.submit(entry.analysis, force=entry.force, attempt=entry.attempt + 1)

        handle = loop.call_later(max(0.0, delay), resubmit)
        self._timers.add(handle)
