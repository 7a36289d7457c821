"""Who uses the ephemeral storage of a node under DiskPressure or evicting for it.

Reads, for each such node (the pods' nodes with ``DiskPressure=True``, and those of pods
evicted for ephemeral storage), the pods on it: their emptyDir volumes and sizeLimits, their
containers' ephemeral-storage requests and limits, and what the kubelet's eviction message
says each container used.

Evidence: ``storage/<node>`` (pressure, evictions, threshold, the largest users) and
``storage/<node>/<pod>`` for each pod that uses ephemeral storage, evicted ones among the
broken objects.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta, name_of, workload_of
from oncallm.gathering.scope import MAX_NODES, Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    Context,
    EmptyDirVolume,
    EphemeralStorageUse,
    NodeStorageSnapshot,
)
from oncallm.models.quantity import parse_quantity

#: Pods kept per node: the evicted and the largest first.
MAX_PODS = 15
RESOURCE = "ephemeral-storage"

_USING = re.compile(r"Container (\S+) was using (\S+?), request is (\S+?)[,.]")
_THRESHOLD = re.compile(r"Threshold quantity: (\S+?), available: (\S+?)\.")
_OVER_LIMIT = re.compile(
    r"Usage of EmptyDir volume \"(?P<volume>[^\"]+)\" exceeds the limit \"(?P<limit>[^\"]+)\""
    r"|Container (?P<container>\S+) exceeded its local ephemeral storage limit \"(?P<clim>[^\"]+)\""
    r"|Pod ephemeral local storage usage exceeds the total limit of containers (?P<plim>\S+?)\.?$"
)


def storage_id(node: str) -> str:
    """``storage/<node>``: a node's disk pressure and who uses its ephemeral storage."""
    return f"storage/{node}"


def storage_pod_id(node: str, pod: str) -> str:
    """``storage/<node>/<pod>``: one pod's ephemeral storage on that node."""
    return f"storage/{node}/{pod}"


FILESYSTEM_ALERTS = ("NodeFilesystemSpaceFillingUp", "NodeFilesystemAlmostOutOfSpace")
"""node-exporter alerts about a node's filesystem: read who writes to the node's disk."""


def nodes_to_read(ctx: Context) -> list[str]:
    """The pods' nodes under DiskPressure, and the nodes of pods evicted for storage."""
    names = {n.name for n in ctx.nodes if n.conditions.get("DiskPressure", ("",))[0] == "True"}
    if ctx.target.kind == "Node" and ctx.alert.name.startswith(FILESYSTEM_ALERTS):
        names.add(ctx.target.name)  # node-exporter sees the disk fill before the kubelet acts
    for pod in ctx.pods:
        if pod.node_name and pod.reason == "Evicted" and RESOURCE in pod.message:
            names.add(pod.node_name)
    return sorted(names)[:MAX_NODES]


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    for node in nodes_to_read(ctx):
        async with scope.guard(f"pods on node {node}"):
            pods = await scope.reader.list("Pod", None, field_selector=f"spec.nodeName={node}")
            pressure = any(
                n.name == node and n.conditions.get("DiskPressure", ("",))[0] == "True"
                for n in ctx.nodes
            )
            snap = node_storage(node, pressure, pods)
            snap.largest_images = largest_images(await scope.get("Node", None, node), pods)
            ctx.node_storage.append(snap)


#: Images named per node, the largest first.
MAX_IMAGES = 3


def largest_images(node: Obj | None, pods: list[Obj] | None = None) -> list[str]:
    """The node's largest images, ``name (size, used by <owner>)``, from its status.images and
    the pods on it that run them (an image in use is one the garbage collector keeps)."""
    images = ((node or {}).get("status") or {}).get("images") or []
    ranked = sorted(images, key=lambda i: -int(i.get("sizeBytes") or 0))
    users: dict[str, str] = {}
    for pod in pods or []:
        kind, owner = workload_of(pod)
        for c in [*((pod.get("spec") or {}).get("initContainers") or []),
                  *((pod.get("spec") or {}).get("containers") or [])]:  # fmt: skip
            users.setdefault(str(c.get("image", "")), f"{kind} {owner}")
    out = []
    for image in ranked[:MAX_IMAGES]:
        names = [str(n) for n in image.get("names") or []]
        name = next((n for n in names if "@sha256:" not in n), names[0] if names else "?")
        user = next((users[n] for n in names if n in users), "")
        out.append(
            f"{name} ({int(image.get('sizeBytes') or 0) / 1e9:.1f} GB"
            + (f", used by {user}" if user else "")
            + ")"
        )
    return out


