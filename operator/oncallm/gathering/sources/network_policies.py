"""The NetworkPolicies of the namespace that select the pods, with their full semantics:
podSelector and namespaceSelector (matchLabels and matchExpressions), ipBlock, ports and
policyTypes, structured for the rules (``selects``, ``restricts``; ``network_paths``
evaluates them for the connections that fail).

Evidence: ``netpol/<name>``: what it selects, its policy types, each ingress and egress rule.
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    Context,
    LabelRequirement,
    LabelSelector,
    NetworkPolicySnapshot,
    PodSnapshot,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
)


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


def label_selector_of(selector: Obj | None) -> LabelSelector:
    """A label selector's JSON (``matchLabels``, ``matchExpressions``) as a model."""
    selector = selector or {}
    return LabelSelector(
        match_labels={str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()},
        match_expressions=[
            LabelRequirement(
                key=str(e.get("key", "")),
                operator=str(e.get("operator", "")),
                values=[str(v) for v in e.get("values") or []],
            )
            for e in selector.get("matchExpressions") or []
        ],
    )


def selects(selector: LabelSelector | None, labels: dict[str, str]) -> bool:
    """Whether a label selector selects an object with these labels; an empty selector
    selects everything, a missing one (None) nothing."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def _rules(spec: Obj, key: str, peers_key: str) -> list[PolicyRule]:
    rules = []
    for rule in spec.get(key) or []:
        peers = []
        for peer in rule.get(peers_key) or []:
            block = peer.get("ipBlock") or {}
            peers.append(
                PolicyPeer(
                    pod_selector=label_selector_of(peer["podSelector"])
                    if "podSelector" in peer
                    else None,
                    namespace_selector=label_selector_of(peer["namespaceSelector"])
                    if "namespaceSelector" in peer
                    else None,
                    ip_block=block.get("cidr"),
                    ip_block_except=[str(c) for c in block.get("except") or []],
                )
            )
        ports = [
            PolicyPort(
                protocol=str(p.get("protocol", "TCP")),
                port=str(p["port"]) if p.get("port") is not None else None,
                end_port=p.get("endPort"),
            )
            for p in rule.get("ports") or []
        ]
        rules.append(PolicyRule(peers=peers, ports=ports))
    return rules


def network_policy_snapshot(np: Obj, target_pods: list[PodSnapshot]) -> NetworkPolicySnapshot:
    spec = np.get("spec") or {}
    selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
    full = label_selector_of(spec.get("podSelector"))
    types = list(spec.get("policyTypes") or ["Ingress"])
    return NetworkPolicySnapshot(
        name=str(meta(np).get("name", "")),
        namespace=str(meta(np).get("namespace", "")),
        pod_selector={str(k): str(v) for k, v in selector.items()},
        policy_types=types,
        ingress=[_peer(r, "from") for r in spec.get("ingress") or []],
        egress=[_peer(r, "to") for r in spec.get("egress") or []],
        selects_target=any(selects(full, p.labels) for p in target_pods),
        selector=full,
        policy_types_set=bool(spec.get("policyTypes")),
        ingress_rules=_rules(spec, "ingress", "from"),
        egress_rules=_rules(spec, "egress", "to"),
    )


def restricts(np: NetworkPolicySnapshot, direction: str) -> bool:
    """Whether a policy restricts ``Ingress`` or ``Egress`` of the pods it selects. Without
    policyTypes a policy restricts Ingress, and Egress when it has egress rules."""
    if np.policy_types_set:
        return direction in np.policy_types
    return direction == "Ingress" or (direction == "Egress" and bool(np.egress_rules))


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
