"""Istio's mTLS policies over pods whose probes fail behind an Istio sidecar.

With the sidecar injected, every inbound connection to the pod's ports goes through Envoy.
Istio rewrites the pods' HTTP probes so the kubelet asks the sidecar's agent, which calls the
app in the pod. A pod that turns that off (annotation
``sidecar.istio.io/rewriteAppHTTPProbers: "false"``) has the kubelet's plaintext probe reach
Envoy's inbound listener, which under a STRICT PeerAuthentication accepts only mTLS and resets
the connection: the probe fails while the app is healthy.

Reads, when a pod with an Istio sidecar fails a probe: the PeerAuthentications of its
namespace and of Istio's root namespace (mesh-wide), through API discovery (absent when Istio
is not installed).

Evidence: ``peerauth/<namespace>/<name>`` (the mode, what it selects).
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, PeerAuthenticationSnapshot, PodSnapshot

ISTIO_SECURITY = "security.istio.io"
#: Istio's root namespace: a PeerAuthentication there without a selector is mesh-wide.
ROOT_NAMESPACE = "istio-system"
SIDECAR = "istio-proxy"
#: The pods' namespaces whose policies are read.
MAX_NAMESPACES = 2


def peer_authentication_id(namespace: str, name: str) -> str:
    """``peerauth/<namespace>/<name>``: an Istio PeerAuthentication over the pods."""
    return f"peerauth/{namespace}/{name}"


def has_istio_sidecar(pod: PodSnapshot) -> bool:
    return any(c.name == SIDECAR for c in pod.containers) or "sidecar.istio.io/status" in pod.mesh


def trigger(ctx: Context) -> list[str]:
    """Namespaces of sidecar'd pods the kubelet reports a failing probe for."""
    probed = {e.object_name for e in ctx.events if e.reason == "Unhealthy"}
    return sorted({p.namespace for p in ctx.pods if p.name in probed and has_istio_sidecar(p)})


async def read(scope: Scope) -> None:
    namespaces = trigger(scope.ctx)[:MAX_NAMESPACES]
    if not namespaces:
        return
    for ns in [*namespaces, ROOT_NAMESPACE]:
        async with scope.guard(f"peerauthentications in {ns}"):
            for obj in await scope.reader.list(
                "PeerAuthentication", ns, api_version=ISTIO_SECURITY
            ):
                scope.ctx.peer_authentications.append(peer_authentication_snapshot(obj))


def peer_authentication_snapshot(obj: Obj) -> PeerAuthenticationSnapshot:
    spec = obj.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return PeerAuthenticationSnapshot(
        name=str(meta(obj).get("name", "")),
        namespace=str(meta(obj).get("namespace", "")),
        mode=str((spec.get("mtls") or {}).get("mode") or "UNSET").upper(),
        selector={str(k): str(v) for k, v in labels.items()},
        created_at=meta(obj).get("creationTimestamp"),
    )


def applies(policy: PeerAuthenticationSnapshot, pod: PodSnapshot) -> bool:
    """Whether the policy covers the pod: its own namespace's (all workloads, or those its
    selector matches), or the root namespace's mesh-wide one."""
    if policy.namespace not in (pod.namespace, ROOT_NAMESPACE):
        return False
    if policy.namespace == ROOT_NAMESPACE and pod.namespace != ROOT_NAMESPACE:
        return not policy.selector
    return all(pod.labels.get(k) == v for k, v in policy.selector.items())


def effective_mode(ctx: Context, pod: PodSnapshot) -> PeerAuthenticationSnapshot | None:
    """The policy that decides the pod's mTLS mode: the most specific one that applies (a
    selector's, then its namespace's, then the mesh's), as Istio chooses."""
    covering = [p for p in ctx.peer_authentications if applies(p, pod) and p.mode != "UNSET"]
    covering.sort(key=lambda p: (not p.selector, p.namespace == ROOT_NAMESPACE))
    return covering[0] if covering else None


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for p in ctx.peer_authentications:
        out.add(
            Tier.OBJECT_BAD if p.mode == "STRICT" else Tier.BACKGROUND,
            peer_authentication_id(p.namespace, p.name),
            EvidenceSource.WORKLOAD,
            f"peerauthentication/{p.namespace}/{p.name}",
            f"Istio PeerAuthentication: mTLS mode {p.mode} for "
            + (
                "pods labelled " + ", ".join(f"{k}={v}" for k, v in p.selector.items())
                if p.selector
                else ("the whole mesh" if p.namespace == ROOT_NAMESPACE else "every workload")
                + (f" of namespace {p.namespace}" if p.namespace != ROOT_NAMESPACE else "")
            )
            + (f"; created {p.created_at}" if p.created_at else ""),
        )


SOURCE = Source(
    "mesh",
    Stage.LEADS,
    read,
    evidence,
    resources=("peerauthentications.security.istio.io",),
)
