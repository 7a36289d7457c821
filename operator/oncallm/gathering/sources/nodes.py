"""The pods' nodes (and an alerted node): conditions, taints, cordon, what is allocated.

Reads each node and the pods on it (to sum their requests), at most three nodes.

Evidence: ``node/<node>/<Condition>`` for an abnormal condition (``Ready`` not True, a
pressure True) and ``node/<node>`` (taints, schedulability, allocatable and requested).
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, conditions, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, NodeSnapshot
from oncallm.models.quantity import format_quantity, parse_quantity


def node_condition_id(node: str, condition: str) -> str:
    """``node/<node>/<Condition>``: an abnormal node condition (``Ready`` not True, a pressure)."""
    return f"node/{node}/{condition}"


def node_id(node: str) -> str:
    """``node/<node>``: a node's taints, schedulability and allocated resources."""
    return f"node/{node}"


async def read(scope: Scope) -> None:
    for name in scope.node_names():
        async with scope.guard(f"node {name}"):
            node = await scope.get("Node", None, name)
            if node is None:
                scope.missing(f"node {name}", "the node no longer exists")
                continue
            on_node = await scope.reader.list("Pod", None, field_selector=f"spec.nodeName={name}")
            scope.ctx.nodes.append(node_snapshot(node, on_node, selected_keys(scope.ctx)))


NODE_GROUP_LABELS = (
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
    "karpenter.sh/nodepool",
)
"""The node group / pool a node belongs to, as EKS, GKE, AKS and Karpenter label it."""
_TOPOLOGY_LABELS = (
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "topology.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
    *NODE_GROUP_LABELS,
)
"""Node labels a diagnosis names: the CPU architecture an image must match, the zone a volume
is bound to, the instance type, the node group the autoscaler grows."""


def selected_keys(ctx: Context) -> frozenset[str]:
    """The node label keys the gathered pods' nodeSelectors name: kept on the nodes, so a
    diagnosis can tell which nodes a pod may use."""
    return frozenset(
        item.removeprefix("nodeSelector ").split("=", 1)[0]
        for p in ctx.pods
        for item in p.placement
        if item.startswith("nodeSelector ")
    )


def node_snapshot(
    node: Obj, pods_on_node: list[Obj] | None = None, keep: frozenset[str] = frozenset()
) -> NodeSnapshot:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    taints = [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in spec.get("taints") or []
    ]
    requested: dict[str, float] = {}
    for pod in pods_on_node or []:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            for res, qty in ((c.get("resources") or {}).get("requests") or {}).items():
                requested[res] = requested.get(res, 0.0) + (parse_quantity(str(qty)) or 0.0)
    return NodeSnapshot(
        name=str(meta(node).get("name", "")),
        conditions=conditions(node),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
        allocatable={k: str(v) for k, v in (status.get("allocatable") or {}).items()},
        requested={k: format_quantity(k, v) for k, v in requested.items()},
        pods=len(pods_on_node or []),
        labels={
            k: str(v)
            for k, v in (meta(node).get("labels") or {}).items()
            if k in _TOPOLOGY_LABELS or k in keep
        },
    )


def node_condition_abnormal(condition: str, status: str) -> bool:
    """Ready must be True; every other standard condition (pressures) must be False."""
    if condition == "Ready":
        return status != "True"
    return status == "True"


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for node in ctx.nodes:
        for cond, (status, reason, message) in node.conditions.items():
            if node_condition_abnormal(cond, status):
                out.add(
                    Tier.NODE_BAD,
                    node_condition_id(node.name, cond),
                    EvidenceSource.NODE,
                    f"node/{node.name}",
                    f"{cond}={status} {reason}: {message}".strip(),
                )
        parts = [
            "unschedulable (cordoned)" if node.unschedulable else "schedulable",
            f"taints: {', '.join(node.taints)}" if node.taints else "no taints",
            f"{node.pods} pods",
        ]
        if node.allocatable:
            parts.append(f"allocatable {kv(node.allocatable)}")
        if node.requested:
            parts.append(f"requested {kv(node.requested)}")
        ok = ", ".join(f"{c}={s}" for c, (s, _, _) in node.conditions.items())
        if ok:
            parts.append(ok)
        out.add(
            Tier.BACKGROUND,
            node_id(node.name),
            EvidenceSource.NODE,
            f"node/{node.name}",
            "; ".join(parts),
        )


SOURCE = Source("nodes", Stage.AROUND, read, evidence, resources=("nodes", "pods"))
