"""The real cluster as a :class:`~oncallm.gathering.reader.KubeReader`."""

from __future__ import annotations

from typing import Any

from oncallm.gathering.reader import SourceError
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource

#: Most objects of one kind gathering reads in one list call: enough for any workload's
#: pods or a namespace's events, bounded so a huge namespace cannot stall an analysis.
LIST_LIMIT = 500


class ApiReader:
    """Reads through :class:`KubeAPI`; errors become :class:`SourceError`."""

    def __init__(self, api: KubeAPI) -> None:
        self.api = api

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.api.request(
                "GET", resource(kind).path(namespace, name)
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise SourceError(kind, _reason(err)) from err
        return result

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": LIST_LIMIT,
        }
        try:
            result = await self.api.request("GET", resource(kind).path(namespace), query=query)
        except ApiError as err:
            raise SourceError(kind, _reason(err)) from err
        items: list[dict[str, Any]] = result.get("items", [])
        for item in items:
            item.setdefault("kind", kind)
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


def _reason(err: ApiError) -> str:
    if err.status == 403:
        return f"forbidden: {err.message} (grant OnCallM's ServiceAccount read access)"
    if err.status == 0:
        return err.message
    return f"{err.status}: {err.message}"
