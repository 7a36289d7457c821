"""Rules about where pods run and what they may use: nodes, scheduling, volumes, quotas.

When one of these fires, the cause sits outside the alerted object (its node, its claim, its
namespace's quota), so they score above anything the pod's own status or log says.
"""

from __future__ import annotations

import re

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    limit_range_id,
    metric_id,
    node_condition_id,
    node_id,
    pod_id,
    pvc_id,
    quota_full_resources,
    quota_id,
    workload_id,
)
from oncallm.analysis.rules.base import (
    Finding,
    Link,
    RuleSettings,
    cite_hits,
    events,
    grep,
    namespace,
    quote_line,
    target_pod,
    workload_state,
)
from oncallm.analysis.rules.pods import BAD_CONFIG_WORDING
from oncallm.gathering.sources.drains import budget_id, drain_id
from oncallm.gathering.sources.kubelet_certs import (
    CLIENT_CERT_ALERTS,
    CLIENT_RENEWAL_ROLE,
    CLIENT_SIGNER,
    SIGNER,
    csr_id,
)
from oncallm.gathering.sources.metrics import STORE_FULL
from oncallm.gathering.sources.metrics_api import metrics_line_id, metrics_pod_id
from oncallm.gathering.sources.node_health import (
    no_memory_limit_id,
    oom_id,
    pids_id,
    problems_id,
)
from oncallm.gathering.sources.node_storage import FILESYSTEM_ALERTS, storage_id, storage_pod_id
from oncallm.gathering.sources.nodes import NODE_GROUP_LABELS
from oncallm.gathering.sources.pods import pod_is_unhealthy
from oncallm.gathering.sources.quota_consumers import consumer_id
from oncallm.gathering.sources.resource_holders import holder_id
from oncallm.gathering.sources.retention import FILLING_ALERTS
from oncallm.gathering.sources.scheduling import cordoned_id, scheduling_id
from oncallm.models.analysis import Category, parse_rfc3339
from oncallm.models.evidence import (
    Context,
    EphemeralStorageUse,
    KubeletCSRs,
    NodeSnapshot,
    PodSnapshot,
)
from oncallm.models.quantity import parse_quantity

# --- node not ready ---------------------------------------------------------------------------

NODE_ALERTS = ("KubeNodeNotReady", "KubeNodeUnreachable", "KubeletDown", "NodeNotReady")


def _node_relevant(ctx: Context, node: NodeSnapshot) -> list[PodSnapshot]:
    """The gathered pods on the node; the node counts when it is the target or hosts them."""
    return [p for p in ctx.pods if p.node_name == node.name]


#: The share of the cluster's nodes that must be down, of those the scheduler counts, for their
#: loss to explain a pod it cannot place: one node of many does not make the room that is
#: missing, a fifth of the cluster does.
NODE_LOSS_SHARE = 0.2


def _displaced(ctx: Context, node: NodeSnapshot) -> list[PodSnapshot]:
    """Pending pods the scheduler cannot place while it skips nodes for being down (the
    not-ready or unreachable taint), a share of the cluster large enough that their loss took
    the room the pods lack; ``node`` must be one of the nodes that are down."""
    if node.conditions.get("Ready", ("Unknown",))[0] == "True":
        return []
    out = []
    for snap in ctx.scheduling:
        down = sum(r.nodes or 0 for r in snap.reasons if r.kind == "not_ready")
        if not down or not snap.total or down / snap.total < NODE_LOSS_SHARE:
            continue
        out += [p for p in ctx.pods if p.name == snap.pod and not p.node_name]
    return out


def _node_trouble(ctx: Context, node: str) -> tuple[str, list[Link]]:
    """What took the node down, when its own records say: system OOM kills and the pods on it
    that no memory limit bounds (BestEffort first: the kernel's first victims are not always
    the cause, the unbounded pod is), or the pressure condition's message."""
    snap = next((s for s in ctx.node_health if s.node == node), None)
    if snap is None:
        return "", []
    texts: list[str] = []
    links: list[Link] = []
    pressure = any(c.type == "MemoryPressure" and c.status == "True" for c in snap.conditions)
    if snap.oom_events or (pressure and snap.pods_without_memory_limit):
        count = sum(e.count for e in snap.oom_events)
        victims = f" (killed: {', '.join(snap.oom_victims[:3])})" if snap.oom_victims else ""
        unbounded = sorted(
            snap.pods_without_memory_limit, key=lambda u: u.memory_request is not None
        )
        names = [
            f"pod {u.namespace}/{u.pod}"
            + (f" ({u.owner_kind} {u.owner_name})" if u.owner_kind else "")
            + (
                " with no memory request or limit"
                if u.memory_request is None
                else " without a memory limit"
            )
            for u in unbounded[:2]
        ]
        text = (
            f"the kernel ran out of memory {count} time{'s' if count != 1 else ''}{victims}"
            if snap.oom_events
            else "its memory runs short (MemoryPressure, the kubelet evicts pods)"
        )
        if names:
            text += "; nothing bounds the memory of " + " and ".join(names)
        texts.append(text)
        links.append(
            Link(
                summary=f"Node {node}: {text}.",
                evidence=[oom_id(node), *(no_memory_limit_id(node, u.pod) for u in unbounded[:2])],
                category=Category.NODE_NOT_READY,
            )
        )
    if snap.pid_holders:
        # the node's PIDs are used up by its pods' processes; the largest holder is the cause
        text = "its process IDs are used up; most processes: " + "; ".join(snap.pid_holders)
        texts.append(text)
        links.append(
            Link(
                summary=f"Node {node}: {text}.",
                evidence=[pids_id(node)],
                category=Category.NODE_NOT_READY,
            )
        )
    if snap.problem_events:
        # what node-problem-detector saw on the machine before the kubelet stopped reporting:
        # a task hung on the disk journal or the runtime, a kernel oops, a read-only remount
        shown = snap.problem_events[:3]
        text = "node-problem-detector reported " + "; ".join(
            f"{e.reason} x{e.count} ({quote_line(e.message, 120)})" for e in shown
        )
        texts.append(text)
        links.append(
            Link(
                summary=f"Node {node}: {text}.",
                evidence=[problems_id(node)],
                category=Category.NODE_NOT_READY,
            )
        )
    for cond in snap.conditions:
        if cond.type in ("MemoryPressure", "PIDPressure", "DiskPressure") and cond.status == "True":
            texts.append(f"{cond.type}: {cond.message or cond.reason}")
    return "; ".join(texts), links


_MEMORY_EVICTION = re.compile(r"low on resource: memory|Attempting to reclaim memory", re.I)


_NO_PIDS = re.compile(
    r"unable to create (?:new )?native thread|fork: (?:retry: )?Resource temporarily unavailable"
    r"|pthread_create failed|can't start new thread|EAGAIN.*(?:fork|spawn|thread)"
    r"|Cannot allocate memory.*fork|cannot fork",
    re.IGNORECASE,
)


def _no_more_processes(ctx: Context) -> bool:
    """A pod's log shows the kernel refusing new threads or processes."""
    return any(_NO_PIDS.search(line) for lg in ctx.logs for line in lg.lines[-200:])


def _memory_evictions(ctx: Context, node: str) -> bool:
    """The kubelet evicted pods of ``node`` (or tries to) to reclaim memory."""
    on_node = {p.name for p in ctx.pods if p.node_name == node}
    return any(
        _MEMORY_EVICTION.search(e.message)
        and (e.object_name == node or e.object_name in on_node or e.reason == "Evicted")
        for e in ctx.events
    )


def _node_groups(ctx: Context, pod: PodSnapshot | None) -> str:
    """The node groups of the nodes the pod's nodeSelector allows: the group whose maximum
    size stops the autoscaler."""
    wanted = {
        k: v
        for k, v in (
            item.removeprefix("nodeSelector ").split("=", 1)
            for item in (pod.placement if pod else [])
            if item.startswith("nodeSelector ") and "=" in item
        )
    }
    groups = sorted(
        {
            n.labels[label]
            for n in ctx.nodes
            for label in NODE_GROUP_LABELS
            if label in n.labels and all(n.labels.get(k) == v for k, v in wanted.items())
        }
    )
    return f" (node group {', '.join(groups[:3])} of the nodes it may use)" if groups else ""


