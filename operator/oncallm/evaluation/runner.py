"""``oncallm eval DIR``: plant each scenario, send its alert, score the analysis.

A scenario is correct when the category is the expected one and every expected mention
appears in the report (case-insensitive). ``--offline`` runs the same gathering, rules and
report on an in-memory cluster: no API server, for quick iterations on rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oncallm.analysis.evidence import build_evidence
from oncallm.analysis.rules import diagnose
from oncallm.evaluation.prometheus import scenario_prometheus
from oncallm.gathering.gather import gather
from oncallm.models.analysis import AlertAnalysis, AlertAnalysisSpec, AlertAnalysisStatus, AlertSpec
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.reports import render_report
from oncallm.scenarios.model import Scenario, load_scenarios

#: Seconds one scenario's analysis may take before it counts as failed.
SCENARIO_TIMEOUT = 120.0


@dataclass
class Result:
    scenario: str
    expected: str
    got: str | None
    mentions_found: list[str] = field(default_factory=list)
    mentions_missing: list[str] = field(default_factory=list)
    analyzer: str | None = None
    seconds: float = 0.0
    error: str | None = None
    analysis: str | None = None

    @property
    def correct(self) -> bool:
        return self.got == self.expected and not self.mentions_missing and not self.error


def score(
    scenario: Scenario, category: str | None, report_text: str
) -> tuple[list[str], list[str]]:
    text = report_text.lower()
    found = [m for m in scenario.expect.mention if m.lower() in text]
    missing = [m for m in scenario.expect.mention if m.lower() not in text]
    return found, missing


async def evaluate_offline(scenario: Scenario) -> Result:
    started = time.perf_counter()
    shifted = scenario.shift()
    ctx = await gather(shifted.alert, shifted.memory_reader(), DEFAULT_POLICY, now=shifted.now)
    ctx.evidence = build_evidence(ctx)
    diagnosis = diagnose(ctx)
    known = {e.id: e for e in ctx.evidence}
    analysis = AlertAnalysis(
        metadata={"name": scenario.name, "namespace": "offline"},
        spec=AlertAnalysisSpec(alert=AlertSpec.from_alert(shifted.alert)),
        status=AlertAnalysisStatus(
            phase="Completed",
            target=ctx.target,
            target_display=ctx.target.display,
            summary=diagnosis.summary,
            root_cause=diagnosis.root_cause,
            category=diagnosis.category,
            confidence=diagnosis.confidence,
            impact=diagnosis.impact,
            immediate_actions=diagnosis.immediate_actions,
            recommendations=diagnosis.recommendations,
            evidence=[known[i] for i in diagnosis.evidence if i in known],
            commands=diagnosis.commands,
            analyzer="rules",
        ),
    )
    report = render_report(analysis)["report.md"]
    found, missing = score(scenario, diagnosis.category.value, report)
    return Result(
        scenario=scenario.name,
        expected=scenario.expect.category.value,
        got=diagnosis.category.value,
        mentions_found=found,
        mentions_missing=missing,
        analyzer="rules",
        seconds=round(time.perf_counter() - started, 3),
    )


async def evaluate_on_cluster(
    scenarios: list[Scenario], kubeconfig: str, namespace: str, plane: Any
) -> list[Result]:
    """Plant each scenario on the cluster, send its alert through the webhook, score."""
    from oncallm.evaluation.stack import running_stack
    from oncallm.kube.api import ApiError, ClientSettings, KubeAPI
    from oncallm.kube.resources import resource
    from oncallm.scenarios.plant import ensure_namespace

    api = await KubeAPI.connect(ClientSettings(kubeconfig=kubeconfig, qps=0))
    results: list[Result] = []
    try:
        await ensure_namespace(api, namespace)
        async with running_stack(kubeconfig, namespace) as stack:
            for scenario in scenarios:
                try:
                    name, started = await plant_and_alert(api, stack, plane, scenario)
                    aa = await wait_finished(api, namespace, name, SCENARIO_TIMEOUT)
                    finished = time.perf_counter()
                    phase = (aa.get("status") or {}).get("phase")
                    status = aa.get("status") or {}
                    report = ""
                    if status.get("reportConfigMap"):
                        try:
                            cm = await api.request(
                                "GET",
                                resource("ConfigMap").path(namespace, status["reportConfigMap"]),
                            )
                            report = cm.get("data", {}).get("report.md", "")
                        except ApiError:
                            report = ""
                    found, missing = score(scenario, status.get("category"), report)
                    results.append(
                        Result(
                            scenario=scenario.name,
                            expected=scenario.expect.category.value,
                            got=status.get("category"),
                            mentions_found=found,
                            mentions_missing=missing,
                            analyzer=status.get("analyzer"),
                            seconds=round(finished - started, 3),
                            error=None
                            if phase == "Completed"
                            else f"phase {phase}: {status.get('reason')}",
                            analysis=name,
                        )
                    )
                except Exception as err:  # one broken scenario must not stop the run
                    results.append(
                        Result(
                            scenario=scenario.name,
                            expected=scenario.expect.category.value,
                            got=None,
                            error=f"{type(err).__name__}: {err}",
                        )
                    )
    finally:
        await api.close()
    return results


async def plant_and_alert(
    api: Any, stack: Any, plane: Any, scenario: Scenario
) -> tuple[str, float]:
    """Plant a scenario afresh (its namespaces cleared first), send its alert.

    Returns the analysis name and when (``time.perf_counter()``) the alert was sent."""
    from oncallm.scenarios.plant import clear_namespace, plant, wait_namespace_gone

    shifted = scenario.shift()
    for ns in scenario.namespaces():
        await clear_namespace(api, ns)
    for ns in scenario.namespaces():
        await wait_namespace_gone(api, ns)
    await plant(
        api,
        shifted,
        node_status=plane.node_status(),
        plant_log=lambda ns, pod, c, text, prev: plane.plant_log(ns, pod, c, text, previous=prev),
    )
    alert = shifted.alert.model_dump(mode="json", by_alias=True, exclude_none=True)
    sent = time.perf_counter()
    answer = await stack.send(notification(alert, scenario.name))
    return str(answer[0]["analysis"].split("/", 1)[1]), sent


async def wait_finished(api: Any, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The analysis once it is Completed, Failed or Skipped (or as it is at the deadline)."""
    from oncallm.kube.resources import resource

    path = resource("AlertAnalysis").path(namespace, name)
    deadline = time.monotonic() + timeout
    while True:
        aa: dict[str, Any] = await api.request("GET", path)
        phase = (aa.get("status") or {}).get("phase")
        if phase in ("Completed", "Failed", "Skipped") or time.monotonic() > deadline:
            return aa
        await asyncio.sleep(0.1)


