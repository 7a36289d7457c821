"""What every benchmark shares: realistic alerts, fresh namespaces, statistics, process memory."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from oncallm.kube.api import KubeAPI
from oncallm.scenarios.model import fingerprint
from oncallm.scenarios.plant import ensure_namespace

#: The kube-state-metrics rule behind KubePodCrashLooping, as Prometheus links to it.
CRASHLOOP_GENERATOR_URL = (
    "http://prometheus-k8s-0:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting"
    "_reason%7Breason%3D%22CrashLoopBackOff%22%2Cjob%3D%22kube-state-metrics%22%7D%5B5m%5D%29"
    "+%3E%3D+1&g0.tab=1"
)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def pod_name(deployment: str, index: int, template_hash: str = "7d9f8c6b5") -> str:
    """A ReplicaSet pod's name, ``<deployment>-<hash>-<5 characters>``: looks random, and
    distinct for every index below 27**5 (a multiplication that permutes the suffixes)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    space = len(alphabet) ** 5
    n = (index * 7919 + 104729) % space  # 7919 is prime to 27**5: a bijection
    suffix = ""
    for _ in range(5):
        n, digit = divmod(n, len(alphabet))
        suffix += alphabet[digit]
    return f"{deployment}-{template_hash}-{suffix}"


def crashloop_alert(
    namespace: str,
    pod: str,
    *,
    container: str = "api",
    starts: datetime | None = None,
    severity: str = "warning",
) -> dict[str, Any]:
    """A KubePodCrashLooping alert as Alertmanager 0.27 sends it (kube-prometheus rules)."""
    labels = {
        "alertname": "KubePodCrashLooping",
        "container": container,
        "endpoint": "https-main",
        "instance": "10.42.0.23:8443",
        "job": "kube-state-metrics",
        "namespace": namespace,
        "pod": pod,
        "prometheus": "monitoring/k8s",
        "service": "kube-state-metrics",
        "severity": severity,
    }
    started = starts or datetime.now(UTC) - timedelta(minutes=4)
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "description": (
                f"Pod {namespace}/{pod} ({container}) is in waiting state "
                '(reason: "CrashLoopBackOff").'
            ),
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
            "summary": "Pod is crash looping.",
        },
        "startsAt": rfc3339(started),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": CRASHLOOP_GENERATOR_URL,
        "fingerprint": fingerprint(labels),
    }


def notification(alerts: list[dict[str, Any]], receiver: str = "oncallm") -> dict[str, Any]:
    """A webhook notification (version 4) grouping ``alerts`` by alertname, as Alertmanager does."""
    name = alerts[0]["labels"]["alertname"] if alerts else "KubePodCrashLooping"
    return {
        "receiver": receiver,
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "job": "kube-state-metrics", "severity": "warning"},
        "commonAnnotations": {"summary": "Pod is crash looping."},
        "externalURL": "http://alertmanager-main.monitoring.svc:9093",
        "version": "4",
        "groupKey": f'{{}}/{{severity=~"warning|critical"}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
    }


async def fresh_namespace(api: KubeAPI, purpose: str) -> str:
    """A new namespace named after what it is for; left in place (the control plane is
    thrown away at the end, and deleting thousands of objects mid-run would load the API
    server during the next measurement)."""
    name = f"bench-{purpose}-{secrets.token_hex(3)}"
    await ensure_namespace(api, name)
    return name


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with ``pct`` % of values at or below."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}: is it a zombie?")


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll ``check`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by this process and by named other processes between start and stop."""

    def __init__(self, others: dict[str, int] | None = None) -> None:
        self.others = others or {}
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {"bench": time.process_time()}
        for name, pid in self.others.items():
            try:
                now[name] = cpu_seconds(pid)
            except OSError:
                now[name] = math.nan
        return now

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        end = self._now()
        self.used = {k: round(end[k] - self._start[k], 3) for k in end}
        return self.used


async def wait_crds_served(api: KubeAPI, namespace: str, timeout: float = 60.0) -> None:
    """Wait until OnCallM's custom resources can be listed.

    Right after the CRDs are installed the API server answers 429 "storage is
    (re)initializing" for a while; the operator's startup would then wait 60 s for kopf's
    retry of its startup activity, which is not what a benchmark means to measure."""
    from oncallm.kube.api import ApiError
    from oncallm.kube.resources import resource

    async def served() -> bool:
        try:
            for kind in ("AlertAnalysis", "AnalysisPolicy"):
                await api.request("GET", resource(kind).path(namespace), query={"limit": 1})
        except ApiError as err:
            if err.transient:
                return False
            raise
        return True

    await wait_until(served, timeout=timeout, what="the CRDs to be served")
