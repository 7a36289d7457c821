"""Memory: the operator's (and the sidecar's) resident memory with 5,000 stored analyses.

Both run as their own processes (``python -m oncallm operator`` and ``python -m oncallm
webhook``), as in the pod. Their RSS (VmRSS of /proc/<pid>/status) is read once it is steady,
once with a namespace holding no analyses (the baseline) and once with a namespace holding
``count`` Completed ones, so the figure is a difference measured in one run.

The analyses are written directly (create, then the status subresource), already Completed
with a status as the rules write it (evidence, commands, actions, timings): the state after
the operator has analysed them all and restarted. kopf only hands each AlertAnalysis event to
the operator's own queue and writes nothing on the objects, so there is no "handled" mark to
plant; the operator has seen them all when its ``oncallm_analyses_known`` metric says so, and
``oncallm_analyses_queued_total`` counts any it would analyse again (none: they are Completed).
A restart over analyses that are not finished is the storm benchmark's last phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    crashloop_alert,
    fresh_namespace,
    median,
    mib,
    notification,
    pod_name,
    rfc3339,
    rss_kib,
    wait_crds_served,
)
from oncallm.controlplane.cluster import free_port
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.kube.api import ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.alert import Alert
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    AlertSpec,
    Category,
    Condition,
    EvidenceRef,
    EvidenceSource,
    Phase,
    StageTimings,
    TargetRef,
)

#: How long RSS must stay within 1 % before it is read.
STEADY_SECONDS = 3.0


@dataclass
class MemoryResult:
    count: int
    #: analyses the operator saw, and of them queued to analyse (its /metrics)
    seen: int = 0
    queued: int = 0
    operator_baseline_kib: int = 0
    operator_full_kib: int = 0
    sidecar_baseline_kib: int = 0
    sidecar_full_kib: int = 0
    fill_s: float = 0.0
    operator_seen_s: float = 0.0
    object_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["operator_delta_kib"] = self.operator_full_kib - self.operator_baseline_kib
        data["sidecar_delta_kib"] = self.sidecar_full_kib - self.sidecar_baseline_kib
        return data

    def lines(self) -> list[str]:
        op = self.operator_full_kib - self.operator_baseline_kib
        how = f"after a restart, {self.seen} seen, {self.queued} queued to analyse again"
        out = [
            f"memory: operator RSS with {self.count} Completed analyses ({how}): "
            f"{mib(self.operator_full_kib)} (0 analyses: {mib(self.operator_baseline_kib)}; "
            f"+{mib(op)}, {op / self.count:.1f} KiB per analysis; "
            f"all seen {self.operator_seen_s:.0f} s after start)"
        ]
        if self.sidecar_full_kib:
            sc = self.sidecar_full_kib - self.sidecar_baseline_kib
            out.append(
                f"memory: sidecar RSS with the same {self.count} in its store: "
                f"{mib(self.sidecar_full_kib)} (0 analyses: {mib(self.sidecar_baseline_kib)}; "
                f"+{mib(sc)}, {sc / self.count:.1f} KiB per analysis)"
            )
        out.append(
            f"  ({self.count} analyses of ~{self.object_bytes / 1024:.1f} KiB each as JSON "
            f"written in {self.fill_s:.0f} s)"
        )
        return out


def completed_analysis(
    alert: dict[str, Any], payload: dict[str, Any], namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An AlertAnalysis body and the Completed status the rules would give it (the
    ``orders-db`` has-no-endpoints diagnosis)."""
    parsed = Alert.model_validate(alert)
    name = analysis_name(parsed)
    pod = parsed.labels["pod"]
    ns = parsed.labels["namespace"]
    received = datetime.now(UTC) - timedelta(hours=2)
    body = AlertAnalysis(
        metadata={"name": name, "namespace": namespace, "labels": analysis_labels(parsed)},
        spec=AlertAnalysisSpec(
            alert=AlertSpec.from_alert(parsed),
            receiver=payload["receiver"],
            group_key=payload["groupKey"],
            external_url=payload["externalURL"],
            received_at=rfc3339(received),
        ),
    ).to_kube()
    body.pop("status", None)
    done = rfc3339(received + timedelta(seconds=3))
    dependency = (
        f"Service {ns}/orders-db port 5432/TCP->5432 that api in pod {pod} depends on has no "
        "endpoints (0 ready, 0 not ready): its selector app=orders-db matches no pods (is the "
        "workload scaled to zero?); connections to it fail ('orders.db.DatabaseUnavailable: "
        f"could not connect to orders-db:5432') and api in pod {pod} crash-loops."
    )
    status = AlertAnalysisStatus(
        phase=Phase.COMPLETED,
        reason="",
        target=TargetRef(kind="Pod", namespace=ns, name=pod, container="api"),
        target_display=f"pod/{ns}/{pod}",
        severity="warning",
        summary=f"Service orders-db has no endpoints, so api in pod {pod} cannot reach it "
        "and crash-loops.",
        root_cause=dependency,
        short_root_cause=dependency[:79] + "…",
        category=Category("dependency_unreachable"),
        confidence=0.91,
        impact=f"Deployment {ns}/orders-api has 0/3 ready replicas; everything that needs "
        "orders-db fails until it has ready endpoints again.",
        immediate_actions=[
            "Bring back the pods behind Service orders-db: check that the workload with labels "
            "app=orders-db exists, is scaled up and ready.",
            f"Once orders-db has endpoints, api in pod {pod} recovers on its next restart; no "
            "change to it is needed.",
        ],
        recommendations=[
            "Let the client retry with back-off instead of exiting, and report the dependency "
            "in readiness, not liveness, so an outage downstream does not crash-loop this "
            "service.",
            "Alert on the dependency directly (e.g. KubeStatefulSetReplicasMismatch or endpoint "
            "count of orders-db).",
        ],
        evidence=[
            EvidenceRef(
                id="service/orders-db",
                source=EvidenceSource("service"),
                object=f"service/{ns}/orders-db",
                excerpt="dependency service, ClusterIP 10.96.44.12 ports 5432/TCP->5432; "
                "selector app=orders-db; 0 ready / 0 not ready endpoints (no ready endpoints); "
                "0 matching pods",
            ),
            EvidenceRef(
                id=f"log/{pod}/api/previous#L16",
                source=EvidenceSource("log"),
                object=f"pod/{ns}/{pod}/api",
                excerpt="orders.db.DatabaseUnavailable: could not connect to orders-db:5432",
            ),
            EvidenceRef(
                id=f"container/{pod}/api",
                source=EvidenceSource("containerStatus"),
                object=f"pod/{ns}/{pod}",
                excerpt="container api (ghcr.io/acme/orders-api:3.8.1); waiting "
                f"CrashLoopBackOff: back-off 5m0s restarting failed container=api pod={pod}; "
                "last state terminated Error exit code 1; restarts 9, ready false; limits "
                "cpu=1,memory=512Mi; requests cpu=250m,memory=256Mi",
                time=done,
            ),
        ],
        commands=[
            f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name=orders-db -o wide",
            f"kubectl -n {ns} describe service orders-db",
            f"kubectl -n {ns} get pods -l app=orders-db -o wide",
            f"kubectl -n {ns} describe pod {pod}",
            f"kubectl -n {ns} logs {pod} -c api --previous",
        ],
        analyzer="rules",
        policy="(built-in default)",
        timings=StageTimings(gathering=1.69, analyzing=0.35, reporting=0.25, total=2.29),
        notes=[],
        report_config_map=f"{name}-report",
        report_url=f"/analyses/{namespace}/{name}",
        started_at=rfc3339(received + timedelta(seconds=1)),
        completed_at=done,
        attempts=1,
        conditions=[
            Condition(
                type="Analyzed",
                status="True",
                reason="Completed",
                message="analysed by rules",
                last_transition_time=done,
            ),
            Condition(
                type="ModelUpgradePending",
                status="False",
                reason="NotPending",
                message="",
                last_transition_time=done,
            ),
        ],
        observed_generation=1,
    ).to_kube()
    return body, status


