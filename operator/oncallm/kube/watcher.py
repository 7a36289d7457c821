"""Keep an :class:`~oncallm.kube.store.AnalysisStore` current: list, then watch, forever."""

from __future__ import annotations

import asyncio
import logging
import random

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.kube.store import AnalysisStore

log = logging.getLogger(__name__)

#: Seconds a watch stays open before it is renewed; the API server caps it near this anyway.
WATCH_SECONDS = 240
#: Longest pause between attempts while the API server is away.
MAX_BACKOFF = 15.0


async def keep_current(api: KubeAPI, store: AnalysisStore, namespace: str | None) -> None:
    """Run until cancelled: relist on start and whenever the watch cannot resume."""
    path = resource("AlertAnalysis").path(namespace)
    backoff = 0.5
    while True:
        try:
            listing = await api.request("GET", path)
            store.replace(listing.get("items", []))
            version = listing.get("metadata", {}).get("resourceVersion")
            backoff = 0.5
            while True:
                async for event in api.watch(
                    path, resource_version=version, timeout_seconds=WATCH_SECONDS
                ):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        raise ApiError(int(obj.get("code", 500)), str(obj.get("message", "")))
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if kind != "BOOKMARK":
                        store.apply_event(str(kind), obj)
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            if err.status != 410:
                log.warning(
                    "watching AlertAnalyses failed (%s); retrying in %.1f s. "
                    "Check that the API server is reachable and the CRDs are installed.",
                    err,
                    backoff,
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(MAX_BACKOFF, backoff * 2)
