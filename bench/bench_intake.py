"""Intake: how fast the webhook sidecar stores a notification, next to plain creates.

Every figure comes from one local control plane in one run, so they compare with each other
(the machine is shared and noisy; absolute numbers move from run to run, ratios much less).

- ``sidecar``: one notification of N distinct alerts POSTed to a running sidecar (its own
  list+watch running, as in a pod); alerts stored per second = N / time to the 200 answer.
- ``plain``: the floor — the same N AlertAnalysis bodies, built before the clock starts,
  created with ``asyncio.gather`` behind a semaphore of the sidecar's concurrency, through a
  KubeAPI with the same client settings (qps, burst, pool).
- repeats: the same notification sent again (every alert known: no writes), and a
  single-alert repeat; single-alert latency: new one-alert notifications, one at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.common import (
    CpuMeter,
    crashloop_alert,
    fresh_namespace,
    median,
    notification,
    percentile,
    pod_name,
    wait_until,
)
from oncallm.intake.app import API_KEY
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.intake.server import RunningSidecar, running_sidecar
from oncallm.intake.settings import IntakeSettings
from oncallm.kube.api import ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.alert import Alert
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertSpec, rfc3339

#: Seconds one notification may take before the benchmark gives up on it.
POST_TIMEOUT = 300.0


@dataclass
class IntakeResult:
    alerts: int
    rounds: int
    qps: float
    burst: int
    concurrency: int
    sidecar_per_s: list[float] = field(default_factory=list)
    plain_per_s: list[float] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    repeat_big_per_s: float = 0.0
    repeat_single_per_s: float = 0.0
    new_single_ms: list[float] = field(default_factory=list)
    writes_during_repeats: int = 0
    #: CPU seconds per round, by process ("bench" is this process: the sidecar or the loop)
    sidecar_cpu: list[dict[str, float]] = field(default_factory=list)
    plain_cpu: list[dict[str, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return median(self.sidecar_per_s) / median(self.plain_per_s)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("new_single_ms")
        data["sidecar_median_per_s"] = round(median(self.sidecar_per_s), 1)
        data["plain_median_per_s"] = round(median(self.plain_per_s), 1)
        data["ratio"] = round(self.ratio, 3)
        data["new_single_median_ms"] = round(median(self.new_single_ms), 2)
        data["new_single_p99_ms"] = round(percentile(self.new_single_ms, 99), 2)
        data["new_single_samples"] = len(self.new_single_ms)
        if self.sidecar_cpu and self.plain_cpu:
            data["cpu_ms_per_alert"] = {
                "sidecar": self.cpu_ms_per_alert("sidecar"),
                "plain": self.cpu_ms_per_alert("plain"),
            }
        return data

    def cpu_ms_per_alert(self, which: str) -> dict[str, float]:
        """Median CPU milliseconds per stored alert, by process, over the rounds."""
        rounds = self.sidecar_cpu if which == "sidecar" else self.plain_cpu
        names = rounds[0].keys() if rounds else []
        return {n: round(median([r[n] for r in rounds]) * 1000 / self.alerts, 2) for n in names}

    def lines(self) -> list[str]:
        limit = f"qps {self.qps:g}, burst {self.burst}" if self.qps > 0 else "no client-side limit"
        out = [
            f"intake: {self.alerts} alerts in one notification: "
            f"{median(self.sidecar_per_s):.0f} alerts/s "
            f"(plain creates: {median(self.plain_per_s):.0f}/s, ratio {self.ratio:.2f}; "
            f"median of {self.rounds} rounds; both: concurrency {self.concurrency}, {limit})",
            "  rounds (sidecar / plain alerts/s): "
            + ", ".join(
                f"{s:.0f}/{p:.0f}"
                for s, p in zip(self.sidecar_per_s, self.plain_per_s, strict=True)
            ),
        ]
        if self.sidecar_cpu and self.plain_cpu:
            side, plain = self.cpu_ms_per_alert("sidecar"), self.cpu_ms_per_alert("plain")
            out.append(
                "  CPU ms per alert (sidecar / plain): "
                + ", ".join(
                    f"{'this process' if n == 'bench' else n} {side[n]:.2f} / {plain[n]:.2f}"
                    for n in side
                )
            )
        if self.repeat_big_per_s:
            out.append(
                f"intake: the same {self.alerts}-alert notification again (no writes: "
                f"{self.writes_during_repeats} made): {self.repeat_big_per_s:.0f} alerts/s answered"
            )
        if self.repeat_single_per_s:
            out.append(
                f"intake: a single-alert repeat: {self.repeat_single_per_s:.0f} notifications/s"
            )
        if self.new_single_ms:
            out.append(
                f"intake: a new single-alert notification: median "
                f"{median(self.new_single_ms):.1f} ms, p99 {percentile(self.new_single_ms, 99):.1f} ms "
                f"({len(self.new_single_ms)} sent one after another)"
            )
        return out


def alerts_for(count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` crash-looping pods of one Deployment, each its own alert (distinct
    fingerprints): a bad rollout of a 1,000-replica workload."""
    starts = datetime.now(UTC) - timedelta(minutes=4)
    return [
        crashloop_alert("orders", pod_name(f"orders-api-{tag}", i), starts=starts)
        for i in range(count)
    ]


