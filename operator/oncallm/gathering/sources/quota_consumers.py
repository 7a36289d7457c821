"""Who fills a full ResourceQuota: for each resource at or over its hard limit, the workloads
of the namespace that use it, largest first, with their oldest pod and labels.

Reads only when the ``namespace_limits`` source found a quota at its limit: the namespace's
pods (compute resources, ``pods``) or claims (``requests.storage``,
``persistentvolumeclaims``). Pods count as their controller (a ReplicaSet as its Deployment);
Succeeded and Failed pods do not count, as for the quota itself.

Evidence: ``quota/<quota>/<resource>/<Kind>/<name>`` for each consumer, the three largest among
the broken objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from oncallm.gathering.objects import Obj, controller_of, meta, name_of, workload_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.gathering.sources.namespace_limits import quota_full_resources
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, QuotaConsumer, QuotaConsumersSnapshot, QuotaSnapshot
from oncallm.models.quantity import parse_quantity

#: Consumers kept per resource: the largest, plus the oldest few if they are not among them.
MAX_CONSUMERS = 10
OLDEST = 3
#: Consumers per resource among the broken objects; the rest are background.
TOP = 3

_STORAGE = re.compile(
    r"(?:^|\.)requests\.storage$|^persistentvolumeclaims$|persistentvolumeclaims$"
)
#: Object-count quotas (``count/jobs.batch``, ``services``) and the kind they count: their
#: consumers are the objects themselves, grouped by the controller that makes them.
OBJECT_COUNTS = {
    "count/jobs.batch": "Job",
    "count/cronjobs.batch": "CronJob",
    "count/deployments.apps": "Deployment",
    "count/replicasets.apps": "ReplicaSet",
    "count/statefulsets.apps": "StatefulSet",
    "count/services": "Service",
    "services": "Service",
}
"""ConfigMaps and Secrets are left out: listing them reads their data, which OnCallM does not
take for a count."""
_COUNTED_ELSEWHERE = re.compile(
    r"^count/(?!pods$)|^(?:services|configmaps|secrets|replicationcontrollers)"
)
_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{6,}|[0-9a-f]{5,10})$")
"""The dated or generated tail of an object's name (``backfill-2026-11-01``, ``etl-28912440``):
objects that share the rest were made by one hand or one loop."""


_REFUSED = re.compile(
    r"exceeded quota: (?P<quota>[\w.-]+), requested: (?P<requested>[^,]+(?:,[\w./-]+=[^,]+)*)"
)
"""The quota admission's refusal: ``exceeded quota: q, requested: limits.memory=4Gi, used: ...``."""


def refused_resources(ctx: Context) -> list[tuple[QuotaSnapshot, str]]:
    """(quota, resource) pairs a refusal names: a quota below its hard limit still refuses a
    pod that would cross it, so "almost full" is full for that pod."""
    out: list[tuple[QuotaSnapshot, str]] = []
    messages = [e.message for e in ctx.events]
    messages += [m for w in [ctx.workload, *ctx.owners] if w for (_, _, m) in w.conditions.values()]
    for message in messages:
        m = _REFUSED.search(message)
        if m is None:
            continue
        quota = next((q for q in ctx.quotas if q.name == m.group("quota")), None)
        if quota is None:
            continue
        for part in m.group("requested").split(","):
            resource = part.split("=", 1)[0].strip()
            if resource in quota.hard and (quota, resource) not in out:
                out.append((quota, resource))
    return out


def consumer_id(quota: str, resource: str, kind: str, name: str) -> str:
    """``quota/<quota>/<resource>/<Kind>/<name>``: one user of a full quota's resource."""
    return f"quota/{quota}/{resource}/{kind}/{name}"


