"""The context sources one by one, over an in-memory cluster: what each reads, what it leaves
alone, and the evidence items it makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from oncallm.analysis.evidence import index_evidence
from oncallm.gathering.gather import gather
from oncallm.gathering.memory import MemoryReader
from oncallm.models.alert import Alert
from oncallm.models.evidence import Context
from oncallm.models.policy import DEFAULT_POLICY

NOW = datetime(2025, 5, 14, 9, 52, tzinfo=UTC)


def t(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def alert(**labels: str) -> Alert:
    return Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "warning", **labels},
            "startsAt": t(-5),
            "fingerprint": "5f3a9c1e2b7d4a60",
        }
    )


async def gathered(a: Alert, objects: list[dict[str, Any]], **logs: str) -> Context:
    reader = MemoryReader(objects)
    for key, text in logs.items():
        ns, pod, container = key.split("__")
        reader.add_log(ns, pod, container, text)
    return await gather(a, reader, DEFAULT_POLICY, now=NOW)


def ids(ctx: Context) -> list[str]:
    return index_evidence(ctx).ids


# -- the target: a node given by its IP ------------------------------------------------------


async def test_a_node_exporter_ip_becomes_the_node_before_the_sources_read() -> None:
    node = {
        "kind": "Node",
        "metadata": {"name": "worker-2"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.1.12"}],
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
        },
    }
    ctx = await gathered(
        alert(alertname="NodeFilesystemAlmostOutOfSpace", job="node-exporter",
              instance="10.0.1.12:9100"),
        [node],
    )  # fmt: skip
    assert ctx.target.name == "worker-2"
    assert [n.name for n in ctx.nodes] == ["worker-2"]
    assert "node/worker-2/Ready" in ids(ctx)
    assert not ctx.missing