def notification(alert: dict[str, Any], group: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{scenario="{group}"}}',
        "truncatedAlerts": 0,
        "status": alert.get("status", "firing"),
        "receiver": "oncallm-eval",
        "groupLabels": {"alertname": alert["labels"]["alertname"]},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert.get("annotations", {}),
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [alert],
    }


def table(results: list[Result]) -> str:
    rows = [("scenario", "expected", "got", "mentions", "ok")]
    for r in results:
        mentions = f"{len(r.mentions_found)}/{len(r.mentions_found) + len(r.mentions_missing)}"
        if r.mentions_missing:
            mentions += " (missing: " + ", ".join(r.mentions_missing) + ")"
        rows.append(
            (
                r.scenario,
                r.expected,
                r.got or f"error: {r.error}",
                mentions,
                "yes" if r.correct else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row))
        for row in rows
    ]
    correct = sum(r.correct for r in results)
    lines.append(f"{correct}/{len(results)} correct")
    return "\n".join(lines)


def run_eval(
    folder: Path, *, offline: bool, output: Path, controlplane_dir: Path | None, namespace: str
) -> int:
    scenarios = load_scenarios(folder)
    if not scenarios:
        print(f"no scenario files (*.yaml) in {folder}")
        return 2
    if offline:
        results = asyncio.run(_offline(scenarios))
    else:
        from oncallm.controlplane import LocalControlPlane

        plane = LocalControlPlane.running_or_started(controlplane_dir)
        saved = os.environ.get("ONCALLM_PROMETHEUS_URL")
        with scenario_prometheus(scenarios) as prometheus_url:
            if prometheus_url:
                os.environ["ONCALLM_PROMETHEUS_URL"] = prometheus_url
                print(f"scenario metrics served by Prometheus at {prometheus_url}", flush=True)
            try:
                results = asyncio.run(
                    evaluate_on_cluster(scenarios, str(plane.kubeconfig), namespace, plane)
                )
            finally:
                if saved is None:
                    os.environ.pop("ONCALLM_PROMETHEUS_URL", None)
                else:
                    os.environ["ONCALLM_PROMETHEUS_URL"] = saved
    print(table(results))
    times = sorted(r.seconds for r in results if r.correct or r.got)
    if times and not offline:
        print(
            f"alert to completed report: median {times[len(times) // 2]:.2f} s, "
            f"max {times[-1]:.2f} s"
        )
    output.write_text(json.dumps([asdict(r) | {"correct": r.correct} for r in results], indent=2))
    print(f"results: {output}")
    return 0


async def _offline(scenarios: list[Scenario]) -> list[Result]:
    results = []
    for scenario in scenarios:
        try:
            results.append(await evaluate_offline(scenario))
        except Exception as err:
            results.append(
                Result(
                    scenario.name,
                    scenario.expect.category.value,
                    None,
                    error=f"{type(err).__name__}: {err}",
                )
            )
    return results
