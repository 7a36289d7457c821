"""Services around the pods: the alerted one, those backed by the pods, and dependencies the
pods' environment, logs or events name.

Reads the namespace's Services, then each chosen one's Endpoints (and a dependency's pods),
at most ten.

Evidence: ``service/<name>``: why it was gathered, type, ports, selector, ready and not
ready endpoints, matching pods.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, label_selector, meta, name_of, selector_matches
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.gathering.sources.pods import pod_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, PodSnapshot, ServiceSnapshot

#: Services snapshotted per analysis.
MAX_SERVICES = 10


def service_id(name: str) -> str:
    """``service/<name>``: one Service and its endpoints."""
    return f"service/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    if not ns:
        return
    ctx = scope.ctx
    services = await scope.reader.list("Service", ns)
    mentioned = mentioned_text(ctx)
    chosen: list[tuple[Obj, str]] = []
    for svc in services:
        name = name_of(svc)
        selector = (svc.get("spec") or {}).get("selector") or {}
        if scope.target.kind == "Service" and name == scope.target.name:
            chosen.append((svc, "target"))
        elif selector and any(selector_matches(selector, p.labels) for p in ctx.pods):
            chosen.append((svc, "member"))
        elif mentions(mentioned, name, ns):
            chosen.append((svc, "dependency"))
    for svc, relation in chosen[:MAX_SERVICES]:
        endpoints = await scope.get("Endpoints", ns, name_of(svc))
        selector = (svc.get("spec") or {}).get("selector") or {}
        pods = ctx.pods
        if relation == "dependency" and selector:
            pods = [
                pod_snapshot(p)
                for p in await scope.reader.list("Pod", ns, label_selector=label_selector(selector))
            ]
        ctx.services.append(service_snapshot(svc, endpoints, pods, relation))


def mentioned_text(ctx: Context) -> str:
    """What the pods say about their dependencies: env values, log tails, event messages."""
    parts: list[str] = []
    for p in ctx.pods:
        for c in p.containers:
            parts.extend(c.env.values())
    for lg in ctx.logs:
        parts.extend(lg.lines[-200:])
    parts.extend(e.message for e in ctx.events)
    return "\n".join(parts)


def mentions(text: str, name: str, namespace: str) -> bool:
    """Whether ``text`` names the Service ``name``, alone or in a cluster DNS form."""
    if len(name) < 3:
        return False
    # The name alone, or its cluster DNS forms, followed by a port or the end of the word.
    pattern = (
        rf"(?<![\w.-]){re.escape(name)}(?:\.{re.escape(namespace)})?"
        rf"(?:\.svc(?:\.cluster\.local)?)?(?::\d+|(?![\w-]))"
    )
    return re.search(pattern, text) is not None


def service_snapshot(
    svc: Obj, endpoints: Obj | None, pods: list[PodSnapshot], relation: str
) -> ServiceSnapshot:
    spec = svc.get("spec") or {}
    ready = not_ready = 0
    for subset in (endpoints or {}).get("subsets") or []:
        ready += len(subset.get("addresses") or [])
        not_ready += len(subset.get("notReadyAddresses") or [])
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    ports = [
        f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        + (f"->{p.get('targetPort')}" if p.get("targetPort") else "")
        for p in spec.get("ports") or []
    ]
    return ServiceSnapshot(
        name=str(meta(svc).get("name", "")),
        namespace=str(meta(svc).get("namespace", "")),
        type=str(spec.get("type", "ClusterIP")),
        cluster_ip=spec.get("clusterIP"),
        selector=selector,
        ports=ports,
        ready_endpoints=ready,
        not_ready_endpoints=not_ready,
        matching_pods=[p.name for p in pods if selector_matches(selector, p.labels)],
        relation=relation,
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for svc in ctx.services:
        selector = kv(svc.selector) or "none"
        text = (
            f"{svc.relation} service, {svc.type} {svc.cluster_ip or ''} ports "
            f"{', '.join(svc.ports) or '-'}; selector {selector}; "
            f"{svc.ready_endpoints} ready / {svc.not_ready_endpoints} not ready endpoints"
            + ("" if svc.ready_endpoints else " (no ready endpoints)")
            + f"; {len(svc.matching_pods)} matching pods"
        )
        out.add(
            Tier.OBJECT_BAD if svc.ready_endpoints == 0 else Tier.BACKGROUND,
            service_id(svc.name),
            EvidenceSource.SERVICE,
            f"service/{svc.namespace}/{svc.name}",
            text,
        )


SOURCE = Source(
    "services", Stage.FOLLOW, read, evidence, resources=("services", "endpoints", "pods")
)
