from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oncallm.kube import reader as reader_module
from oncallm.kube.reader import ApiReader


class CountingAPI:
    """Answers list calls with one pod per call, counting them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append({"path": path, **kwargs})
        await asyncio.sleep(0.01)
        return {"items": [{"metadata": {"name": f"pod-{len(self.calls)}"}}]}


async def test_a_nodes_pods_are_read_once_for_concurrent_analyses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = CountingAPI()
    reader = ApiReader(api)  # type: ignore[arg-type]
    selector = "spec.nodeName=worker-1"
    results = await asyncio.gather(
        *(reader.list("Pod", None, field_selector=selector) for _ in range(5))
    )
    assert len(api.calls) == 1
    assert all(r == results[0] for r in results)
    await reader.list("Pod", None, field_selector="spec.nodeName=worker-2")
    assert len(api.calls) == 2
    # Other lists are never shared.
    await reader.list("Pod", "orders", label_selector="app=api")
    await reader.list("Pod", "orders", label_selector="app=api")
    assert len(api.calls) == 4
    # Past the TTL the node is read again.
    monkeypatch.setattr(reader_module, "NODE_PODS_TTL", 0.0)
    await reader.list("Pod", None, field_selector=selector)
    assert len(api.calls) == 5
