"""``oncallm eval DIR``: plant each scenario, send its alert, score the analysis.

A scenario is correct when the category is the expected one and every expected mention
appears in the report (case-insensitive). ``--offline`` runs the same gathering, rules and
report on an in-memory cluster: no API server, for quick iterations on rules.

``DIR`` is read recursively. A scenario's split is the subfolder it sits in (``corpus``,
``blind``); files at the top are the ``tuned`` split. The printout has a row per scenario,
a score per split, a confusion matrix of categories and the overall score. Hidden splits
(``blind``) show only their score and their own confusion matrix, in the printout and in the
results file alike, so rule writers can run them without reading them.

:func:`run_model_eval` (``make eval-model``) runs the scenarios twice on the control plane,
with the rules alone and with a model, and prints them side by side: the rules' category and
the final one, each correct or not, and whether the model's answer was accepted or the rules
kept; then ``N/M correct`` for both and ``model accepted in K/M``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from oncallm.analysis.baseline import build_baseline
from oncallm.analysis.evidence import EvidenceSettings
from oncallm.analysis.rules import RuleSettings
from oncallm.evaluation.prometheus import scenario_prometheus
from oncallm.gathering.gather import MetricsSource, gather
from oncallm.intake.naming import analysis_name
from oncallm.models.alert import AlertStatus
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    AlertSpec,
    rfc3339,
)
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.pipeline.prometheus import PrometheusSource
from oncallm.pipeline.run import resolved_skip_reason
from oncallm.reports import render_report
from oncallm.scenarios.model import Scenario, load_scenarios

log = logging.getLogger(__name__)

#: The namespace of the analyses, as ``oncallm eval --namespace`` defaults it.
DEFAULT_NAMESPACE = "oncallm-eval"
#: Seconds one scenario's analysis may take before it counts as failed.
SCENARIO_TIMEOUT = 120.0
#: Scenarios evaluated on the cluster per load of the scenario Prometheus. Series are
#: backfilled to end at the load, one sample a minute, and the product queries 5-minute windows:
#: a batch must finish within about 4 minutes of its load; 40 take about a minute here.
CLUSTER_METRICS_BATCH = 40
#: The split of the scenarios at the top of the folder.
TUNED = "tuned"
#: Splits shown only as a score and a confusion matrix, never a scenario's name or details:
#: ``blind`` and any folder named ``blind…`` (``blind-b``, a part still being written).
HIDDEN_PREFIX = "blind"
#: Folder names that are splits even when the folder itself is given (``eval .../corpus``).
SPLIT_FOLDERS = frozenset({"corpus", "blind"})
#: The order splits are reported in; others follow alphabetically.
SPLIT_ORDER = ("tuned", "corpus", "blind")


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
    split: str = TUNED
    model_outcome: str | None = None
    """``status.modelOutcome``: accepted, rejected, invalid, runaway, ... (None: not asked)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return self.got == self.expected and not self.mentions_missing and not self.error


_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
"""A Markdown backslash escape: the report escapes what Markdown would otherwise format."""


def score(
    scenario: Scenario, category: str | None, report_text: str
) -> tuple[list[str], list[str]]:
    # Read the report as a person reads the rendered Markdown: ``SEND\_BATCH\_SIZE`` is
    # SEND_BATCH_SIZE on the page.
    text = _MD_ESCAPE.sub(r"\1", report_text).lower()
    found = [m for m in scenario.expect.mention if m.lower() in text]
    missing = [m for m in scenario.expect.mention if m.lower() not in text]
    return found, missing


