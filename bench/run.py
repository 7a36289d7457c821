"""``make bench``: OnCallM's benchmarks on one local control plane; prints the figures.

One real etcd + kube-apiserver + kube-controller-manager is started in a temporary folder for
the run and stopped at the end, so every figure of a run is measured against the same API
server and compares with the others (this machine is shared: read ratios, not absolutes).

    .venv/bin/python bench/run.py                    # everything (~8 minutes on 2 cores)
    .venv/bin/python bench/run.py --part intake      # one part (repeat --part for more)
    .venv/bin/python bench/run.py --help             # every option

What each figure means: docs/bench.md. The figures are also written to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.bench_analysis import run_analysis  # noqa: E402
from bench.bench_intake import run_intake  # noqa: E402
from bench.bench_memory import run_memory  # noqa: E402
from bench.bench_storm import run_storm  # noqa: E402
from oncallm.controlplane import LocalControlPlane  # noqa: E402
from oncallm.pipeline.settings import OperatorSettings  # noqa: E402

PARTS = ("intake", "analysis", "memory", "storm")
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"


def build_parser() -> argparse.ArgumentParser:
    default_concurrency = OperatorSettings().concurrency
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="OnCallM's benchmarks on a local control plane (see docs/bench.md).",
    )
    parser.add_argument(
        "--part",
        action="append",
        choices=PARTS,
        help="run only this part; repeat for more (default: all)",
    )
    group = parser.add_argument_group("intake")
    group.add_argument(
        "--alerts", type=int, default=1000, help="alerts in the big notification (1000)"
    )
    group.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="sidecar and plain measurements each, alternating who goes first (3)",
    )
    group.add_argument(
        "--intake-qps",
        type=float,
        default=0.0,
        help="client-side rate limit of both the sidecar and the plain loop; 0 turns it off "
        "so their own cost shows (default 0; the product's default is 50)",
    )
    group.add_argument(
        "--intake-burst", type=int, default=100, help="burst of that rate limit (100)"
    )
    group = parser.add_argument_group("analysis")
    group.add_argument("--teams", type=int, default=10, help="namespaces of the alert storm (10)")
    group.add_argument(
        "--replicas",
        type=int,
        default=20,
        help="crash-looping pods (and alerts) per namespace (20; 10 x 20 = 200 alerts)",
    )
    group.add_argument(
        "--concurrency",
        default=f"{default_concurrency},{4 * default_concurrency}",
        help=f"ONCALLM_CONCURRENCY values to run, comma-separated "
        f"({default_concurrency},{4 * default_concurrency}: the default and 4x)",
    )
    group.add_argument(
        "--operator-qps",
        type=float,
        default=None,
        help="the operator's ONCALLM_KUBE_QPS (default: the product's default; 0: no limit)",
    )
    group = parser.add_argument_group("memory")
    group.add_argument(
        "--analyses", type=int, default=5000, help="Completed analyses stored (5000)"
    )
    group.add_argument(
        "--no-sidecar-memory", action="store_true", help="measure only the operator's RSS"
    )
    group = parser.add_argument_group("storm")
    group.add_argument(
        "--storm-alerts",
        type=int,
        default=1000,
        help="alerts of the burst, in one notification (1000)",
    )
    group.add_argument(
        "--storm-unrelated",
        type=int,
        default=20,
        help="of them, alerts of unrelated workloads in the incidents' namespaces (20)",
    )
    group.add_argument(
        "--storm-rate", type=int, default=1000, help="alerts a minute of the steady phase (1000)"
    )
    group.add_argument(
        "--storm-minutes", type=float, default=5.0, help="minutes of the steady phase (5)"
    )
    group.add_argument(
        "--storm-backlog",
        type=int,
        default=5000,
        help="unhandled analyses the operator restarts over (5000)",
    )
    group.add_argument(
        "--storm-singles",
        type=int,
        default=20,
        help="single alerts sent one at a time with no model, first (20; 0 skips them)",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON figures go"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (control plane data and logs, operator logs)",
    )
    return parser


def say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parts = args.part or list(PARTS)
    # kopf runs in this process for the analysis part: its per-object INFO lines would bury
    # the figures; warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="oncallm-bench-"))
    load = os.getloadavg()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in load],
        },
        "parts": parts,
    }
    figures: list[str] = []
    started = time.monotonic()
    say(
        f"OnCallM benchmarks: {', '.join(parts)} — {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} at start"
    )
    say(f"starting a local control plane in {folder} …")
    plane = LocalControlPlane(folder / "controlplane").up()
    assert plane.state is not None
    pids = {k: plane.state.pids[k] for k in ("kube-apiserver", "etcd")}
    say(f"  up at {plane.server} in {time.monotonic() - started:.1f} s")
    try:
        if "intake" in parts:
            say("intake …")
            intake = asyncio.run(
                run_intake(
                    str(plane.kubeconfig),
                    alerts=args.alerts,
                    rounds=args.rounds,
                    qps=args.intake_qps,
                    burst=args.intake_burst,
                    pids=pids,
                    log=say,
                )
            )
            results["intake"] = intake.summary()
            figures += intake.lines()
        if "analysis" in parts:
            say("analysis …")
            concurrencies = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
            runs = asyncio.run(
                run_analysis(
                    plane,
                    teams=args.teams,
                    replicas=args.replicas,
                    concurrencies=concurrencies,
                    operator_qps=args.operator_qps,
                    pids=pids,
                    log=say,
                )
            )
            results["analysis"] = [r.summary() for r in runs]
            default = OperatorSettings().concurrency
            figures += [r.line(default) for r in runs]
        if "memory" in parts:
            say("memory …")
            memory = asyncio.run(
                run_memory(
                    str(plane.kubeconfig),
                    folder,
                    count=args.analyses,
                    sidecar=not args.no_sidecar_memory,
                    log=say,
                )
            )
            results["memory"] = memory.summary()
            figures += memory.lines()
        if "storm" in parts:
            say("storm …")
            storm = asyncio.run(
                run_storm(
                    plane,
                    folder,
                    alerts=args.storm_alerts,
                    unrelated=args.storm_unrelated,
                    rate_per_min=args.storm_rate,
                    minutes=args.storm_minutes,
                    backlog=args.storm_backlog,
                    singles=args.storm_singles,
                    log=say,
                )
            )
            results["storm"] = storm.summary()
            figures += storm.lines()
    finally:
        plane.down()
        if args.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    end_load = os.getloadavg()
    results["host"]["load_average_at_end"] = [round(x, 2) for x in end_load]
    results["lines"] = figures
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    say()
    say(
        f"figures ({results['date']}, {results['seconds']:.0f} s in all; load average "
        f"{load[0]:.2f} at start, {end_load[0]:.2f} at the end on {os.cpu_count()} CPUs):"
    )
    for line in figures:
        say(line)
    say(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
