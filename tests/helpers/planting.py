"""Plant realistic cluster state for tests: nodes, pods with container states, events, logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource


def ts(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def create(kube: KubeAPI, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``; write its ``status`` through the status subresource."""
    body = dict(obj)
    status = body.pop("status", None)
    res = resource(body["kind"])
    ns = body["metadata"].get("namespace") if res.namespaced else None
    body.setdefault("apiVersion", res.api_version)
    try:
        result: dict[str, Any] = await kube.request("POST", res.path(ns), body=body)
    except ApiError as err:
        if err.status != 409:
            raise
        result = await kube.request("GET", res.path(ns, body["metadata"]["name"]))
    if status:
        result = await kube.request(
            "PATCH",
            res.path(ns, body["metadata"]["name"]) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
    return result


async def node(
    kube: KubeAPI, plane: LocalControlPlane, name: str, **conditions: str
) -> dict[str, Any]:
    """A Node whose kubelet endpoint is the local log server; conditions as Type=Status."""
    conds = {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", **conditions}
    return await create(
        kube,
        {
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                **plane.node_status(),
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "reason": f"Kubelet{t}" if s == "True" else f"KubeletNo{t}",
                        "message": f"{t} is {s}",
                        "lastHeartbeatTime": ts(),
                        "lastTransitionTime": ts(timedelta(hours=-3)),
                    }
                    for t, s in conds.items()
                ],
            },
        },
    )


def crashloop_pod(
    namespace: str, name: str, node_name: str, *, restarts: int = 7
) -> dict[str, Any]:
    """A pod in CrashLoopBackOff whose last run exited with code 1."""
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "api"}},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {
                    "name": "api",
                    "image": "registry.example.com/orders/api:1.42.0",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                }
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                {
                    "name": "api",
                    "image": "registry.example.com/orders/api:1.42.0",
                    "imageID": "",
                    "ready": False,
                    "restartCount": restarts,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off 5m0s restarting failed container=api pod={name}",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": ts(timedelta(minutes=-3)),
                            "finishedAt": ts(timedelta(minutes=-2)),
                        }
                    },
                }
            ],
        },
    }


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}: {last!r}")
