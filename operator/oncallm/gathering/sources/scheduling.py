"""Why the scheduler places no pod: each FailedScheduling message parsed into its reasons,
each with the number of nodes it excluded.

Parses the pods' ``FailedScheduling`` events (the newest per pod) and, for a
pod without one, its ``PodScheduled=False`` condition. ``0/6 nodes are available: 2
Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, 3 node(s) didn't match
Pod's node affinity/selector. preemption: ...`` becomes three reasons with their node counts.

Evidence: ``scheduling/<pod>``: the nodes available and each reason with its node count;
``scheduling/cordoned``: the cordoned nodes (one list call, ``spec.unschedulable=true``) when
a message counts nodes that "were unschedulable". When a message counts nodes skipped for the
``node.kubernetes.io/not-ready`` or ``unreachable`` taint, the nodes that are not Ready are read
too (one list call) and join the gathered nodes, with their ``node/...`` evidence.
"""

from __future__ import annotations

import re

from oncallm.gathering.scope import MAX_NODES, Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.nodes import node_snapshot, selected_keys
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, SchedulingReason, SchedulingSnapshot
from oncallm.models.policy import Depth

#: Pods whose scheduling failure is parsed.
MAX_PODS = 10
#: Cordoned nodes named when the scheduler counts unschedulable nodes.
MAX_CORDONED = 5

_HEAD = re.compile(r"^\s*(\d+)/(\d+) nodes are available:?\s*")
#: Entries of the reason list start with a node count (the PVC reason has none).
_SPLIT = re.compile(r",\s+(?=\d+\s)")
_TAINT = re.compile(r"taint\s*\{([^}]*)\}")
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("insufficient", re.compile(r"^Insufficient (\S+)", re.I)),
    ("taint", re.compile(r"taint", re.I)),
    ("pod_anti_affinity", re.compile(r"anti-affinity", re.I)),
    ("pod_affinity", re.compile(r"pod affinity", re.I)),
    ("node_affinity", re.compile(r"node affinity/selector|node selector|node affinity", re.I)),
    ("topology_spread", re.compile(r"topology spread", re.I)),
    ("volume_node_affinity", re.compile(r"volume node affinity conflict", re.I)),
    ("pvc_unbound", re.compile(r"unbound (?:immediate )?PersistentVolumeClaims", re.I)),
    ("unschedulable", re.compile(r"were unschedulable|unschedulable", re.I)),
    ("ports", re.compile(r"free ports", re.I)),
    ("too_many_pods", re.compile(r"Too many pods", re.I)),
    ("volume_limit", re.compile(r"max volume count", re.I)),
    ("not_ready", re.compile(r"not ready|NotReady", re.I)),
)


#: The taints the node lifecycle controller puts on a node that stops being Ready: the
#: kubelet reports NotReady (not-ready) or stops reporting at all (unreachable).
NODE_DOWN_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

#: Nodes read when the scheduler excludes some for being down (they host none of the pods, so
#: the nodes source does not read them).
MAX_DOWN_NODES = 3


def scheduling_id(pod: str) -> str:
    """``scheduling/<pod>``: the parsed FailedScheduling message of one pod."""
    return f"scheduling/{pod}"


def parse_reason(entry: str) -> SchedulingReason:
    """One entry: ``2 Insufficient cpu`` -> insufficient, 2 nodes, resource cpu."""
    entry = entry.strip().rstrip(".")
    count = re.match(r"^(\d+)\s+(.*)$", entry)
    nodes, text = (int(count.group(1)), count.group(2)) if count else (None, entry)
    for kind, pattern in _KINDS:
        match = pattern.search(text)
        if not match:
            continue
        reason = SchedulingReason(kind=kind, nodes=nodes, text=text)
        if kind == "insufficient":
            reason.resource = match.group(1)
        elif kind == "taint":
            taint = _TAINT.search(text)
            if taint:
                key, _, value = taint.group(1).partition(":")
                reason.taint = key.strip() + (f"={value.strip()}" if value.strip() else "")
            if reason.taint and reason.taint.split("=")[0] in NODE_DOWN_TAINTS:
                reason.kind = "not_ready"
        return reason
    return SchedulingReason(kind="other", nodes=nodes, text=text)


