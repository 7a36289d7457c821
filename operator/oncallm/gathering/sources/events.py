"""Events about the target, its pods, claims, workload, revisions, owners, HPAs and nodes.

Reads the namespace's events and each node's, keeps those about the objects gathered within
the policy's event window, Warning and newest first, without repeats.

Evidence: ``event/<Kind>/<name>/<reason>`` for each (a second one with the same key gets
``~2``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from oncallm.gathering.objects import Obj, parse_time
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, EventSnapshot
from oncallm.models.policy import Depth


def event_base_id(event: EventSnapshot) -> str:
    """``event/<Kind>/<name>/<reason>``; a second event with the same three gets ``~2``."""
    return f"event/{event.object_kind or 'Object'}/{event.object_name}/{event.reason or 'Event'}"


MAX_EVENT_NAMESPACES = 5
"""Namespaces whose events one analysis lists: the target's and those of its pods, for an
alert about pods across namespaces (cluster-wide overcommit). Each is one list call."""


NAMED_IN_MESSAGES = ("ResourceQuota", "PersistentVolume", "StorageClass", "LimitRange")
"""Target kinds other objects' events name in their message rather than as their subject: a
ReplicaSet's FailedCreate says "exceeded quota: compute", a claim's event names its volume."""


def _names(message: str, kind: str, name: str) -> bool:
    if kind == "ResourceQuota":
        return f"quota: {name}" in message
    return f'"{name}"' in message or f" {name} " in f" {message} "


async def read(scope: Scope) -> None:
    ctx, target = scope.ctx, scope.target
    ns = target.namespace
    window = timedelta(minutes=scope.policy.spec.sources.event_window_minutes)
    wanted: set[tuple[str, str]] = {(target.kind, target.name)}
    for p in ctx.pods:
        wanted.add(("Pod", p.name))
        for claim in p.pvcs:
            wanted.add(("PersistentVolumeClaim", claim))
    if ctx.workload:
        wanted.add((ctx.workload.kind, ctx.workload.name))
        for rev in ctx.workload.revisions[:2]:
            wanted.add(("ReplicaSet", rev.name))
    for owner in ctx.owners:
        wanted.add((owner.kind, owner.name))
    for hpa in ctx.hpas:
        wanted.add(("HorizontalPodAutoscaler", hpa.name))
    raw: list[Obj] = []
    # the target's namespace, then those of the gathered pods (a cluster-wide alert's pods)
    namespaces = list(dict.fromkeys([*([ns] if ns else []), *(p.namespace for p in ctx.pods)]))
    for namespace in namespaces[:MAX_EVENT_NAMESPACES]:
        async with scope.guard(f"events in {namespace}"):
            raw.extend(await scope.reader.list("Event", namespace))
    for node in scope.node_names():
        async with scope.guard(f"events of node {node}"):
            raw.extend(
                await scope.reader.list(
                    "Event",
                    None,
                    field_selector=f"involvedObject.kind=Node,involvedObject.name={node}",
                )
            )
        wanted.add(("Node", node))
    events = [event_snapshot(e) for e in raw]
    cutoff = scope.now - window
    named = target.kind in NAMED_IN_MESSAGES
    kept = [
        e
        for e in events
        if (
            (e.object_kind, e.object_name) in wanted
            or (named and _names(e.message, target.kind, target.name))
        )
        and _after(e.last_seen, cutoff)
    ]
    kept.sort(key=lambda e: (e.type != "Warning", _neg_time(e.last_seen)))
    seen: set[tuple[str, str, str, str]] = set()
    unique = []
    for e in kept:
        key = (e.object_kind, e.object_name, e.reason, e.message)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    ctx.events = unique[: scope.settings.max_events]


def event_snapshot(event: Obj) -> EventSnapshot:
    """A core/v1 or events.k8s.io/v1 Event."""
    involved = event.get("involvedObject") or event.get("regarding") or {}
    series = event.get("series") or {}
    count = event.get("count") or series.get("count") or 1
    return EventSnapshot(
        type=str(event.get("type", "Normal")),
        reason=str(event.get("reason", "")),
        message=str(event.get("message") or event.get("note") or ""),
        count=int(count),
        object_kind=str(involved.get("kind", "")),
        object_name=str(involved.get("name", "")),
        object_namespace=involved.get("namespace"),
        first_seen=event.get("firstTimestamp") or event.get("eventTime"),
        last_seen=event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp"),
    )


def _after(text: str | None, cutoff: datetime) -> bool:
    when = parse_time(text)
    return when is None or when >= cutoff


def _neg_time(text: str | None) -> float:
    when = parse_time(text)
    return -when.timestamp() if when else 0.0


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for event in ctx.events:
        ns = f"{event.object_namespace}/" if event.object_namespace else ""
        count = f" (x{event.count})" if event.count > 1 else ""
        eid = out.add(
            Tier.EVENT_WARNING if event.type == "Warning" else Tier.BACKGROUND,
            event_base_id(event),
            EvidenceSource.EVENT,
            f"{event.object_kind.lower()}/{ns}{event.object_name}",
            f"{event.type} {event.reason}: {event.message}{count}",
            time=event.last_seen or event.first_seen,
        )
        out.index_event(event, eid)


SOURCE = Source("events", Stage.FOLLOW, read, evidence, depth=Depth.QUICK, resources=("events",))
