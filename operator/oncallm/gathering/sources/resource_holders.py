"""Who holds a scarce extended resource that a Pending pod waits for (``Insufficient
nvidia.com/gpu``): every pod in the cluster that requests it, grouped by workload.

An extended resource is counted whole per device, so a few pods of another team can hold a
whole pool; the scheduler's message says only that too few are free. Reads nothing unless a
FailedScheduling reason names an extended resource (a name with a ``/``): then one cluster-wide
list of the pods that are not finished.

Evidence: ``holders/<resource>/<namespace>/<Kind>/<name>`` for the largest holders.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta, name_of, workload_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, ResourceHolder, ResourceHoldersSnapshot
from oncallm.models.quantity import parse_quantity

MAX_HOLDERS = 5
"""Holders kept per resource, the largest first."""


def holder_id(resource: str, namespace: str, kind: str, name: str) -> str:
    """``holders/<resource>/<namespace>/<Kind>/<name>``: a workload holding an extended resource."""
    return f"holders/{resource}/{namespace}/{kind}/{name}"


_INSUFFICIENT = re.compile(r"Insufficient ([\w.-]+/[\w.-]+)")


def scarce_resources(ctx: Context) -> list[str]:
    """Extended resources the scheduler found insufficient for a gathered pod."""
    messages = [e.message for e in ctx.events if e.reason == "FailedScheduling"]
    messages += [p.conditions.get("PodScheduled", ("", "", ""))[2] for p in ctx.pods]
    out: list[str] = []
    for message in messages:
        for resource in _INSUFFICIENT.findall(message):
            if resource not in out:
                out.append(resource)
    return out


def _requested(pod: Obj, resource: str) -> float:
    total = 0.0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        qty = (res.get("requests") or {}).get(resource) or (res.get("limits") or {}).get(resource)
        total += parse_quantity(str(qty)) or 0.0 if qty is not None else 0.0
    return total


async def read(scope: Scope) -> None:
    wanted = scarce_resources(scope.ctx)
    if not wanted:
        return
    async with scope.guard("pods holding extended resources"):
        pods = await scope.reader.list(
            "Pod", None, field_selector="status.phase!=Succeeded,status.phase!=Failed"
        )
        waiting = {p.name for p in scope.ctx.pods}
        for resource in wanted:
            scope.ctx.resource_holders.append(holders(resource, pods, waiting, scope.ctx))


def holders(
    resource: str, pods: list[Obj], waiting: set[str], ctx: Context
) -> ResourceHoldersSnapshot:
    groups: dict[tuple[str, str, str], ResourceHolder] = {}
    total = 0.0
    for pod in pods:
        if name_of(pod) in waiting or not (pod.get("spec") or {}).get("nodeName"):
            continue  # the waiting pods and other Pending pods hold nothing yet
        amount = _requested(pod, resource)
        if amount <= 0:
            continue
        total += amount
        kind, name = workload_of(pod)
        ns = str(meta(pod).get("namespace", ""))
        h = groups.setdefault((ns, kind, name), ResourceHolder(kind=kind, name=name, namespace=ns))
        h.amount += amount
        h.pods.append(name_of(pod))
        node = str((pod.get("spec") or {}).get("nodeName"))
        if node not in h.nodes:
            h.nodes.append(node)
    offered = [parse_quantity(n.allocatable.get(resource)) for n in ctx.nodes]
    return ResourceHoldersSnapshot(
        resource=resource,
        requested=total,
        allocatable=sum(o for o in offered if o) or None,
        holders=sorted(groups.values(), key=lambda h: (-h.amount, h.namespace, h.name))[
            :MAX_HOLDERS
        ],
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.resource_holders:
        for h in snap.holders:
            out.add(
                Tier.OBJECT_BAD,
                holder_id(snap.resource, h.namespace, h.kind, h.name),
                EvidenceSource.WORKLOAD,
                f"{h.kind.lower()}/{h.namespace}/{h.name}",
                f"holds {h.amount:g} {snap.resource} of the {snap.requested:g} in use"
                + (
                    f" ({snap.allocatable:g} allocatable on the nodes read)"
                    if snap.allocatable
                    else ""
                )
                + f" with {len(h.pods)} pod(s) on {', '.join(h.nodes[:3])}",
            )


SOURCE = Source("resource_holders", Stage.LEADS, read, evidence, resources=("pods",))
