"""Which kinds an API server serves, and where: its discovery documents, read as needed.

``/api/v1`` and ``/apis/{group}/{version}`` list a group-version's resources (plural, kind,
namespaced); ``/apis/{group}`` lists a group's versions, its preferred one first; ``/apis``
lists every group. Every authenticated user may read them (the built-in ``system:discovery``
ClusterRole), so resolving a kind needs no RBAC grant beyond reading the kind itself.

Kinds of OnCallM's own table (:mod:`oncallm.kube.resources`) resolve without a request.
A group-version's list, once read, is kept: a kind found stays found. A kind not found in
the group-version it is asked in is asked again next time (one small request), so a CRD
installed a moment ago is seen at once; concurrent look-ups of one document share a single
request. A kind asked without its ``apiVersion`` is looked for in every group's preferred
version, reading only what was not read before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from oncallm.gathering.reader import split_api_version
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import RESOURCES, Resource

log = logging.getLogger(__name__)

Document = dict[str, Any]


def group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def prefix_of(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


class Discovery:
    """Resolves ``(kind, apiVersion)`` to a :class:`Resource` on one API server."""

    def __init__(self, api: KubeAPI) -> None:
        self.api = api
        #: group-version -> kind -> resource, from documents read so far
        self._lists: dict[str, dict[str, Resource]] = {}
        self._inflight: dict[str, asyncio.Future[Document | None]] = {}

    async def resolve(self, kind: str, api_version: str | None = None) -> Resource | None:
        """Where ``kind`` lives, or None when the server does not serve it.

        ``api_version`` is ``group/version``, ``v1`` (core) or a group alone (its preferred
        version first, then the others). Without it, the table's kind, else the first group
        whose preferred version serves ``kind``. Raises ApiError when discovery itself fails.
        """
        known = RESOURCES.get(kind)
        if known is not None and (api_version is None or _agrees(known, api_version)):
            return known
        if api_version is None:
            return await self._search(kind)
        group, version = split_api_version(api_version)
        if version is not None:
            return await self._in_version(group, version, kind)
        for candidate in await self.versions(group):
            found = await self._in_version(group, candidate, kind)
            if found is not None:
                return found
        return None

    async def versions(self, group: str) -> list[str]:
        """The versions the server serves of ``group``, its preferred one first; [] if none."""
        if not group:
            return ["v1"]
        doc = await self._document(f"/apis/{group}")
        if doc is None:
            return []
        preferred = (doc.get("preferredVersion") or {}).get("version")
        versions = [str(v["version"]) for v in doc.get("versions") or []]
        return sorted(versions, key=lambda v: v != preferred)

    async def served_kinds(self, group: str, version: str) -> dict[str, Resource]:
        """Every kind of a group-version, read afresh; {} when it is not served."""
        doc = await self._document(prefix_of(group, version))
        gv = group_version(group, version)
        if doc is None:
            self._lists.pop(gv, None)
            return {}
        kinds = {}
        for item in doc.get("resources") or []:
            if "/" in str(item.get("name")):  # a subresource: pods/log, deployments/scale
                continue
            kinds[str(item["kind"])] = Resource(
                kind=str(item["kind"]),
                prefix=prefix_of(group, version),
                plural=str(item["name"]),
                namespaced=bool(item.get("namespaced")),
            )
        self._lists[gv] = kinds
        return kinds

    def forget(self, api_version: str | None = None) -> None:
        """Drop what was read of one group-version (or of all): the next look-up reads anew."""
        if api_version is None:
            self._lists.clear()
        else:
            self._lists.pop(api_version, None)

    async def _in_version(self, group: str, version: str, kind: str) -> Resource | None:
        cached = self._lists.get(group_version(group, version), {})
        if kind in cached:
            return cached[kind]
        return (await self.served_kinds(group, version)).get(kind)

    async def _search(self, kind: str) -> Resource | None:
        """``kind`` in the core group or any group's preferred version. One request when
        nothing is new: the group list; only group-versions not read yet are read (a kind
        added to a group-version read before is found through its ``api_version``)."""
        for kinds in self._lists.values():
            if kind in kinds:
                return kinds[kind]
        groups = await self._document("/apis") or {}
        candidates = [("", "v1")]
        for group in groups.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("version")
            if preferred:
                candidates.append((str(group["name"]), str(preferred)))
        unread = [(g, v) for g, v in candidates if group_version(g, v) not in self._lists]

        async def kinds_of(group: str, version: str) -> dict[str, Resource]:
            try:
                return await self.served_kinds(group, version)
            except ApiError as err:  # an aggregated API that is down must not hide the rest
                log.debug("discovery of %s skipped: %s", group_version(group, version), err)
                return {}

        await asyncio.gather(*(kinds_of(g, v) for g, v in unread))
        for group, version in candidates:
            found = self._lists.get(group_version(group, version), {}).get(kind)
            if found is not None:
                return found
        return None

    async def _document(self, path: str) -> Document | None:
        """A discovery document, or None on 404; one request for concurrent callers."""
        future = self._inflight.get(path)
        if future is None:
            future = asyncio.ensure_future(self._fetch(path))
            self._inflight[path] = future
            future.add_done_callback(lambda done: self._done(path, done))
        return await asyncio.shield(future)

    def _done(self, path: str, future: asyncio.Future[Document | None]) -> None:
        self._inflight.pop(path, None)
        if not future.cancelled():
            future.exception()  # retrieved: every caller may have timed out and left

    async def _fetch(self, path: str) -> Document | None:
        try:
            result: Document = await self.api.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        return result


def _agrees(known: Resource, api_version: str) -> bool:
    """Whether ``api_version`` names the table's group (and version, if it has one)."""
    group, version = split_api_version(api_version)
    known_group, known_version = split_api_version(known.api_version)
    return group == known_group and version in (None, known_version)
