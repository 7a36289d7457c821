"""What gathering needs from a cluster: read objects, list them, read logs.

Two implementations: :class:`oncallm.kube.reader.ApiReader` (the real API server) and
:class:`oncallm.gathering.memory.MemoryReader` (objects in memory: unit tests and offline
evaluation of scenarios). Objects are plain dicts in their JSON form.

Any kind can be read, built-in or custom: name it by ``kind`` and, for a kind outside
OnCallM's table of built-in kinds (:mod:`oncallm.kube.resources`), by ``api_version`` too
(``"external-secrets.io/v1beta1"``, or the group alone, ``"external-secrets.io"``, for
whichever version the cluster serves). A kind the cluster does not serve reads as absent:
``get`` answers None and ``list`` an empty list, never an error.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?")


def split_api_version(api_version: str) -> tuple[str, str | None]:
    """(group, version) of an ``apiVersion``; the core group is ``""``; a group alone has
    version None: ``"v1"`` -> ``("", "v1")``, ``"apps/v1"`` -> ``("apps", "v1")``,
    ``"cert-manager.io"`` -> ``("cert-manager.io", None)``."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    if _VERSION.fullmatch(api_version):
        return "", api_version
    return api_version, None


class SourceError(Exception):
    """A source could not be read (forbidden, timed out, server error); the analysis goes on."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class KubeReader(Protocol):
    """Read-only access to a cluster. ``kind`` is the object's Kind, e.g. ``"Pod"``;
    ``api_version`` (see :func:`split_api_version`) picks the group of a kind outside the
    built-in table, or a version other than the table's."""

    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it or its kind does not exist. Raises SourceError
        otherwise (forbidden, timed out, server error)."""
        ...

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        api_version: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a kind; ``namespace=None`` lists across namespaces; ``[]`` when the
        cluster does not serve the kind. Raises SourceError otherwise."""
        ...

    async def logs(
        self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int
    ) -> str:
        """A container's log tail. Raises SourceError when there is none."""
        ...
