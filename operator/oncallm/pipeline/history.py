"""Earlier analyses of the same alert, from the AlertAnalysis events the operator receives.

Every AlertAnalysis event already reaches the operator (:mod:`oncallm.handlers.alertanalysis`);
keeping a few fields of each by fingerprint answers the ``history`` source without a list call
per analysis. Bounded: the oldest entries go first past ``max_entries``.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

from oncallm.models.alert import Alert
from oncallm.models.evidence import HistorySnapshot

#: Root causes kept per entry: the history item shows the start of it.
ROOT_CAUSE_CHARS = 400


_Entry = tuple[str, str | None, str | None, str | None, str | None]


def _shared(value: object) -> str | None:
    """``value`` as one string object however many entries hold it: the phase, the category
    and an incident's root cause are the same text across thousands of analyses."""
    return sys.intern(value) if isinstance(value, str) else None


class HistoryIndex:
    """Analyses by fingerprint: name, firing time, phase, category, root cause."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max(1, max_entries)
        #: name -> (fingerprint, startsAt, phase, category, root cause): plain tuples, as
        #: thousands are kept
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_fingerprint: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, event_type: str | None, body: dict[str, Any]) -> None:
        """One watch event (``DELETED`` removes; anything else adds or replaces)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name", ""))
        if not name:
            return
        self._remove(name)
        if event_type == "DELETED":
            return
        alert = (body.get("spec") or {}).get("alert") or {}
        fingerprint = str(alert.get("fingerprint", ""))
        status = body.get("status") or {}
        root_cause = status.get("rootCause")
        self._entries[name] = (
            fingerprint,
            str(alert["startsAt"]) if alert.get("startsAt") else None,
            _shared(status.get("phase")),
            _shared(status.get("category")),
            _shared(root_cause[:ROOT_CAUSE_CHARS] if isinstance(root_cause, str) else None),
        )
        self._by_fingerprint.setdefault(fingerprint, set()).add(name)
        while len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))

    def _remove(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        names = self._by_fingerprint.get(entry[0])
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_fingerprint[entry[0]]

    async def earlier(self, alert: Alert, exclude: str | None) -> list[HistorySnapshot]:
        """Analyses of the same fingerprint but ``exclude``, newest firing first."""
        names = self._by_fingerprint.get(alert.fingerprint, set())
        out = [
            HistorySnapshot(
                analysis=n,
                starts_at=e[1],
                phase=e[2],
                category=e[3],
                root_cause=e[4],
            )
            for n in names
            if n != exclude and (e := self._entries.get(n)) is not None
        ]
        out.sort(key=lambda h: h.starts_at or "", reverse=True)
        return out
