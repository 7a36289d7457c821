"""Load scenarios' ``metrics:`` into a real Prometheus, by backfilling a TSDB block.

Each series gets one sample per minute, the last one at ``now``; ``promtool tsdb
create-blocks-from openmetrics`` writes them as blocks that a Prometheus started on that folder
serves. Queries within Prometheus' 5-minute lookback of ``now`` see the latest values.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from oncallm.scenarios.model import Scenario

_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


def openmetrics(scenarios: list[Scenario], now: datetime) -> str:
    """Every scenario's series as OpenMetrics text with timestamps, grouped by metric family."""
    samples: dict[str, list[str]] = {}
    for scenario in scenarios:
        for metric in scenario.metrics:
            match = _NAME.match(metric.series.strip())
            if match is None:
                raise ValueError(f"{scenario.name}: not a series selector: {metric.series!r}")
            values = metric.values.split()
            family = samples.setdefault(match.group(1), [])
            for i, value in enumerate(values):
                when = now - timedelta(minutes=len(values) - 1 - i)
                family.append(f"{metric.series.strip()} {float(value)} {when.timestamp():.3f}")
    lines: list[str] = []
    for name in sorted(samples):
        lines.append(f"# TYPE {name} gauge")
        lines.extend(
            sorted(
                samples[name],
                key=lambda line: (line.rsplit(" ", 2)[0], float(line.rsplit(" ", 1)[1])),
            )
        )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(scenarios: list[Scenario], now: datetime, data_dir: Path) -> bool:
    """Write the scenarios' series into ``data_dir`` as TSDB blocks; False if there are none."""
    text = openmetrics(scenarios, now)
    if text.strip() == "# EOF":
        return False
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError(
            "promtool is needed to load scenario metrics: apt-get install prometheus"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "scenario-metrics.om"
    source.write_text(text)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
    )
    return True