def node_not_ready(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A node the pods run on is NotReady/Unknown (or under memory/PID pressure)."""
    best: tuple[float, NodeSnapshot, str, list[PodSnapshot]] | None = None
    for node in ctx.nodes:
        pods = _node_relevant(ctx, node)
        is_target = ctx.target.kind == "Node" and ctx.target.name == node.name
        displaced = [] if pods or is_target else _displaced(ctx, node)
        if not pods and not is_target and not displaced:
            continue
        ready = node.conditions.get("Ready", ("Unknown", "", ""))
        if displaced:
            # its loss took the room the pending pods lack: the cause behind "Insufficient"
            score, cond, pods = 0.91, "Ready", displaced
        elif ready[0] != "True":
            score, cond = 0.9, "Ready"
        else:
            pressure = next(
                (
                    c
                    for c in ("MemoryPressure", "PIDPressure", "NetworkUnavailable")
                    if node.conditions.get(c, ("False",))[0] == "True"
                ),
                None,
            )
            if pressure is None:
                continue
            score, cond = 0.66, pressure
            if pressure == "MemoryPressure" and _memory_evictions(ctx, node.name):
                # the kubelet evicts pods to reclaim the node's memory: the pods are victims
                score = 0.88
            if pressure == "PIDPressure" and _no_more_processes(ctx):
                # the pods cannot start a thread or a process: the node's PIDs are used up
                score = 0.88
        if best is None or score > best[0]:
            best = (score, node, cond, pods)
    if best is None:
        return None
    score, node, cond, pods = best
    status, reason, message = node.conditions.get(cond, ("Unknown", "", ""))
    terminating = [p.name for p in pods if p.deleting]
    stuck = [p.name for p in pods if not p.deleting and p.node_name]
    pending = [p.name for p in pods if not p.node_name]
    state = (
        f"NotReady (Ready={status}{' ' + reason if reason else ''})"
        if cond == "Ready"
        else f"under {cond} ({reason})"
    )
    pods_text = ""
    if terminating:
        pods_text += f"; its pods {', '.join(terminating[:4])} are stuck Terminating"
    if stuck:
        pods_text += f"; pods {', '.join(stuck[:4])} on it are not serving"
    if pending:
        refusal = next((s for s in ctx.scheduling if s.pod == pending[0]), None)
        pods_text += (
            f"; pods {', '.join(pending[:4])} stay Pending: the scheduler skips the nodes that "
            "are down and the others have no room"
            + (f" ({quote_line(refusal.message, 200)})" if refusal else "")
        )
    node_events = [
        e
        for e in ctx.events
        if e.reason in ("NodeNotReady", "TaintManagerEviction", "NodeStatusUnknown", "Rebooted")
    ]
    deeper, because = _node_trouble(ctx, node.name)
    return Finding(
        Category.NODE_NOT_READY,
        score,
        summary=f"Node {node.name} is {state}; the pods on it are down.",
        root_cause=(
            f"Node {node.name} is {state}: {quote_line(message or reason or 'no message')}"
            f"{pods_text}. "
            + (
                "The pods are fine; their node is gone or its kubelet stopped reporting"
                if cond == "Ready"
                else f"The pods are its victims: the kubelet relieves the node's {cond}"
            )
            + (f". On the node: {deeper}" if deeper else "")
            + "."
        ),
        because=because,
        evidence=ev.cite(
            node_condition_id(node.name, cond),
            *[eid for link in because for eid in link.evidence],
            *[ev.event(e) for e in node_events[:3]],
            *[pod_id(p.name) for p in pods[:3]],
            *[scheduling_id(name) for name in pending[:1]],
            node_id(node.name),
        ),
        impact=(
            f"{workload_state(ctx)}; pods on {node.name} are lost until the node returns or "
            "they are rescheduled (after the 5 minute not-ready toleration)."
        ),
        immediate_actions=[
            f"Check the machine behind {node.name} (cloud console: stopped, failed health "
            "check, network) and the kubelet/container runtime on it (journalctl -u kubelet).",
            "If it will not come back, cordon and drain it (or delete the Node) so its pods "
            "are recreated elsewhere; force-delete StatefulSet pods stuck Terminating only "
            "once the machine is really off.",
        ],
        recommendations=[
            "Spread replicas over nodes/zones (topologySpreadConstraints, PodDisruptionBudget) "
            "so one node cannot take a service down.",
            "Let the cluster autoscaler or node auto-repair replace unhealthy nodes.",
        ],
        commands=[
            kc.describe("node", None, node.name),
            "kubectl get nodes -o wide",
            kc.pods_on_node(node.name),
            kc.drain(node.name),
        ],
    )


# --- disk pressure ----------------------------------------------------------------------------

_DISK_EVICTION = re.compile(
    r"low on resource: (?:ephemeral-storage|nodefs|imagefs)|DiskPressure|disk pressure"
    r"|ephemeral local storage usage exceeds|Usage of EmptyDir volume .* exceeds",
    re.IGNORECASE,
)
_USING = re.compile(r"Container (\S+) was using (\S+?),")


def _disk_filler(ctx: Context, node: str, evicted: list[str]) -> tuple[str, list[Link]]:
    """Who fills the node's disk: the pod the kubelet measured using the most, else the pods
    writing without a bound (an emptyDir without sizeLimit and no ephemeral-storage limit, a
    writable hostPath). Evicted pods are often the victims: the kubelet evicts pods above
    their request, and a pod with an unbounded scratch volume may not be the one evicted."""
    snap = next((s for s in ctx.node_storage if s.node == node), None)
    if snap is None:
        return "", []
    measured = sorted(
        (u for u in snap.pods if u.used_bytes and not u.evicted), key=lambda u: -(u.used_bytes or 0)
    ) or _dominant_evicted(ctx, node, snap.pods)
    unbounded = [
        u
        for u in snap.pods
        if not u.evicted
        and u.phase in ("Running", "Pending", "")
        and (u.host_paths or (not u.limits and any(not v.size_limit for v in u.empty_dirs)))
    ]
    picks = measured[:1] or unbounded[:3]
    texts = []
    gc_failed = any(
        e.reason == "ImageGCFailed" and e.object_name == node for e in ctx.events
    ) or any(e.reason == "Evicted" and "imagefs" in e.message for e in ctx.events)
    if gc_failed and snap.largest_images:
        texts.append(
            "its images fill the image filesystem and the image garbage collector finds none "
            f"it may delete (in use): the largest are {', '.join(snap.largest_images)}"
        )
    for u in picks:
        owner = f" ({u.owner_kind} {u.owner_name})" if u.owner_kind else ""
        if u.host_paths:
            how = f"writes hostPath {', '.join(u.host_paths)}, which no limit bounds"
        elif u.usage:
            how = "used " + ", ".join(f"{c} {q}" for c, q in u.usage.items())
        else:
            dirs = ", ".join(v.name for v in u.empty_dirs if not v.size_limit)
            how = f"writes emptyDir {dirs} with no sizeLimit and no ephemeral-storage limit"
        texts.append(f"pod {u.namespace}/{u.pod}{owner} {how}")
    if not texts:
        return "", []
    lead = (
        "what fills it"
        if gc_failed and snap.largest_images
        else ("the writer" if len(texts) == 1 else "the writers that can fill it")
    )
    text = f"{lead}: " + "; ".join(texts)
    link = Link(
        summary=f"On node {node}, {text}.",
        evidence=[storage_id(node), *(storage_pod_id(node, u.pod) for u in picks)],
        category=Category.DISK_PRESSURE,
    )
    return text, [link]


#: An evicted pod is the disk's filler, not a victim, when the kubelet measured it using at
#: least this share of the node's allocatable ephemeral storage: the kubelet evicts the pods
#: using the most above their request, and a victim evicted beside the filler shows a small
#: figure (KiB to a few GiB) against the filler's tens of GiB.
FILLER_NODE_SHARE = 0.25


def _dominant_evicted(
    ctx: Context, node: str, pods: list[EphemeralStorageUse]
) -> list[EphemeralStorageUse]:
    snapshot = next((n for n in ctx.nodes if n.name == node), None)
    allocatable = parse_quantity(
        (snapshot.allocatable if snapshot else {}).get("ephemeral-storage", "")
    )
    measured = sorted((u for u in pods if u.used_bytes), key=lambda u: -(u.used_bytes or 0))
    if not measured or not allocatable:
        return []
    return measured[:1] if (measured[0].used_bytes or 0) >= FILLER_NODE_SHARE * allocatable else []


def disk_pressure(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Pods evicted because their node ran out of disk (DiskPressure, ephemeral-storage)."""
    evicted = [p for p in ctx.pods if p.reason == "Evicted" and _DISK_EVICTION.search(p.message)]
    evict_events = events(ctx, reasons=("Evicted",), pattern=_DISK_EVICTION)
    node_events = events(
        ctx, reasons=("EvictionThresholdMet", "FreeDiskSpaceFailed", "ImageGCFailed")
    )
    nodes_under = [
        n for n in ctx.nodes if n.conditions.get("DiskPressure", ("False",))[0] == "True"
    ]
    involved = {p.node_name for p in evicted} | {p.node_name for p in ctx.pods}
    node = next((n for n in nodes_under if n.name in involved), None)
    if node is None and ctx.target.kind == "Node":
        node = next((n for n in nodes_under if n.name == ctx.target.name), None)
    filling = ctx.target.kind == "Node" and ctx.alert.name.startswith(FILESYSTEM_ALERTS)
    if node is None and not evicted and not evict_events and not filling:
        return None
    score = 0.92 if node is not None else 0.84
    if node is None and filling:
        node = next((n for n in ctx.nodes if n.name == ctx.target.name), None)
        score = 0.88
    if node is None:
        name = next((p.node_name for p in evicted if p.node_name), None)
        node = next((n for n in ctx.nodes if n.name == name), None)
    node_name = node.name if node else "the node"
    message = evicted[0].message if evicted else (evict_events[0].message if evict_events else "")
    hog = _USING.search(message)
    cond = node.conditions.get("DiskPressure", ("", "", "")) if node else ("", "", "")
    evicted_names = [p.name for p in evicted]
    filler, because = _disk_filler(ctx, node_name, evicted_names)
    mount = ctx.alert.labels.get("mountpoint")
    return Finding(
        Category.DISK_PRESSURE,
        score,
        summary=(
            f"Node {node_name} is under DiskPressure and evicts pods"
            + (f" ({len(evicted_names)} evicted)" if evicted_names else "")
            + "."
        ),
        root_cause=(
            f"Node {node_name} ran low on disk (DiskPressure{'=' + cond[0] if cond[0] else ''}"
            + (f": {cond[2]}" if cond[2] else "")
            + ")"
            + (
                f", so the kubelet evicted {', '.join(evicted_names[:4])}"
                if evicted_names
                else ", so the kubelet evicts pods and refuses new ones"
            )
            + (f" — {quote_line(message, 200)}" if message else "")
            + (f"; container {hog.group(1)} alone used {hog.group(2)}" if hog else "")
            + (
                f"; filesystem {mount} is filling (alert {ctx.alert.name})"
                if filling and mount
                else ""
            )
            + ". The pods are victims; the node's disk is the cause"
            + (f": {filler}" if filler else "")
            + "."
        ),
        because=because,
        evidence=ev.cite(
            node_condition_id(node_name, "DiskPressure"),
            ALERT_ID if filling else None,
            *[eid for link in because for eid in link.evidence],
            *[pod_id(n) for n in evicted_names[:3]],
            *[ev.event(e) for e in (evict_events[:2] + node_events[:2])],
            node_id(node_name),
        ),
        impact=(
            f"{workload_state(ctx)}; the node takes no new pods while under DiskPressure and "
            "may evict more."
        ),
        immediate_actions=[
            f"Free disk on {node_name}: find what fills /var/lib/kubelet and /var/lib/containerd "
            "(container logs, emptyDir volumes, unused images: crictl rmi --prune).",
            "Delete the Failed (evicted) pods once their replacements run.",
            "If one container writes the data (named in the eviction message), cap it.",
        ],
        recommendations=[
            "Set ephemeral-storage requests/limits and emptyDir sizeLimit on workloads that "
            "write to local disk; rotate logs to stdout.",
            "Alert on NodeFilesystemSpaceFillingUp before the kubelet's eviction threshold.",
        ],
        commands=[
            kc.describe("node", None, node_name),
            kc.pods_on_node(node_name),
            f"kubectl -n {namespace(ctx)} get pods --field-selector=status.phase=Failed",
            f"kubectl -n {namespace(ctx)} delete pods --field-selector=status.phase=Failed",
            f"kubectl debug node/{node_name} -it --image=busybox -- df -h /host/var/lib",
        ],
    )


# --- PVC pending --------------------------------------------------------------------------------

_UNBOUND = re.compile(
    r"unbound immediate PersistentVolumeClaims|persistentvolumeclaim \"[\w.-]+\" not found"
    r"|unbound PersistentVolumeClaims",
    re.I,
)
_SC_MISSING = re.compile(r'storageclass\.storage\.k8s\.io "([\w.-]+)" not found', re.I)
_ATTACH = re.compile(
    r"Multi-Attach error|AttachVolume\.Attach failed|Unable to attach or mount", re.I
)


_WAITING_PROVISIONER = re.compile(
    r"[Ww]aiting for a volume to be created,? either by (?:the )?external provisioner "
    r"[\"']?([\w./-]+)[\"']?"
)
"""The PV controller waits on an out-of-tree provisioner that never answers."""


_VOLUME_CONFLICT = re.compile(r"volume node affinity conflict", re.I)


def _volume_node_conflict(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A pod cannot be scheduled because its bound volume may only be used on nodes it cannot
    run on (a local volume pinned to a node that is gone, a zonal disk in another zone): the
    claim, not capacity, keeps the pod Pending."""
    refused = events(ctx, reasons=("FailedScheduling",), pattern=_VOLUME_CONFLICT)
    if not refused:
        return None
    e = refused[0]
    pod = next((p for p in ctx.pods if p.name == e.object_name), None)
    claims = [c for c in ctx.pvcs if pod is None or c.name in pod.pvcs]
    claim = next((c for c in claims if c.volume_nodes_missing), None) or next(
        (c for c in claims if c.volume_affinity), None
    )
    if claim is None:
        return None
    if claim.volume_nodes_missing:
        why = (
            f"its PersistentVolume {claim.volume_name} is pinned to node "
            f"{', '.join(claim.volume_nodes_missing)}, which no longer exists: the data stayed "
            "on a node that is gone"
        )
        fix = (
            f"Restore the data to a new volume and re-create claim {claim.name} (delete the "
            "claim and the pod of a StatefulSet so it provisions again), or bring the node back."
        )
    else:
        why = (
            f"its PersistentVolume {claim.volume_name} may only be used where "
            f"{'; '.join(claim.volume_affinity)}, and no node there can take the pod"
        )
        fix = "Make room on a node the volume allows (same zone or node), or move the data."
    who = pod.name if pod else e.object_name
    return Finding(
        Category.PVC_PENDING,
        0.9,
        summary=f"Pod {who} cannot be scheduled: claim {claim.name}'s volume is bound to a node "
        "it cannot use.",
        root_cause=(
            f"Pod {who} stays Pending ({quote_line(e.message, 160)}) because claim "
            f"{claim.namespace}/{claim.name} is Bound and {why}."
        ),
        evidence=ev.cite(ev.event(e), pvc_id(claim.name), pod_id(who) if pod else None),
        impact=f"{workload_state(ctx)}; the pod waits until its volume can be used.",
        immediate_actions=[fix],
        recommendations=[
            "Replicate data across nodes (the database's own replication) before relying on "
            "local volumes, and alert on Nodes that leave with local PersistentVolumes bound.",
        ],
        commands=[
            f"kubectl get pv {claim.volume_name} -o jsonpath='{{.spec.nodeAffinity}}'",
            f"kubectl -n {claim.namespace} describe pvc {claim.name}",
            "kubectl get nodes --show-labels",
        ],
    )


#: The free share under which kube-prometheus-stack's KubePersistentVolumeFillingUp fires
#: (with a 4-day prediction; critical under 3%): above it now, the volume has recovered.
FILLING_FREE_SHARE = 0.15


def _metric_value(ctx: Context, name: str) -> float | None:
    """The first sample of a gathered metric, or None."""
    m = next((m for m in ctx.metrics if m.name == name and m.values), None)
    return next(iter(m.values.values())) if m else None


_QUEUE_LABEL = re.compile(r'\bqueue="([^"]+)"')


def _unconsumed_queue(ctx: Context) -> tuple[str, float] | None:
    """The largest queue of the broker writing the volume that has messages and no consumer
    (``queue_messages`` and ``queue_consumers`` of the metrics source), with its size."""
    sizes = next((m.values for m in ctx.metrics if m.name == "queue_messages"), {})
    consumers = next((m.values for m in ctx.metrics if m.name == "queue_consumers"), {})
    counted = {
        q.group(1): v for labels, v in consumers.items() if (q := _QUEUE_LABEL.search(labels))
    }
    ranked = sorted(
        ((v, q.group(1)) for labels, v in sizes.items() if (q := _QUEUE_LABEL.search(labels))),
        reverse=True,
    )
    for size, queue in ranked:
        if size >= MIN_PARKED_MESSAGES and counted.get(queue) == 0:
            return queue, size
    return None


#: A queue holds at least this many messages with no consumer before it is named as what
#: fills a broker's volume: fewer would not weigh on a volume (a quiet retry queue).
MIN_PARKED_MESSAGES = 10_000


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def volume_filling(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A claim's volume fills: the kubelet's volume stats show little free space left and
    shrinking. The alert says so itself; with the stats it says how much is left, how fast it
    goes and when it is full. A deeper cause (retention turned off, WAL kept for a slot) is its
    own finding and outranks this one; without one, the volume filling is what there is to fix:
    grow the claim or delete what fills it."""
    if ctx.alert.name not in FILLING_ALERTS or ctx.target.kind != "PersistentVolumeClaim":
        return None
    claim = ctx.target.name
    ns = namespace(ctx)
    inodes = ctx.alert.name == "KubePersistentVolumeInodesFillingUp"
    free = _metric_value(ctx, "volume_available_bytes")
    size = _metric_value(ctx, "volume_capacity_bytes")
    rate = _metric_value(ctx, "volume_available_per_hour")
    writers = sorted(p.name for p in ctx.pods if claim in p.pvcs)
    # what runs out: the inodes alert is judged on inodes, bytes may be plentiful
    left = _metric_value(ctx, "volume_inodes_free") if inodes else free
    total = _metric_value(ctx, "volume_inodes") if inodes else size
    if left is not None and total and left / total > FILLING_FREE_SHARE:
        return None  # space came back (a compaction, a clean-up): the alert's condition is over
    # the writers failing their writes for want of room prove the volume is the cause
    refused = grep(ctx, ev, STORE_FULL, pods=writers) if writers else []
    measured = ""
    if inodes and left is not None and total:
        measured = f"{left:,.0f} of {total:,.0f} inodes free ({left / total:.1%})"
        if free is not None and size:
            measured += (
                f", while {free / size:.0%} of its bytes are free: many small files use up "
                "the inodes first"
            )
    elif free is not None and size:
        measured = f"{_gib(free)} of {_gib(size)} free ({free / size:.0%})"
        if rate is not None and rate < 0:
            hours = free / -rate
            measured += f", shrinking by {_gib(-rate)} an hour: full in about " + (
                f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.1f} days"
            )
    what = "inodes" if inodes else "space"
    unconsumed = _unconsumed_queue(ctx)
    metric_ids = [
        metric_id(n)
        for n in (
            *(("volume_inodes_free", "volume_inodes") if inodes else ()),
            "volume_available_bytes",
            "volume_capacity_bytes",
            "volume_available_per_hour",
        )
    ]
    return Finding(
        Category.DISK_PRESSURE,
        0.9 if refused else 0.85 if unconsumed else 0.6 if measured else 0.5,
        summary=(
            f"PersistentVolumeClaim {claim} is running out of {what}"
            + (f": {measured}" if measured else "")
            + "."
        ),
        root_cause=(
            f"The volume of PersistentVolumeClaim {ns}/{claim} fills up"
            + (f" ({measured})" if measured else " (the kubelet's volume stats, in the alert)")
            + (f"; it is written by {', '.join(writers[:3])}" if writers else "")
            + (
                f", whose writes already fail: {quote_line(refused[-1].line, 200)}"
                if refused
                else ""
            )
            + (
                f"; what grows is queue {unconsumed[0]}: {unconsumed[1]:,.0f} messages ready and "
                "no consumer, so the broker keeps every one of them on the volume (nothing reads "
                "or expires it: a dead-letter or parked queue whose consumer stopped)"
                if unconsumed
                else "; no retention setting or stuck consumer explains the growth, so the data "
                "it holds grows faster than the volume was sized for"
            )
            + "."
        ),
        evidence=ev.cite(
            ALERT_ID,
            pvc_id(claim),
            *metric_ids,
            *((metric_id("queue_messages"), metric_id("queue_consumers")) if unconsumed else ()),
            *cite_hits(refused[-2:]),
            *(pod_id(w) for w in writers[:2]),
        ),
        impact=(
            "When the volume is full its writers fail their writes"
            + (f" ({', '.join(writers[:3])})" if writers else "")
            + "; databases stop accepting data."
        ),
        immediate_actions=[
            *(
                [
                    f"Bring back the consumer of queue {unconsumed[0]} (a replayer Job or "
                    "CronJob that was stopped or suspended), or bound the queue with a policy "
                    "(max-length, message-ttl), then purge what is not needed."
                ]
                if unconsumed
                else []
            ),
            f"Expand PersistentVolumeClaim {claim} (raise spec.resources.requests.storage) if "
            "its StorageClass allows volume expansion.",
            "Find what grows on the volume (du -sh on the mount) and delete or archive old "
            "data, or set a retention limit in the writer.",
        ],
        recommendations=[
            "Size volumes from measured growth and alert before the 4-day prediction of "
            "KubePersistentVolumeFillingUp; keep retention limits in every writer's config.",
        ],
        commands=[
            kc.describe("persistentvolumeclaim", ns, claim),
            *(
                [f"kubectl -n {ns} exec {writers[0]} -- df -h{'i' if inodes else ''}"]
                if writers
                else []
            ),
        ],
    )


#: A claim this full is what a "disk full" refusal is about: Elasticsearch's flood stage is
#: 95% used, and kubelet volume stats lag a scrape behind.
FULL_VOLUME_SHARE = 0.1
_CLAIM_LABEL = re.compile(r'persistentvolumeclaim="([^"]+)"')


def _fullest_claim(ctx: Context) -> tuple[str, float] | None:
    """The fullest claim of the namespace and its free share, when it is nearly full."""
    m = next((m for m in ctx.metrics if m.name == "fullest_volumes" and m.values), None)
    if m is None:
        return None
    key, share = min(m.values.items(), key=lambda kv: kv[1])
    claim = _CLAIM_LABEL.search(key)
    return (claim.group(1), share) if claim and share <= FULL_VOLUME_SHARE else None


def store_full(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A store refuses writes because its disk is full, and the program fails on that refusal:
    its own volume (``No space left on device``) or the server it writes to, such as
    Elasticsearch past its flood-stage watermark (every index with a shard on that node turns
    read-only) or Redis that cannot persist (MISCONF). The crash is the symptom; the volume
    that filled is the cause, and the fullest claim of the namespace names it."""
    hits = grep(ctx, ev, STORE_FULL)
    if not hits:
        return None
    h = hits[-1]
    fullest = _fullest_claim(ctx)
    claim = f"PersistentVolumeClaim {fullest[0]} ({fullest[1]:.1%} free)" if fullest else None
    failing = target_pod(ctx)
    who = failing.name if failing else h.log.pod
    return Finding(
        Category.DISK_PRESSURE,
        0.88 if fullest else 0.74,
        summary=(
            f"Writes from {who} are refused because a disk is full"
            + (f": {claim}" if claim else "")
            + "."
        ),
        root_cause=(
            f"{who} fails because the store it writes to refuses writes for lack of disk: "
            f"{quote_line(h.line, 260, keep=h.match.group(0))} (log of {h.log.pod})"
            + (f"; the fullest volume of the namespace is {claim}" if claim else "")
            + ". The failure follows from the full volume, not from the program."
        ),
        evidence=ev.cite(*cite_hits(hits), metric_id("fullest_volumes"), ALERT_ID),
        impact=(
            f"{workload_state(ctx)}; every write to the full store fails until space is freed."
        ),
        immediate_actions=[
            (
                f"Free space on {fullest[0]} or expand the claim (if its StorageClass allows "
                "volume expansion)"
                if fullest
                else "Find the full volume (kubectl get pvc; df -h in the store's pod) and free "
                "space or expand it"
            )
            + "; Elasticsearch lifts the read-only block itself once usage falls below the high "
            "watermark (7.4+), older versions need index.blocks.read_only_allow_delete reset.",
        ],
        recommendations=[
            "Alert on KubePersistentVolumeFillingUp for the store's claims and size them from "
            "growth; set retention (ILM, TTL) so data cannot grow without bound.",
        ],
        commands=[
            f"kubectl -n {namespace(ctx)} get pvc",
            *(
                [kc.describe("persistentvolumeclaim", namespace(ctx), fullest[0])]
                if fullest
                else []
            ),
        ],
    )


def drain_blocked(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A node drain cannot finish because a PodDisruptionBudget that selects one of its pods
    allows no disruption: the Eviction API refuses that pod for as long as the budget holds
    (``minAvailable`` equal to the replicas, ``maxUnavailable: 0``, or a workload already
    short), so the upgrade or consolidation that drains the node stops there. The budget, not
    the drain tool, is what to change."""
    held = [(d, b) for d in ctx.drains for b in d.blocking]
    if not held:
        return None
    d, b = held[0]
    bound = (
        f"minAvailable {b.min_available}"
        if b.min_available is not None
        else f"maxUnavailable {b.max_unavailable}"
    )
    skew = (
        f"; the node's kubelet is {d.kubelet_version} while others run "
        f"{', '.join(d.other_versions)}, so the upgrade stopped half way"
        if d.kubelet_version and d.other_versions
        else ""
    )
    others = sorted({f"{x.namespace}/{x.name}" for _, x in held[1:]} - {f"{b.namespace}/{b.name}"})
    drain_events = [
        e
        for e in ctx.events
        if e.object_name == d.node and re.search(r"drain|evict", f"{e.reason} {e.message}", re.I)
    ]
    return Finding(
        Category.ROLLOUT_STUCK,
        0.86,
        summary=(
            f"The drain of node {d.node} is blocked by PodDisruptionBudget {b.name}, which "
            f"allows 0 disruptions for pod {b.pod}."
        ),
        root_cause=(
            f"Node {d.node} is being drained ({d.how}) but cannot be emptied: "
            f"PodDisruptionBudget {b.namespace}/{b.name} ({bound}, {b.current_healthy} of "
            f"{b.expected_pods} pods healthy) allows no disruption, so the Eviction API refuses "
            f"to evict pod {b.pod}"
            + (f" (also {', '.join(others[:2])})" if others else "")
            + skew
            + "."
        ),
        evidence=ev.cite(
            drain_id(d.node),
            *(budget_id(d.node, x.namespace, x.name) for _, x in held[:3]),
            *(ev.event(e) for e in drain_events[:2]),
            ALERT_ID,
        ),
        impact=(
            f"Node {d.node} stays cordoned and the rollout of nodes waits behind it; the "
            "workloads keep running."
        ),
        immediate_actions=[
            f"Let PodDisruptionBudget {b.name} allow one disruption: scale its workload up by "
            f"one so a pod may move, or lower its {bound.split()[0]} (a budget equal to the "
            "replicas blocks every voluntary eviction).",
            f"If the pod must stay, delete pod {b.pod} yourself at a quiet moment (a deletion "
            "does not ask the budget) and let the drain continue.",
        ],
        recommendations=[
            "Give every PodDisruptionBudget room for one eviction (maxUnavailable: 1, or "
            "minAvailable below the replicas), and alert on drains that stall.",
        ],
        commands=[
            "kubectl get pdb -A | awk 'NR==1 || $4 == 0'",
            kc.describe("poddisruptionbudget", b.namespace, b.name),
            f"kubectl get pods -A -o wide --field-selector spec.nodeName={d.node}",
        ],
    )


def pvc_pending(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A PersistentVolumeClaim the pod needs is not Bound (no StorageClass, no volume)."""
    # A claim that a running pod mounts was bound when the pod was scheduled (the scheduler
    # places no pod on an unbound claim), whatever phase the snapshot shows.
    in_use = {c for pod in ctx.pods if pod.node_name and pod.phase == "Running" for c in pod.pvcs}
    pending = [p for p in ctx.pvcs if p.phase != "Bound" and p.name not in in_use]
    sched = events(ctx, reasons=("FailedScheduling",), pattern=_UNBOUND)
    prov = events(ctx, reasons=("ProvisioningFailed", "FailedBinding", "ExternalProvisioning"))
    attach = events(ctx, reasons=("FailedAttachVolume", "FailedMount"), pattern=_ATTACH)
    if not pending and not sched:
        conflict = _volume_node_conflict(ctx, ev)
        if conflict is not None:
            return conflict
        if not attach:
            return None
        e = attach[0]
        holder = next((p for p in ctx.pods if p.name == e.object_name), None)
        claims = ", ".join(holder.pvcs) if holder is not None and holder.pvcs else ""
        return Finding(
            Category.PVC_PENDING,
            0.72,
            summary=f"A volume of {e.object_name} cannot be attached"
            + (f" (claim {claims})" if claims else "")
            + ".",
            root_cause=(
                f"The volume of pod {e.object_name}"
                + (f" (PersistentVolumeClaim {claims})" if claims else "")
                + f" is bound but cannot be attached/mounted: {quote_line(e.message)}."
            ),
            evidence=ev.cite(ev.event(e)),
            impact=f"{workload_state(ctx)}.",
            immediate_actions=[
                "Find the pod or node still holding the volume (Multi-Attach) and delete that "
                "pod or detach the volume."
            ],
            recommendations=["Use ReadWriteOnce volumes with one replica or a StatefulSet."],
            commands=[kc.describe("pod", e.object_namespace or namespace(ctx), e.object_name)],
        )
    pvc = pending[0] if pending else None
    sc_name = pvc.storage_class if pvc else None
    sc_missing = None
    for e in prov:
        m = _SC_MISSING.search(e.message)
        if m:
            sc_missing = m.group(1)
    if pvc is not None and pvc.storage_class_exists is False:
        sc_missing = pvc.storage_class
    if pvc is not None and pvc.volume_missing:
        why = (
            f"its PersistentVolume {pvc.volume_name} no longer exists: the volume was deleted "
            "while the claim was bound"
            + (f", by {pvc.volume_deleted_by}" if pvc.volume_deleted_by else "")
        )
    elif sc_missing:
        why = f'StorageClass "{sc_missing}" does not exist, so no volume can be provisioned'
    elif pvc is not None and not pvc.storage_class:
        why = (
            "it names no storage class and the cluster has no default StorageClass, so only a "
            "pre-made PersistentVolume could bind it and none matches"
        )
    elif prov and _WAITING_PROVISIONER.search(prov[0].message):
        m = _WAITING_PROVISIONER.search(prov[0].message)
        name = (m.group(1) if m else None) or (pvc.provisioner if pvc else None) or "?"
        failing = [x for x in (pvc.provisioner_pods if pvc else []) if not x.endswith("running")]
        why = (
            f"its external provisioner {name} has not created a volume: the driver's controller "
            f"pods do not run ({'; '.join(failing[:2])}), so nothing provisions the claim"
            if failing
            else f"its external provisioner {name} has not created a volume: the provisioner is "
            "not running or not registered (check its pods)"
        )
    elif prov:
        modes = f" for a {'/'.join(pvc.access_modes)} claim" if pvc and pvc.access_modes else ""
        why = (
            f"the provisioner of StorageClass {sc_name or '(default)'} fails{modes}: "
            f"{quote_line(prov[0].message, 200)}"
        )
    else:
        why = f"no PersistentVolume is bound to it yet (StorageClass {sc_name or 'default'})"
    pod = next((p for p in ctx.pods if pvc and pvc.name in p.pvcs), None) or target_pod(ctx)
    ns = pvc.namespace if pvc else namespace(ctx)
    pvc_name = pvc.name if pvc else "(the claim)"
    scaled = ", ".join(
        x.split(":")[0] for x in (pvc.provisioner_pods if pvc else []) if "scaled to 0" in x
    )
    return Finding(
        Category.PVC_PENDING,
        0.93 if pvc is not None else 0.85,
        summary=f"PVC {pvc_name} is Pending: {why}; pod {pod.name if pod else '?'} cannot start.",
        root_cause=(
            f"PersistentVolumeClaim {ns}/{pvc_name} is {pvc.phase if pvc else 'unbound'} because "
            f"{why}"
            + (
                f"; pod {pod.name} stays Pending ({quote_line(sched[0].message, 160)})"
                if pod and sched
                else (f"; pod {pod.name} cannot start" if pod else "")
            )
            + "."
        ),
        evidence=ev.cite(
            pvc_id(pvc_name),
            *[ev.event(e) for e in (prov[:2] + sched[:2])],
            pod_id(pod.name) if pod else None,
        ),
        impact=f"{workload_state(ctx)}; the pod will not be scheduled until the claim is bound.",
        immediate_actions=[
            (
                f"Stop what deleted volume {pvc.volume_name} (suspend the clean-up job), then "
                "recreate the volume: a PersistentVolume for the disk if it was retained, else "
                "restore the data from a snapshot or backup and recreate the claim."
                if pvc is not None and pvc.volume_missing
                else f'Create StorageClass "{sc_missing}" or change the claim to an existing '
                "class (the storageClassName of a PVC is immutable: delete and recreate the "
                "PVC, or fix the StatefulSet's volumeClaimTemplates)."
                if sc_missing
                else f"Scale the CSI driver's controller back up ({scaled}) and exempt it "
                "from whatever scaled it down; the claim is then provisioned and bound."
                if scaled
                else "Check the CSI provisioner's logs and the claim's events."
            ),
        ],
        recommendations=[
            "Mark one StorageClass as default and reference only classes that exist in every "
            "cluster the chart targets.",
            "Alert on PVCs Pending for more than a few minutes.",
        ],
        commands=[
            kc.describe("pvc", ns, pvc_name),
            "kubectl get storageclass",
            kc.events_for(ns, pvc_name),
            *([kc.describe("pod", pod.namespace, pod.name)] if pod else []),
        ],
    )


# --- unschedulable ------------------------------------------------------------------------------

_UNSCHEDULABLE = re.compile(
    r"Insufficient [\w./-]+|didn't match Pod's node affinity|didn't match node selector"
    r"|had untolerated taint|had taint .* that the pod didn't tolerate|didn't have free ports"
    r"|Too many pods|didn't match pod (?:anti-)?affinity rules|node\(s\) were unschedulable",
    re.I,
)


_CONSTRAINED = re.compile(
    r"didn't match Pod's node affinity|node affinity/selector|untolerated taint|"
    r"didn't match pod topology spread",
    re.I,
)
"""Scheduler reasons the pod's own placement (selector, affinity, tolerations) decides."""


def _holders(ctx: Context, insufficient: list[str]) -> tuple[str, list[Link]]:
    """Who holds the extended resource the pod waits for, largest first."""
    texts: list[str] = []
    links: list[Link] = []
    for snap in ctx.resource_holders:
        if snap.resource not in insufficient or not snap.holders:
            continue
        of = f" of {snap.allocatable:g}" if snap.allocatable else ""
        names = [
            f"{h.kind} {h.namespace}/{h.name} ({h.amount:g}{of}, {len(h.pods)} pod(s))"
            for h in snap.holders[:2]
        ]
        text = f"{snap.resource} is held by " + " and ".join(names)
        texts.append(text)
        links.append(
            Link(
                summary=text + ".",
                evidence=[
                    holder_id(snap.resource, h.namespace, h.kind, h.name) for h in snap.holders[:2]
                ],
                category=Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
            )
        )
    return "; ".join(texts), links


def insufficient_resources_unschedulable(
    ctx: Context, ev: EvidenceIndex, _: RuleSettings
) -> Finding | None:
    """FailedScheduling: no node has room (Insufficient cpu/memory) or fits the constraints."""
    placed = {p.name for p in ctx.pods if p.node_name}
    sched = [
        e
        for e in events(ctx, reasons=("FailedScheduling",), pattern=_UNSCHEDULABLE)
        if not _UNBOUND.search(e.message) and e.object_name not in placed
    ]
    pending = [
        p
        for p in ctx.pods
        if p.phase == "Pending"
        and _UNSCHEDULABLE.search(p.conditions.get("PodScheduled", ("", "", ""))[2])
        and not _UNBOUND.search(p.conditions.get("PodScheduled", ("", "", ""))[2])
    ]
    if not sched and not pending:
        return None
    message = sched[0].message if sched else pending[0].conditions["PodScheduled"][2]
    insufficient = [r.rstrip(".") for r in re.findall(r"Insufficient ([\w./-]+)", message)]
    pod = next((p for p in ctx.pods if sched and p.name == sched[0].object_name), None)
    pod = pod or (pending[0] if pending else target_pod(ctx))
    requests = ""
    if pod is not None:
        req: dict[str, list[str]] = {}
        for c in pod.containers:
            for res, qty in c.requests.items():
                req.setdefault(res, []).append(qty)
        requests = ", ".join(f"{r}={'+'.join(q)}" for r, q in req.items())
    scale_up = events(ctx, reasons=("NotTriggerScaleUp", "FailedScaleUp"))
    pinned = pod.pinned_node if pod is not None else None
    what = (
        f"not enough free {' and '.join(insufficient)} on node {pinned}, the only node it may "
        "run on (a DaemonSet's pod, or one pinned by name)"
        if insufficient and pinned
        else f"not enough free {' and '.join(insufficient)} on any node"
        if insufficient
        else "no node matches its scheduling constraints (affinity, selectors, taints)"
    )
    held, because = _holders(ctx, insufficient)
    constraints = ""
    if pod is not None and pod.placement and _CONSTRAINED.search(message):
        constraints = "; the pod " + ", ".join(pod.placement[:4])
    return Finding(
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
        0.9 if insufficient else 0.85,
        summary=f"Pod {pod.name if pod else '?'} cannot be scheduled: {what}.",
        root_cause=(
            f"Pod {pod.name if pod else '?'} stays Pending because the scheduler finds {what}: "
            f"{quote_line(message, 260)}"
            + (f"; the pod requests {requests}" if requests else "")
            + constraints
            + (
                f"; the autoscaler does not add nodes: {quote_line(scale_up[0].message, 140)}"
                + _node_groups(ctx, pod)
                if scale_up
                else ""
            )
            + (
                f"; cordoned: {', '.join(ctx.cordoned_nodes)} (SchedulingDisabled: a drain "
                "that never finished, or a cordon left behind)"
                if ctx.cordoned_nodes
                else ""
            )
            + "."
            + (f" {held}." if held else "")
        ),
        because=because,
        evidence=ev.cite(
            cordoned_id() if ctx.cordoned_nodes else None,
            *[ev.event(e) for e in sched[:2]],
            *[eid for link in because for eid in link.evidence],
            pod_id(pod.name) if pod else None,
            *[ev.event(e) for e in scale_up[:1]],
            *[node_id(n.name) for n in ctx.nodes[:3]],
        ),
        impact=f"{workload_state(ctx)}; the missing replicas do not run until room is made.",
        immediate_actions=[
            "Add capacity (scale the node group) or lower the pod's requests to what it uses.",
            "Look for pods with oversized requests hogging the nodes, or constraints "
            "(nodeSelector, affinity, taints) that no node satisfies.",
        ],
        recommendations=[
            "Right-size requests from observed usage (VPA recommendations).",
            "Let the cluster autoscaler manage the node group with enough maximum size.",
        ],
        commands=[
            *([kc.describe("pod", pod.namespace, pod.name)] if pod else []),
            *[kc.uncordon(n) for n in ctx.cordoned_nodes[:2]],
            "kubectl top nodes",
            "kubectl get nodes -o custom-columns=NAME:.metadata.name,"
            "CPU:.status.allocatable.cpu,MEMORY:.status.allocatable.memory,"
            "TAINTS:.spec.taints[*].key",
            *([kc.describe("node", None, pinned)] if pinned else []),
            *[kc.describe("node", None, n.name) for n in ctx.nodes[:2] if n.name != pinned],
        ],
    )


# --- quota --------------------------------------------------------------------------------------

_QUOTA = re.compile(
    r"exceeded quota: (?P<quota>[\w.-]+)|failed quota: (?P<quota2>[\w.-]+): must specify",
    re.I,
)
QUOTA_ALERTS = ("KubeQuotaExceeded", "KubeQuotaFullyUsed")


def _quota_consumers(ctx: Context, quota: str, creating: set[str]) -> tuple[str, list[Link]]:
    """The largest and the oldest users of the quota's exhausted resources: who to scale down
    or delete to make room. The refused workload itself is named last, if at all."""
    texts: list[str] = []
    links: list[Link] = []
    for snap in ctx.quota_consumers:
        if snap.quota != quota:
            continue
        ranked = [c for c in snap.consumers if c.name not in creating] or snap.consumers
        for c in ranked[:2]:
            pods = f", {len(c.pods)} pod{'s' if len(c.pods) != 1 else ''}" if c.pods else ""
            since = f", the oldest created {c.oldest}" if c.oldest else ""
            orphan = (
                " (no owner: its Deployment was deleted with the ReplicaSet left behind, so "
                "nothing scales it down; delete it or scale it to 0)"
                if c.orphaned and not any(c.name in t for t in texts)
                else ""
            )
            text = (
                f"{c.kind} {c.name}{orphan} holds {c.amount_text or '?'} of {snap.resource}"
                f"{pods}{since}"
            )
            if text not in texts:
                texts.append(text)
                links.append(
                    Link(
                        summary=f"{text} ({snap.used}/{snap.hard} used in quota {quota}).",
                        evidence=[consumer_id(quota, snap.resource, c.kind, c.name)],
                        category=Category.QUOTA_EXCEEDED,
                    )
                )
    return "; ".join(texts[:3]), links[:3]


#: The LimitRanger admission plugin refusing a pod: a container or pod above a LimitRange's
#: max, below its min, or past its limit-to-request ratio.
_LIMIT_RANGE = re.compile(
    r"(?:maximum|minimum) (?P<resource>[\w./-]+) usage per (?P<scope>Container|Pod|"
    r"PersistentVolumeClaim) is (?P<bound>\S+?),? but (?:limit|request) is (?P<asked>\S+?)[.,]?"
    r"(?:\s|$)|(?P<resource2>[\w./-]+) max limit to request ratio per (?:Container|Pod) is",
    re.IGNORECASE,
)


def _limit_range_refusal(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A controller cannot create pods because their resources break a LimitRange of the
    namespace (FailedCreate "maximum memory usage per Container is 2Gi, but limit is 3Gi"):
    the namespace's admission limits, not its capacity, refuse them."""
    texts: list[tuple[str, str, str | None]] = [
        (e.message, f"{e.object_kind} {e.object_name}", ev.event(e))
        for e in ctx.events
        if _LIMIT_RANGE.search(e.message)
    ]
    texts += [
        (m, f"{w.kind} {w.name}", workload_id(w.kind, w.name))
        for w in [ctx.workload, *ctx.owners]
        if w is not None
        for (_, (_s, _r, m)) in w.conditions.items()
        if _LIMIT_RANGE.search(m)
    ]
    if not texts:
        return None
    message, who, cite = texts[0]
    m = _LIMIT_RANGE.search(message)
    assert m is not None
    resource = m.group("resource") or m.group("resource2") or "resources"
    ns = namespace(ctx)
    lr = next((r for r in ctx.limit_ranges if resource.lower() in " ".join(r.limits).lower()),
              ctx.limit_ranges[0] if ctx.limit_ranges else None)  # fmt: skip
    name = f"LimitRange {ns}/{lr.name}" if lr else f"a LimitRange of namespace {ns}"
    bound = (
        f"its {m.group('scope')} {resource} bound is {m.group('bound')} and the pod asks "
        f"{m.group('asked')}"
        if m.group("bound")
        else f"the {resource} limit-to-request ratio is past its maximum"
    )
    return Finding(
        Category.QUOTA_EXCEEDED,
        0.93,
        summary=f"{name} refuses the pods of {who}: {bound}.",
        root_cause=(
            f"{name} refuses every pod {who} creates, because {bound}: "
            f"{quote_line(message, 220)}. No pod of the new template can be admitted until "
            "the template fits the LimitRange or the LimitRange is raised."
        ),
        evidence=ev.cite(cite, limit_range_id(lr.name) if lr else None),
        impact=f"{workload_state(ctx)}; no new pod of it is created.",
        immediate_actions=[
            f"Bring the pod template's {resource} within {name} (or raise the LimitRange "
            "deliberately), or roll back the change that raised it.",
        ],
        recommendations=[
            "Check rendered manifests against the namespace's LimitRanges in CI "
            "(kubectl apply --dry-run=server).",
        ],
        commands=[
            f"kubectl -n {ns} describe limitrange" + (f" {lr.name}" if lr else ""),
            f"kubectl -n {ns} get events --field-selector reason=FailedCreate",
        ],
    )


def quota_exceeded(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The namespace's ResourceQuota refuses new pods (FailedCreate "exceeded quota"), or a
    LimitRange of it refuses their resources."""
    failed = [e for e in ctx.events if _QUOTA.search(e.message)]
    cond_msgs = [
        (w, m)
        for w in [ctx.workload, *ctx.owners]
        if w is not None
        for (_, (s, _r, m)) in w.conditions.items()
        if _QUOTA.search(m)
    ]
    full = [(q, quota_full_resources(q)) for q in ctx.quotas]
    full = [(q, r) for q, r in full if r]
    if not failed and not cond_msgs:
        limited = _limit_range_refusal(ctx, ev)
        if limited is not None:
            return limited
        if not full or ctx.alert.name not in QUOTA_ALERTS:
            return None
    message = failed[0].message if failed else (cond_msgs[0][1] if cond_msgs else "")
    m = _QUOTA.search(message)
    qname = (m.group("quota") or m.group("quota2")) if m else (full[0][0].name if full else "?")
    quota = next((q for q in ctx.quotas if q.name == qname), full[0][0] if full else None)
    resources = quota_full_resources(quota) if quota else []
    usage = (
        ", ".join(f"{r} {quota.used.get(r)}/{quota.hard.get(r)}" for r in resources)
        if quota
        else ""
    )
    ns = quota.namespace if quota else namespace(ctx)
    creator = failed[0] if failed else None
    who = (
        f"{creator.object_kind} {creator.object_name}"
        if creator
        else (f"{cond_msgs[0][0].kind} {cond_msgs[0][0].name}" if cond_msgs else "the workload")
    )
    score = 0.94 if (failed or cond_msgs) and "must specify" not in message else 0.85
    if not failed and not cond_msgs:
        score = 0.7
    creating = {creator.object_name} if creator else set()
    consumers, because = _quota_consumers(ctx, qname, creating)
    return Finding(
        Category.QUOTA_EXCEEDED,
        score,
        summary=f"ResourceQuota {qname} in {ns} is exhausted; {who} cannot create pods.",
        root_cause=(
            f"ResourceQuota {ns}/{qname} is used up"
            + (f" ({usage})" if usage else "")
            + f", so {who} cannot create pods"
            + (f": {quote_line(message, 260)}" if message else f" (alert {ctx.alert.name})")
            + "."
            + (f" What uses it: {consumers}." if consumers else "")
        ),
        because=because,
        evidence=ev.cite(
            *[ev.event(e) for e in failed[:3]],
            quota_id(qname),
            *[eid for link in because for eid in link.evidence],
            *[workload_id(w.kind, w.name) for w, _ in cond_msgs[:1]],
            ALERT_ID if not failed else None,
        ),
        impact=f"{workload_state(ctx)}; no new pod in {ns} fits until quota is freed or raised.",
        immediate_actions=[
            f"Raise ResourceQuota {qname} or free quota in {ns} (delete finished Jobs, scale "
            "down idle workloads, lower oversized requests/limits).",
        ],
        recommendations=[
            "Alert on KubeQuotaAlmostFull (90%) so teams can act before rollouts fail.",
            "Set requests/limits from observed usage so quota is not reserved for nothing.",
        ],
        commands=[
            kc.describe("resourcequota", ns, qname),
            *([kc.describe(creator.object_kind, ns, creator.object_name)] if creator else []),
            f"kubectl -n {ns} get pods -o custom-columns=NAME:.metadata.name,"
            "CPU:.spec.containers[*].resources.requests.cpu,"
            "MEM:.spec.containers[*].resources.requests.memory",
            f"kubectl -n {ns} edit resourcequota {qname}",
        ],
    )


# --- a node at its pod limit ----------------------------------------------------------------

#: Share of a node's allocatable pods from which it counts as full: the kubelet admits no pod
#: past its maxPods, and kube-prometheus-stack's KubeletTooManyPods fires at 95%.
POD_CAPACITY_FULL = 0.95


def node_pod_capacity(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A node runs as many pods as it may (its allocatable ``pods``, the kubelet's maxPods,
    which on AWS follows the instance's ENIs): the scheduler places no more pods there however
    much CPU and memory is free. The pods on it by workload say who fills it."""
    full: list[tuple[NodeSnapshot, int, int]] = []
    for node in ctx.nodes:
        limit = parse_quantity(node.allocatable.get("pods"))
        if limit and node.pods >= POD_CAPACITY_FULL * limit:
            full.append((node, node.pods, int(limit)))
    if not full:
        return None
    alerted = ctx.alert.name == "KubeletTooManyPods"
    too_many = events(ctx, reasons=("FailedScheduling",), pattern=re.compile("Too many pods"))
    if not alerted and not too_many:
        return None
    node, count, limit = max(full, key=lambda f: f[1] / f[2])
    owners: dict[str, int] = {}
    for p in ctx.pods:
        if p.node_name == node.name and p.phase not in ("Succeeded", "Failed"):
            key = f"{p.owner_kind} {p.namespace}/{p.owner_name}" if p.owner_kind else "bare pods"
            owners[key] = owners.get(key, 0) + 1
    ranked = sorted(owners.items(), key=lambda kv: -kv[1])[:3]
    who = ", ".join(f"{name} ({n})" for name, n in ranked)
    free = ", ".join(
        f"{r} requested {node.requested[r]} of {node.allocatable[r]}"
        for r in ("cpu", "memory")
        if r in node.requested and r in node.allocatable
    )
    return Finding(
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
        0.84 if too_many else 0.8,
        summary=(
            f"Node {node.name} runs {count} of the {limit} pods it may run: the scheduler "
            "places no more pods there (Too many pods)."
        ),
        root_cause=(
            f"Node {node.name} is at its pod limit: {count} pods of {limit} allocatable "
            "(the kubelet's maxPods)"
            + (f", while {free}" if free else "")
            + ". Pods are the scarce resource, not CPU or memory, so the scheduler's filter "
            "answers 'Too many pods' for this node"
            + (f"; most of its pods: {who}" if who else "")
            + "."
        ),
        evidence=ev.cite(
            node_id(node.name),
            *[ev.event(e) for e in too_many[:2]],
            ALERT_ID if alerted else None,
        ),
        impact=(
            "New pods that could only go to this node stay Pending; with every node of the "
            "group full, the workload cannot scale out."
        ),
        immediate_actions=[
            "Run fewer, larger pods of the workload that fills the node, or add nodes (an "
            "instance type with a higher pod limit, or a larger node group).",
            "On EKS, raise the pods per node with VPC CNI prefix delegation "
            "(ENABLE_PREFIX_DELEGATION) and a matching --max-pods.",
        ],
        recommendations=[
            "Size replicas by what they need, not by the smallest pod: tiny pods exhaust the "
            "per-node pod limit long before CPU or memory.",
        ],
        commands=[kc.describe("node", None, node.name), kc.pods_on_node(node.name)],
    )


# --- the resource metrics API behind an HPA ------------------------------------------------------


def metrics_api_down(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """An HPA cannot read CPU or memory (FailedGetResourceMetric: unable to fetch metrics from
    the resource metrics API) because what serves metrics.k8s.io, metrics-server, is down: the
    category is why its own pods fail (a flag it refuses, an OOM kill, an image it cannot
    pull), or an unreachable dependency when they are simply not there or not ready."""
    snap = ctx.metrics_api
    if snap is None:
        return None
    failing = [p for p in snap.pods if pod_is_unhealthy(p)]
    if snap.pods and not failing:
        return None  # metrics-server runs: the API's trouble is elsewhere (APIService, network)
    category, why, cited = Category.DEPENDENCY_UNREACHABLE, "", []
    lines = [
        (log, n, line)
        for log in sorted(snap.logs, key=lambda lg: not lg.previous)
        for n, line in enumerate(log.lines, 1)
    ]
    refused = next(((lg, n, ln) for lg, n, ln in lines if BAD_CONFIG_WORDING.search(ln)), None)
    containers = [c for p in failing for c in p.containers if not c.init]
    if refused is not None:
        log, n, line = refused
        category = Category.BAD_CONFIG
        why = f"it refuses its configuration: {quote_line(line, 200)}"
        cited = [metrics_line_id(log, n)]
    elif any("OOMKilled" in (c.reason, c.last_reason) for c in containers):
        category, why = Category.OOM_KILLED, "it is OOMKilled at its memory limit"
    elif any(c.reason in ("ImagePullBackOff", "ErrImagePull") for c in containers):
        category, why = Category.IMAGE_PULL_ERROR, "its image cannot be pulled"
    elif not snap.pods:
        why = "no metrics-server pod exists in kube-system"
    else:
        why = "its pods are not ready"
    names = ", ".join(p.name for p in failing[:2])
    hpas = f"HPA {', '.join(h.name for h in ctx.hpas[:2])}" if ctx.hpas else "the HPAs"
    return Finding(
        category,
        0.88,
        summary=(
            f"{hpas} cannot read their metrics: metrics-server ({names or 'absent'}) is down, "
            f"{why.split(':')[0]}."
        ),
        root_cause=(
            f"The HPA controller cannot fetch CPU and memory from the resource metrics API "
            f"({quote_line(snap.trigger, 160)}), so {hpas} cannot compute a replica count and "
            f"does not scale. The API is served by metrics-server in kube-system"
            + (f" ({names})" if names else "")
            + f", and {why}."
        ),
        evidence=ev.cite(*cited, *(metrics_pod_id(p.name) for p in failing[:2])),
        impact=(
            "Every HPA on CPU or memory in the cluster stops scaling, and kubectl top fails, "
            "until metrics-server serves again."
        ),
        immediate_actions=[
            "Fix what metrics-server fails on (its flags in the Deployment or the chart "
            "values, its memory limit, its image) and check that kubectl top nodes answers.",
        ],
        recommendations=[
            "Alert on the metrics.k8s.io APIService being unavailable, not only on the HPAs.",
        ],
        commands=[
            "kubectl get apiservice v1beta1.metrics.k8s.io",
            "kubectl -n kube-system get pods -l k8s-app=metrics-server",
            "kubectl -n kube-system logs deploy/metrics-server --previous",
        ],
    )


# --- a kubelet serving certificate nobody renews ----------------------------------------------

#: A kubelet-serving CSR still pending this long before the alert has no approver: an
#: approver (a person, kubelet-csr-approver) answers in seconds, so hours of pending requests
#: mean the certificate is not being renewed.
CSR_PENDING_HOURS = 1.0
#: Or this many pending from one node: a kubelet whose request goes unanswered asks again
#: (its certificate manager retries with a new CSR), so several pending is the same sign,
#: whatever their timestamps say.
CSR_PENDING_REPEATS = 2


def _renewal_stuck(snap: KubeletCSRs, ctx: Context) -> float | None:
    """How long (hours) a node's pending CSRs of one signer have waited, when they show that
    nobody approves them: CSR_PENDING_REPEATS pending, or one older than CSR_PENDING_HOURS.
    None when they do not."""
    if not snap.pending:
        return None
    age = _pending_hours(snap.oldest_pending, ctx) or 0.0
    return age if snap.pending >= CSR_PENDING_REPEATS or age >= CSR_PENDING_HOURS else None


def kubelet_serving_cert(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Prometheus (or metrics-server) cannot scrape a kubelet because the kubelet's serving
    certificate expired: with serverTLSBootstrap the kubelet renews it through a CSR of signer
    kubernetes.io/kubelet-serving, which kube-controller-manager never approves; with no
    approver, the CSRs stay pending and the old certificate runs out while the node stays
    Ready."""
    down = _down_kubelet_nodes(ctx)
    stuck = [
        (snap, age)
        for snap in ctx.kubelet_csrs
        if snap.signer == SIGNER and (age := _renewal_stuck(snap, ctx)) is not None
    ]
    if not stuck:
        return None
    named = [(s, a) for s, a in stuck if s.node in down]
    if down and not named:
        return None  # the targets that are down are other kubelets: their CSRs are not stuck
    snap, age = (named or stuck)[0]
    ids = [csr_id(snap.node), *(["metric/kubelet_targets_down"] if named else [])]
    names = " ".join(snap.pending_names[:5])
    return Finding(
        Category.CERT_EXPIRED,
        0.88 if named else 0.8,
        summary=(
            f"The kubelet on node {snap.node} serves an expired certificate: its "
            f"{snap.pending} renewal CSRs ({SIGNER}) are pending with nobody to approve them"
            + (f" (the oldest for {age:.0f} h)." if age >= 1 else ".")
        ),
        root_cause=(
            f"The kubelet of node {snap.node} renews its serving certificate (port 10250) "
            f"through CertificateSigningRequests of signer {SIGNER} (serverTLSBootstrap), and "
            f"{snap.pending} of them have been pending since {snap.oldest_pending}"
            + (
                f" (the last one approved was created {snap.last_issued})"
                if snap.last_issued
                else ""
            )
            + ": kube-controller-manager never approves this signer and no approver does, so "
            "the certificate expired and every scrape of the kubelet fails TLS verification"
            + (" (its scrape target is down)" if named else "")
            + ", while the node itself stays Ready."
        ),
        evidence=ev.cite(*ids, ALERT_ID),
        impact=(
            f"Metrics of node {snap.node} and its pods (kubelet, cAdvisor, probes) are "
            "missing; metrics-server cannot serve its CPU and memory, so HPAs and kubectl top "
            "lose it too."
        ),
        immediate_actions=[
            f"Approve the pending CSRs after checking they come from the node: kubectl "
            f"certificate approve {names or '<csr>'}; the kubelet picks up the new "
            "certificate within minutes, without a restart.",
            "Restore the approver of kubelet-serving CSRs (kubelet-csr-approver, or the "
            "cloud's), or turn serverTLSBootstrap off on nodes that have no approver.",
        ],
        recommendations=[
            "Alert on CSRs pending for more than an hour, and on kubelet certificate expiry "
            "(kubelet_certificate_manager_server_ttl_seconds).",
        ],
        commands=[
            "kubectl get csr --sort-by=.metadata.creationTimestamp | grep kubelet-serving",
            f"kubectl describe node {snap.node}",
        ],
    )


def kubelet_client_cert(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A client certificate is about to expire because a kubelet cannot renew its own: its
    renewal CSRs (signer kubernetes.io/kube-apiserver-client-kubelet) stay pending.
    kube-controller-manager approves such a renewal only when a ClusterRoleBinding grants the
    node the selfnodeclient role; without it (an RBAC cleanup, a hand-made cluster) every
    renewal waits, and when the old certificate expires the node goes NotReady."""
    if ctx.alert.name not in CLIENT_CERT_ALERTS:
        return None
    stuck = [
        s
        for s in ctx.kubelet_csrs
        if s.signer == CLIENT_SIGNER and _renewal_stuck(s, ctx) is not None
    ]
    if not stuck:
        return None
    nodes = ", ".join(s.node for s in stuck[:3])
    names = " ".join(n for s in stuck[:3] for n in s.pending_names[:3])
    unbound = ctx.client_renewal_bindings == []
    why = (
        f"no ClusterRoleBinding grants {CLIENT_RENEWAL_ROLE} (kubeadm's "
        "kubeadm:node-autoapprove-certificate-rotation, to group system:nodes), so "
        "kube-controller-manager approves none of the renewals"
        if unbound
        else "nothing approves them"
    )
    return Finding(
        Category.CERT_EXPIRED,
        0.88 if unbound else 0.8,
        summary=(
            f"The kubelet client certificate of node {nodes} is about to expire: its renewal "
            f"CSRs ({CLIENT_SIGNER}) stay pending because "
            + (
                f"no ClusterRoleBinding grants {CLIENT_RENEWAL_ROLE}."
                if unbound
                else "none is approved."
            )
        ),
        root_cause=(
            f"The kubelet of node {nodes} renews the client certificate it authenticates to "
            f"the API server with through CertificateSigningRequests of signer {CLIENT_SIGNER}; "
            + "; ".join(
                f"{s.pending} of node {s.node} are pending since {s.oldest_pending}"
                + (f" (the last approved was created {s.last_issued})" if s.last_issued else "")
                for s in stuck[:3]
            )
            + f": {why}. When the old certificate expires the kubelet can no longer reach the "
            "API server and the node goes NotReady."
        ),
        evidence=ev.cite(*[csr_id(s.node, s.signer) for s in stuck[:3]], ALERT_ID),
        impact=(
            f"Node {nodes} will lose its API access when the certificate expires: NotReady, "
            "its pods evicted after the toleration."
        ),
        immediate_actions=[
            f"Approve the pending CSRs after checking they come from the node: kubectl "
            f"certificate approve {names or '<csr>'}.",
            f"Restore the ClusterRoleBinding of {CLIENT_RENEWAL_ROLE} to group system:nodes "
            "(kubeadm init phase bootstrap-token recreates kubeadm's), so renewals are "
            "approved again.",
        ],
        recommendations=[
            "Alert on CSRs pending for more than an hour and on "
            "kubelet_certificate_manager_client_ttl_seconds.",
        ],
        commands=[
            "kubectl get csr --sort-by=.metadata.creationTimestamp | grep client-kubelet",
            "kubectl get clusterrolebindings -o wide | grep selfnodeclient",
            *[f"kubectl describe node {s.node}" for s in stuck[:1]],
        ],
    )


_NODE_LABEL = re.compile(r'\bnode="([^"]+)"')


def _down_kubelet_nodes(ctx: Context) -> set[str]:
    """Nodes whose kubelet scrape target Prometheus reports down now (``up == 0``)."""
    metric = next((m for m in ctx.metrics if m.name == "kubelet_targets_down"), None)
    if metric is None:
        return set()
    return {m.group(1) for key in metric.values for m in [_NODE_LABEL.search(key)] if m}


def _pending_hours(created: str | None, ctx: Context) -> float | None:
    when = parse_rfc3339(created)
    return None if when is None else (ctx.alert.starts_at - when).total_seconds() / 3600
