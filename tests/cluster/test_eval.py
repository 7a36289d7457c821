"""`oncallm eval` on the real API server, with the scenarios' metrics in a real Prometheus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.evaluation.runner import run_eval
from tests.helpers.monitoring import needs_prometheus

pytestmark = [pytest.mark.cluster, needs_prometheus]

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_eval_scores_and_reads_scenario_metrics_from_prometheus(
    control_plane: LocalControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in ("pricing-cpu-throttling", "reports-oom", "orders-api-db-down"):
        shutil.copy(SCENARIOS / f"{name}.yaml", folder)
    output = tmp_path / "results.json"
    assert (
        run_eval(
            folder,
            offline=False,
            output=output,
            controlplane_dir=control_plane.folder,
            namespace="eval-metrics",
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "scenario metrics served by Prometheus" in printed
    assert printed.splitlines()[-3] == "3/3 correct"
    results = {r["scenario"]: r for r in json.loads(output.read_text())}
    for name, metric in (
        ("pricing-cpu-throttling", "metric/cpu_throttled_ratio"),
        ("reports-oom", "metric/memory_working_set_bytes"),
    ):
        evidence = control_plane.kubectl_run(
            "get",
            "aa",
            "-n",
            "eval-metrics",
            results[name]["analysis"],
            "-o",
            "jsonpath={.status.evidence[*].id}",
        )
        assert metric in evidence.split(), (name, evidence)
