"""Run the sidecar: the webhook, the report web view, health and metrics on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from oncallm.intake.app import build_app
from oncallm.intake.settings import IntakeSettings
from oncallm.kube import watcher
from oncallm.kube.api import ApiError, ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import TRANSCRIPT_KEY

log = logging.getLogger(__name__)


@dataclass
class RunningSidecar:
    app: web.Application
    store: AnalysisStore
    url: str


def _add_web_view(
    app: web.Application, api: KubeAPI, store: AnalysisStore, settings: IntakeSettings
) -> None:
    from oncallm.web import WebSettings, add_web_routes

    web_settings = WebSettings.from_env()
    if settings.report_base_url and not web_settings.base_url:
        web_settings.base_url = settings.report_base_url

    async def transcripts(namespace: str, name: str) -> str | None:
        # the analysis's own ConfigMap, read on demand: transcripts stay out of the store
        try:
            cm = await api.request("GET", resource("ConfigMap").path(namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        return str(((cm or {}).get("data") or {}).get(TRANSCRIPT_KEY, "")) or None

    add_web_routes(app, store, web_settings, transcripts)


@asynccontextmanager
async def running_sidecar(
    settings: IntakeSettings, client: ClientSettings | None = None
) -> AsyncIterator[RunningSidecar]:
    """The sidecar serving in this event loop until the block ends."""
    api = await KubeAPI.connect(client)
    store = AnalysisStore()
    watch = asyncio.create_task(watcher.keep_current(api, store, settings.namespace))
    app = build_app(api, store, settings)
    _add_web_view(app, api, store, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = settings.port
    if port == 0 and site._server is not None:  # an ephemeral port (tests)
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    try:
        yield RunningSidecar(app=app, store=store, url=f"http://{host}:{port}")
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await runner.cleanup()
        await api.close()


async def serve(settings: IntakeSettings | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    settings = settings or IntakeSettings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_sidecar(settings) as sidecar:
        log.info(
            "OnCallM sidecar listening on %s (AlertAnalyses in namespace %s%s)",
            sidecar.url,
            settings.namespace,
            ", bearer token required"
            if settings.token
            else ", no token: set ONCALLM_WEBHOOK_TOKEN",
        )
        await stop.wait()
