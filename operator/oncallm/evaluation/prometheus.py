"""A Prometheus serving the scenarios' ``metrics:`` for ``oncallm eval`` and ``oncallm demo``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from oncallm.controlplane.cluster import free_port
from oncallm.scenarios.metrics import backfill
from oncallm.scenarios.model import Scenario

#: How long Prometheus may take to load the backfilled blocks and say ready.
READY_TIMEOUT = 60.0


@contextmanager
def scenario_prometheus(scenarios: list[Scenario]) -> Iterator[str | None]:
    """The URL of a Prometheus holding every scenario's series (None when there are none, or
    when Debian's ``prometheus`` package is not installed)."""
    binary = shutil.which("prometheus")
    if binary is None or not any(s.metrics for s in scenarios):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="oncallm-prometheus-") as tmp:
        folder = Path(tmp)
        backfill(scenarios, datetime.now(UTC), folder / "data")
        (folder / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
        port = free_port()
        log = (folder / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=30d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, folder / "prometheus.log")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)
            log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Prometheus exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"Prometheus at {url} not ready after {READY_TIMEOUT:.0f} s")