def analysis_body(alert: dict[str, Any], payload: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The AlertAnalysis the sidecar would create for ``alert`` (same fields, same size)."""
    parsed = Alert.model_validate(alert)
    name = analysis_name(parsed)
    body = AlertAnalysis(
        metadata={"name": name, "namespace": namespace, "labels": analysis_labels(parsed)},
        spec=AlertAnalysisSpec(
            alert=AlertSpec.from_alert(parsed),
            receiver=payload["receiver"],
            group_key=payload["groupKey"],
            external_url=payload["externalURL"],
            received_at=rfc3339(datetime.now(UTC)),
        ),
    ).to_kube()
    body.pop("status", None)
    return body


async def post(session: aiohttp.ClientSession, url: str, raw: bytes) -> tuple[float, Any]:
    """POST an encoded notification; (seconds to the full answer, decoded answer).

    The answer is decoded after the clock stops: parsing it is the client's work."""
    started = time.perf_counter()
    async with session.post(
        url + "/webhook", data=raw, headers={"Content-Type": "application/json"}
    ) as resp:
        body = await resp.read()
        elapsed = time.perf_counter() - started
        if resp.status != 200:
            raise RuntimeError(f"the webhook answered {resp.status}: {body[:500]!r}")
    return elapsed, json.loads(body)


async def count_analyses(api: KubeAPI, namespace: str) -> int:
    listing = await api.request(
        "GET", resource("AlertAnalysis").path(namespace), query={"limit": 1}
    )
    remaining = (listing.get("metadata") or {}).get("remainingItemCount") or 0
    return len(listing.get("items", [])) + int(remaining)


async def _synced_sidecar(namespace: str, client: ClientSettings) -> tuple[Any, RunningSidecar]:
    manager = running_sidecar(IntakeSettings(namespace=namespace, host="127.0.0.1", port=0), client)
    sidecar = await manager.__aenter__()

    async def synced() -> bool:
        return sidecar.store.synced

    await wait_until(synced, timeout=30, what="the sidecar's store to sync")
    return manager, sidecar


async def sidecar_round(
    admin: KubeAPI,
    client: ClientSettings,
    count: int,
    cpu: CpuMeter,
    *,
    extras: IntakeResult | None,
) -> float:
    """Alerts stored per second by the sidecar for one notification of ``count`` alerts.

    With ``extras``, the same sidecar then measures repeats and single-alert latency."""
    namespace = await fresh_namespace(admin, "intake-sidecar")
    alerts = alerts_for(count, "sc")
    payload = notification(alerts)
    raw = json.dumps(payload).encode()
    manager, sidecar = await _synced_sidecar(namespace, client)
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT)
        ) as session:
            cpu.start()
            elapsed, answer = await post(session, sidecar.url, raw)
            cpu.stop()
            created = sum(1 for a in answer if a["outcome"] == "created")
            if created != count:
                raise RuntimeError(f"the sidecar created {created} of {count} analyses")
            if extras is not None:
                await _repeats_and_latency(session, sidecar, raw, alerts, extras)
    finally:
        await manager.__aexit__(None, None, None)
    stored = await count_analyses(admin, namespace)
    if stored < count:
        raise RuntimeError(f"{stored} of {count} analyses are in {namespace}")
    return count / elapsed


