"""What `oncallm eval` prints and writes: splits, confusion matrix, nothing of the blind split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from oncallm.evaluation.runner import Result, result_record, run_eval, split_of, table
from oncallm.scenarios.model import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def results() -> list[Result]:
    return [
        Result("orders-api-db-down", "dependency_unreachable", "dependency_unreachable", ["orders-db"]),
        Result("reports-oom", "oom_killed", "oom_killed", [], ["512Mi"], split="tuned"),
        Result("cart-oom", "oom_killed", "bad_config", split="corpus"),
        Result("secret-thing", "dns_failure", "dns_failure", ["secret-mention"], split="blind"),
        Result("hidden-error", "dns_failure", None, error="ApiError: 403: planting Pod p-1", split="blind"),
    ]  # fmt: skip


def test_rows_then_a_score_per_split_then_the_confusion_matrices_then_the_total() -> None:
    lines = table(results()).splitlines()
    assert lines[0].split() == ["scenario", "split", "expected", "got", "mentions", "ok"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["orders-api-db-down", "reports-oom", "cart-oom"]
    assert lines[4:7] == [
        "tuned: 1/2 correct",
        "corpus: 0/1 correct",
        "blind: 1/2 correct (1 not analysed: ApiError 1)",
    ]
    assert lines[7].startswith("confusion, tuned + corpus")
    assert lines[8].split() == ["dependency_unreachable", "1/1"]
    assert lines[9].split() == ["oom_killed", "1/2", "bad_config", "1"]
    assert lines[10] == "confusion, blind only:"
    assert lines[11].split() == ["dns_failure", "1/2", "error", "1"]
    assert lines[-1] == "2/5 correct"


def test_nothing_of_a_blind_scenario_is_shown_or_written() -> None:
    printed = table(results())
    records = json.dumps([result_record(r) for r in results()])
    for secret in ("secret-thing", "hidden-error", "secret-mention", "p-1", "planting Pod"):
        assert secret not in printed
        assert secret not in records
    blind = [result_record(r) for r in results() if r.split == "blind"]
    assert blind[1] == {
        "split": "blind",
        "expected": "dns_failure",
        "got": None,
        "correct": False,
        "error": "ApiError",
    }
    visible = result_record(results()[1])
    assert visible["split"] == "tuned" and visible["mentions_missing"] == ["512Mi"]


def test_the_split_is_the_subfolder(tmp_path: Path) -> None:
    source = yaml.safe_load((SCENARIOS / "reports-oom.yaml").read_text())
    for folder in ("", "corpus", "blind", "blind/deeper", "blind-b"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        data = {**source, "name": f"oom-{folder.replace('/', '-') or 'top'}"}
        (tmp_path / folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))

    def split(path: Path, root: Path) -> str:
        return split_of(root, load_scenario(path))

    assert split(tmp_path / "oom-top.yaml", tmp_path) == "tuned"
    assert split(tmp_path / "corpus" / "oom-corpus.yaml", tmp_path) == "corpus"
    assert split(tmp_path / "blind" / "deeper" / "oom-blind-deeper.yaml", tmp_path) == "blind"
    # The split folder given itself keeps its split: its scenarios stay hidden.
    assert split(tmp_path / "blind" / "oom-blind.yaml", tmp_path / "blind") == "blind"
    deeper = tmp_path / "blind" / "deeper"
    assert split(deeper / "oom-blind-deeper.yaml", deeper) == "blind"
    # Any blind… folder is hidden, a part still being written as well.
    assert split(tmp_path / "blind-b" / "oom-blind-b.yaml", tmp_path) == "blind-b"
    assert "oom-blind-b" not in table([Result("oom-blind-b", "oom_killed", None, split="blind-b")])


def test_offline_eval_loads_the_folder_recursively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "blind").mkdir()
    source = yaml.safe_load((SCENARIOS / "reports-oom.yaml").read_text())
    (tmp_path / "reports-oom.yaml").write_text(yaml.safe_dump(source))
    (tmp_path / "corpus" / "oom-2.yaml").write_text(yaml.safe_dump({**source, "name": "oom-2"}))
    (tmp_path / "blind" / "oom-3.yaml").write_text(yaml.safe_dump({**source, "name": "oom-3"}))
    output = tmp_path / "results.json"
    assert (
        run_eval(tmp_path, offline=True, output=output, controlplane_dir=None, namespace="x") == 0
    )
    printed = capsys.readouterr().out
    assert "oom-3" not in printed and "oom-3" not in output.read_text()
    assert "blind: 1/1 correct" in printed.splitlines()
    assert printed.splitlines()[-2] == "3/3 correct"
    assert [r["split"] for r in json.loads(output.read_text())] == ["tuned", "corpus", "blind"]