async def evaluate_offline(
    scenario: Scenario, namespace: str = DEFAULT_NAMESPACE, metrics: MetricsSource | None = None
) -> Result:
    """The analysis the operator would write, in memory. Named and placed as on the cluster
    (``namespace``, the webhook's analysis name) and reading the same ``metrics``, so the
    report reads the same."""
    started = time.perf_counter()
    shifted = scenario.shift()
    # As the webhook stores it, and the operator's first question of it: an alert first seen
    # resolved is skipped there, so here too.
    received = rfc3339(shifted.now)
    spec = AlertAnalysisSpec(
        alert=AlertSpec.from_alert(shifted.alert),
        received_at=received,
        resolved_at=received if shifted.alert.status == AlertStatus.RESOLVED else None,
    )
    skipped = resolved_skip_reason(spec, None)
    if skipped:
        return Result(
            scenario=scenario.name,
            expected=scenario.expect.category.value,
            got=None,
            mentions_missing=list(scenario.expect.mention),  # no report, as on the cluster
            seconds=round(time.perf_counter() - started, 3),
            error=f"phase Skipped: {skipped}",
            analysis=analysis_name(shifted.alert),
        )
    ctx = await gather(
        shifted.alert, shifted.memory_reader(), DEFAULT_POLICY, metrics=metrics, now=shifted.now
    )
    # As the operator does: the evidence built once, with the settings of the environment.
    rules = build_baseline(ctx, EvidenceSettings.from_env(), RuleSettings.from_env())
    diagnosis = rules.diagnosis
    known = {e.id: e for e in rules.evidence.items}
    analysis = AlertAnalysis(
        metadata={"name": analysis_name(shifted.alert), "namespace": namespace},
        spec=spec,
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
            chain=diagnosis.chain or None,
            secondary_causes=diagnosis.secondary or None,
            missing_evidence=ctx.missing,
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


def _planter(api: Any, plane: Any) -> Any:
    """The planter of one run on the local control plane: its node status and its logs."""
    from oncallm.scenarios.plant import Planter

    return Planter(
        api,
        node_status=plane.node_status(),
        plant_log=lambda ns, pod, c, text, prev: plane.plant_log(ns, pod, c, text, previous=prev),
        remove_log=lambda ns, pod, c, prev: plane.remove_log(ns, pod, c, previous=prev),
    )


async def evaluate_on_cluster(
    scenarios: list[Scenario],
    kubeconfig: str,
    namespace: str,
    plane: Any,
    hidden: set[str] | None = None,
    timeout: float = SCENARIO_TIMEOUT,
) -> list[Result]:
    """Plant each scenario on the cluster, send its alert through the webhook, score; then
    remove what was planted. ``hidden`` names scenarios whose analyses are deleted once
    scored (a hidden split leaves nothing to read). ``timeout`` bounds one analysis."""
    from oncallm.evaluation.stack import running_stack
    from oncallm.kube.api import ClientSettings, KubeAPI
    from oncallm.kube.resources import resource
    from oncallm.scenarios.plant import ensure_namespace

    api = await KubeAPI.connect(ClientSettings(kubeconfig=kubeconfig, qps=0))
    planter = _planter(api, plane)
    results: list[Result] = []
    try:
        await ensure_namespace(api, namespace)
        # An earlier run's analyses would be this run's history (same alerts, same
        # fingerprints) and change its reports: each run starts without them.
        analyses = resource("AlertAnalysis").path(namespace)
        await api.request("DELETE", analyses)
        async with _alone(), running_stack(kubeconfig, namespace) as stack:
            deadline = time.monotonic() + SCENARIO_TIMEOUT  # the operator lifts finalizers
            while (await api.request("GET", analyses)).get("items"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the earlier analyses in {namespace} are not deleted")
                await asyncio.sleep(0.1)
            for scenario in scenarios:
                began = time.perf_counter()
                quiet = bool(hidden and scenario.name in hidden)
                result = await _one_on_cluster(
                    api, planter, stack, namespace, scenario, quiet, timeout
                )
                results.append(result)
                log.debug(
                    "scenario %s: %.2f s in all, %.2f s from alert to report",
                    "(hidden)" if quiet else scenario.name,
                    time.perf_counter() - began,
                    result.seconds,
                )
                if hidden and scenario.name in hidden and result.analysis:
                    await _forget_analysis(api, namespace, result.analysis)
    finally:
        try:
            await planter.close()
        finally:
            await api.close()
    return results


async def plant_check(
    scenarios: list[Scenario], kubeconfig: str, plane: Any
) -> list[tuple[str, str | None]]:
    """Plant each scenario on the API server and remove it again, without an alert or an
    analysis: ``(name, None)`` when the API server accepted every object, ``(name, error)``
    otherwise. For scenario writers, who must not see diagnoses."""
    from oncallm.kube.api import ClientSettings, KubeAPI

    api = await KubeAPI.connect(ClientSettings(kubeconfig=kubeconfig, qps=0))
    planter = _planter(api, plane)
    out: list[tuple[str, str | None]] = []
    try:
        async with _alone():
            for scenario in scenarios:
                shifted = scenario.shift()
                try:
                    await planter.clear_leftovers(shifted)
                    planting = await planter.plant(shifted, quiet=True)
                except Exception as err:  # one broken file must not stop the check
                    out.append((scenario.name, f"{type(err).__name__}: {err}"))
                    continue
                await planter.remove(planting)
                out.append((scenario.name, None))
    finally:
        try:
            await planter.close()
        finally:
            await api.close()
    return out


#: Scenarios are independent incidents, planted one after the other: the operator must not
#: join one scenario's alert to the incident of the one before (offline, each is alone).
_ALONE = {"ONCALLM_INCIDENTS": "false"}


@contextlib.asynccontextmanager
async def _alone() -> AsyncIterator[None]:
    saved = {name: os.environ.get(name) for name in _ALONE}
    os.environ.update(_ALONE)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _one_on_cluster(
    api: Any,
    planter: Any,
    stack: Any,
    namespace: str,
    scenario: Scenario,
    quiet: bool,
    timeout: float = SCENARIO_TIMEOUT,
) -> Result:
    from oncallm.kube.api import ApiError
    from oncallm.kube.resources import resource

    planting = None
    try:
        name, started, planting = await plant_and_alert(planter, stack, scenario, quiet=quiet)
        aa = await wait_finished(api, namespace, name, timeout)
        finished = time.perf_counter()
        status = aa.get("status") or {}
        phase = status.get("phase")
        report = ""
        if status.get("reportConfigMap"):
            try:
                cm = await api.request(
                    "GET", resource("ConfigMap").path(namespace, status["reportConfigMap"])
                )
                report = cm.get("data", {}).get("report.md", "")
            except ApiError:
                report = ""
        found, missing = score(scenario, status.get("category"), report)
        usage = status.get("tokenUsage") or {}
        return Result(
            scenario=scenario.name,
            expected=scenario.expect.category.value,
            got=status.get("category"),
            mentions_found=found,
            mentions_missing=missing,
            analyzer=status.get("analyzer"),
            seconds=round(finished - started, 3),
            error=None if phase == "Completed" else f"phase {phase}: {status.get('reason')}",
            analysis=name,
            model_outcome=status.get("modelOutcome"),
            prompt_tokens=int(usage.get("prompt") or 0),
            completion_tokens=int(usage.get("completion") or 0),
            model_calls=len(status.get("modelCalls") or []),
            model_seconds=float((status.get("timings") or {}).get("model") or 0.0),
        )
    except Exception as err:  # one broken scenario must not stop the run
        return Result(
            scenario=scenario.name,
            expected=scenario.expect.category.value,
            got=None,
            error=f"{type(err).__name__}: {err}",
        )
    finally:
        if planting is not None:
            try:
                await planter.remove(planting)
            except Exception as err:  # the next scenario's planting says what is left
                if quiet:
                    log.warning("removing a hidden scenario failed (%s)", type(err).__name__)
                else:
                    log.warning("removing scenario %s: %s", scenario.name, err)


async def _forget_analysis(api: Any, namespace: str, name: str) -> None:
    """Delete an analysis (its report ConfigMap follows by owner reference) and its Events."""
    from oncallm.kube.api import ApiError
    from oncallm.kube.resources import resource

    events = resource("Event")
    try:
        await api.request("DELETE", resource("AlertAnalysis").path(namespace, name))
        listing = await api.request(
            "GET", events.path(namespace), query={"fieldSelector": f"involvedObject.name={name}"}
        )
        for event in listing.get("items", []):
            await api.request("DELETE", events.path(namespace, event["metadata"]["name"]))
    except ApiError as err:
        log.warning("deleting a hidden analysis: %s", err.status)


async def plant_and_alert(
    planter: Any, stack: Any, scenario: Scenario, *, quiet: bool = False
) -> tuple[str, float, Any]:
    """Plant a scenario afresh (what an earlier run left of it cleared first), send its alert.

    Returns the analysis name, when (``time.perf_counter()``) the alert was sent, and the
    :class:`~oncallm.scenarios.plant.Planting` (for ``planter.remove``)."""
    shifted = scenario.shift()
    await planter.clear_leftovers(shifted)
    planting = await planter.plant(shifted, quiet=quiet)
    try:
        alert = shifted.alert.model_dump(mode="json", by_alias=True, exclude_none=True)
        sent = time.perf_counter()
        answer = await stack.send(notification(alert, scenario.name))
    except BaseException:
        await planter.remove(planting)
        raise
    return str(answer[0]["analysis"].split("/", 1)[1]), sent, planting


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


def is_hidden(split: str) -> bool:
    return split.startswith(HIDDEN_PREFIX)


def split_of(folder: Path, scenario: Scenario) -> str:
    """The subfolder of ``folder`` the scenario's file is in; ``tuned`` at the top. A hidden
    folder anywhere on the way (``eval tests/scenarios/blind``, ``blind/sub``) hides it."""
    root = folder.resolve()
    try:
        below = Path(scenario.path or "").resolve().relative_to(root).parts[:-1]
    except ValueError:
        below = ()
    for part in (*root.parts, *below):
        if is_hidden(part):
            return part
    if below:
        return below[0]
    return root.name if root.name in SPLIT_FOLDERS else TUNED


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def table(results: list[Result]) -> str:
    """One row per scenario (none of a hidden split), a score per split, the confusion
    matrix of the visible splits, then of each hidden split, and the overall score."""
    visible = [r for r in results if not is_hidden(r.split)]
    rows = [("scenario", "split", "expected", "got", "mentions", "ok")]
    for r in visible:
        mentions = f"{len(r.mentions_found)}/{len(r.mentions_found) + len(r.mentions_missing)}"
        if r.mentions_missing:
            mentions += " (missing: " + ", ".join(r.mentions_missing) + ")"
        rows.append(
            (
                r.scenario,
                r.split,
                r.expected,
                r.got or f"error: {r.error}",
                mentions,
                "yes" if r.correct else "NO",
            )
        )
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < last else cell for i, cell in enumerate(row))
        for row in rows
    ]
    splits = sorted({r.split for r in results}, key=_split_rank)
    for split in splits:
        lines.append(score_line(split, [r for r in results if r.split == split]))
    shown = [s for s in splits if not is_hidden(s)]
    if visible:
        lines.append(
            f"confusion, {' + '.join(shown)} (expected: right/all, then what it got instead):"
        )
        lines.extend(confusion(visible))
    for split in splits:
        if is_hidden(split):
            lines.append(f"confusion, {split} only:")
            lines.extend(confusion([r for r in results if r.split == split]))
    correct = sum(r.correct for r in results)
    lines.append(f"{correct}/{len(results)} correct")
    return "\n".join(lines)


