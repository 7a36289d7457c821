"""The order in which waiting analyses run: severity first (``pipeline/queue.py``)."""

from __future__ import annotations

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