def storage_use(pod: Obj) -> EphemeralStorageUse:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    owner = workload_of(pod)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        res = c.get("resources") or {}
        if RESOURCE in (res.get("requests") or {}):
            requests[str(c.get("name"))] = str(res["requests"][RESOURCE])
        if RESOURCE in (res.get("limits") or {}):
            limits[str(c.get("name"))] = str(res["limits"][RESOURCE])
    empty_dirs = [
        EmptyDirVolume(
            name=str(v.get("name", "")),
            size_limit=(v["emptyDir"] or {}).get("sizeLimit"),
            medium=str((v["emptyDir"] or {}).get("medium", "")),
        )
        for v in spec.get("volumes") or []
        if "emptyDir" in v
    ]
    host_paths = [
        f"{(v['hostPath'] or {}).get('path', '')} (volume {v.get('name', '')})"
        for v in spec.get("volumes") or []
        if "hostPath" in v and _mounted_writable(spec, str(v.get("name", "")))
    ]
    message = str(status.get("message", ""))
    usage = {m.group(1): m.group(2) for m in _USING.finditer(message)}
    used = [parse_quantity(u) for u in usage.values()]
    evicted = status.get("reason") == "Evicted"
    return EphemeralStorageUse(
        pod=name_of(pod),
        namespace=str(meta(pod).get("namespace", "")),
        owner_kind=owner[0] if owner[0] != "Pod" else None,
        owner_name=owner[1] if owner[0] != "Pod" else None,
        phase=str(status.get("phase", "")),
        evicted=evicted,
        empty_dirs=empty_dirs,
        host_paths=host_paths,
        requests=requests,
        limits=limits,
        usage=usage,
        used_bytes=max((u for u in used if u is not None), default=None),
        message=message if evicted or _OVER_LIMIT.search(message) else "",
    )


def _mounted_writable(spec: Obj, volume: str) -> bool:
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for m in c.get("volumeMounts") or []:
            if m.get("name") == volume and not m.get("readOnly"):
                return True
    return False


def _uses_storage(use: EphemeralStorageUse) -> bool:
    return bool(
        (use.evicted and RESOURCE in use.message)
        or use.host_paths
        or use.usage
        or use.requests
        or use.limits
        or [v for v in use.empty_dirs if v.medium != "Memory"]
    )


def node_storage(node: str, pressure: bool, pods: list[Obj]) -> NodeStorageSnapshot:
    uses = [u for u in (storage_use(p) for p in pods) if _uses_storage(u)]
    uses.sort(key=lambda u: (not u.evicted, -(u.used_bytes or 0.0), u.namespace, u.pod))
    threshold = available = None
    for u in uses:
        match = _THRESHOLD.search(u.message)
        if match:
            threshold, available = match.group(1), match.group(2)
            break
    return NodeStorageSnapshot(
        node=node,
        disk_pressure=pressure,
        evictions=sum(1 for u in uses if u.evicted and RESOURCE in u.message),
        threshold=threshold,
        available=available,
        pods=uses[:MAX_PODS],
    )


def describe_use(u: EphemeralStorageUse) -> str:
    parts = [
        f"pod {u.namespace}/{u.pod}" + (f" ({u.owner_kind} {u.owner_name})" if u.owner_kind else "")
    ]
    if u.evicted:
        parts.append("evicted")
    if u.usage:
        parts.append("used " + ", ".join(f"{c} {_readable(q)}" for c, q in u.usage.items()))
    for v in u.empty_dirs:
        limit = f"sizeLimit {v.size_limit}" if v.size_limit else "no sizeLimit"
        parts.append(f"emptyDir {v.name} ({v.medium + ', ' if v.medium else ''}{limit})")
    for path in u.host_paths:
        parts.append(f"writes hostPath {path} (no limit applies)")
    if u.requests:
        parts.append("requests " + ", ".join(f"{c}={q}" for c, q in u.requests.items()))
    parts.append(
        "limits " + ", ".join(f"{c}={q}" for c, q in u.limits.items())
        if u.limits
        else "no ephemeral-storage limit"
    )
    return "; ".join(parts)


def _largest_usage(u: EphemeralStorageUse) -> str:
    return _readable(max(u.usage.values(), key=lambda q: parse_quantity(q) or 0.0))


def _readable(quantity: str) -> str:
    """``41263584Ki`` -> ``41263584Ki (39.4Gi)``: the kubelet's figure and a readable one."""
    value = parse_quantity(quantity)
    if value is None or value < 1024**3 or quantity.endswith("Gi"):
        return quantity
    return f"{quantity} ({value / 1024**3:.1f}Gi)"


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.node_storage:
        largest = [u for u in snap.pods if u.used_bytes][:3]
        text = (
            f"DiskPressure={'True' if snap.disk_pressure else 'False'}; "
            f"{snap.evictions} pods evicted for ephemeral-storage"
            + (
                f" (threshold {snap.threshold}, available {snap.available})"
                if snap.threshold
                else ""
            )
            + f"; {len(snap.pods)} pods use ephemeral storage, "
            f"{sum(1 for u in snap.pods if not u.limits)} without a limit"
            + (
                "; largest: " + ", ".join(f"{u.pod} {_largest_usage(u)}" for u in largest)
                if largest
                else ""
            )
            + (f"; largest images: {', '.join(snap.largest_images)}" if snap.largest_images else "")
        )
        bad = snap.disk_pressure or snap.evictions > 0
        out.add(
            Tier.NODE_BAD if bad else Tier.BACKGROUND,
            storage_id(snap.node),
            EvidenceSource.NODE,
            f"node/{snap.node}",
            text,
        )
        for u in snap.pods:
            out.add(
                Tier.OBJECT_BAD if u.evicted else Tier.BACKGROUND,
                storage_pod_id(snap.node, u.pod),
                EvidenceSource.POD_STATUS,
                f"pod/{u.namespace}/{u.pod}",
                describe_use(u),
            )


SOURCE = Source("node_storage", Stage.LEADS, read, evidence, resources=("pods",))