def score_line(split: str, results: list[Result]) -> str:
    """``split: N/M correct``; a hidden split adds how many failed to run, by error type only."""
    line = f"{split}: {sum(r.correct for r in results)}/{len(results)} correct"
    if is_hidden(split):
        errors = Counter(_error_type(r.error) for r in results if r.error)
        if errors:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items()))
            line += f" ({sum(errors.values())} not analysed: {kinds})"
    return line


def confusion(results: list[Result]) -> list[str]:
    """Expected x got, one line per expected category: how many were right, then each wrong
    answer with its count (``error`` when the scenario produced no analysis)."""
    cells: dict[str, Counter[str]] = {}
    for r in results:
        cells.setdefault(r.expected, Counter())[r.got or "error"] += 1
    width = max((len(e) for e in cells), default=0)
    lines = []
    for expected in sorted(cells):
        counts = cells[expected]
        right = f"{counts[expected]}/{sum(counts.values())}"
        wrong = sorted(
            ((got, n) for got, n in counts.items() if got != expected), key=lambda c: (-c[1], c[0])
        )
        line = f"  {expected.ljust(width)}  {right:>5}"
        if wrong:
            line += "  " + ", ".join(f"{got} {n}" for got, n in wrong)
        lines.append(line)
    return lines


def _error_type(error: str | None) -> str:
    head = (error or "").split(":", 1)[0]
    return head if head.isidentifier() or head.startswith("phase") else "error"


