"""Field selectors evaluated on objects already in hand (the watch caches, the in-memory
reader), as the API server evaluates them: ``spec.nodeName=worker-2``, ``status.phase!=Failed``,
``spec.unschedulable=true``."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def field(obj: Obj, path: str) -> Any:
    """The value at a dotted path (``involvedObject.name``), None when a step is missing."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def field_text(value: object) -> str:
    """A field as a field selector compares it: booleans as ``true``/``false``, absent as ``""``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value or "")


def fields_match(selector: str, obj: Obj) -> bool:
    """Whether ``obj`` satisfies every ``key=value`` / ``key!=value`` term of ``selector``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if field_text(field(obj, key)) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if field_text(field(obj, key)) != value:
                return False
    return True