def parse_message(message: str) -> tuple[int | None, int | None, list[SchedulingReason], str]:
    """(available, total, reasons, preemption) of a FailedScheduling message."""
    body, _, preemption = message.partition(" preemption:")
    head = _HEAD.match(body)
    available = total = None
    if head:
        available, total = int(head.group(1)), int(head.group(2))
        body = body[head.end() :]
    reasons = [parse_reason(e) for e in _SPLIT.split(body.strip()) if e.strip()]
    return available, total, reasons, preemption.strip()


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    found: dict[str, SchedulingSnapshot] = {}
    events = [e for e in ctx.events if e.reason == "FailedScheduling" and e.object_kind == "Pod"]
    # ctx.events is newest first within each type: the first event of a pod is its newest.
    for e in events:
        if e.object_name in found:
            continue
        namespace = e.object_namespace or scope.namespace or ""
        found[e.object_name] = snapshot(e.object_name, namespace, e.message, e.count, e.last_seen)
    for pod in ctx.pods:
        status, _, message = pod.conditions.get("PodScheduled", ("True", "", ""))
        if pod.name not in found and status == "False" and message:
            found[pod.name] = snapshot(pod.name, pod.namespace, message, 1, None)
    ctx.scheduling = list(found.values())[:MAX_PODS]
    if any(r.kind == "not_ready" for snap in ctx.scheduling for r in snap.reasons):
        # the scheduler counts nodes it skips for being down: read them, for what took them
        # down and since when (one list call)
        async with scope.guard("nodes that are not ready"):
            known = {n.name for n in ctx.nodes}
            for node in await scope.reader.list("Node", None):
                snap = node_snapshot(node, None, selected_keys(ctx))
                ready = snap.conditions.get("Ready", ("Unknown", "", ""))[0]
                if ready != "True" and snap.name not in known:
                    ctx.nodes.append(snap)
                    known.add(snap.name)
                    if len(known) >= MAX_DOWN_NODES + MAX_NODES:
                        break
    if any(r.kind == "unschedulable" for snap in ctx.scheduling for r in snap.reasons):
        async with scope.guard("cordoned nodes"):
            cordoned = await scope.reader.list(
                "Node", None, field_selector="spec.unschedulable=true"
            )
            ctx.cordoned_nodes = sorted(
                str((n.get("metadata") or {}).get("name")) for n in cordoned
            )[:MAX_CORDONED]


def cordoned_id() -> str:
    """``scheduling/cordoned``: the cordoned nodes, when the scheduler counts some."""
    return "scheduling/cordoned"


def snapshot(
    pod: str, namespace: str, message: str, count: int, last_seen: str | None
) -> SchedulingSnapshot:
    available, total, reasons, preemption = parse_message(message)
    return SchedulingSnapshot(
        pod=pod,
        namespace=namespace,
        available=available,
        total=total,
        reasons=reasons,
        preemption=preemption,
        message=message,
        count=count,
        last_seen=last_seen,
    )


def describe_reason(r: SchedulingReason) -> str:
    what = {
        "insufficient": f"insufficient {r.resource}",
        "taint": f"untolerated taint {r.taint or '?'}",
    }.get(r.kind, r.kind.replace("_", " "))
    return f"{what} on {r.nodes} nodes" if r.nodes is not None else what


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.scheduling:
        head = (
            f"{snap.available}/{snap.total} nodes available"
            if snap.total is not None
            else "not scheduled"
        )
        reasons = "; ".join(describe_reason(r) for r in snap.reasons) or snap.message
        count = f" (x{snap.count})" if snap.count > 1 else ""
        out.add(
            Tier.OBJECT_BAD,
            scheduling_id(snap.pod),
            EvidenceSource.EVENT,
            f"pod/{snap.namespace}/{snap.pod}",
            f"{head}: {reasons}{count}",
            time=snap.last_seen,
        )
    if ctx.cordoned_nodes:
        out.add(
            Tier.NODE_BAD,
            cordoned_id(),
            EvidenceSource.NODE,
            "nodes",
            f"cordoned (spec.unschedulable, SchedulingDisabled): {', '.join(ctx.cordoned_nodes)}",
        )


SOURCE = Source("scheduling", Stage.LEADS, read, evidence, depth=Depth.QUICK, resources=("nodes",))
