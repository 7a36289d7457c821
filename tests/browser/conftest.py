"""Fixtures for browser tests: the web view served from a thread, and headless Chromium.

The view runs on its own event loop in a thread because Selenium blocks: a test drives the
browser synchronously while the server keeps answering. Analyses are planted through
:meth:`ServedView.apply`, which runs ``store.apply_event`` on the server's loop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import AlertAnalysis
from oncallm.web import WebSettings, add_web_routes

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"


class ServedView:
    """The web view on 127.0.0.1 with a free port, in a thread with its own event loop."""

    def __init__(self, settings: WebSettings | None = None) -> None:
        self.settings = settings or WebSettings()
        self.loop = asyncio.new_event_loop()
        self.store: AnalysisStore | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServedView:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self.store = AnalysisStore()
        self.store.synced = True
        app = web.Application()
        add_web_routes(app, self.store, self.settings)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def apply(self, event: str, analysis: AlertAnalysis) -> None:
        """Apply a watch event on the server's loop, as the real watch would."""

        async def apply() -> None:
            assert self.store is not None
            self.store.apply_event(event, analysis.to_kube())

        asyncio.run_coroutine_threadsafe(apply(), self.loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def served_view() -> Iterator[ServedView]:
    """The web view with an empty store; plant analyses with ``served_view.apply``."""
    view = ServedView().start()
    try:
        yield view
    finally:
        view.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Selenium, with its console log kept."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "browser tests need Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="oncallm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Without these, Chromium's background connections are refused on a closed network
        # and show up as errors.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
