"""What gathering needs from a cluster: read objects, list them, read logs.

Two implementations: :class:`oncallm.kube.reader.ApiReader` (the real API server) and
:class:`oncallm.gathering.memory.MemoryReader` (objects in memory: unit tests and offline
evaluation of scenarios). Objects are plain dicts in their JSON form.
"""

from __future__ import annotations

from typing import Any, Protocol


class SourceError(Exception):
    """A source could not be read (forbidden, timed out, server error); the analysis goes on."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class KubeReader(Protocol):
    """Read-only access to a cluster. ``kind`` is the object's Kind, e.g. ``"Pod"``."""

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist. Raises SourceError otherwise."""
        ...

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a kind; ``namespace=None`` lists across namespaces."""
        ...

    async def logs(
        self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int
    ) -> str:
        """A container's log tail. Raises SourceError when there is none."""
        ...
