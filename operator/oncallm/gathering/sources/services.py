"""Services around the pods: the alerted one, those backed by the pods, and dependencies the
pods' environment, logs or events name, in their namespace or in another one.

Reads the namespace's Services; the Services of other namespaces named in a cluster DNS form
(``ledger-api.finance.svc.cluster.local``, ``session-cache.platform:6379``), one GET each, at
most four; then each chosen one's Endpoints (and a dependency's pods), at most ten in all.

Evidence: ``service/<name>``: why it was gathered, type, ports, selector, ready and not
ready endpoints, matching pods.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import (
    Obj,
    controller_of,
    label_selector,
    meta,
    name_of,
    selector_matches,
)
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.gathering.sources.pods import pod_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, PodSnapshot, ServiceSnapshot

#: Services snapshotted per analysis.
MAX_SERVICES = 10
#: Services of other namespaces followed per analysis: one GET each, and their Endpoints and
#: pods when the Service exists.
MAX_OTHER_NAMESPACE = 4

#: A Service of another namespace as a client names it: ``name.namespace.svc[.cluster.local]``
#: (any port), or ``name.namespace:port`` (the search path resolves it; the port keeps file
#: names and dotted versions out).
_OTHER_SERVICE = re.compile(
    r"(?<![\w.-])([a-z](?:[-a-z0-9]*[a-z0-9])?)\.([a-z](?:[-a-z0-9]*[a-z0-9])?)"
    r"(?:(\.svc(?:\.cluster\.local)?\.?)(?::\d+)?(?![\w.-])|:\d{2,5}(?![\w.]))"
)
#: Second labels of a two-label ``host:port`` that are domains, never namespaces.
_DOMAINS = frozenset(
    "com net org io dev co ai app cloud local internal lan corp svc cluster us eu uk de".split()
)


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
    chosen = chosen[:MAX_SERVICES]
    for other_ns, name in other_namespace_services(mentioned, ns)[:MAX_OTHER_NAMESPACE]:
        if len(chosen) >= MAX_SERVICES:
            break
        async with scope.guard(f"service {other_ns}/{name}"):
            other = await scope.get("Service", other_ns, name)
            if other is not None:
                chosen.append((other, "dependency"))
    for svc, relation in chosen:
        ns = str(meta(svc).get("namespace") or scope.namespace)
        endpoints = await scope.get("Endpoints", ns, name_of(svc))
        selector = (svc.get("spec") or {}).get("selector") or {}
        pods = ctx.pods
        declared: set[int] | None = None
        if relation == "dependency" and selector:
            raw = await scope.reader.list("Pod", ns, label_selector=label_selector(selector))
            pods = [pod_snapshot(p) for p in raw]
            declared = declared_ports(raw)
        elif selector:
            # the target's own Service: the workload's pods it selects, already read
            declared = declared_ports(
                [
                    p
                    for p in scope.raw_pods
                    if selector_matches(selector, meta(p).get("labels") or {})
                ]
            )
        snap = service_snapshot(svc, endpoints, pods, relation)
        snap.unserved_ports = unserved_ports(svc, declared)
        if snap.unserved_ports and declared:
            snap.declared_ports = sorted(declared)
        if relation == "dependency" and selector and not snap.matching_pods:
            snap.backing = await backing_workload(scope, ns, selector) + await _missed_servers(
                scope, ns, selector, svc
            )
        if relation == "dependency":
            snap.backend_failures, snap.backend_reason = backend_failures(pods)
            snap.backend_claims = await unbound_claims(scope, ns, pods)
        ctx.services.append(snap)


def other_namespace_services(text: str, namespace: str) -> list[tuple[str, str]]:
    """``(namespace, name)`` of the Services of other namespaces that ``text`` names in a
    cluster DNS form, in the order first named."""
    found: list[tuple[str, str]] = []
    for m in _OTHER_SERVICE.finditer(text):
        name, other, svc_suffix = m.group(1), m.group(2), m.group(3)
        if other == namespace or (not svc_suffix and other in _DOMAINS):
            continue
        if (other, name) not in found:
            found.append((other, name))
    return found


async def backing_workload(scope: Scope, namespace: str, selector: dict[str, str]) -> str:
    """The Deployment or StatefulSet whose pod template the Service's selector matches, with
    its replicas, when no pod matches: a Service without endpoints is most often a workload
    scaled to zero (a downscaler, an HPA at zero, a cleanup) or deleted."""
    for kind in ("Deployment", "StatefulSet"):
        for obj in await scope.reader.list(kind, namespace):
            template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
            if selector and selector_matches(selector, dict(template.get("labels") or {})):
                spec, status = obj.get("spec") or {}, obj.get("status") or {}
                replicas = spec.get("replicas", 1)
                return (
                    f"{kind} {namespace}/{name_of(obj)} has {replicas} replicas"
                    + (" (scaled to zero)" if replicas == 0 else "")
                    + f", {status.get('readyReplicas') or 0} ready"
                    + (
                        _downscaled(obj) + await _scaler(scope, namespace, kind, name_of(obj))
                        if replicas == 0
                        else ""
                    )
                )
    return f"no Deployment or StatefulSet of {namespace} has pods its selector matches"


#: Pods named as the ones a Service's selector misses, at most.
MAX_MISSED = 2


async def _missed_servers(scope: Scope, namespace: str, selector: dict[str, str], svc: Obj) -> str:
    """Pods of the namespace that declare the Service's numeric targetPort and share a
    label key of its selector but not its value: the backend was relabelled (a chart or an
    operator took it over) and the Service's selector was left behind."""
    wanted = {
        int(p["targetPort"])
        for p in (svc.get("spec") or {}).get("ports") or []
        if isinstance(p.get("targetPort"), int)
    }
    if not wanted:
        return ""
    missed = []
    for pod in await scope.reader.list("Pod", namespace):
        labels = dict(meta(pod).get("labels") or {})
        if selector_matches(selector, labels) or not set(selector) & set(labels):
            continue
        if not (declared_ports([pod]) or set()) & wanted:
            continue
        shown = ",".join(f"{k}={labels[k]}" for k in selector if k in labels)
        missed.append(f"{name_of(pod)} ({shown})")
    if not missed:
        return ""
    return (
        f"; pods that serve port {', '.join(map(str, sorted(wanted)))} but its selector misses: "
        + ", ".join(missed[:MAX_MISSED])
    )


