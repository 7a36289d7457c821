from __future__ import annotations

import asyncio

from oncallm.pipeline.scheduler import PriorityGate


async def test_bounded_and_critical_first() -> None:
    gate = PriorityGate(2)
    order: list[str] = []
    release = asyncio.Event()
    running = 0
    peak = 0

    async def job(name: str, severity: str) -> None:
        nonlocal running, peak
        async with gate.slot(severity):
            running += 1
            peak = max(peak, running)
            order.append(name)
            await release.wait()
            running -= 1

    first = [asyncio.create_task(job(f"w{i}", "warning")) for i in range(2)]
    while gate.active < 2:
        await asyncio.sleep(0)
    queued = [
        asyncio.create_task(job("info", "info")),
        asyncio.create_task(job("warn", "warning")),
        asyncio.create_task(job("crit", "critical")),
    ]
    while gate.waiting < 3:
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*first, *queued)
    assert peak == 2
    assert order[:2] == ["w0", "w1"]
    assert order[2:] == ["crit", "warn", "info"]
    assert gate.active == 0 and gate.waiting == 0


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    gate = PriorityGate(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("warning"):
            await hold.wait()

    task = asyncio.create_task(holder())
    while gate.active < 1:
        await asyncio.sleep(0)

    async def waiter() -> None:
        async with gate.slot("critical"):
            pass

    w = asyncio.create_task(waiter())
    while gate.waiting < 1:
        await asyncio.sleep(0)
    w.cancel()
    hold.set()
    await task
    async with gate.slot("info"):
        assert gate.active == 1
    assert gate.active == 0
