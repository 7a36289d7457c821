"""Node drains that cannot finish, and the PodDisruptionBudgets that hold them.

A node upgrade or consolidation (kubectl drain, Karpenter, Cluster Autoscaler, a managed node
group's update) cordons a node and evicts its pods through the Eviction API, which refuses an
eviction that would leave a PodDisruptionBudget short. A budget that allows 0 disruptions
(``minAvailable`` equal to the replicas, ``maxUnavailable: 0``) therefore stops the drain for
good: the node stays cordoned, the upgrade stops half way, and the cluster runs two kubelet
versions (KubeVersionMismatch).

Reads, when the alert is about node versions or a node, or an event says a drain or an
eviction failed: the cordoned or disrupted nodes (spec.unschedulable, or a drain taint), at
most ``MAX_NODES``; the pods on each; and the PodDisruptionBudgets of those pods' namespaces
that select one of them and allow no disruption.

Evidence: ``drain/<node>`` (the node, since when, its kubelet version against the others) and
``drain/<node>/pdb/<namespace>/<name>`` (a budget that blocks it, and the pod it protects).
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta, name_of, selector_matches
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import BlockingBudget, Context, DrainSnapshot

#: Alerts whose cause may be a drain that stopped: the version skew it leaves.
DRAIN_ALERTS = frozenset({"KubeVersionMismatch", "KubeNodeUnschedulable"})
#: Taints a node gets while it is drained by an autoscaler (Karpenter, Cluster Autoscaler).
DRAIN_TAINTS = frozenset(
    {"karpenter.sh/disrupted", "karpenter.sh/disruption", "ToBeDeletedByClusterAutoscaler"}
)
#: An event that says a drain or an eviction failed.
DRAIN_FAILED = re.compile(
    r"FailedDraining|failed to drain|Cannot evict pod|violate the pod's disruption budget"
    r"|waiting to be evicted|EvictionBlocked",
    re.IGNORECASE,
)
#: Draining nodes followed, in the order the API lists them.
MAX_NODES = 3


def drain_id(node: str) -> str:
    """``drain/<node>``: a node being drained."""
    return f"drain/{node}"


def budget_id(node: str, namespace: str, name: str) -> str:
    """``drain/<node>/pdb/<namespace>/<name>``: a budget that blocks the node's drain."""
    return f"drain/{node}/pdb/{namespace}/{name}"


def trigger(ctx: Context) -> bool:
    if ctx.alert.name in DRAIN_ALERTS or ctx.target.kind == "Node":
        return True
    return any(DRAIN_FAILED.search(f"{e.reason} {e.message}") for e in ctx.events)


def draining(node: Obj) -> str | None:
    """How the node is being drained (``cordoned``, a taint's key), or None."""
    spec = node.get("spec") or {}
    taints = [str(t.get("key", "")) for t in spec.get("taints") or []]
    marked = next((t for t in taints if t in DRAIN_TAINTS), None)
    if marked:
        return f"taint {marked}"
    return "cordoned (spec.unschedulable)" if spec.get("unschedulable") else None


def _version(node: Obj) -> str:
    return str(((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""))


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    if not trigger(ctx):
        return
    nodes = await scope.reader.list("Node", None)
    versions = sorted({_version(n) for n in nodes} - {""})
    marked = [(n, how) for n in nodes if (how := draining(n))]
    for node, how in marked[:MAX_NODES]:
        name = name_of(node)
        pods = await scope.reader.list("Pod", None, field_selector=f"spec.nodeName={name}")
        snap = DrainSnapshot(
            node=name,
            how=how,
            kubelet_version=_version(node),
            other_versions=[v for v in versions if v != _version(node)],
            pods=len(pods),
        )
        budgets: dict[str, list[Obj]] = {}
        for pod in pods:
            ns = str(meta(pod).get("namespace", ""))
            if ns not in budgets:
                budgets[ns] = await scope.reader.list("PodDisruptionBudget", ns)
            labels = meta(pod).get("labels") or {}
            for pdb in budgets[ns]:
                spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
                selector = (spec.get("selector") or {}).get("matchLabels") or {}
                if not selector or not selector_matches(selector, labels):
                    continue
                if int(status.get("disruptionsAllowed", 1) or 0) > 0:
                    continue
                snap.blocking.append(
                    BlockingBudget(
                        namespace=ns,
                        name=name_of(pdb),
                        pod=name_of(pod),
                        min_available=_text(spec.get("minAvailable")),
                        max_unavailable=_text(spec.get("maxUnavailable")),
                        current_healthy=int(status.get("currentHealthy", 0) or 0),
                        desired_healthy=int(status.get("desiredHealthy", 0) or 0),
                        expected_pods=int(status.get("expectedPods", 0) or 0),
                    )
                )
        ctx.drains.append(snap)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for d in ctx.drains:
        out.add(
            Tier.NODE_BAD,
            drain_id(d.node),
            EvidenceSource.NODE,
            f"node/{d.node}",
            f"node {d.node} is being drained ({d.how}); {d.pods} pods still on it; kubelet "
            f"{d.kubelet_version or '?'}"
            + (f", other nodes run {', '.join(d.other_versions)}" if d.other_versions else ""),
        )
        for b in d.blocking:
            bound = (
                f"minAvailable {b.min_available}"
                if b.min_available is not None
                else f"maxUnavailable {b.max_unavailable}"
            )
            out.add(
                Tier.OBJECT_BAD,
                budget_id(d.node, b.namespace, b.name),
                EvidenceSource.NODE,
                f"poddisruptionbudget/{b.namespace}/{b.name}",
                f"PodDisruptionBudget {b.namespace}/{b.name} ({bound}; {b.current_healthy} "
                f"healthy of {b.expected_pods}, {b.desired_healthy} required) allows 0 "
                f"disruptions and selects pod {b.pod} on node {d.node}: the Eviction API "
                "refuses to evict it, so the drain cannot finish",
            )


SOURCE = Source(
    "drains",
    Stage.LEADS,
    read,
    evidence,
    resources=("nodes", "pods", "poddisruptionbudgets.policy"),
)
