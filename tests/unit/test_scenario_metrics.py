from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from oncallm.scenarios.metrics import openmetrics
from oncallm.scenarios.model import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_series_become_timestamped_openmetrics_ending_at_now() -> None:
    scenario = load_scenario(SCENARIOS / "reports-oom.yaml")
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    text = openmetrics([scenario], now)
    lines = text.splitlines()
    assert lines[0] == "# TYPE container_memory_working_set_bytes gauge"
    assert lines[-1] == "# EOF"
    samples = [line for line in lines if not line.startswith("#")]
    values = scenario.metrics[0].values.split()
    assert len(samples) == len(values)
    timestamps = [float(line.rsplit(" ", 1)[1]) for line in samples]
    assert timestamps[-1] == now.timestamp()
    assert timestamps == sorted(timestamps)
    assert timestamps[-1] - timestamps[0] == 60 * (len(values) - 1)
    assert samples[-1].split(" ")[1] == str(float(values[-1]))


def test_shifting_moves_times_but_not_gos_zero_time() -> None:
    scenario = load_scenario(SCENARIOS / "orders-api-db-down.yaml")
    scenario.alert["endsAt"] = "0001-01-01T00:00:00Z"
    later = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    shifted = scenario.shift(later)
    assert shifted.alert.ended is None  # still firing
    delta = later - scenario.now
    assert shifted.alert.starts_at == scenario.alert_model().starts_at + delta


def test_shifting_keeps_the_fractional_seconds_a_microtime_needs() -> None:
    """A Lease's renewTime is a MicroTime: the API server refuses it without six digits."""
    scenario = load_scenario(SCENARIOS / "orders-api-db-down.yaml")
    lease = {
        "kind": "Lease",
        "metadata": {"name": "l", "namespace": "orders"},
        "spec": {"renewTime": "2025-05-14T09:40:00.000000Z", "acquireTime": "2025-05-14T09:40:00Z"},
    }
    scenario.objects.append(lease)
    later = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    spec = next(o for o in scenario.shift(later).objects if o["kind"] == "Lease")["spec"]
    delta = later - scenario.now
    moved = (datetime(2025, 5, 14, 9, 40, tzinfo=UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S")
    assert spec["renewTime"] == f"{moved}.000000Z"
    assert spec["acquireTime"] == f"{moved}Z"
