"""The real cluster as a :class:`~oncallm.gathering.reader.KubeReader`.

Kinds outside OnCallM's table are found through discovery (:mod:`oncallm.kube.discovery`);
a kind the cluster does not serve reads as absent (None, []), not as an error.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from oncallm.gathering.reader import SourceError
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.discovery import Discovery
from oncallm.kube.resources import RESOURCES, Resource, resource

#: Most objects of one kind gathering reads in one list call: enough for any workload's
#: pods or a namespace's events, bounded so a huge namespace cannot stall an analysis.
LIST_LIMIT = 500
#: Seconds a node's pod list is shared between analyses. In an alert storm many analyses
#: look at the same few nodes, and decoding a node's ~100-250 pods dominated the operator's
#: CPU; a node's picture a few seconds old is as good for a diagnosis.
NODE_PODS_TTL = 5.0

#: Objects as JSON dicts (an alias: inside the class, ``list`` is the method's name).
Objects = list[dict[str, Any]]


class ApiReader:
    """Reads through :class:`KubeAPI`; errors become :class:`SourceError`."""

    def __init__(self, api: KubeAPI, discovery: Discovery | None = None) -> None:
        self.api = api
        self.discovery = discovery or Discovery(api)
        self._node_pods: dict[str, tuple[float, asyncio.Future[Objects]]] = {}

    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> dict[str, Any] | None:
        res = await self._resource(kind, api_version)
        if res is None:
            return None
        try:
            result: dict[str, Any] = await self.api.request("GET", res.path(namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise SourceError(_source(kind, api_version), _reason(err)) from err
        return result

    async def _resource(self, kind: str, api_version: str | None) -> Resource | None:
        try:
            return await self.discovery.resolve(kind, api_version)
        except ApiError as err:
            raise SourceError(_source(kind, api_version), f"discovery: {_reason(err)}") from err

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        api_version: str | None = None,
    ) -> list[dict[str, Any]]:
        if (
            kind == "Pod"
            and api_version in (None, "v1")
            and namespace is None
            and field_selector
            and not label_selector
        ):
            if field_selector.startswith("spec.nodeName=") and "," not in field_selector:
                return await self._pods_on_node(field_selector)
        return await self._list(kind, namespace, label_selector, field_selector, api_version)

    async def _pods_on_node(self, field_selector: str) -> Objects:
        """A node's pods, one request shared by every analysis asking within NODE_PODS_TTL."""
        now = time.monotonic()
        cached = self._node_pods.get(field_selector)
        if cached is not None and now - cached[0] < NODE_PODS_TTL:
            if not cached[1].done() or cached[1].exception() is None:
                return await asyncio.shield(cached[1])
        future: asyncio.Future[Objects] = asyncio.ensure_future(
            self._list("Pod", None, None, field_selector)
        )
        self._node_pods[field_selector] = (now, future)
        for key in [k for k, (t, _) in self._node_pods.items() if now - t >= NODE_PODS_TTL]:
            del self._node_pods[key]
        return await asyncio.shield(future)

    async def _list(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        api_version: str | None = None,
    ) -> Objects:
        res = await self._resource(kind, api_version)
        if res is None:
            return []
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": LIST_LIMIT,
        }
        try:
            result = await self.api.request("GET", res.path(namespace), query=query)
        except ApiError as err:
            if err.status == 404 and res.kind not in RESOURCES:
                self.discovery.forget(res.api_version)  # its CRD was removed since
                return []
            raise SourceError(_source(kind, api_version), _reason(err)) from err
        items: list[dict[str, Any]] = result.get("items", [])
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", res.api_version)
        return items

    async def logs(
        self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int
    ) -> str:
        path = resource("Pod").path(namespace, pod) + "/log"
        query = {
            "container": container,
            "previous": "true" if previous else None,
            "tailLines": tail_lines,
        }
        try:
            return await self.api.text(path, query=query)
        except ApiError as err:
            which = "previous log" if previous else "log"
            raise SourceError(f"{which} {pod}/{container}", _reason(err)) from err


def _source(kind: str, api_version: str | None) -> str:
    return f"{kind} ({api_version})" if api_version else kind


def _reason(err: ApiError) -> str:
    if err.status == 403:
        return f"forbidden: {err.message} (grant OnCallM's ServiceAccount read access)"
    if err.status == 0:
        return err.message
    return f"{err.status}: {err.message}"
