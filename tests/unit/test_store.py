from __future__ import annotations

import asyncio
from typing import Any

from oncallm.kube.store import AnalysisStore


def _aa(name: str, fingerprint: str, status: str = "firing") -> dict[str, Any]:
    return {
        "apiVersion": "oncallm.io/v1alpha1",
        "kind": "AlertAnalysis",
        "metadata": {"name": name, "namespace": "oncallm"},
        "spec": {
            "alert": {
                "status": status,
                "labels": {"alertname": "KubePodCrashLooping"},
                "startsAt": "2025-05-14T09:41:30Z",
                "fingerprint": fingerprint,
            }
        },
    }


async def test_events_update_the_index_and_wake_waiters() -> None:
    store = AnalysisStore()
    version = store.version
    waiter = asyncio.create_task(store.wait_changed(version, wait=5))
    await asyncio.sleep(0)
    store.apply_event("ADDED", _aa("a-1", "fp1"))
    assert await waiter > version
    store.apply_event("ADDED", _aa("a-2", "fp1"))
    assert {a.name for a in store.by_fingerprint("fp1")} == {"a-1", "a-2"}
    store.apply_event("MODIFIED", _aa("a-1", "fp1", status="resolved"))
    assert store.get("oncallm", "a-1").spec.alert.status == "resolved"  # type: ignore[union-attr]
    store.apply_event("DELETED", _aa("a-2", "fp1"))
    assert [a.name for a in store.by_fingerprint("fp1")] == ["a-1"]
    store.apply_event("ADDED", {"kind": "AlertAnalysis", "metadata": {"name": "broken"}})
    assert store.get("", "broken") is None and len(store) == 1


async def test_wait_changed_times_out_without_change() -> None:
    store = AnalysisStore()
    assert await store.wait_changed(store.version, wait=0.01) == store.version
