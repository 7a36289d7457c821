"""The ``oncallm`` command: one entry point for every process OnCallM runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("oncallm")


def _controlplane(args: argparse.Namespace) -> int:
    from oncallm.controlplane import LocalControlPlane

    folder = Path(args.dir)
    if args.action == "up":
        plane = LocalControlPlane.running_or_started(folder, node=args.node)
        print(f"local control plane up at {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print(f"kubectl: {plane.kubectl}  (or any kubectl with that KUBECONFIG)")
        return 0
    if args.action == "down":
        try:
            LocalControlPlane.attach(folder).down()
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 0
        print(f"local control plane in {folder} stopped")
        return 0
    if args.action == "env":
        plane = LocalControlPlane.attach(folder)
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print(f'export PATH="{plane.kubectl.parent}:$PATH"')
        return 0
    if args.action == "build":
        from oncallm.controlplane.build import ensure_binary

        print(ensure_binary())
        return 0
    raise AssertionError(args.action)


def _webhook(args: argparse.Namespace) -> int:
    import asyncio

    from oncallm.intake.server import serve

    asyncio.run(serve())
    return 0


async def _run_operator(stop: object | None = None) -> None:
    import kopf

    import oncallm.handlers  # noqa: F401 - registers the handlers
    from oncallm.pipeline.settings import OperatorSettings

    namespace = OperatorSettings.from_env().namespace
    port = os.environ.get("ONCALLM_OPERATOR_HEALTH_PORT", "8081")
    await kopf.operator(
        namespaces=[namespace],
        # kopf's own peering stays off: replicas divide the work through shard Leases
        # (docs/ha.md), so every replica handles the events of the shards it owns
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz",
        stop_flag=stop,  # type: ignore[arg-type]
    )


def _operator(args: argparse.Namespace) -> int:
    import asyncio

    asyncio.run(_run_operator())
    return 0


def _run(args: argparse.Namespace) -> int:
    """The operator and the sidecar in one process: for `make run` against any cluster."""
    import asyncio

    from oncallm.intake.server import serve

    async def both() -> None:
        await asyncio.gather(_run_operator(), serve())

    asyncio.run(both())
    return 0


def _eval(args: argparse.Namespace) -> int:
    from oncallm.evaluation.runner import run_eval

    return run_eval(
        Path(args.folder),
        offline=args.offline,
        output=Path(args.output),
        controlplane_dir=Path(args.dir),
        namespace=args.namespace,
        plant_only=args.plant_only,
    )


def _demo(args: argparse.Namespace) -> int:
    from oncallm.controlplane.build import repo_root
    from oncallm.evaluation.demo import run_demo

    return run_demo(Path(args.dir), repo_root() / "tests" / "scenarios", args.port, args.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oncallm", description="Root-cause analysis for Kubernetes alerts."
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ONCALLM_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env ONCALLM_LOG_LEVEL; default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    cp = sub.add_parser("controlplane", help="a real local Kubernetes control plane")
    cp.add_argument("action", choices=["up", "down", "env", "build"])
    cp.add_argument(
        "--dir",
        default=os.environ.get("ONCALLM_CONTROLPLANE_DIR", "/tmp/oncallm-controlplane"),
        help="where its data, certificates, logs and kubeconfig live",
    )
    cp.add_argument(
        "--node",
        action="store_true",
        help="up: add a real node (kubelet, containerd, kube-proxy, CoreDNS, scheduler and the "
        "workload controllers); needs root (docs/controlplane.md)",
    )
    cp.set_defaults(func=_controlplane)

    sub.add_parser(
        "webhook", help="the sidecar: Alertmanager webhook, report web view, metrics"
    ).set_defaults(func=_webhook)
    sub.add_parser("operator", help="the kopf operator that analyses alerts").set_defaults(
        func=_operator
    )
    sub.add_parser("run", help="operator and sidecar in one process").set_defaults(func=_run)

    ev = sub.add_parser("eval", help="score the analysis on a folder of scenario files")
    ev.add_argument("folder", help="a folder of scenario YAML files (docs/scenarios.md)")
    ev.add_argument("--offline", action="store_true", help="in memory, no API server")
    ev.add_argument("--output", default="eval-results.json", help="where the JSON results go")
    ev.add_argument("--namespace", default="oncallm-eval", help="namespace of the analyses")
    ev.add_argument(
        "--plant-only",
        action="store_true",
        help="plant each scenario on the control plane and remove it, with no alert and no "
        "diagnosis (checks that the API server accepts a file; names every file, hidden "
        "splits included)",
    )
    ev.add_argument(
        "--dir",
        default=os.environ.get("ONCALLM_CONTROLPLANE_DIR", "/tmp/oncallm-controlplane"),
        help="the local control plane to use (started if it is not running)",
    )
    ev.set_defaults(func=_eval)

    demo = sub.add_parser("demo", help="plant failures on the local control plane and analyse them")
    demo.add_argument(
        "--dir",
        default=os.environ.get("ONCALLM_CONTROLPLANE_DIR", "/tmp/oncallm-controlplane"),
        help="the local control plane to use (started if it is not running)",
    )
    demo.add_argument("--port", type=int, default=8080, help="port of the web view")
    demo.add_argument("--serve", action="store_true", help="keep serving the web view")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Starting or building the local control plane takes a while: always say so.
    logging.getLogger("oncallm.controlplane").setLevel(logging.INFO)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