def result_record(r: Result) -> dict[str, Any]:
    """A result as the results file holds it; a hidden split's without its scenario."""
    if is_hidden(r.split):
        return {
            "split": r.split,
            "expected": r.expected,
            "got": r.got,
            "correct": r.correct,
            "error": _error_type(r.error) if r.error else None,
        }
    return asdict(r) | {"correct": r.correct}


def run_eval(
    folder: Path,
    *,
    offline: bool,
    output: Path,
    controlplane_dir: Path | None,
    namespace: str,
    plant_only: bool = False,
) -> int:
    scenarios = load_scenarios(folder, recursive=True)
    if not scenarios:
        print(f"no scenario files (*.yaml) in {folder}")
        return 2
    if plant_only:
        from oncallm.controlplane import LocalControlPlane

        plane = LocalControlPlane.running_or_started(controlplane_dir)
        checked = asyncio.run(plant_check(scenarios, str(plane.kubeconfig), plane))
        for name, error in checked:
            print(f"{name}: {'planted and removed' if error is None else error}", flush=True)
        failed = sum(1 for _, error in checked if error)
        print(f"{len(checked) - failed}/{len(checked)} planted")
        return 1 if failed else 0
    scenarios.sort(key=lambda s: (_split_rank(split_of(folder, s)), s.path or ""))
    splits = [split_of(folder, s) for s in scenarios]
    hidden = {s.name for s, split in zip(scenarios, splits, strict=True) if is_hidden(split)}
    if offline:
        with scenario_prometheus(scenarios) as prometheus_url:
            if prometheus_url:
                print(f"scenario metrics served by Prometheus at {prometheus_url}", flush=True)
            results = asyncio.run(_offline(scenarios, namespace, prometheus_url))
    else:
        from oncallm.controlplane import LocalControlPlane

        plane = LocalControlPlane.running_or_started(controlplane_dir)
        saved = os.environ.get("ONCALLM_PROMETHEUS_URL")
        results = []
        # The series of a batch end when its Prometheus is loaded, and each scenario is planted
        # as "now" when its turn comes: one Prometheus for a whole run let the later
        # scenarios' series age past the 5-minute windows the product queries.
        for start in range(0, len(scenarios), CLUSTER_METRICS_BATCH):
            batch = scenarios[start : start + CLUSTER_METRICS_BATCH]
            with scenario_prometheus(batch) as prometheus_url:
                if prometheus_url:
                    os.environ["ONCALLM_PROMETHEUS_URL"] = prometheus_url
                    print(f"scenario metrics served by Prometheus at {prometheus_url}", flush=True)
                else:
                    os.environ.pop("ONCALLM_PROMETHEUS_URL", None)
                try:
                    results += asyncio.run(
                        evaluate_on_cluster(
                            batch, str(plane.kubeconfig), namespace, plane, hidden=hidden
                        )
                    )
                finally:
                    if saved is None:
                        os.environ.pop("ONCALLM_PROMETHEUS_URL", None)
                    else:
                        os.environ["ONCALLM_PROMETHEUS_URL"] = saved
    for result, split in zip(results, splits, strict=True):
        result.split = split
    print(table(results))
    times = sorted(r.seconds for r in results if r.correct or r.got)
    if times and not offline:
        print(
            f"alert to completed report: median {times[len(times) // 2]:.2f} s, "
            f"max {times[-1]:.2f} s"
        )
    output.write_text(json.dumps([result_record(r) for r in results], indent=2))
    print(f"results: {output}")
    return 0


