"""Storm: an alert storm of three incidents, then a steady stream, then a restart over a backlog.

The workload is ``tests/helpers/storm.py``: a dead node, a database without endpoints and a bad
rollout, built from the scenario corpus, with unrelated OOMKilled workloads in the same
namespaces. The operator and the sidecar run as their own processes (``python -m oncallm
operator`` / ``webhook``), as in the pod; the model path runs against the test suite's
OpenAI-compatible server (``tests/openai_server.py``, answering as a model that agrees with the
rules), served from this process.

Phases, each timed here with ``time.perf_counter()`` from the POST to the moment a watch on the
AlertAnalyses sees each reach Completed:

1. **single**: alerts of unrelated workloads sent one after another, no model configured;
2. **burst**: ``--storm-alerts`` alerts in one notification;
3. **steady**: ``--storm-rate`` alerts a minute for ``--storm-minutes`` (new firings of the
   burst's alerts, one notification a second), the backlog (stored but not completed)
   sampled every 10 s;
4. **restart**: the operator stopped, ``--storm-backlog`` new analyses written directly
   (unhandled: no status), the operator started again over them.

API requests come from the API server's ``apiserver_request_total``; RSS from /proc; model calls
from the test server's log. Nothing here is asserted: figures are printed (docs/bench.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from tests.helpers.models import agreeing_model
from tests.helpers.storm import INCIDENTS, Storm, build_storm, refire
from tests.openai_server import FakeOpenAI

from bench.bench_analysis import CompletionWatch
from bench.bench_memory import _spawn, _stop, _wait_log, _wait_ready
from bench.common import (
    fresh_namespace,
    median,
    mib,
    notification,
    percentile,
    rss_kib,
    wait_crds_served,
)
from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.cluster import free_port
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.kube.api import ApiError, ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.alert import Alert
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec
from oncallm.scenarios.model import ShiftedScenario
from oncallm.scenarios.plant import plant

#: Settings of the model path against the test server (a real client, quick retries).
MODEL_ENV = {
    "ONCALLM_LLM_API_KEY": "sk-bench-not-a-real-key",
    "ONCALLM_LLM_MODEL": "gpt-4o-mini",
    "ONCALLM_LLM_MAX_RETRIES": "1",
    "ONCALLM_LLM_TIMEOUT_SECONDS": "30",
}
#: Seconds one notification may take before the benchmark gives up on it.
POST_TIMEOUT = 600.0


@dataclass
class Phase:
    """One phase's figures."""

    alerts: int = 0
    completed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    requests: int = 0
    errors_5xx: int = 0
    rss_peak_kib: int = 0
    wall_s: float = 0.0
    stored_s: float = 0.0
    model_calls: int = 0

    def p(self, pct: float) -> float:
        return percentile(self.latencies_s, pct)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data.update(
            median_s=round(median(self.latencies_s), 2),
            p95_s=round(self.p(95), 2),
            p99_s=round(self.p(99), 2),
            requests_per_alert=round(self.requests / max(1, self.alerts), 2),
        )
        return data