async def _repeats_and_latency(
    session: aiohttp.ClientSession,
    sidecar: RunningSidecar,
    raw: bytes,
    alerts: list[dict[str, Any]],
    result: IntakeResult,
    *,
    big_repeats: int = 5,
    single_repeats: int = 200,
    new_singles: int = 200,
) -> None:
    api = sidecar.app[API_KEY]
    writes = api.calls["POST"] + api.calls["PATCH"] + api.calls["PUT"]
    times = []
    for _ in range(big_repeats):
        elapsed, answer = await post(session, sidecar.url, raw)
        if any(a["outcome"] != "repeat" for a in answer):
            raise RuntimeError("a re-sent notification was not answered as repeats")
        times.append(elapsed)
    result.repeat_big_per_s = len(alerts) / median(times)

    single = json.dumps(notification(alerts[:1])).encode()
    started = time.perf_counter()
    for _ in range(single_repeats):
        await post(session, sidecar.url, single)
    result.repeat_single_per_s = single_repeats / (time.perf_counter() - started)
    result.writes_during_repeats = (
        api.calls["POST"] + api.calls["PATCH"] + api.calls["PUT"] - writes
    )

    fresh = alerts_for(new_singles, "single")
    for alert in fresh:
        elapsed, answer = await post(
            session, sidecar.url, json.dumps(notification([alert])).encode()
        )
        if answer[0]["outcome"] != "created":
            raise RuntimeError(f"a new single alert was answered {answer[0]['outcome']}")
        result.new_single_ms.append(elapsed * 1000)


async def plain_round(
    admin: KubeAPI, client: ClientSettings, count: int, concurrency: int, cpu: CpuMeter
) -> float:
    """Alerts stored per second by plain concurrent creates of the same bodies."""
    namespace = await fresh_namespace(admin, "intake-plain")
    alerts = alerts_for(count, "pl")
    payload = notification(alerts)
    bodies = [analysis_body(a, payload, namespace) for a in alerts]
    path = resource("AlertAnalysis").path(namespace)
    api = await KubeAPI.connect(client)
    limit = asyncio.Semaphore(concurrency)

    async def create(body: dict[str, Any]) -> None:
        async with limit:
            await api.request("POST", path, body=body)

    try:
        cpu.start()
        started = time.perf_counter()
        await asyncio.gather(*(create(b) for b in bodies))
        elapsed = time.perf_counter() - started
        cpu.stop()
    finally:
        await api.close()
    stored = await count_analyses(admin, namespace)
    if stored != count:
        raise RuntimeError(f"{stored} of {count} analyses are in {namespace}")
    return count / elapsed


async def run_intake(
    kubeconfig: str,
    *,
    alerts: int = 1000,
    rounds: int = 3,
    qps: float = 0.0,
    burst: int = 100,
    extras: bool = True,
    pids: dict[str, int] | None = None,
    warmup: int = 100,
    log: Any = print,
) -> IntakeResult:
    """After an untimed warm-up of ``warmup`` alerts each way, alternate sidecar and plain
    rounds (sidecar first in odd rounds); then repeats and latency on the last sidecar.
    ``pids`` names processes (the API server, etcd) whose CPU each round also records."""
    concurrency = IntakeSettings().concurrency
    client = ClientSettings(kubeconfig=kubeconfig, qps=qps, burst=burst)
    result = IntakeResult(
        alerts=alerts, rounds=rounds, qps=qps, burst=burst, concurrency=concurrency
    )
    admin = await KubeAPI.connect(ClientSettings(kubeconfig=kubeconfig, qps=0))
    cpu = CpuMeter(pids)
    try:
        # Untimed: the first notification pays for lazy imports and first-call setup
        # (aiohttp's server, pydantic's validators, TLS session set-up) in either path.
        await sidecar_round(admin, client, warmup, cpu, extras=None)
        await plain_round(admin, client, warmup, concurrency, cpu)
        for i in range(rounds):
            last = i == rounds - 1
            order = ["sidecar", "plain"] if i % 2 == 0 else ["plain", "sidecar"]
            result.order.append("/".join(order))
            for which in order:
                if which == "sidecar":
                    rate = await sidecar_round(
                        admin, client, alerts, cpu, extras=result if (last and extras) else None
                    )
                    result.sidecar_per_s.append(rate)
                    result.sidecar_cpu.append(cpu.used)
                else:
                    rate = await plain_round(admin, client, alerts, concurrency, cpu)
                    result.plain_per_s.append(rate)
                    result.plain_cpu.append(cpu.used)
                used = ", ".join(f"{k} {v:.2f}" for k, v in cpu.used.items())
                log(f"  round {i + 1}: {which}: {rate:.0f} alerts/s (CPU s: {used})")
    finally:
        await admin.close()
    return result