async def read(scope: Scope) -> None:
    full = [(q, r) for q in scope.ctx.quotas for r in quota_full_resources(q)]
    full += [(q, r) for q, r in refused_resources(scope.ctx) if (q, r) not in full]
    full = [(q, r) for q, r in full if r in OBJECT_COUNTS or not _COUNTED_ELSEWHERE.search(r)]
    if not full:
        return
    pods: dict[str, list[Obj]] = {}
    orphans: dict[str, set[str]] = {}
    claims: dict[str, list[Obj]] = {}
    for quota, resource in full:
        ns = quota.namespace
        if resource in OBJECT_COUNTS:
            objects = await scope.reader.list(OBJECT_COUNTS[resource], ns)
            found = object_consumers(OBJECT_COUNTS[resource], objects)
        elif _STORAGE.search(resource):
            if ns not in claims:
                claims[ns] = await scope.reader.list("PersistentVolumeClaim", ns)
            found = claim_consumers(resource, claims[ns])
        else:
            if ns not in pods:
                pods[ns] = await scope.reader.list("Pod", ns)
                orphans[ns] = orphaned_replicasets(await scope.reader.list("ReplicaSet", ns))
            found = pod_consumers(resource, pods[ns], orphans[ns])
        scope.ctx.quota_consumers.append(snapshot(quota, resource, found))


@dataclass
class _Tally:
    kind: str
    name: str
    pods: list[str] = field(default_factory=list)
    amount: float = 0.0
    oldest: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    orphaned: bool = False


def orphaned_replicasets(replicasets: list[Obj]) -> set[str]:
    """ReplicaSets no controller owns: their Deployment was deleted with ``--cascade=orphan``
    (a chart migration, a rename) and nothing scales them down any more, so their pods hold
    the quota forever. Named as themselves, not as a Deployment that no longer exists."""
    return {name_of(rs) for rs in replicasets if controller_of(rs) is None}


def pod_amount(resource: str, pod: Obj) -> float:
    """What one pod counts against a quota's resource: ``pods`` 1, ``requests.cpu`` (or
    ``cpu``) the larger of its containers' sum and its largest init container, and so on."""
    if resource in ("pods", "count/pods"):
        return 1.0
    which, _, name = resource.partition(".")
    if which not in ("requests", "limits"):
        which, name = "requests", resource
    spec = pod.get("spec") or {}

    def value(container: Obj) -> float:
        qty = ((container.get("resources") or {}).get(which) or {}).get(name)
        return (parse_quantity(str(qty)) or 0.0) if qty is not None else 0.0

    containers = sum(value(c) for c in spec.get("containers") or [])
    inits = max((value(c) for c in spec.get("initContainers") or []), default=0.0)
    return max(containers, inits)


def pod_consumers(
    resource: str, pods: list[Obj], orphans: set[str] | frozenset[str] = frozenset()
) -> list[_Tally]:
    tallies: dict[tuple[str, str], _Tally] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        amount = pod_amount(resource, pod)
        if amount <= 0:
            continue
        owner = controller_of(pod)
        orphaned = owner is not None and owner[0] == "ReplicaSet" and owner[1] in orphans
        kind, name = owner if orphaned and owner else workload_of(pod)
        tally = tallies.setdefault((kind, name), _Tally(kind, name, orphaned=orphaned))
        tally.pods.append(name_of(pod))
        tally.amount += amount
        created = meta(pod).get("creationTimestamp")
        if created and (tally.oldest is None or str(created) < tally.oldest):
            tally.oldest = str(created)
        if not tally.labels:
            tally.labels = dict(meta(pod).get("labels") or {})
    return list(tallies.values())


def object_consumers(kind: str, objects: list[Obj]) -> list[_Tally]:
    """What fills an object-count quota: the objects grouped by their controller (a CronJob's
    Jobs), else by their name without its dated or generated tail (18 ``backfill-2026-11-*``
    Jobs created by a script)."""
    tallies: dict[tuple[str, str], _Tally] = {}
    for obj in objects:
        owner = controller_of(obj)
        if owner:
            key = owner
        else:
            base = _DATED.sub("", name_of(obj))
            key = (kind, f"{base}-*" if base != name_of(obj) else base)
        tally = tallies.setdefault(key, _Tally(key[0], key[1]))
        tally.amount += 1
        created = meta(obj).get("creationTimestamp")
        if created and (tally.oldest is None or str(created) < tally.oldest):
            tally.oldest = str(created)
        if not tally.labels:
            tally.labels = dict(meta(obj).get("labels") or {})
    return list(tallies.values())


