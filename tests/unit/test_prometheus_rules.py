"""OnCallM's own alerting rules are valid PromQL, checked by Prometheus's promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULE = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheusrule.yaml"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus"
)
def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = [r["alert"] for g in spec["groups"] for r in g["rules"]]
    assert "OnCallMAnalysesFailing" in names and "OnCallMDown" in names
