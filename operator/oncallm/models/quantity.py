"""Kubernetes resource quantities (``250m``, ``512Mi``, ``1e3``) as numbers, and back.

One home for the parsing that gathering (requested resources on a node), evidence (a quota at
its limit) and the rules (memory against the limit) all need.
"""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")

_SUFFIXES: dict[str, float] = {
    "": 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}


def parse_quantity(text: str | None) -> float | None:
    """A quantity in base units (cores, bytes, counts); None when it does not parse."""
    if not text:
        return None
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIXES:
        return None
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def format_quantity(resource: str, value: float) -> str:
    """A sum of quantities as ``kubectl describe node`` shows it: CPU in millicores, memory
    and ephemeral storage in Mi, anything else as a plain number."""
    if resource == "cpu":
        return f"{round(value * 1000)}m"
    if resource in ("memory", "ephemeral-storage"):
        return f"{round(value / 1024**2)}Mi"
    return f"{value:g}"
