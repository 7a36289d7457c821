"""An in-memory store of AlertAnalyses, kept current by a watch.

The webhook's index of known alerts and the web view both read it, so neither makes a list
call per request. :meth:`AnalysisStore.apply_event` takes watch events (``ADDED``,
``MODIFIED``, ``DELETED``) and is what tests call to plant analyses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from oncallm.models.analysis import AlertAnalysis


class AnalysisStore:
    """AlertAnalyses by (namespace, name), with a version that moves on every change."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], AlertAnalysis] = {}
        self._by_fingerprint: dict[str, set[tuple[str, str]]] = {}
        self._changed = asyncio.Event()
        self.version = 0
        #: True once the first full list has been loaded.
        self.synced = False

    def __len__(self) -> int:
        return len(self._items)

    def get(self, namespace: str, name: str) -> AlertAnalysis | None:
        return self._items.get((namespace, name))

    def all(self) -> list[AlertAnalysis]:
        return list(self._items.values())

    def by_fingerprint(self, fingerprint: str) -> list[AlertAnalysis]:
        """Every stored analysis of an alert, any firing of it."""
        keys = self._by_fingerprint.get(fingerprint, set())
        return [self._items[k] for k in keys if k in self._items]

    def apply_event(self, event_type: str, obj: dict[str, Any]) -> None:
        """Apply one watch event; objects that do not parse are ignored (never raise)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self._remove(key)
        else:
            known = self._items.get(key)
            version = meta.get("resourceVersion")
            if known is not None and version and known.metadata.get("resourceVersion") == version:
                return  # the watch echoing a write this process already applied

            try:
                analysis = AlertAnalysis.model_validate(obj)
            except ValidationError:
                return
            self._remove(key)
            self._items[key] = analysis
            fp = analysis.spec.alert.fingerprint
            self._by_fingerprint.setdefault(fp, set()).add(key)
        self._bump()

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """Replace everything with a fresh list (after a list call or a watch restart)."""
        self._items.clear()
        self._by_fingerprint.clear()
        for obj in objects:
            self.apply_event("ADDED", obj)
        self.synced = True
        self._bump()

    def _remove(self, key: tuple[str, str]) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            keys = self._by_fingerprint.get(old.spec.alert.fingerprint)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_fingerprint[old.spec.alert.fingerprint]

    def _bump(self) -> None:
        self.version += 1
        # Wake every waiter, then give later waiters a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, since: int, wait: float) -> int:
        """Wait until the version moves past ``since`` or ``wait`` seconds pass."""
        event = self._changed
        if self.version <= since:
            try:
                await asyncio.wait_for(event.wait(), wait)
            except TimeoutError:
                pass
        return self.version
