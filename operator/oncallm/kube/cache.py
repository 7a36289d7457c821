"""Watch-backed caches of the objects analyses read, in front of the real reader.

In an alert storm every analysis reads the same few namespaces and nodes: their pods, events,
Services, Endpoints, workloads, quotas. A :class:`CachedReader` lists each (kind, namespace)
once, keeps it current with a watch, and answers every later ``get`` and ``list`` from memory,
so the API server's cost per alert falls as the storm grows instead of growing with it.

Bounded and released:

- at most ``max_watches`` lists are watched; past that, the least recently read goes;
- a list that grows past ``max_objects`` is dropped and read directly from then on (a
  namespace of 50,000 events is not kept in memory);
- a list nobody read for ``idle_seconds`` is dropped.

Until a list has synced (its first page read) reads wait for it, at most ``sync_timeout``;
then, and for every kind or query it does not cache (logs, custom resources, a cluster-wide
list of a namespaced kind), the reader behind it answers. Objects from the cache are shared
between analyses: read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from oncallm.gathering.fields import fields_match
from oncallm.gathering.reader import KubeReader
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.reader import LIST_LIMIT
from oncallm.kube.resources import RESOURCES, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: Kinds kept in caches: what gathering lists or gets per namespace (and Nodes). ConfigMaps and
#: Secrets are not (large, and only their existence is read).
CACHED_KINDS = frozenset(
    {
        "Pod",
        "Event",
        "Node",
        "Service",
        "Endpoints",
        "ReplicaSet",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "PersistentVolumeClaim",
        "ResourceQuota",
        "LimitRange",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
)
#: Cluster-wide lists cached by their field selector: a node's pods and a node's events.
_CLUSTER_SELECTORS = {
    "Pod": ("spec.nodeName=",),
    "Event": ("involvedObject.kind=Node,involvedObject.name=",),
}
READS = Counter(
    "oncallm_cache_reads_total",
    "Reads of analyses, answered from a watch-backed cache or by the API server",
    ["answer"],
)
#: Seconds a watch stays open before it is renewed.
WATCH_SECONDS = 240
#: Objects per page of the first list.
PAGE = 500


@dataclass(frozen=True)
class CacheSettings:
    """Bounds of the operator's watch-backed caches."""

    enabled: bool = True
    """Serve reads from watch-backed caches (ONCALLM_CACHE); false reads the API server for
    every analysis."""
    max_watches: int = 64
    """Lists watched at once (ONCALLM_CACHE_MAX_WATCHES): a (kind, namespace) each, and each
    node's pods and events; the least recently read goes first. Never more than half the API
    client's connection pool (ONCALLM_KUBE_POOL): each open watch holds a connection."""
    max_objects: int = 20_000
    """Objects one watched list may hold (ONCALLM_CACHE_MAX_OBJECTS); a larger one is dropped
    and read directly."""
    idle_seconds: float = 300.0
    """A watched list nobody read for this long is dropped (ONCALLM_CACHE_IDLE_SECONDS)."""
    sync_timeout: float = 10.0
    """Longest a read waits for a list's first sync before it asks the API server itself
    (ONCALLM_CACHE_SYNC_TIMEOUT)."""

    @classmethod
    def from_env(cls) -> CacheSettings:
        env = os.environ
        return cls(
            enabled=env.get("ONCALLM_CACHE", "true").strip().lower()
            not in ("false", "0", "no", "off"),
            max_watches=int(env.get("ONCALLM_CACHE_MAX_WATCHES", cls.max_watches)),
            max_objects=int(env.get("ONCALLM_CACHE_MAX_OBJECTS", cls.max_objects)),
            idle_seconds=float(env.get("ONCALLM_CACHE_IDLE_SECONDS", cls.idle_seconds)),
            sync_timeout=float(env.get("ONCALLM_CACHE_SYNC_TIMEOUT", cls.sync_timeout)),
        )


Key = tuple[str, str | None, str | None]  # kind, namespace, field selector


