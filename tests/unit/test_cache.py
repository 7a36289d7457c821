"""Watch-backed caches: one list per (kind, namespace), kept current, bounded, released."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from oncallm.gathering.memory import MemoryReader
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.cache import CachedReader, CacheSettings

Obj = dict[str, Any]


def pod(name: str, ns: str = "orders", node: str = "n1", **labels: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "api"}},
        "spec": {"nodeName": node},
    }


class WatchAPI:
    """Lists from a store (paged) and streams watch events a test pushes."""

    def __init__(self, objects: list[Obj]) -> None:
        self.objects = [copy.deepcopy(o) for o in objects]
        self.requests: Counter[str] = Counter()
        self.watches: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self.version = 100
        self.gone_once = False

    def _matches(self, path: str, obj: Obj, field_selector: str | None) -> bool:
        meta = obj["metadata"]
        if "/namespaces/" in path and f"/namespaces/{meta.get('namespace')}/" not in path:
            return False
        plural = path.rsplit("/", 1)[-1]
        if {"pods": "Pod", "nodes": "Node", "events": "Event"}.get(plural) != obj["kind"]:
            return False
        if field_selector and field_selector.startswith("spec.nodeName="):
            return str(obj["spec"].get("nodeName")) == field_selector.split("=", 1)[1]
        return True

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        query = kwargs.get("query") or {}
        self.requests[f"{method} {path}"] += 1
        items = [
            copy.deepcopy(o)
            for o in self.objects
            if self._matches(path, o, query.get("fieldSelector"))
        ]
        start = int(query.get("continue") or 0)
        page = items[start : start + int(query.get("limit") or 500)]
        more = start + len(page) < len(items)
        return {
            "items": page,
            "metadata": {
                "resourceVersion": str(self.version),
                "continue": str(start + len(page)) if more else None,
            },
        }

    async def watch(self, path: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        key = f"{path}?{kwargs.get('field_selector') or ''}"
        self.requests[f"WATCH {key}"] += 1
        queue = self.watches.setdefault(key, asyncio.Queue())
        while True:
            event = await queue.get()
            if event is None:
                raise ApiError(410, "too old resource version")
            yield event

    async def push(self, path: str, etype: str, obj: Obj, field_selector: str = "") -> None:
        key = f"{path}?{field_selector}"
        while key not in self.watches:
            await asyncio.sleep(0.01)
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        await self.watches[key].put({"type": etype, "object": obj})


PODS = "/api/v1/namespaces/orders/pods"


def reader(api: WatchAPI, **settings: Any) -> CachedReader:
    direct = MemoryReader(api.objects)
    return CachedReader(cast(KubeAPI, api), direct, CacheSettings(**settings))


async def _eventually(check: Any) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never")


async def test_many_reads_of_a_namespace_cost_one_list_and_follow_the_watch() -> None:
    api = WatchAPI([pod("a"), pod("b", app="db"), pod("c", ns="other")])
    cache = reader(api)
    try:
        for _ in range(50):
            names = [p["metadata"]["name"] for p in await cache.list("Pod", "orders")]
            assert sorted(names) == ["a", "b"]
            assert (await cache.get("Pod", "orders", "a")) is not None
        assert api.requests[f"GET {PODS}"] == 1
        await api.push(PODS, "ADDED", pod("d"))
        await api.push(PODS, "DELETED", pod("a"))

        async def followed() -> bool:
            names = {p["metadata"]["name"] for p in await cache.list("Pod", "orders")}
            return names == {"b", "d"}

        await _eventually(followed)
        assert await cache.get("Pod", "orders", "a") is None
        assert cache.hits > 100 and cache.misses == 0
    finally:
        await cache.close()


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=api", ["a", "c"]),
        ("app==api,tier=web", ["c"]),
        ("app!=api", ["b"]),
        ("tier", ["c"]),
        ("!tier", ["a", "b"]),
        ("app in (api,db)", ["a", "b", "c"]),
        ("app notin (api)", ["b"]),
    ],
)
async def test_label_selectors_match_as_the_api_server_does(
    selector: str, expected: list[str]
) -> None:
    api = WatchAPI([pod("a", app="api"), pod("b", app="db"), pod("c", app="api", tier="web")])
    cache = reader(api)
    try:
        got = sorted(p["metadata"]["name"] for p in await cache.list("Pod", "orders", selector))
        assert got == expected
    finally:
        await cache.close()


async def test_a_nodes_pods_are_one_cluster_wide_watch_by_field_selector() -> None:
    api = WatchAPI([pod("a", node="n1"), pod("b", ns="other", node="n1"), pod("c", node="n2")])
    cache = reader(api)
    try:
        for _ in range(10):
            on_n1 = await cache.list("Pod", None, field_selector="spec.nodeName=n1")
            assert sorted(p["metadata"]["name"] for p in on_n1) == ["a", "b"]
        assert api.requests["GET /api/v1/pods"] == 1
        # a field selector inside a namespace is applied to the namespace's list
        in_ns = await cache.list("Pod", "orders", field_selector="spec.nodeName=n2")
        assert [p["metadata"]["name"] for p in in_ns] == ["c"]
        # a cluster-wide list of pods by anything else is not kept
        await cache.list("Pod", None, field_selector="status.phase=Pending")
        assert cache.misses == 1
    finally:
        await cache.close()


async def test_kinds_it_does_not_cache_go_to_the_reader_behind() -> None:
    api = WatchAPI([pod("a")])
    cache = reader(api)
    try:
        await cache.get("ConfigMap", "orders", "settings")
        await cache.list("Certificate", "orders", api_version="cert-manager.io")
        assert cache.misses == 2 and not api.requests
    finally:
        await cache.close()


async def test_bounded_in_lists_and_objects() -> None:
    api = WatchAPI([pod(f"p{i}", ns=f"ns{i % 3}") for i in range(30)])
    cache = reader(api, max_watches=2, max_objects=5)
    try:
        # 10 pods a namespace: more than max_objects, so each is read directly from then on
        assert len(await cache.list("Pod", "ns0")) == 10
        assert cache.watched == 0
        await cache.list("Pod", "ns0")
        assert api.requests["GET /api/v1/namespaces/ns0/pods"] == 1  # never watched again

        small = WatchAPI([pod("a", ns="x"), pod("b", ns="y"), pod("c", ns="z")])
        cache2 = reader(small, max_watches=2)
        try:
            for ns in ("x", "y", "z"):
                await cache2.list("Pod", ns)
            assert cache2.watched == 2  # the least recently read (x) went
            await cache2.list("Pod", "x")
            assert small.requests["GET /api/v1/namespaces/x/pods"] == 2
        finally:
            await cache2.close()
    finally:
        await cache.close()


async def test_released_when_idle() -> None:
    api = WatchAPI([pod("a")])
    cache = reader(api, idle_seconds=60)
    try:
        await cache.list("Pod", "orders")
        assert cache.watched == 1 and cache.objects == 1
        assert await cache.release_idle() == 0
        import time

        assert await cache.release_idle(time.monotonic() + 61) == 1
        assert cache.watched == 0 and cache.objects == 0
        await cache.list("Pod", "orders")  # read again: listed again
        assert api.requests[f"GET {PODS}"] == 2
    finally:
        await cache.close()


async def test_a_watch_that_expires_relists() -> None:
    api = WatchAPI([pod("a")])
    cache = reader(api)
    try:
        await cache.list("Pod", "orders")
        api.objects.append(pod("b"))
        await _eventually(lambda: asyncio.sleep(0, PODS + "?" in api.watches))
        await api.watches[PODS + "?"].put(None)  # 410 Gone

        async def relisted() -> bool:
            return len(await cache.list("Pod", "orders")) == 2

        await _eventually(relisted)
        assert api.requests[f"GET {PODS}"] == 2
    finally:
        await cache.close()


async def test_turned_off_it_reads_directly() -> None:
    api = WatchAPI([pod("a")])
    cache = reader(api, enabled=False)
    assert len(await cache.list("Pod", "orders")) == 1
    assert cache.watched == 0 and cache.misses == 1
    await cache.close()


def test_a_boolean_field_selector_matches_as_the_api_server_writes_it() -> None:
    from oncallm.gathering.fields import fields_match

    cordoned = {"kind": "Node", "metadata": {"name": "w3"}, "spec": {"unschedulable": True}}
    schedulable = {"kind": "Node", "metadata": {"name": "w1"}, "spec": {}}
    assert fields_match("spec.unschedulable=true", cordoned)
    assert not fields_match("spec.unschedulable=true", schedulable)
    assert fields_match("spec.unschedulable!=true,metadata.name=w1", schedulable)


async def test_a_list_is_in_the_api_servers_order_whatever_order_the_watch_saw() -> None:
    api = WatchAPI([pod("m"), pod("x")])
    cache = reader(api)
    try:
        assert [p["metadata"]["name"] for p in await cache.list("Pod", "orders")] == ["m", "x"]
        await api.push(PODS, "ADDED", pod("a"))

        async def sorted_by_name() -> bool:
            names = [p["metadata"]["name"] for p in await cache.list("Pod", "orders")]
            return names == ["a", "m", "x"]

        await _eventually(sorted_by_name)
    finally:
        await cache.close()