async def fill(api: KubeAPI, namespace: str, count: int, concurrency: int = 32) -> int:
    """Write ``count`` Completed analyses of pods of 50 teams; the size of one as JSON."""
    import json

    teams = 50
    alerts = [
        crashloop_alert(f"team-{i % teams:02d}", pod_name("orders-api", i // teams))
        for i in range(count)
    ]
    payload = notification(alerts[:1])
    path = resource("AlertAnalysis").path(namespace)
    limit = asyncio.Semaphore(concurrency)
    size = 0

    async def one(alert: dict[str, Any]) -> None:
        nonlocal size
        body, status = completed_analysis(alert, payload, namespace)
        async with limit:
            await api.request("POST", path, body=body)
            done = await api.request(
                "PATCH",
                f"{path}/{body['metadata']['name']}/status",
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        size = len(json.dumps(done))

    await asyncio.gather(*(one(a) for a in alerts))
    return size


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "oncallm", *argv],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def steady_rss(proc: subprocess.Popen[bytes], log: Path) -> int:
    """RSS once it has stayed within 1 % for :data:`STEADY_SECONDS`."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}; see {log}")
        now = time.monotonic()
        samples.append((now, rss_kib(proc.pid)))
        recent = [kib for t, kib in samples if t >= now - STEADY_SECONDS]
        if samples[0][0] <= now - STEADY_SECONDS and max(recent) <= min(recent) * 1.01:
            return int(median(recent))
        await asyncio.sleep(0.5)
    return samples[-1][1]


class LogCounter:
    """Counts lines of a growing log that contain a text, reading only what is new."""

    def __init__(self, log: Path, text: str) -> None:
        self.log = log
        self.text = text.encode()
        self.found = 0
        self._offset = 0
        self._partial = b""

    def update(self) -> int:
        if not self.log.exists():
            return self.found
        with self.log.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        self.found += sum(1 for line in lines if self.text in line)
        return self.found


async def _wait_log(
    proc: subprocess.Popen[bytes], log: Path, text: str, count: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    counter = LogCounter(log, text)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}; see {log}")
        if counter.update() >= count:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(
        f"{counter.found} of {count} {text.strip()!r} lines in {log} after {timeout:.0f} s"
    )


async def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sidecar exited with {proc.returncode}; see {log}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            status = await asyncio.to_thread(_get_status, url)
            if status == 200:
                return
        await asyncio.sleep(0.3)
    raise TimeoutError(f"the sidecar at {url} was not ready after {timeout:.0f} s; see {log}")


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


async def measure(
    kubeconfig: str, namespace: str, count: int, folder: Path, *, sidecar: bool
) -> tuple[int, int, float, dict[str, float]]:
    """(operator RSS, sidecar RSS or 0, seconds until the operator had seen every analysis,
    the operator's counts: ``oncallm_analyses_known`` and ``oncallm_analyses_queued_total``)."""
    metrics_port = free_port()
    env = {
        "KUBECONFIG": kubeconfig,
        "ONCALLM_NAMESPACE": namespace,
        "ONCALLM_OPERATOR_HEALTH_PORT": str(free_port()),
        "ONCALLM_OPERATOR_METRICS_PORT": str(metrics_port),
        "ONCALLM_LOG_LEVEL": "INFO",
    }
    for key in ("ONCALLM_LLM_BASE_URL", "OPENAI_API_KEY"):
        os.environ.pop(key, None)
    op_log = folder / f"operator-{namespace}.log"
    started = time.monotonic()
    operator = _spawn(["operator"], env, op_log)
    side: subprocess.Popen[bytes] | None = None
    try:
        side_rss = 0
        if sidecar:
            port = free_port()
            side_log = folder / f"sidecar-{namespace}.log"
            side = _spawn(
                ["webhook"],
                {**env, "ONCALLM_HOST": "127.0.0.1", "ONCALLM_PORT": str(port)},
                side_log,
            )
            await _wait_ready(side, f"http://127.0.0.1:{port}/readyz", side_log, timeout=120)
        await _wait_log(operator, op_log, "OnCallM operator ready", 1, timeout=120)
        counts = await _wait_known(operator, metrics_port, count, op_log, timeout=300)
        seen = time.monotonic() - started
        op_rss = await steady_rss(operator, op_log)
        counts = await asyncio.to_thread(_operator_counts, metrics_port)
        if side is not None:
            side_rss = await steady_rss(side, folder / f"sidecar-{namespace}.log")
    finally:
        _stop(operator)
        if side is not None:
            _stop(side)
    return op_rss, side_rss, seen, counts


def _operator_counts(port: int) -> dict[str, float]:
    """The operator's ``oncallm_analyses_*`` figures from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("oncallm_analyses_known", "oncallm_analyses_queued_total"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out


async def _wait_known(
    proc: subprocess.Popen[bytes], port: int, count: int, log: Path, timeout: float
) -> dict[str, float]:
    """Wait until the operator has seen ``count`` analyses."""
    deadline = time.monotonic() + timeout
    counts: dict[str, float] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode}; see {log}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            counts = await asyncio.to_thread(_operator_counts, port)
            if counts.get("oncallm_analyses_known", 0) >= count:
                return counts
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the operator saw {counts} of {count} analyses; see {log}")


async def run_memory(
    kubeconfig: str,
    folder: Path,
    *,
    count: int = 5000,
    sidecar: bool = True,
    log: Any = print,
) -> MemoryResult:
    """Fill a namespace with ``count`` Completed analyses; RSS with an empty one, then it."""
    admin = await KubeAPI.connect(ClientSettings(kubeconfig=kubeconfig, qps=0))
    result = MemoryResult(count=count)
    try:
        empty = await fresh_namespace(admin, "memory-empty")
        full = await fresh_namespace(admin, f"memory-{count}")
        await wait_crds_served(admin, full)
        started = time.perf_counter()
        result.object_bytes = await fill(admin, full, count)
        result.fill_s = time.perf_counter() - started
        log(f"  wrote {count} Completed analyses in {result.fill_s:.1f} s")
    finally:
        await admin.close()
    op, side, _, _ = await measure(kubeconfig, empty, 0, folder, sidecar=sidecar)
    result.operator_baseline_kib, result.sidecar_baseline_kib = op, side
    log(f"  0 analyses: operator {mib(op)}, sidecar {mib(side)}")
    op, side, seen, counts = await measure(kubeconfig, full, count, folder, sidecar=sidecar)
    result.operator_full_kib, result.sidecar_full_kib = op, side
    result.operator_seen_s = seen
    result.seen = int(counts.get("oncallm_analyses_known", 0))
    result.queued = int(counts.get("oncallm_analyses_queued_total", 0))
    log(f"  {count} analyses: operator {mib(op)}, sidecar {mib(side)} (seen in {seen:.0f} s)")
    return result
