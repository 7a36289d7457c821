"""The NetworkPolicies of the namespace that select the pods.

Evidence: ``netpol/<name>``: what it selects, its policy types, each ingress and egress rule.
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, NetworkPolicySnapshot, PodSnapshot


def netpol_id(name: str) -> str:
    """``netpol/<name>``: one NetworkPolicy."""
    return f"netpol/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    if not ns or not scope.ctx.pods:
        return
    for np in await scope.reader.list("NetworkPolicy", ns):
        s = network_policy_snapshot(np, scope.ctx.pods)
        if s.selects_target:
            scope.ctx.network_policies.append(s)


def _peer(rule: Obj, key: str) -> str:
    peers = []
    for peer in rule.get(key) or []:
        if "ipBlock" in peer:
            peers.append(f"ipBlock {peer['ipBlock'].get('cidr')}")
        parts = []
        if "namespaceSelector" in peer:
            parts.append(f"namespaces {peer['namespaceSelector'].get('matchLabels') or 'any'}")
        if "podSelector" in peer:
            parts.append(f"pods {peer['podSelector'].get('matchLabels') or 'any'}")
        if parts:
            peers.append(" ".join(parts))
    ports = [f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in rule.get("ports") or []]
    text = ", ".join(peers) or "anywhere"
    return text + (f" ports {','.join(ports)}" if ports else "")


def network_policy_snapshot(np: Obj, target_pods: list[PodSnapshot]) -> NetworkPolicySnapshot:
    spec = np.get("spec") or {}
    selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
    types = list(spec.get("policyTypes") or ["Ingress"])
    selects = any(all(p.labels.get(k) == v for k, v in selector.items()) for p in target_pods)
    return NetworkPolicySnapshot(
        name=str(meta(np).get("name", "")),
        namespace=str(meta(np).get("namespace", "")),
        pod_selector={str(k): str(v) for k, v in selector.items()},
        policy_types=types,
        ingress=[_peer(r, "from") for r in spec.get("ingress") or []],
        egress=[_peer(r, "to") for r in spec.get("egress") or []],
        selects_target=selects,
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for np in ctx.network_policies:
        text = (
            f"selects {kv(np.pod_selector) or 'all pods'}"
            + (" (including the alerted pods)" if np.selects_target else "")
            + f"; types {', '.join(np.policy_types) or 'Ingress'}"
            + f"; ingress: {'; '.join(np.ingress) or 'deny all'}"
            * ("Ingress" in np.policy_types or not np.policy_types)
            + f"; egress: {'; '.join(np.egress) or 'deny all'}" * ("Egress" in np.policy_types)
        )
        out.add(
            Tier.OBJECT_BAD if np.selects_target else Tier.BACKGROUND,
            netpol_id(np.name),
            EvidenceSource.NETWORK_POLICY,
            f"networkpolicy/{np.namespace}/{np.name}",
            text,
        )


SOURCE = Source(
    "network_policies",
    Stage.AROUND,
    read,
    evidence,
    resources=("networkpolicies.networking.k8s.io",),
)