async def _offline(
    scenarios: list[Scenario], namespace: str = DEFAULT_NAMESPACE, prometheus_url: str | None = None
) -> list[Result]:
    """Every scenario in memory; with ``prometheus_url``, gathering reads the scenarios' metrics
    from that Prometheus, as the operator does on the control plane."""
    async with aiohttp.ClientSession() as session:
        metrics = PrometheusSource(prometheus_url, session) if prometheus_url else None
        return [await _offline_one(s, namespace, metrics) for s in scenarios]


async def _offline_one(scenario: Scenario, namespace: str, metrics: MetricsSource | None) -> Result:
    try:
        return await evaluate_offline(scenario, namespace, metrics)
    except Exception as err:
        return Result(
            scenario.name,
            scenario.expect.category.value,
            None,
            error=f"{type(err).__name__}: {err}",
        )


#: Environment variables of the model path: unset for the rules-alone pass of a model eval.
MODEL_VARIABLES = ("ONCALLM_LLM_BASE_URL", "ONCALLM_LLM_API_KEY", "OPENAI_API_KEY")


def side_by_side(rules: list[Result], final: list[Result]) -> str:
    """The rules alone and the final diagnosis (with the model) per scenario, then
    the scenarios the model made worse, ``N/M correct`` for each and ``model accepted in
    K/M``. A hidden split shows no rows and no names."""
    rows = [("scenario", "expected", "rules", "ok", "final", "ok", "model")]
    for alone, with_model in zip(rules, final, strict=True):
        if is_hidden(with_model.split):
            continue
        rows.append(
            (
                with_model.scenario,
                with_model.expected,
                alone.got or "error",
                "yes" if alone.correct else "NO",
                with_model.got or f"error: {with_model.error}",
                "yes" if with_model.correct else "NO",
                _model_verdict(with_model),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(widths[i]) if i < len(widths) else c for i, c in enumerate(row))
        for row in rows
    ]
    splits = sorted({r.split for r in final}, key=_split_rank)
    if len(splits) > 1:
        for split in splits:
            part = [i for i, r in enumerate(final) if r.split == split]
            lines.append(
                f"{split}: final {sum(final[i].correct for i in part)}/{len(part)}, rules "
                f"{sum(rules[i].correct for i in part)}/{len(part)}, model accepted "
                f"{sum(final[i].model_outcome == 'accepted' for i in part)}/{len(part)}"
            )
    asked = [r for r in final if r.model_calls]
    if asked:

        def median(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[len(ordered) // 2]

        lines.append(
            f"model per analysis ({len(asked)} asked): median "
            f"{median([r.prompt_tokens for r in asked]):.0f} prompt + "
            f"{median([r.completion_tokens for r in asked]):.0f} completion tokens, "
            f"{median([r.model_seconds for r in asked]):.1f} s (max "
            f"{max(r.model_seconds for r in asked):.1f} s), "
            f"{median([r.model_calls for r in asked]):.0f} call(s)"
        )
    outcomes = Counter(r.model_outcome or "not asked" for r in final)
    lines.append("model outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())))
    lost = worse_than_rules(rules, final)
    shown = [r.scenario for r in lost if not is_hidden(r.split)]
    hidden = len(lost) - len(shown)
    lines.append(
        "worse than the rules alone on: "
        + (", ".join([*shown, *([f"{hidden} hidden"] if hidden else [])]) or "none")
    )
    total = len(final)
    lines.append(
        f"final diagnosis (with the model): {sum(r.correct for r in final)}/{total} correct"
    )
    lines.append(f"rules alone: {sum(r.correct for r in rules)}/{total} correct")
    accepted = sum(r.model_outcome == "accepted" for r in final)
    lines.append(f"model accepted in {accepted}/{total}")
    return "\n".join(lines)


def worse_than_rules(rules: list[Result], final: list[Result]) -> list[Result]:
    """The final results (with the model) that are wrong where the rules alone were right:
    never worse than the rules holds per scenario, not only in the sum."""
    return [f for r, f in zip(rules, final, strict=True) if r.correct and not f.correct]


def _model_verdict(result: Result) -> str:
    if result.model_outcome is None:
        return "not asked"
    if result.model_outcome == "accepted":
        return "accepted"
    return f"rules kept ({result.model_outcome})"


def run_model_eval(
    folder: Path,
    *,
    model_env: dict[str, str],
    output: Path,
    controlplane_dir: Path | None,
    namespace: str,
    splits: set[str] | None = None,
    timeout: float = 900.0,
) -> int:
    """Score the scenarios with the rules alone, then with the model of ``model_env``
    (``ONCALLM_LLM_*`` variables), on the local control plane; print both side by side.

    ``splits`` keeps only those splits (``tuned``, ``corpus``, ...; all when None).
    Returns 0, or 1 when the model made the final diagnosis worse than the rules alone on
    any scenario (a gain on one does not pay for a loss on another).
    """
    from oncallm.controlplane import LocalControlPlane

    scenarios = load_scenarios(folder, recursive=True)
    scenarios.sort(key=lambda s: (_split_rank(split_of(folder, s)), s.path or ""))
    if splits is not None:
        scenarios = [s for s in scenarios if split_of(folder, s) in splits]
    if not scenarios:
        print(f"no scenario files (*.yaml) in {folder} for the splits {sorted(splits or [])}")
        return 2
    split_names = [split_of(folder, s) for s in scenarios]
    hidden = {s.name for s, split in zip(scenarios, split_names, strict=True) if is_hidden(split)}
    plane = LocalControlPlane.running_or_started(controlplane_dir)
    saved = {k: os.environ.get(k) for k in (*MODEL_VARIABLES, *model_env, "ONCALLM_PROMETHEUS_URL")}

    def run(label: str, ns: str) -> list[Result]:
        print(f"{label}: {len(scenarios)} scenarios on the local control plane", flush=True)
        return asyncio.run(
            evaluate_on_cluster(
                scenarios, str(plane.kubeconfig), ns, plane, hidden=hidden, timeout=timeout
            )
        )

    try:
        with scenario_prometheus(scenarios) as prometheus_url:
            if prometheus_url:
                os.environ["ONCALLM_PROMETHEUS_URL"] = prometheus_url
            for name in (*MODEL_VARIABLES, *model_env):
                os.environ.pop(name, None)
            rules = run("rules alone", f"{namespace}-rules")
            os.environ.update(model_env)
            final = run(f"with the model {model_env.get('ONCALLM_LLM_MODEL', '')}", namespace)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    for split, alone, with_model in zip(split_names, rules, final, strict=True):
        alone.split = with_model.split = split
    print(side_by_side(rules, final))
    output.write_text(
        json.dumps(
            {
                "rules": [result_record(r) for r in rules],
                "final": [result_record(r) for r in final],
            },
            indent=2,
        )
    )
    print(f"results: {output}")
    return 1 if worse_than_rules(rules, final) else 0