#: The annotation kube-downscaler writes on a workload it scaled down: the replicas to give
#: back when its downtime ends.
DOWNSCALER_ORIGINAL = "downscaler/original-replicas"


def _downscaled(obj: Obj) -> str:
    """Who scaled the workload to zero, when its annotations say: kube-downscaler keeps the
    replicas it took away in ``downscaler/original-replicas`` (its schedule in
    ``downscaler/downtime`` or ``downscaler/uptime``, on the workload or its namespace)."""
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    original = annotations.get(DOWNSCALER_ORIGINAL)
    if original is None:
        return ""
    schedule = next(
        (
            f" ({k.split('/')[1]} {v})"
            for k, v in annotations.items()
            if k in ("downscaler/downtime", "downscaler/uptime")
        ),
        "",
    )
    return f"; kube-downscaler scaled it down from {original} replicas{schedule}"


async def _scaler(scope: Scope, namespace: str, kind: str, name: str) -> str:
    """The HPA that scales the workload, and what owns it (a KEDA ScaledObject scales to zero
    through an HPA it owns)."""
    for hpa in await scope.reader.list("HorizontalPodAutoscaler", namespace):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") != kind or ref.get("name") != name:
            continue
        owner = controller_of(hpa)
        return f"; HPA {name_of(hpa)} scales it" + (f" for {owner[0]} {owner[1]}" if owner else "")
    return ""


def backend_failures(pods: list[PodSnapshot]) -> tuple[list[str], str | None]:
    """How a dependency's own pods fail: a Service without ready endpoints often has pods
    that crash for a reason of their own (an OOM, a bad config), the cause of the cause."""
    texts: list[str] = []
    reasons: set[str] = set()
    for pod in pods[:5]:
        for c in pod.containers:
            reason = c.last_reason or (c.reason if c.state == "terminated" else "")
            if not reason or reason == "Completed":
                continue
            code = c.last_exit_code if c.last_exit_code is not None else c.exit_code
            limit = c.limits.get("memory")
            texts.append(
                f"{pod.name}: {c.name} {reason}"
                + (f" (exit {code})" if code is not None else "")
                + (f" at memory limit {limit}" if reason == "OOMKilled" and limit else "")
                + f", {c.restart_count} restarts"
            )
            reasons.add(reason)
    return texts, (next(iter(reasons)) if len(reasons) == 1 else None)


#: The scheduler's words for a pod whose claims are not bound yet (immediate binding, or
#: WaitForFirstConsumer's PreBind step).
_UNBOUND = re.compile(
    r"unbound (?:immediate )?PersistentVolumeClaims|VolumeBinding\"?: binding volumes"
    r"|provisioning failed for PVC|waiting for (?:a )?volume to be created",
    re.IGNORECASE,
)
#: Claims of a dependency's Pending pods read per Service.
MAX_CLAIMS = 2


