"""A node that is not Ready (or under memory or PID pressure): its conditions with their
messages and times, the system OOM kills on it, its pods that no memory limit bounds, and,
under PID pressure with Prometheus configured, the pods on it that hold the most processes.

Reads, for each such node among the pods' nodes, the Node (for heartbeat and transition
times), its events (``SystemOOM`` from the kubelet, ``OOMKilling`` from the kernel monitor of
node-problem-detector, and node-problem-detector's other problem events, :data:`PROBLEM_REASONS`:
a hung task, a kernel oops, a read-only filesystem; whatever their age) and the pods on it.

Evidence: ``node/<node>/heartbeat`` (the Ready condition's times), ``node/<node>/oom`` (the
OOM kills and their victims), ``node/<node>/problems`` (node-problem-detector's reports) and
``node/<node>/no-memory-limit/<pod>`` for each pod whose containers have no memory limit,
among the broken objects when the node saw OOM kills;
``node/<node>/pids`` the pods with the most processes (cAdvisor's ``container_processes``)
on a node under PIDPressure.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta, name_of, workload_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.events import event_snapshot
from oncallm.gathering.sources.metrics import promql_regex
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    Context,
    NodeCondition,
    NodeHealthSnapshot,
    PodWithoutMemoryLimit,
)
from oncallm.models.quantity import format_quantity, parse_quantity

OOM_REASONS = ("SystemOOM", "OOMKilling")
#: node-problem-detector's problem events (its kernel monitor, its health checkers and the
#: custom plugins GKE and AKS ship): what went wrong on the machine before the kubelet stopped
#: reporting. A hung task holding the journal or the runtime, a kernel oops, a read-only
#: remount, the runtime or the kubelet failing its health check.
PROBLEM_REASONS = (
    "TaskHung", "KernelOops", "KernelDeadlock", "AUFSUmountHung", "DockerHung",
    "UnregisterNetDevice", "Ext4Error", "Ext4Warning", "IOError", "MemoryReadError",
    "FilesystemIsReadOnly", "CorruptDockerOverlay2", "ContainerdUnhealthy",
    "KubeletUnhealthy", "DockerUnhealthy", "ContainerRuntimeUnhealthy",
)  # fmt: skip
#: Problem events kept per node.
MAX_PROBLEM_EVENTS = 5
#: OOM events and pods without a memory limit kept per node.
MAX_OOM_EVENTS = 10
MAX_PODS = 10

_VICTIM = re.compile(
    r"victim process: (?P<name>[^,]+), pid: (?P<pid>\d+)"
    r"|Killed process (?P<pid2>\d+) \((?P<name2>[^)]+)\)"
)


def heartbeat_id(node: str) -> str:
    """``node/<node>/heartbeat``: when the kubelet last reported, when Ready last changed."""
    return f"node/{node}/heartbeat"


def oom_id(node: str) -> str:
    """``node/<node>/oom``: system OOM kills on the node."""
    return f"node/{node}/oom"


def no_memory_limit_id(node: str, pod: str) -> str:
    """``node/<node>/no-memory-limit/<pod>``: a pod on the node without a memory limit."""
    return f"node/{node}/no-memory-limit/{pod}"


def problems_id(node: str) -> str:
    """``node/<node>/problems``: what node-problem-detector reported on the node."""
    return f"node/{node}/problems"


def pids_id(node: str) -> str:
    """``node/<node>/pids``: the pods on a node under PIDPressure with the most processes."""
    return f"node/{node}/pids"


#: Pods named as the largest process holders of a node under PIDPressure.
MAX_PID_HOLDERS = 3
#: Pods of the node asked about in one query: a node runs at most 110 by default (the
#: kubelet's maxPods), so this covers every pod of a default node in one request.
MAX_PODS_QUERIED = 250


def nodes_to_read(ctx: Context) -> list[str]:
    return [
        n.name
        for n in ctx.nodes
        if n.conditions.get("Ready", ("Unknown",))[0] != "True"
        or n.conditions.get("MemoryPressure", ("",))[0] == "True"
        or n.conditions.get("PIDPressure", ("",))[0] == "True"
    ]


def _pid_pressure(node: Obj) -> bool:
    return any(
        c.get("type") == "PIDPressure" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


_POD_LABEL = re.compile(r'\bpod="([^"]+)"')


async def pid_holders(scope: Scope, pods: list[Obj]) -> list[str]:
    """The pods on the node with the most processes, ``pod ns/name (Kind owner): N
    processes``, from cAdvisor's ``container_processes`` (a node's PIDs are used up by the
    processes of its pods; the kubelet's condition does not say whose)."""
    if scope.metrics is None or not scope.policy.spec.sources.metrics or not pods:
        return []
    by_name = {name_of(p): p for p in pods}
    names = "|".join(promql_regex(n) for n in sorted(by_name)[:MAX_PODS_QUERIED])
    values = await scope.metrics.query(
        f'sum by (namespace, pod) (container_processes{{pod=~"{names}",container!=""}})'
    )
    counted: list[tuple[float, str]] = []
    for labels, value in values.items():
        match = _POD_LABEL.search(labels)
        if match and match.group(1) in by_name:
            counted.append((value, match.group(1)))
    out = []
    for value, name in sorted(counted, reverse=True)[:MAX_PID_HOLDERS]:
        pod = by_name[name]
        kind, owner = workload_of(pod)
        who = f" ({kind} {owner})" if kind != "Pod" else ""
        out.append(f"pod {meta(pod).get('namespace', '')}/{name}{who}: {value:,.0f} processes")
    return out


