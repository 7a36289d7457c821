"""Real Prometheus and Alertmanager (Debian's packages) started for a test."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.controlplane.cluster import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS = shutil.which("prometheus")

needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="Alertmanager is not installed: apt-get install prometheus-alertmanager (.ci/run does)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Prometheus is not installed: apt-get install prometheus (.ci/run does)",
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _wait_ready(url: str, server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{server.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s:\n{server.tail()}")


@contextmanager
def alertmanager(folder: Path, webhook_url: str, token: str, **route: Any) -> Iterator[Server]:
    """Alertmanager whose only receiver is OnCallM's webhook, with a bearer token."""
    assert ALERTMANAGER is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "route": {
            "receiver": "oncallm",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "2s",
            "repeat_interval": "3s",
            **route,
        },
        "receivers": [
            {
                "name": "oncallm",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
    log = folder / "alertmanager.log"
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server.url + "/-/ready", server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def prometheus(
    folder: Path, alertmanager_url: str, targets: list[str], rules: dict[str, Any]
) -> Iterator[Server]:
    """Prometheus scraping ``targets`` as job kube-state-metrics and alerting to Alertmanager."""
    assert PROMETHEUS is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {"job_name": "kube-state-metrics", "static_configs": [{"targets": targets}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = folder / "prometheus.log"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server.url + "/-/ready", server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