async def unbound_claims(scope: Scope, namespace: str, pods: list[PodSnapshot]) -> list[str]:
    """A dependency's pods that cannot be scheduled because their claims are not bound: each
    claim's phase and why it is not provisioned (its newest Warning event), ``PVC x Pending:
    ProvisioningFailed: ...``. The database is down because its volume never came."""
    names = [
        claim
        for p in pods
        if p.phase == "Pending"
        and _UNBOUND.search(p.conditions.get("PodScheduled", ("", "", ""))[2])
        for claim in p.pvcs
    ][:MAX_CLAIMS]
    out = []
    for claim in names:
        async with scope.guard(f"claim {namespace}/{claim}"):
            pvc = await scope.get("PersistentVolumeClaim", namespace, claim)
            phase = str(((pvc or {}).get("status") or {}).get("phase", "missing"))
            events = await scope.reader.list(
                "Event",
                namespace,
                field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={claim}",
            )
            warnings = sorted(
                (e for e in events if e.get("type") == "Warning"),
                key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
            )
            why = (
                f": {warnings[-1].get('reason')}: {str(warnings[-1].get('message', ''))[:500]}"
                if warnings
                else ""
            )
            out.append(f"PVC {claim} {phase}{why}")
    return out


def declared_ports(pods: list[Obj]) -> set[int] | None:
    """The container ports the pods declare; None when they declare none (unknown)."""
    ports = {
        int(p["containerPort"])
        for pod in pods
        for c in (pod.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if p.get("containerPort")
    }
    return ports or None


def unserved_ports(svc: Obj, declared: set[int] | None) -> list[str]:
    """Service ports that send traffic to a numeric targetPort none of its pods declares: the
    endpoints are ready, yet every connection is refused."""
    if not declared:
        return []
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        if str(target).isdigit() and int(str(target)) not in declared:
            out.append(f"{p.get('port')}->{target}")
    return out


def mentioned_text(ctx: Context) -> str:
    """What the pods say about their dependencies: env values, log tails, event messages."""
    parts: list[str] = []
    for p in ctx.pods:
        for c in p.containers:
            parts.extend(c.env.values())
            parts.extend(c.config_env.values())
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
    addresses: list[str] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ready += len(subset.get("addresses") or [])
        not_ready += len(subset.get("notReadyAddresses") or [])
        ports = [str(p.get("port")) for p in subset.get("ports") or [] if p.get("port")]
        for a in subset.get("addresses") or []:
            ip = str(a.get("ip") or a.get("hostname") or "")
            addresses += [f"{ip}:{port}" for port in ports] if ports else [ip]
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
        external_name=(
            str(spec["externalName"])
            if spec.get("type") == "ExternalName" and spec.get("externalName")
            else None
        ),
        selector=selector,
        ports=ports,
        ready_endpoints=ready,
        not_ready_endpoints=not_ready,
        addresses=addresses[:5],
        matching_pods=[p.name for p in pods if selector_matches(selector, p.labels)],
        ready_pods=sum(
            1
            for p in pods
            if selector_matches(selector, p.labels)
            and p.conditions.get("Ready", ("",))[0] == "True"
        )
        if selector
        else None,
        relation=relation,
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for svc in ctx.services:
        selector = kv(svc.selector) or "none"
        text = (
            f"{svc.relation} service, {svc.type} "
            + (f"-> {svc.external_name} " if svc.external_name else f"{svc.cluster_ip or ''} ")
            + "ports "
            f"{', '.join(svc.ports) or '-'}; selector {selector}; "
            f"{svc.ready_endpoints} ready / {svc.not_ready_endpoints} not ready endpoints"
            + (f" ({', '.join(svc.addresses)})" if svc.addresses else "")
            + ("" if svc.ready_endpoints else " (no ready endpoints)")
            + f"; {len(svc.matching_pods)} matching pods"
            + (
                f"; targetPort not declared by its pods: {', '.join(svc.unserved_ports)}"
                + (
                    f" (they declare {', '.join(map(str, svc.declared_ports))})"
                    if svc.declared_ports
                    else ""
                )
                if svc.unserved_ports
                else ""
            )
            + (
                f"; its pods fail: {'; '.join(svc.backend_failures)}"
                if svc.backend_failures
                else ""
            )
            + (
                f"; its pods wait for their volumes: {'; '.join(svc.backend_claims)}"
                if svc.backend_claims
                else ""
            )
            + (f"; {svc.backing}" if svc.backing else "")
        )
        out.add(
            Tier.OBJECT_BAD if svc.ready_endpoints == 0 or svc.unserved_ports else Tier.BACKGROUND,
            service_id(svc.name),
            EvidenceSource.SERVICE,
            f"service/{svc.namespace}/{svc.name}",
            text,
        )


SOURCE = Source(
    "services",
    Stage.FOLLOW,
    read,
    evidence,
    resources=(
        "services",
        "endpoints",
        "pods",
        "deployments.apps",
        "statefulsets.apps",
        "horizontalpodautoscalers.autoscaling",
        "persistentvolumeclaims",
        "events",
    ),
)