async def read(scope: Scope) -> None:
    for name in nodes_to_read(scope.ctx):
        async with scope.guard(f"health of node {name}"):
            node = await scope.get("Node", None, name)
            events = await scope.reader.list(
                "Event", None, field_selector=f"involvedObject.kind=Node,involvedObject.name={name}"
            )
            pods = await scope.reader.list("Pod", None, field_selector=f"spec.nodeName={name}")
            snap = node_health(name, node or {}, events, pods)
            if _pid_pressure(node or {}):
                async with scope.guard(f"processes of the pods on node {name}"):
                    snap.pid_holders = await pid_holders(scope, pods)
            scope.ctx.node_health.append(snap)


def node_health(name: str, node: Obj, events: list[Obj], pods: list[Obj]) -> NodeHealthSnapshot:
    conditions = [
        NodeCondition(
            type=str(c.get("type")),
            status=str(c.get("status", "Unknown")),
            reason=str(c.get("reason", "")),
            message=str(c.get("message", "")),
            last_heartbeat=c.get("lastHeartbeatTime"),
            last_transition=c.get("lastTransitionTime"),
        )
        for c in (node.get("status") or {}).get("conditions") or []
    ]
    ooms = [e for e in (event_snapshot(e) for e in events) if e.reason in OOM_REASONS]
    ooms.sort(key=lambda e: e.last_seen or "", reverse=True)
    victims: list[str] = []
    for e in ooms:
        match = _VICTIM.search(e.message)
        if match:
            victim = f"{match['name'] or match['name2']} (pid {match['pid'] or match['pid2']})"
            if victim not in victims:
                victims.append(victim)
    problems = [e for e in (event_snapshot(e) for e in events) if e.reason in PROBLEM_REASONS]
    problems.sort(key=lambda e: e.last_seen or "", reverse=True)
    unlimited = [u for u in (without_memory_limit(p) for p in pods) if u is not None]
    unlimited.sort(key=lambda u: (u.memory_request is not None, u.namespace, u.pod))
    return NodeHealthSnapshot(
        node=name,
        conditions=conditions,
        oom_events=ooms[:MAX_OOM_EVENTS],
        oom_victims=victims[:MAX_OOM_EVENTS],
        problem_events=problems[:MAX_PROBLEM_EVENTS],
        pods_without_memory_limit=unlimited[:MAX_PODS],
    )