def claim_consumers(resource: str, claims: list[Obj]) -> list[_Tally]:
    out = []
    storage_class = (
        resource.split(".storageclass.storage.k8s.io/")[0] if "storageclass" in resource else None
    )
    for claim in claims:
        spec = claim.get("spec") or {}
        if storage_class and spec.get("storageClassName") != storage_class:
            continue
        if resource.endswith("persistentvolumeclaims"):
            amount = 1.0
        else:
            request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            amount = (parse_quantity(str(request)) or 0.0) if request is not None else 0.0
        if amount <= 0:
            continue
        created = meta(claim).get("creationTimestamp")
        out.append(
            _Tally(
                "PersistentVolumeClaim",
                name_of(claim),
                amount=amount,
                oldest=str(created) if created else None,
                labels=dict(meta(claim).get("labels") or {}),
            )
        )
    return out


def amount_text(resource: str, value: float) -> str:
    """A quota amount as people write it: ``6500m`` CPU, ``12Gi`` memory, ``3`` pods."""
    if "cpu" in resource:
        return (
            f"{value:g}" if value >= 1 and float(value).is_integer() else f"{round(value * 1000)}m"
        )
    if any(word in resource for word in ("memory", "storage", "hugepages")):
        gib = value / 1024**3
        return f"{gib:.3g}Gi" if gib >= 1 else f"{round(value / 1024**2)}Mi"
    return f"{value:g}"


def snapshot(quota: QuotaSnapshot, resource: str, tallies: list[_Tally]) -> QuotaConsumersSnapshot:
    by_size = sorted(tallies, key=lambda t: (-t.amount, t.oldest or "~", t.name))
    kept = by_size[:MAX_CONSUMERS]
    for tally in sorted(tallies, key=lambda t: (t.oldest or "~", t.name))[:OLDEST]:
        if tally not in kept:
            kept.append(tally)
    return QuotaConsumersSnapshot(
        quota=quota.name,
        namespace=quota.namespace,
        resource=resource,
        used=quota.used.get(resource, ""),
        hard=quota.hard.get(resource, ""),
        consumers=[
            QuotaConsumer(
                kind=t.kind,
                name=t.name,
                pods=sorted(t.pods),
                amount=t.amount,
                amount_text=amount_text(resource, t.amount),
                oldest=t.oldest,
                labels=t.labels,
                orphaned=t.orphaned,
            )
            for t in kept
        ],
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.quota_consumers:
        hard = parse_quantity(snap.hard)
        for rank, c in enumerate(snap.consumers):
            share = f" ({100 * c.amount / hard:.0f}% of hard {snap.hard})" if hard else ""
            pods = f"{len(c.pods)} pods" if c.kind != "PersistentVolumeClaim" else "the claim"
            orphan = " (no owner: orphaned by its deleted Deployment)" if c.orphaned else ""
            text = (
                f"{c.kind} {c.name}{orphan}: {pods} use {c.amount_text} of {snap.resource}"
                f"{share}; "
                f"quota {snap.quota} used {snap.used or '?'}/{snap.hard or '?'}"
                + (f"; oldest since {c.oldest}" if c.oldest else "")
                + (f"; labels {kv(c.labels)}" if c.labels else "")
            )
            out.add(
                Tier.OBJECT_BAD if rank < TOP else Tier.BACKGROUND,
                consumer_id(snap.quota, snap.resource, c.kind, c.name),
                EvidenceSource.QUOTA,
                f"resourcequota/{snap.namespace}/{snap.quota}",
                text,
                time=c.oldest,
            )


SOURCE = Source(
    "quota_consumers",
    Stage.LEADS,
    read,
    evidence,
    resources=(
        "pods",
        "persistentvolumeclaims",
        "jobs.batch",
        "cronjobs.batch",
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
        "services",
    ),
)
