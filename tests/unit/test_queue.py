"""The operator's queue: bounded, critical first, one entry per analysis, retries."""

from __future__ import annotations

import asyncio

from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec
from oncallm.pipeline.queue import AnalysisQueue, RetryLater


def analysis(name: str, severity: str = "warning") -> AlertAnalysis:
    return AlertAnalysis(
        metadata={"name": name, "namespace": "oncallm"},
        spec=AlertAnalysisSpec(
            alert=AlertSpec(
                status="firing",
                labels={"alertname": "X", "severity": severity},
                starts_at="2025-05-14T09:41:30Z",
                fingerprint=name,
            )
        ),
    )


async def test_bounded_and_critical_first() -> None:
    order: list[str] = []
    release = asyncio.Event()
    running = peak = 0

    async def run(a: AlertAnalysis, attempt: int, force: bool) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(a.name)
        await release.wait()
        running -= 1

    queue = AnalysisQueue(run, workers=2)
    for name, severity in [
        ("w1", "warning"),
        ("w2", "warning"),
        ("i1", "info"),
        ("c1", "critical"),
    ]:
        queue.submit(analysis(name, severity))
    queue.start()
    while len(order) < 2:
        await asyncio.sleep(0.01)
    assert order == ["c1", "w1"] and queue.waiting == 2
    release.set()
    while len(order) < 4:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert order == ["c1", "w1", "w2", "i1"] and peak == 2


async def test_one_entry_per_analysis_and_finished_ones_are_not_run_again() -> None:
    ran: list[tuple[str, bool]] = []

    async def run(a: AlertAnalysis, attempt: int, force: bool) -> None:
        ran.append((a.name, force))

    queue = AnalysisQueue(run, workers=1)
    assert queue.submit(analysis("a"))
    assert not queue.submit(analysis("a"))  # a second event while it waits
    assert queue.submit(analysis("b"))
    queue.finished("oncallm", "b")  # an event says it finished meanwhile
    queue.start()
    while not ran:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert not queue.submit(analysis("a"))  # done: its next events change nothing
    assert queue.submit(analysis("a"), force=True)  # unless a re-analysis is asked for
    while len(ran) < 2:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert ran == [("a", False), ("a", True)]


async def test_retry_later_runs_again_after_the_delay_with_the_next_attempt() -> None:
    attempts: list[int] = []

    async def run(a: AlertAnalysis, attempt: int, force: bool) -> None:
        attempts.append(attempt)
        if attempt < 2:
            raise RetryLater("the API server is busy", delay=0.01)

    queue = AnalysisQueue(run, workers=1)
    queue.submit(analysis("a"))
    queue.start()
    while len(attempts) < 3:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert attempts == [0, 1, 2]