def without_memory_limit(pod: Obj) -> PodWithoutMemoryLimit | None:
    """A running pod whose containers (some of them) have no memory limit; None otherwise."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    unbounded = [
        str(c.get("name"))
        for c in containers
        if "memory" not in ((c.get("resources") or {}).get("limits") or {})
    ]
    if not unbounded:
        return None
    requested = [
        parse_quantity(str(((c.get("resources") or {}).get("requests") or {}).get("memory")))
        for c in containers
        if "memory" in ((c.get("resources") or {}).get("requests") or {})
    ]
    total = sum(r for r in requested if r is not None)
    owner = workload_of(pod)
    return PodWithoutMemoryLimit(
        pod=name_of(pod),
        namespace=str(meta(pod).get("namespace", "")),
        owner_kind=owner[0] if owner[0] != "Pod" else None,
        owner_name=owner[1] if owner[0] != "Pod" else None,
        containers=unbounded,
        memory_request=format_quantity("memory", total) if requested else None,
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.node_health:
        obj = f"node/{snap.node}"
        ready = next((c for c in snap.conditions if c.type == "Ready"), None)
        if ready is not None:
            text = (
                f"Ready={ready.status} {ready.reason}: {ready.message}".strip()
                + f"; last heartbeat {ready.last_heartbeat or '?'}"
                + f"; since {ready.last_transition or '?'}"
            )
            out.add(
                Tier.NODE_BAD if ready.status != "True" else Tier.BACKGROUND,
                heartbeat_id(snap.node),
                EvidenceSource.NODE,
                obj,
                text,
                time=ready.last_heartbeat,
            )
        if snap.oom_events:
            kinds = ", ".join(
                f"{r} x{sum(e.count for e in snap.oom_events if e.reason == r)}"
                for r in OOM_REASONS
                if any(e.reason == r for e in snap.oom_events)
            )
            newest = snap.oom_events[0]
            text = (
                f"system OOM kills on the node: {kinds}; newest {newest.last_seen or '?'}: "
                f"{newest.message}"
                + (f"; victims: {', '.join(snap.oom_victims)}" if snap.oom_victims else "")
            )
            out.add(Tier.NODE_BAD, oom_id(snap.node), EvidenceSource.NODE, obj, text,
                    time=newest.last_seen)  # fmt: skip
        if snap.problem_events:
            newest = snap.problem_events[0]
            text = "node-problem-detector on the node: " + "; ".join(
                f"{e.reason} x{e.count} (last {e.last_seen or '?'}): {e.message}"
                for e in snap.problem_events
            )
            out.add(Tier.NODE_BAD, problems_id(snap.node), EvidenceSource.NODE, obj, text,
                    time=newest.last_seen)  # fmt: skip
        if snap.pid_holders:
            out.add(
                Tier.NODE_BAD,
                pids_id(snap.node),
                EvidenceSource.METRIC,
                obj,
                "most processes on the node (container_processes): " + "; ".join(snap.pid_holders),
            )
        for u in snap.pods_without_memory_limit:
            owner = f" ({u.owner_kind} {u.owner_name})" if u.owner_kind else ""
            text = (
                f"pod {u.namespace}/{u.pod}{owner}: no memory limit on "
                f"{', '.join(u.containers)}; memory request {u.memory_request or 'none'}"
            )
            out.add(
                Tier.OBJECT_BAD if snap.oom_events else Tier.BACKGROUND,
                no_memory_limit_id(snap.node, u.pod),
                EvidenceSource.POD_STATUS,
                f"pod/{u.namespace}/{u.pod}",
                text,
            )


SOURCE = Source("node_health", Stage.LEADS, read, evidence, resources=("nodes", "events", "pods"))
