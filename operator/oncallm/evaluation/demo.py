"""``oncallm demo``: OnCallM's main job, end to end, on the local control plane.

Starts the control plane if needed, runs the operator and the sidecar, plants a few failure
scenarios, sends their alerts through the webhook as Alertmanager would, and prints what an
on-call engineer would see: ``kubectl get alertanalyses`` and where each report is.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from oncallm.controlplane import LocalControlPlane
from oncallm.evaluation.runner import plant_and_alert, wait_finished
from oncallm.scenarios.model import load_scenario

#: A few failures whose cause lies in different places: a dependency, memory, a node, an image.
DEMO_SCENARIOS = (
    "orders-api-db-down",
    "reports-oom",
    "media-evictions",
    "frontend-bad-tag",
)
NAMESPACE = "oncallm-demo"


async def _demo(plane: LocalControlPlane, scenarios_dir: Path, port: int, serve: bool) -> None:
    from oncallm.evaluation.stack import running_stack
    from oncallm.kube.api import ClientSettings, KubeAPI
    from oncallm.scenarios.plant import Planter, ensure_namespace

    api = await KubeAPI.connect(ClientSettings(kubeconfig=str(plane.kubeconfig), qps=0))
    # What the demo plants stays, for the engineer to look at.
    planter = Planter(
        api,
        node_status=plane.node_status(),
        plant_log=lambda ns, pod, c, text, prev: plane.plant_log(ns, pod, c, text, previous=prev),
    )
    try:
        await ensure_namespace(api, NAMESPACE)
        async with running_stack(str(plane.kubeconfig), NAMESPACE, port=port) as stack:
            names = []
            for scenario_name in DEMO_SCENARIOS:
                scenario = load_scenario(scenarios_dir / f"{scenario_name}.yaml")
                name, _, _ = await plant_and_alert(planter, stack, scenario)
                print(
                    f"alert sent: {scenario.alert['labels']['alertname']:<28} "
                    f"({scenario.description.strip()[:70]}…)"
                )
                names.append(name)
            for name in names:
                await wait_finished(api, NAMESPACE, name, 120)
            print()
            print(f"$ kubectl get alertanalyses -n {NAMESPACE}")
            print(plane.kubectl_run("get", "alertanalyses", "-n", NAMESPACE))
            print("Reports (the web view serves them while `oncallm demo --serve` runs):")
            for name in names:
                print(f"  {stack.url}/analyses/{NAMESPACE}/{name}")
                print(
                    f"    kubectl -n {NAMESPACE} get configmap {name}-report "
                    "-o jsonpath='{.data.report\\.md}'"
                )
            print()
            print(f"export KUBECONFIG={plane.kubeconfig}   # then: {plane.kubectl} get aa -A")
            if serve:
                print(f"serving the web view at {stack.url} — Ctrl-C to stop")
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
    finally:
        await api.close()


def run_demo(folder: Path, scenarios_dir: Path, port: int, serve: bool) -> int:
    plane = LocalControlPlane.running_or_started(folder)
    asyncio.run(_demo(plane, scenarios_dir, port, serve))
    print(f"the control plane stays up; `oncallm controlplane down --dir {folder}` stops it")
    return 0