class WatchedList:
    """One list of one kind (in one namespace, or cluster-wide by a field selector), kept
    current by a watch."""

    def __init__(self, api: KubeAPI, key: Key, max_objects: int) -> None:
        self.api = api
        self.key = key
        self.max_objects = max_objects
        self.items: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        #: set when the list outgrew ``max_objects`` or cannot be watched
        self.gave_up: str | None = None
        self.last_read = time.monotonic()
        self.lists = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch {self.key}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.items.clear()

    async def ready(self, timeout: float) -> bool:
        """True once synced (and still usable); False after ``timeout`` or when given up."""
        self.last_read = time.monotonic()
        if not self.synced.is_set() and self.gave_up is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.synced.wait(), timeout)
        return self.synced.is_set() and self.gave_up is None

    @property
    def _path(self) -> str:
        kind, namespace, _ = self.key
        return resource(kind).path(namespace)

    async def _run(self) -> None:
        kind, _, field_selector = self.key
        backoff = 0.5
        while True:
            try:
                version = await self._list(field_selector)
                if self.gave_up is not None:
                    return
                backoff = 0.5
                while True:
                    async for event in self.api.watch(
                        self._path,
                        resource_version=version,
                        timeout_seconds=WATCH_SECONDS,
                        field_selector=field_selector,
                    ):
                        etype = event.get("type")
                        obj = event.get("object") or {}
                        if etype == "ERROR":
                            raise ApiError(int(obj.get("code", 500)), str(obj.get("message", "")))
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if etype in ("ADDED", "MODIFIED"):
                            self._put(obj, kind)
                        elif etype == "DELETED":
                            self.items.pop(_key(obj), None)
                        if len(self.items) > self.max_objects:
                            self._give_up(f"more than {self.max_objects} objects")
                            return
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.status in (401, 403, 404):
                    self._give_up(f"cannot watch: {err}")
                    return
                self.synced.clear()
                if err.status != 410:
                    log.info("watching %s failed (%s); relisting in %.1f s", self.key, err, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(15.0, backoff * 2)

    async def _list(self, field_selector: str | None) -> str | None:
        kind = self.key[0]
        items: dict[tuple[str, str], Obj] = {}
        cont: str | None = None
        version: str | None = None
        while True:
            page = await self.api.request(
                "GET",
                self._path,
                query={"limit": PAGE, "continue": cont, "fieldSelector": field_selector},
            )
            for obj in page.get("items", []):
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", resource(kind).api_version)
                items[_key(obj)] = obj
            if len(items) > self.max_objects:
                self._give_up(f"more than {self.max_objects} objects")
                return None
            meta = page.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            cont = meta.get("continue")
            if not cont:
                break
        self.items = items
        self.lists += 1
        self.synced.set()
        return version

    def _put(self, obj: Obj, kind: str) -> None:
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", resource(kind).api_version)
        self.items[_key(obj)] = obj

    def _give_up(self, why: str) -> None:
        self.gave_up = why
        self.items.clear()
        self.synced.set()
        log.info("not caching %s: %s; it is read directly", self.key, why)


class CachedReader:
    """A :class:`~oncallm.gathering.reader.KubeReader` that answers from watched lists."""

    def __init__(
        self, api: KubeAPI, direct: KubeReader, settings: CacheSettings | None = None
    ) -> None:
        self.api = api
        self.direct = direct
        self.settings = settings or CacheSettings()
        #: Each watch holds one of the API client's pooled connections (ONCALLM_KUBE_POOL)
        #: for as long as it is open: watches never take more than half of them, or reads and
        #: writes wait for a connection and time out ("API server unreachable").
        pool = getattr(getattr(api, "settings", None), "pool_size", 0)
        self.max_watches = max(
            1, min(self.settings.max_watches, pool // 2) if pool else self.settings.max_watches
        )
        self._lists: OrderedDict[Key, WatchedList] = OrderedDict()
        #: lists given up on (too big, forbidden): read directly, not watched again
        self._direct: set[Key] = set()
        self._janitor: asyncio.Task[None] | None = None
        #: reads answered from memory / passed to the reader behind, for the benchmark
        self.hits = 0
        self.misses = 0

    @property
    def watched(self) -> int:
        return len(self._lists)

    @property
    def objects(self) -> int:
        return sum(len(w.items) for w in self._lists.values())

    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> Obj | None:
        key = self._key(kind, namespace, None, api_version, get=True)
        watched = await self._ready(key)
        if watched is None:
            self.misses += 1
            READS.labels("api").inc()
            return await self.direct.get(kind, namespace, name, api_version=api_version)
        self.hits += 1
        READS.labels("cache").inc()
        return watched.items.get((namespace or "", name) if watched.key[1] else ("", name))

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        api_version: str | None = None,
    ) -> list[Obj]:
        key = self._key(kind, namespace, field_selector, api_version, get=False)
        watched = await self._ready(key)
        if watched is None:
            self.misses += 1
            READS.labels("api").inc()
            return await self.direct.list(
                kind, namespace, label_selector, field_selector, api_version=api_version
            )
        self.hits += 1
        READS.labels("cache").inc()
        items = list(watched.items.values())
        if field_selector and watched.key[2] is None:
            items = [o for o in items if fields_match(field_selector, o)]
        if label_selector:
            terms = _parse_selector(label_selector)
            items = [o for o in items if _labels_match(terms, o)]
        # as the API server lists them (by namespace and name, etcd's order), not in the order
        # the watch saw them arrive: what a rule takes first must not depend on the cache
        items.sort(key=_key)
        return items[:LIST_LIMIT]  # as the direct list answers: its first page

    async def logs(
        self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int
    ) -> str:
        return await self.direct.logs(
            namespace, pod, container, previous=previous, tail_lines=tail_lines
        )

    def _key(
        self,
        kind: str,
        namespace: str | None,
        field_selector: str | None,
        api_version: str | None,
        *,
        get: bool,
    ) -> Key | None:
        """What to watch for this read; None to read directly."""
        if not self.settings.enabled or kind not in CACHED_KINDS:
            return None
        res = RESOURCES.get(kind)
        if res is None or (api_version not in (None, res.api_version)):
            return None
        if not res.namespaced:
            return (kind, None, None)
        if namespace:
            return (kind, namespace, None)
        if get:
            return None
        if field_selector and "," not in field_selector.replace("involvedObject.kind=Node,", ""):
            for prefix in _CLUSTER_SELECTORS.get(kind, ()):
                if field_selector.startswith(prefix):
                    return (kind, None, field_selector)
        return None  # a cluster-wide list of a namespaced kind: too much to keep

    async def _ready(self, key: Key | None) -> WatchedList | None:
        if key is None or key in self._direct:
            return None
        watched = self._lists.get(key)
        if watched is None:
            watched = self._open(key)
        else:
            self._lists.move_to_end(key)
        if await watched.ready(self.settings.sync_timeout):
            return watched
        if watched.gave_up is not None:
            self._direct.add(key)
            self._lists.pop(key, None)
            await watched.stop()
        return None

    def _open(self, key: Key) -> WatchedList:
        while len(self._lists) >= self.max_watches:
            _, oldest = self._lists.popitem(last=False)
            asyncio.get_running_loop().create_task(oldest.stop())
        watched = WatchedList(self.api, key, self.settings.max_objects)
        self._lists[key] = watched
        watched.start()
        if self._janitor is None or self._janitor.done():
            self._janitor = asyncio.create_task(self._sweep())
        return watched

    async def _sweep(self) -> None:
        """Drop lists nobody read for ``idle_seconds``; ends once nothing is watched."""
        interval = max(1.0, min(30.0, self.settings.idle_seconds / 4))
        while self._lists:
            await asyncio.sleep(interval)
            await self.release_idle()

    async def release_idle(self, now: float | None = None) -> int:
        """Stop the watches idle for ``idle_seconds``; how many."""
        now = time.monotonic() if now is None else now
        idle = [k for k, w in self._lists.items() if now - w.last_read > self.settings.idle_seconds]
        for key in idle:
            await self._lists.pop(key).stop()
        return len(idle)

    async def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for watched in list(self._lists.values()):
            await watched.stop()
        self._lists.clear()


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name", "")))


Term = tuple[str, str, frozenset[str]]


def _parse_selector(selector: str) -> list[Term]:
    """``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` as (key, op, values) terms."""
    terms: list[Term] = []
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        for op in (" notin ", " in "):
            if op in raw:
                key, values = raw.split(op, 1)
                vals = frozenset(v.strip() for v in values.strip().strip("()").split(","))
                terms.append((key.strip(), op.strip(), vals))
                break
        else:
            if "!=" in raw:
                key, value = raw.split("!=", 1)
                terms.append((key.strip(), "!=", frozenset({value.strip()})))
            elif "=" in raw:
                key, value = raw.replace("==", "=").split("=", 1)
                terms.append((key.strip(), "=", frozenset({value.strip()})))
            elif raw.startswith("!"):
                terms.append((raw[1:].strip(), "!", frozenset()))
            else:
                terms.append((raw, "exists", frozenset()))
    return terms


def _labels_match(terms: list[Term], obj: Obj) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, values in terms:
        value = labels.get(key)
        if op == "=" and value not in values:
            return False
        if op == "!=" and value in values:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and value in values:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True