@dataclass
class StormResult:
    single: Phase = field(default_factory=Phase)
    burst: Phase = field(default_factory=Phase)
    steady: Phase = field(default_factory=Phase)
    restart: Phase = field(default_factory=Phase)
    #: distinct primaries among the burst's analyses (an alert without one counts alone)
    incidents: int = 0
    #: of them, incidents of more than one alert / of one
    shared: int = 0
    singles: int = 0
    expected_singles: int = 0
    #: alerts whose incident holds alerts of another expected incident
    misplaced: int = 0
    rate_per_min: int = 0
    minutes: float = 0.0
    #: (seconds since the steady phase started, alerts stored but not completed)
    backlog: list[tuple[float, int]] = field(default_factory=list)
    restart_seen_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "single": self.single.summary(),
            "burst": self.burst.summary(),
            "steady": self.steady.summary(),
            "restart": self.restart.summary(),
            "incidents": self.incidents,
            "shared": self.shared,
            "singles": self.singles,
            "expected_singles": self.expected_singles,
            "misplaced": self.misplaced,
            "backlog": self.backlog,
            "restart_seen_s": round(self.restart_seen_s, 1),
        }

    def lines(self) -> list[str]:
        b, s, r, one = self.burst, self.steady, self.restart, self.single
        wrong = f", {self.misplaced} misplaced" if self.misplaced else ""
        out = [
            f"storm: {b.alerts} alerts, {self.incidents} incidents found "
            f"({len(INCIDENTS)} expected + {self.expected_singles} single; found "
            f"{self.shared} + {self.singles}{wrong}): p95 {b.p(95):.1f} s, p99 {b.p(99):.1f} s "
            f"alert to report; model calls {b.model_calls}; API requests per alert "
            f"{b.requests / max(1, b.alerts):.2f}; operator RSS {mib(b.rss_peak_kib)}",
            f"  burst: {b.completed}/{b.alerts} completed, median {median(b.latencies_s):.1f} s, "
            f"last at {b.wall_s:.1f} s (all stored in {b.stored_s:.1f} s)",
        ]
        samples = ", ".join(
            f"{t:.0f}s:{n}" for t, n in self.backlog[:: max(1, len(self.backlog) // 10)]
        )
        out.append(
            f"storm steady: {s.alerts} alerts at {self.rate_per_min}/min for "
            f"{self.minutes:g} min: {s.completed} completed, p95 {s.p(95):.1f} s, p99 "
            f"{s.p(99):.1f} s; backlog (stored, not completed) max "
            f"{max((n for _, n in self.backlog), default=0)}, at the end "
            f"{self.backlog[-1][1] if self.backlog else 0}; model calls {s.model_calls}; API "
            f"requests per alert {s.requests / max(1, s.alerts):.2f}; operator RSS "
            f"{mib(s.rss_peak_kib)}"
        )
        out.append(f"  backlog every ~{self._every():.0f} s: {samples}")
        out.append(
            f"storm restart: {r.alerts} unhandled analyses: {r.completed} completed "
            f"{r.wall_s:.1f} s after the start (p95 {r.p(95):.1f} s); API server 5xx "
            f"{r.errors_5xx}; operator RSS peak {mib(r.rss_peak_kib)}; model calls "
            f"{r.model_calls}; API requests per analysis {r.requests / max(1, r.alerts):.2f}"
        )
        out.append(
            f"storm single: {one.alerts} alerts one at a time, no model: median "
            f"{median(one.latencies_s):.2f} s, p95 {one.p(95):.2f} s alert to report"
        )
        return out

    def _every(self) -> float:
        if len(self.backlog) < 2:
            return 0.0
        step = max(1, len(self.backlog) // 10)
        return self.backlog[step][0] - self.backlog[0][0] if len(self.backlog) > step else 0.0


def apiserver_counts(plane: LocalControlPlane) -> tuple[int, int]:
    """(requests answered, of which 5xx) so far, from ``apiserver_request_total``."""
    status, text = plane.request("/metrics", timeout=30)
    if status != 200:
        return 0, 0
    total = errors = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            value = float(line.rsplit(" ", 1)[1])
            total += value
            if 'code="5' in line:
                errors += value
    return int(total), int(errors)


class RssSampler:
    """The peak RSS of a process, sampled every half second while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self._sample()

    def _sample(self) -> None:
        try:
            self.peak = max(self.peak, rss_kib(self.pid))
        except (OSError, RuntimeError):
            pass

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(0.5)


class Stack:
    """The operator and the sidecar as processes of their own."""

    def __init__(self, kubeconfig: str, namespace: str, folder: Path, model_url: str | None):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.folder = folder
        self.model_url = model_url
        self.port = free_port()
        self.operator: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {
            "KUBECONFIG": self.kubeconfig,
            "ONCALLM_NAMESPACE": self.namespace,
            "ONCALLM_OPERATOR_HEALTH_PORT": str(free_port()),
            "ONCALLM_OPERATOR_METRICS_PORT": "0",
            "ONCALLM_LOG_LEVEL": "INFO",
        }
        if self.model_url:
            env.update(MODEL_ENV, ONCALLM_LLM_BASE_URL=self.model_url)
        return env

    async def start_operator(self) -> subprocess.Popen[bytes]:
        for key in ("ONCALLM_LLM_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
            os.environ.pop(key, None)
        log = self.folder / f"operator-{self.namespace}.log"
        self.operator = _spawn(["operator"], self.env, log)
        await _wait_log(self.operator, log, "OnCallM operator ready", 1, timeout=120)
        return self.operator

    async def stop_operator(self) -> None:
        if self.operator is not None:
            await asyncio.to_thread(_stop, self.operator)
            self.operator = None

    async def start_sidecar(self) -> None:
        log = self.folder / f"sidecar-{self.namespace}.log"
        self.sidecar = _spawn(
            ["webhook"],
            {**self.env, "ONCALLM_HOST": "127.0.0.1", "ONCALLM_PORT": str(self.port)},
            log,
        )
        await _wait_ready(self.sidecar, f"http://127.0.0.1:{self.port}/readyz", log, 120)

    async def send(self, alerts: list[dict[str, Any]]) -> int:
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(
                f"http://127.0.0.1:{self.port}/webhook", json=notification(alerts)
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RuntimeError(f"the webhook answered {resp.status}: {body}")
                return len(body)

    async def stop(self) -> None:
        await self.stop_operator()
        if self.sidecar is not None:
            await asyncio.to_thread(_stop, self.sidecar)
            self.sidecar = None


async def plant_storm(api: KubeAPI, plane: LocalControlPlane, storm: Storm) -> None:
    async def one(s: ShiftedScenario) -> None:
        await plant(
            api,
            s,
            node_status=plane.node_status(),
            plant_log=lambda ns, pod, c, text, prev: plane.plant_log(
                ns, pod, c, text, previous=prev
            ),
        )

    await asyncio.gather(*(one(s) for s in storm.scenarios))


def _names(alerts: list[dict[str, Any]]) -> list[str]:
    return [analysis_name(Alert.model_validate(a)) for a in alerts]


async def _completed_phase(
    watch: CompletionWatch, names: list[str], started: float, timeout: float
) -> list[float]:
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted <= set(watch.finished):
            break
        await asyncio.sleep(0.2)
    return [
        watch.finished[n][1] - started
        for n in names
        if n in watch.finished and watch.finished[n][0] == "Completed"
    ]


async def run_single(
    plane: LocalControlPlane, admin: KubeAPI, folder: Path, count: int, log: Any
) -> Phase:
    """Alerts of unrelated workloads, one after another, no model."""
    storm = build_storm(f"s{secrets.token_hex(2)}", per_incident=(1, 1, 1), unrelated=count)
    await plant_storm(admin, plane, storm)
    singles = [a for a in storm.alerts if storm.expected[a["fingerprint"]].startswith("single")]
    namespace = await fresh_namespace(admin, "storm-single")
    await wait_crds_served(admin, namespace)
    stack = Stack(str(plane.kubeconfig), namespace, folder, None)
    watch = CompletionWatch(admin, namespace)
    phase = Phase(alerts=len(singles))
    try:
        await stack.start_sidecar()
        await stack.start_operator()
        await watch.start()
        for alert in singles:
            (name,) = _names([alert])
            started = time.perf_counter()
            await stack.send([alert])
            phase.latencies_s += await _completed_phase(watch, [name], started, 30)
        phase.completed = len(phase.latencies_s)
    finally:
        await watch.stop()
        await stack.stop()
    log(f"  single: {phase.completed} alerts, p95 {phase.p(95):.2f} s")
    return phase


async def run_storm(
    plane: LocalControlPlane,
    folder: Path,
    *,
    alerts: int = 1000,
    unrelated: int = 20,
    rate_per_min: int = 1000,
    minutes: float = 5.0,
    backlog: int = 5000,
    singles: int = 20,
    log: Any = print,
) -> StormResult:
    """Every phase, on one control plane; the figures."""
    result = StormResult(rate_per_min=rate_per_min, minutes=minutes, expected_singles=unrelated)
    admin = await KubeAPI.connect(ClientSettings(kubeconfig=str(plane.kubeconfig), qps=0))
    model = FakeOpenAI()
    model.responder = agreeing_model
    await model.start()
    try:
        if singles:
            result.single = await run_single(plane, admin, folder, singles, log)

        per = alerts - unrelated
        storm = build_storm(
            f"b{secrets.token_hex(2)}",
            per_incident=(per // 3 + (per % 3 > 0), per // 3 + (per % 3 > 1), per // 3),
            unrelated=unrelated,
            node_workloads=6,
        )
        started = time.perf_counter()
        await plant_storm(admin, plane, storm)
        log(f"  planted {len(storm.alerts)} alerts' pods in {time.perf_counter() - started:.0f} s")
        burst = list(storm.alerts)
        random.Random(7).shuffle(burst)  # the unrelated alerts among the others
        namespace = await fresh_namespace(admin, "storm")
        await wait_crds_served(admin, namespace)
        stack = Stack(str(plane.kubeconfig), namespace, folder, model.base_url)
        watch = CompletionWatch(admin, namespace)
        try:
            await stack.start_sidecar()
            operator = await stack.start_operator()
            await watch.start()
            await _burst(result, stack, watch, plane, model, burst, operator.pid, log)
            await _group(result, admin, namespace, storm, burst)
            await _steady(result, stack, watch, plane, model, storm, operator.pid, log)
            await _restart(result, stack, watch, plane, model, admin, storm, backlog, log)
        finally:
            await watch.stop()
            await stack.stop()
    finally:
        await model.stop()
        await admin.close()
    return result


async def _burst(
    result: StormResult,
    stack: Stack,
    watch: CompletionWatch,
    plane: LocalControlPlane,
    model: FakeOpenAI,
    burst: list[dict[str, Any]],
    pid: int,
    log: Any,
) -> None:
    phase = result.burst
    phase.alerts = len(burst)
    names = _names(burst)
    before, before_5xx = apiserver_counts(plane)
    calls = len(model.chat_requests)
    with RssSampler(pid) as rss:
        started = time.perf_counter()
        stored = await stack.send(burst)
        phase.stored_s = time.perf_counter() - started
        if stored != len(burst):
            raise RuntimeError(f"the sidecar stored {stored} of {len(burst)} alerts")
        phase.latencies_s = await _completed_phase(watch, names, started, 600)
    after, after_5xx = apiserver_counts(plane)
    phase.requests, phase.errors_5xx = after - before, after_5xx - before_5xx
    phase.completed = len(phase.latencies_s)
    phase.wall_s = max(phase.latencies_s, default=0.0)
    phase.rss_peak_kib = rss.peak
    phase.model_calls = len(model.chat_requests) - calls
    log(f"  burst: {phase.completed}/{phase.alerts} in {phase.wall_s:.1f} s")


async def _group(
    result: StormResult, admin: KubeAPI, namespace: str, storm: Storm, burst: list[dict[str, Any]]
) -> None:
    """How the burst's analyses were grouped, against the incidents the storm planted."""
    listing = await admin.request("GET", resource("AlertAnalysis").path(namespace))
    by_name = {o["metadata"]["name"]: o for o in listing.get("items", [])}
    primary_of: dict[str, str] = {}
    expected: dict[str, str] = {}
    for alert, name in zip(burst, _names(burst), strict=True):
        obj = by_name.get(name) or {}
        incident = (obj.get("status") or {}).get("incident") or {}
        primary_of[name] = incident.get("primary") or name
        expected[name] = storm.expected[alert["fingerprint"]]
    members: dict[str, Counter[str]] = {}
    for name, primary in primary_of.items():
        members.setdefault(primary, Counter())[expected[name]] += 1
    result.incidents = len(members)
    result.shared = sum(1 for m in members.values() if sum(m.values()) > 1)
    result.singles = result.incidents - result.shared
    result.misplaced = sum(sum(m.values()) - max(m.values()) for m in members.values())


async def _steady(
    result: StormResult,
    stack: Stack,
    watch: CompletionWatch,
    plane: LocalControlPlane,
    model: FakeOpenAI,
    storm: Storm,
    pid: int,
    log: Any,
) -> None:
    """``rate_per_min`` new firings a minute, one notification a second."""
    phase = result.steady
    per_second = result.rate_per_min / 60.0
    seconds = int(result.minutes * 60)
    pool = storm.alerts
    sent: dict[str, float] = {}
    before, before_5xx = apiserver_counts(plane)
    calls = len(model.chat_requests)
    owed = 0.0
    base = datetime.now(UTC) + timedelta(hours=1)
    started = time.perf_counter()
    cursor = 0
    posts: list[asyncio.Task[int]] = []
    with RssSampler(pid) as rss:
        for second in range(seconds):
            tick = started + second
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            owed += per_second
            count, owed = int(owed), owed - int(owed)
            batch = [
                refire(
                    pool[(cursor + i) % len(pool)], base + timedelta(seconds=second, microseconds=i)
                )
                for i in range(count)
            ]
            cursor += count
            posted = time.perf_counter()
            if batch:
                posts.append(asyncio.get_running_loop().create_task(stack.send(batch)))
                for name in _names(batch):
                    sent[name] = posted
            if second % 10 == 0:
                done = sum(1 for n in sent if n in watch.finished)
                result.backlog.append((round(time.perf_counter() - started, 1), len(sent) - done))
        await asyncio.gather(*posts, return_exceptions=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not set(sent) <= set(watch.finished):
            await asyncio.sleep(0.5)
    done = sum(1 for n in sent if n in watch.finished)
    result.backlog.append((round(time.perf_counter() - started, 1), len(sent) - done))
    after, after_5xx = apiserver_counts(plane)
    phase.alerts = len(sent)
    phase.latencies_s = [watch.finished[n][1] - t for n, t in sent.items() if n in watch.finished]
    phase.completed = len(phase.latencies_s)
    phase.requests, phase.errors_5xx = after - before, after_5xx - before_5xx
    phase.rss_peak_kib = rss.peak
    phase.model_calls = len(model.chat_requests) - calls
    phase.wall_s = time.perf_counter() - started
    log(f"  steady: {phase.completed}/{phase.alerts} completed")


async def _restart(
    result: StormResult,
    stack: Stack,
    watch: CompletionWatch,
    plane: LocalControlPlane,
    model: FakeOpenAI,
    admin: KubeAPI,
    storm: Storm,
    count: int,
    log: Any,
) -> None:
    """The operator stopped; ``count`` analyses it never handled; the operator started."""
    phase = result.restart
    await stack.stop_operator()
    base = datetime.now(UTC) + timedelta(hours=3)
    alerts = [
        refire(storm.alerts[i % len(storm.alerts)], base + timedelta(seconds=i))
        for i in range(count)
    ]
    path = resource("AlertAnalysis").path(stack.namespace)
    limit = asyncio.Semaphore(32)

    async def create(alert: dict[str, Any]) -> None:
        parsed = Alert.model_validate(alert)
        body = AlertAnalysis(
            metadata={
                "name": analysis_name(parsed),
                "namespace": stack.namespace,
                "labels": analysis_labels(parsed),
            },
            spec=AlertAnalysisSpec(alert=AlertSpec.from_alert(parsed), receiver="oncallm"),
        ).to_kube()
        body.pop("status", None)
        async with limit:
            try:
                await admin.request("POST", path, body=body)
            except ApiError as err:
                if err.status != 409:
                    raise

    filled = time.perf_counter()
    await asyncio.gather(*(create(a) for a in alerts))
    log(f"  restart: wrote {count} unhandled analyses in {time.perf_counter() - filled:.0f} s")
    names = _names(alerts)
    phase.alerts = len(names)
    before, before_5xx = apiserver_counts(plane)
    calls = len(model.chat_requests)
    started = time.perf_counter()
    operator = await stack.start_operator()
    with RssSampler(operator.pid) as rss:
        phase.latencies_s = await _completed_phase(watch, names, started, 900)
    after, after_5xx = apiserver_counts(plane)
    phase.requests, phase.errors_5xx = after - before, after_5xx - before_5xx
    phase.completed = len(phase.latencies_s)
    phase.wall_s = max(phase.latencies_s, default=0.0)
    phase.rss_peak_kib = rss.peak
    phase.model_calls = len(model.chat_requests) - calls
    log(f"  restart: {phase.completed}/{phase.alerts} completed in {phase.wall_s:.1f} s")
