"""`oncallm eval` on the real API server: the scenarios' metrics in a real Prometheus, any
kind planted, nothing left behind, and the same answers as offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.evaluation.runner import run_eval
from tests.helpers.monitoring import needs_prometheus

pytestmark = pytest.mark.cluster

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
#: Scenarios of this test only: custom kinds (generated CRDs) and kube-system.
PLANTING = Path(__file__).resolve().parent / "data" / "eval"


@needs_prometheus
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


def test_offline_and_on_the_control_plane_give_the_same_answers(
    control_plane: LocalControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Custom kinds, kube-system, Node events in default, a pod left Terminating: each
    scenario gets the same category and the same mentions both ways, and the planter leaves
    the shared namespaces as it found them."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for path in PLANTING.glob("*.yaml"):
        shutil.copy(path, folder)
    for name in ("ledger-node-down", "inventory-missing-secret"):
        shutil.copy(SCENARIOS / f"{name}.yaml", folder)
    answers = {}
    for offline in (True, False):
        output = tmp_path / f"results-{offline}.json"
        code = run_eval(
            folder,
            offline=offline,
            output=output,
            controlplane_dir=control_plane.folder,
            namespace="eval-same",
        )
        assert code == 0
        answers[offline] = {
            r["scenario"]: (r["got"], r["mentions_found"], r["mentions_missing"], r["error"])
            for r in json.loads(output.read_text())
        }
    capsys.readouterr()
    assert len(answers[True]) == 4
    assert all(error is None for *_, error in answers[False].values()), answers[False]
    assert answers[False] == answers[True]

    kubectl = control_plane.kubectl_run
    assert "kube-system" in kubectl("get", "namespaces", "-o", "name")
    left = kubectl(
        "get",
        "pods,deployments,serviceaccounts,poddisruptionbudgets,leases,ingresses,cronjobs,events",
        "-n",
        "kube-system",
        "-o",
        "name",
    )
    assert "metrics-server" not in left and "plant-kube-system" not in left, left
    cluster_wide = kubectl(
        "get",
        "nodes,priorityclasses,csidrivers,volumeattachments,validatingwebhookconfigurations,crds",
        "-o",
        "name",
    )
    for name in ("plant-", "ledger-node-down", "external-secrets.io", "cert-manager.io"):
        assert name not in cluster_wide, cluster_wide
    assert "ledger-node-down" not in kubectl("get", "events", "-n", "default", "-o", "name")


def test_plant_only_names_the_file_the_api_server_refuses_and_leaves_nothing(
    control_plane: LocalControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(SCENARIOS / "reports-oom.yaml", folder)
    broken = (SCENARIOS / "frontend-bad-tag.yaml").read_text()
    # a label value may not end in '-': the API server answers 422
    broken = broken.replace("name: frontend-bad-tag", "name: frontend-bad-label", 1)
    broken = broken.replace("kubernetes.io/os: linux", "kubernetes.io/os: linux-", 1)
    assert "linux-" in broken
    (folder / "frontend-bad-label.yaml").write_text(broken)
    code = run_eval(folder, offline=False, output=tmp_path / "r.json",
                    controlplane_dir=control_plane.folder, namespace="eval-plant",
                    plant_only=True)  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1
    assert "reports-oom: planted and removed" in printed
    assert "frontend-bad-label: ApiError: 422" in printed and "1/2 planted" in printed
    # nothing was analysed, and what was planted is gone
    assert not control_plane.kubectl_run(
        "get", "aa", "-n", "eval-plant", "--ignore-not-found", "-o", "name"
    ).strip()
    assert not control_plane.kubectl_run(
        "get", "deploy", "-n", "reporting", "--ignore-not-found", "-o", "name"
    ).strip()
