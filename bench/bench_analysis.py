"""Analysis: analyses completed per second, and alert-to-report time, for an alert storm.

The storm: ``orders-api-db-down`` (tests/scenarios) planted in ``teams`` namespaces, each
orders-api Deployment scaled to ``replicas`` pods that all crash-loop because orders-db has
no endpoints — ``teams * replicas`` KubePodCrashLooping alerts, sent in ONE notification
(Alertmanager groups them by alertname). The operator and the sidecar run in this process
(:func:`oncallm.evaluation.stack.running_stack`), a fresh stack and namespace per
concurrency setting; the rules analyse (no model is configured).

Times are taken here with ``time.perf_counter()``: from just before the notification is
POSTed to the moment a watch on the AlertAnalyses sees each one reach phase Completed (the
status' ``completedAt`` has only second resolution).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    CpuMeter,
    fresh_namespace,
    median,
    notification,
    percentile,
    pod_name,
    wait_crds_served,
)
from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ApiError, ClientSettings, KubeAPI
from oncallm.kube.resources import resource
from oncallm.scenarios.model import Scenario, ShiftedScenario
from oncallm.scenarios.plant import plant

#: The scenario every team's namespace repeats: a database scaled to zero under a Deployment.
SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "scenarios" / "orders-api-db-down.yaml"
#: The pod of the scenario whose spec, status, log and events the extra replicas copy.
TEMPLATE_POD = "orders-api-4wt6nscjn4-22xr2"
TEMPLATE_HASH = "4wt6nscjn4"
#: Environment variables that would make the operator call a model: the benchmark measures
#: OnCallM's own work, so the rules analyse.
MODEL_ENV = ("ONCALLM_LLM_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ONCALLM_LLM_API_KEY")
FINISHED = ("Completed", "Failed", "Skipped")
#: The operator's settings a run sets (and restores afterwards).
TUNING_ENV = ("ONCALLM_CONCURRENCY", "ONCALLM_KUBE_QPS")


@dataclass
class AnalysisRun:
    concurrency: int
    alerts: int
    completed: int = 0
    failed: int = 0
    #: seconds from the POST to the sidecar's answer (all analyses stored)
    stored_s: float = 0.0
    #: seconds from the POST to the last analysis Completed
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    #: the operator's ONCALLM_KUBE_QPS; None: its default
    operator_qps: float | None = None

    @property
    def per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data["analyses_per_s"] = round(self.per_s, 2)
        data["median_s"] = round(median(self.latencies_s), 2)
        data["p95_s"] = round(percentile(self.latencies_s, 95), 2)
        data["max_s"] = round(max(self.latencies_s, default=0.0), 2)
        data["requests_per_analysis"] = round(self.requests / max(1, self.alerts), 1)
        return data

    def line(self, default: int) -> str:
        which = "default" if self.concurrency == default else f"{self.concurrency // default}x"
        failed = f", {self.failed} not completed" if self.failed else ""
        if self.operator_qps is None:
            limit = f"default ONCALLM_KUBE_QPS={ClientSettings.qps:g}"
        elif self.operator_qps <= 0:
            limit = "ONCALLM_KUBE_QPS=0: no client-side limit"
        else:
            limit = f"ONCALLM_KUBE_QPS={self.operator_qps:g}"
        return (
            f"analysis: {self.alerts} alerts in one notification, concurrency {self.concurrency} "
            f"({which}, {limit}): {self.per_s:.2f} analyses/s; alert to completed report: median "
            f"{median(self.latencies_s):.1f} s, p95 {percentile(self.latencies_s, 95):.1f} s "
            f"(all stored in {self.stored_s:.1f} s, last done at {self.wall_s:.1f} s, "
            f"~{self.requests / max(1, self.alerts):.0f} API requests per analysis{failed})"
        )


def team_scenario(base: dict[str, Any], namespace: str, replicas: int) -> dict[str, Any]:
    """The scenario moved to ``namespace`` (Service IPs left to the API server: each team's
    must differ), its Deployment scaled to ``replicas`` pods."""
    data = _renamespace(copy.deepcopy(base), "orders", namespace)
    data["name"] = f"{data['name']}-{namespace}"
    objects = data["objects"]
    for obj in objects:
        if obj["kind"] == "Service":
            obj["spec"].pop("clusterIP", None)
    template = next(
        o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == TEMPLATE_POD
    )
    existing = [o["metadata"]["name"] for o in objects if o["kind"] == "Pod"]
    log = next(lg for lg in data["logs"] if lg["pod"] == TEMPLATE_POD)
    event = next(e for e in data["events"] if e["involvedObject"]["name"] == TEMPLATE_POD)
    extra = []
    for i in range(replicas - len(existing)):
        name = pod_name("orders-api", i, TEMPLATE_HASH)
        pod = copy.deepcopy(template)
        pod["metadata"]["name"] = name
        pod["spec"]["nodeName"] = f"orders-api-db-down-worker-{1 + i % 2}"
        status = pod["status"]
        status["podIP"] = f"10.42.{4 + i // 250}.{1 + i % 250}"
        status["podIPs"] = [{"ip": status["podIP"]}]
        status["containerStatuses"][0]["state"]["waiting"]["message"] = (
            f"back-off 5m0s restarting failed container=api pod={name}"
        )
        status["containerStatuses"][0]["restartCount"] = 7 + i % 4
        extra.append(pod)
        data["logs"].append({**log, "pod": name})
        ev = copy.deepcopy(event)
        ev["involvedObject"]["name"] = name
        ev["message"] = f"Back-off restarting failed container api in pod {name}_{namespace}"
        data["events"].append(ev)
    objects.extend(extra)
    for obj in objects:
        if obj["kind"] in ("Deployment", "ReplicaSet") and obj["metadata"]["name"].startswith(
            "orders-api"
        ):
            obj["spec"]["replicas"] = replicas
            status = obj["status"]
            for key in ("replicas", "updatedReplicas", "fullyLabeledReplicas"):
                if key in status:
                    status[key] = replicas
            if "unavailableReplicas" in status:
                status["unavailableReplicas"] = replicas
    return data


def _renamespace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (new if k == "namespace" and v == old else _renamespace(v, old, new))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamespace(v, old, new) for v in value]
    if isinstance(value, str) and f"{old}/" in value:
        return value.replace(f"Pod {old}/", f"Pod {new}/")
    return value


def storm_alerts(scenarios: list[ShiftedScenario]) -> list[dict[str, Any]]:
    """One KubePodCrashLooping alert per crash-looping orders-api pod, as the scenario's own
    alert reads, each with its own labels and fingerprint."""
    from oncallm.scenarios.model import fingerprint

    alerts = []
    for shifted in scenarios:
        template = shifted.alert.model_dump(mode="json", by_alias=True, exclude_none=True)
        namespace = template["labels"]["namespace"]
        for obj in shifted.objects:
            if obj["kind"] != "Pod" or not obj["metadata"]["name"].startswith("orders-api-"):
                continue
            pod = obj["metadata"]["name"]
            labels = {**template["labels"], "pod": pod}
            alert = copy.deepcopy(template)
            alert["labels"] = labels
            alert["annotations"]["description"] = (
                f'Pod {namespace}/{pod} (api) is in waiting state (reason: "CrashLoopBackOff").'
            )
            alert["fingerprint"] = fingerprint(labels)
            alert["endsAt"] = "0001-01-01T00:00:00Z"
            alerts.append(alert)
    return alerts


async def plant_storm(
    api: KubeAPI, plane: LocalControlPlane, teams: int, replicas: int
) -> list[dict[str, Any]]:
    """Plant every team's namespace (concurrently); the storm's alerts."""
    base = yaml.safe_load(SCENARIO.read_text())
    run = secrets.token_hex(2)  # a second run on the same control plane plants afresh
    shifted = []
    for t in range(teams):
        data = team_scenario(base, f"orders-{run}-{t + 1:02d}", replicas)
        if t > 0:  # the Nodes are shared: the first team plants them
            data["objects"] = [o for o in data["objects"] if o["kind"] != "Node"]
        shifted.append(Scenario.model_validate(data).shift())

    async def one(s: ShiftedScenario) -> None:
        await plant(
            api,
            s,
            node_status=plane.node_status(),
            plant_log=lambda ns, pod, c, text, prev: plane.plant_log(
                ns, pod, c, text, previous=prev
            ),
        )

    await one(shifted[0])
    await asyncio.gather(*(one(s) for s in shifted[1:]))
    return storm_alerts(shifted)


class CompletionWatch:
    """Record when each AlertAnalysis of a namespace first reaches a finished phase."""

    def __init__(self, api: KubeAPI, namespace: str) -> None:
        self.api = api
        self.path = resource("AlertAnalysis").path(namespace)
        self.finished: dict[str, tuple[str, float]] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.api.request("GET", self.path)
        version = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(version))

    async def _run(self, version: str) -> None:
        while True:
            try:
                async for event in self.api.watch(self.path, resource_version=version):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    phase = (obj.get("status") or {}).get("phase")
                    name = str((obj.get("metadata") or {}).get("name"))
                    if phase in FINISHED and name not in self.finished:
                        self.finished[name] = (phase, time.perf_counter())
                        self.changed.set()
            except ApiError:
                await asyncio.sleep(0.2)  # a broken watch resumes from the last version

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.finished) < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(self.finished)} of {count} analyses finished in {timeout:.0f} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def apiserver_requests(plane: LocalControlPlane) -> int:
    """Requests the API server has answered so far (its ``apiserver_request_total``)."""
    status, text = plane.request("/metrics", timeout=30)
    if status != 200:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def run_once(
    plane: LocalControlPlane,
    admin: KubeAPI,
    alerts: list[dict[str, Any]],
    concurrency: int,
    *,
    timeout: float,
    operator_qps: float | None = None,
    pids: dict[str, int] | None = None,
) -> AnalysisRun:
    """A fresh stack at ``concurrency``; the storm in one notification; wait for every report.

    ``operator_qps`` sets the operator's client-side rate limit (ONCALLM_KUBE_QPS); None
    keeps its default."""
    from oncallm.evaluation.stack import running_stack

    namespace = await fresh_namespace(admin, f"analysis-c{concurrency}")
    await wait_crds_served(admin, namespace)
    run = AnalysisRun(concurrency=concurrency, alerts=len(alerts), operator_qps=operator_qps)
    saved = {k: os.environ.pop(k) for k in (*MODEL_ENV, *TUNING_ENV) if k in os.environ}
    os.environ["ONCALLM_CONCURRENCY"] = str(concurrency)
    if operator_qps is not None:
        os.environ["ONCALLM_KUBE_QPS"] = str(operator_qps)
    watch = CompletionWatch(admin, namespace)
    cpu = CpuMeter(pids)
    try:
        async with running_stack(str(plane.kubeconfig), namespace) as stack:
            await watch.start()
            requests_before = apiserver_requests(plane)
            cpu.start()
            started = time.perf_counter()
            answer = await stack.send(notification(alerts, receiver="oncallm"))
            run.stored_s = time.perf_counter() - started
            if len(answer) != len(alerts):
                raise RuntimeError(f"the sidecar stored {len(answer)} of {len(alerts)} alerts")
            await watch.wait(len(alerts), timeout)
            run.cpu_s = cpu.stop()
            run.requests = apiserver_requests(plane) - requests_before
    finally:
        await watch.stop()
        for key in TUNING_ENV:
            os.environ.pop(key, None)
        os.environ.update(saved)
    done = [t - started for phase, t in watch.finished.values() if phase == "Completed"]
    run.completed = len(done)
    run.failed = len(watch.finished) - len(done)
    run.latencies_s = done
    run.wall_s = max(done, default=0.0)
    return run


async def run_analysis(
    plane: LocalControlPlane,
    *,
    teams: int = 10,
    replicas: int = 20,
    concurrencies: tuple[int, ...] = (8, 32),
    timeout: float = 240.0,
    operator_qps: float | None = None,
    pids: dict[str, int] | None = None,
    log: Any = print,
) -> list[AnalysisRun]:
    """Plant the storm once, then one run per concurrency setting."""
    admin = await KubeAPI.connect(ClientSettings(kubeconfig=str(plane.kubeconfig), qps=0))
    runs = []
    try:
        started = time.perf_counter()
        alerts = await plant_storm(admin, plane, teams, replicas)
        log(
            f"  planted {teams} namespaces x {replicas} crash-looping pods "
            f"in {time.perf_counter() - started:.1f} s"
        )
        for concurrency in concurrencies:
            run = await run_once(
                plane,
                admin,
                alerts,
                concurrency,
                timeout=timeout,
                operator_qps=operator_qps,
                pids=pids,
            )
            log(f"  concurrency {concurrency}: {run.completed} completed in {run.wall_s:.1f} s")
            runs.append(run)
    finally:
        await admin.close()
    return runs
