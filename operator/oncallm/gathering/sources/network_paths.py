"""Connections the pods' logs show failing, and the NetworkPolicies on both ends, evaluated
with their full semantics: podSelector and namespaceSelector (matchLabels and
matchExpressions, against the real Namespace labels), ipBlock with its exceptions, ports
(numbers, named container ports, endPort) and policyTypes.

Reads only when a log or event line shows a connection failing (a timeout, a refusal, a name
that does not resolve): for each destination it names (a Service by its cluster DNS name, a
Service of the namespace the ``services`` source found, an IP address and port, or the
cluster DNS), the Service and the pods behind it (labels, container ports), the Namespaces on
both ends and the destination namespace's NetworkPolicies. The source side's policies are
those of ``network_policies``.

Evidence: ``netpath/<destination>`` (the verdict on each end), ``netpath/<destination>/
ingress/<policy>`` (each destination-side policy that selects its pods),
``servicemonitor/<name>`` (a failing scrape's ServiceMonitor: port and scheme) and
``namespace/<name>`` (a Namespace's labels).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from oncallm.gathering.objects import Obj, label_selector, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.gathering.sources.dns import NAME_RESOLUTION_FAILURE, SERVICE_DNS
from oncallm.gathering.sources.network_policies import (
    network_policy_snapshot,
    restricts,
    selects,
)
from oncallm.gathering.sources.services import mentioned_text
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    Context,
    NamespaceSnapshot,
    NetworkPathSnapshot,
    NetworkPolicySnapshot,
    PeerPod,
    PodPort,
    PolicyPeer,
    PolicyPort,
)

#: Destinations followed per analysis, and their pods looked at.
MAX_PATHS = 3
MAX_PEER_PODS = 5
METADATA_NAME = "kubernetes.io/metadata.name"
DNS_NAMESPACE, DNS_SERVICE, DNS_LABELS = "kube-system", "kube-dns", {"k8s-app": "kube-dns"}

_CONNECT_FAILURE = re.compile(
    r"i/o timeout|timed out|\btimeout\b(?!=)|connection refused|could not be established"
    r"|no route to host"
    r"|network is unreachable|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|connect failed|unreachable",
    re.IGNORECASE,
)
_NOT_THE_PODS = re.compile(r"calling webhook|probe failed|probe errored", re.IGNORECASE)
_IP_PORT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})\b")


def path_id(destination: str) -> str:
    """``netpath/<destination>``: a failing connection and what the policies say about it."""
    return f"netpath/{destination}"


def monitor_id(name: str) -> str:
    """``servicemonitor/<name>``: the ServiceMonitor behind a failing scrape."""
    return f"servicemonitor/{name}"


def path_policy_id(destination: str, policy: str) -> str:
    """``netpath/<destination>/ingress/<policy>``: a policy of the destination's namespace."""
    return f"netpath/{destination}/ingress/{policy}"


def namespace_id(name: str) -> str:
    """``namespace/<name>``: a Namespace's labels."""
    return f"namespace/{name}"


@dataclass
class Destination:
    text: str
    kind: str
    line: str
    namespace: str | None = None
    service: str | None = None
    ip: str | None = None
    port: int | None = None
    protocol: str = "TCP"


def destinations(ctx: Context, namespace: str) -> list[Destination]:
    """Where the failing connections of the pods' logs and events go, at most MAX_PATHS."""
    found: dict[str, Destination] = {}
    dependencies = {s.name for s in ctx.services if s.relation == "dependency"}
    cluster_ips = {s.cluster_ip: s for s in ctx.services if s.cluster_ip}
    failing = ""
    for line in mentioned_text(ctx).splitlines():
        if NAME_RESOLUTION_FAILURE.search(line):
            found.setdefault(
                "dns",
                Destination("dns", "dns", line.strip(), DNS_NAMESPACE, DNS_SERVICE, None, 53,
                            "UDP"),
            )  # fmt: skip
            continue
        # A webhook is called by the API server and a probe by the kubelet: neither is a
        # connection of the pods.
        if not _CONNECT_FAILURE.search(line) or _NOT_THE_PODS.search(line):
            continue
        failing = failing or line.strip()
        named = list(SERVICE_DNS.finditer(line))
        for m in named:
            svc, ns, port = m.group(1), m.group(2), m.group(3)
            text = f"{svc}.{ns}" + (f":{port}" if port else "")
            found.setdefault(
                text, Destination(text, "service", line.strip(), ns, svc, None,
                                  int(port) if port else None),
            )  # fmt: skip
        for name in sorted(dependencies):
            match = re.search(rf"(?<![\w.-]){re.escape(name)}(?::(\d+))?(?![\w-])", line)
            if match and not named:
                port = match.group(1)
                text = f"{name}.{namespace}" + (f":{port}" if port else "")
                found.setdefault(
                    text, Destination(text, "service", line.strip(), namespace, name, None,
                                      int(port) if port else None),
                )  # fmt: skip
        if not named:
            for m in _IP_PORT.finditer(line):
                svc = cluster_ips.get(m.group(1))
                if svc is not None:  # a Service's ClusterIP: that Service
                    text = f"{svc.name}.{svc.namespace}:{m.group(2)}"
                    found.setdefault(
                        text, Destination(text, "service", line.strip(), svc.namespace,
                                          svc.name, None, int(m.group(2))),
                    )  # fmt: skip
                    continue
                text = f"{m.group(1)}:{m.group(2)}"
                found.setdefault(
                    text, Destination(text, "ip", line.strip(), None, None, m.group(1),
                                      int(m.group(2))),
                )  # fmt: skip
    if failing and not any(d.kind != "dns" for d in found.values()):
        # The failure names no peer ("HTTP connect timed out"): the connection goes to what
        # the pods' configuration points them at, a Service in a cluster DNS form.
        for value in _configured_values(ctx):
            for m in SERVICE_DNS.finditer(value):
                svc, ns, port = m.group(1), m.group(2), m.group(3)
                text = f"{svc}.{ns}" + (f":{port}" if port else "")
                found.setdefault(
                    text, Destination(text, "service", failing, ns, svc, None,
                                      int(port) if port else None),
                )  # fmt: skip
    return list(found.values())[:MAX_PATHS]


def _configured_values(ctx: Context) -> list[str]:
    """The env values of the pods' containers, as set and as resolved from ConfigMaps."""
    return [
        v for p in ctx.pods for c in p.containers for v in [*c.env.values(), *c.config_env.values()]
    ]


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    ns = scope.namespace
    if not ns or not ctx.pods:
        return
    wanted = destinations(ctx, ns)
    if not wanted:
        return
    source = ctx.pods[0]
    await read_namespace(scope, ns)
    policies: dict[str, list[Obj]] = {}
    for dest in wanted:
        path = NetworkPathSnapshot(
            destination=dest.text,
            kind=dest.kind,
            line=dest.line,
            source_pod=source.name,
            source_namespace=source.namespace,
            source_labels=dict(source.labels),
            namespace=dest.namespace,
            service=dest.service,
            ip=dest.ip,
            port=dest.port,
            target_port=dest.port,
            protocol=dest.protocol,
        )
        async with scope.guard(f"network path to {dest.text}"):
            if dest.namespace and dest.service:
                await read_namespace(scope, dest.namespace)
                await _service_end(scope, path, dest)
                if dest.namespace not in policies:
                    policies[dest.namespace] = await scope.reader.list(
                        "NetworkPolicy", dest.namespace
                    )
                path.ingress_policies = [
                    p
                    for p in (network_policy_snapshot(obj, []) for obj in policies[dest.namespace])
                    if any(selects(p.selector, pod.labels) for pod in path.pods)
                    and restricts(p, "Ingress")
                ]
            evaluate(path, ctx)
        ctx.network_paths.append(path)


async def read_namespace(scope: Scope, name: str) -> None:
    """Add a Namespace's labels to ``Context.namespaces`` (once): namespaceSelectors match them."""
    if any(n.name == name for n in scope.ctx.namespaces):
        return
    async with scope.guard(f"namespace {name}"):
        obj = await scope.get("Namespace", None, name)
        labels = dict(meta(obj or {}).get("labels") or {})
        # The API server sets this label on every namespace; a test cluster may lack the object.
        labels.setdefault(METADATA_NAME, name)
        scope.ctx.namespaces.append(NamespaceSnapshot(name=name, labels=labels))


async def _service_end(scope: Scope, path: NetworkPathSnapshot, dest: Destination) -> None:
    assert dest.namespace and dest.service
    svc = await scope.get("Service", dest.namespace, dest.service)
    path.service_exists = svc is not None
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    if dest.kind == "dns" and not selector:
        selector = DNS_LABELS
    pods = (
        await scope.reader.list("Pod", dest.namespace, label_selector=label_selector(selector))
        if selector
        else []
    )
    path.pods = [peer_pod(p) for p in pods[:MAX_PEER_PODS]]
    if dest.kind == "dns" and not path.pods:
        path.pods = [PeerPod(name="(kube-dns)", labels=dict(DNS_LABELS))]
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    if path.port is None and len(ports) == 1:
        path.port = int(ports[0].get("port", 0)) or None
    for p in ports:
        if int(p.get("port", 0)) == path.port and p.get("protocol", "TCP") == path.protocol:
            path.target_port = _target_port(p.get("targetPort", path.port), path.pods)
            break


def _target_port(target: int | str | None, pods: list[PeerPod]) -> int | None:
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for pod in pods:
        for port in pod.ports:
            if port.name == target:
                return port.port
    return None


def peer_pod(pod: Obj) -> PeerPod:
    ports = [
        PodPort(
            name=str(p.get("name", "")),
            port=int(p.get("containerPort", 0)),
            protocol=str(p.get("protocol", "TCP")),
        )
        for c in (pod.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
    ]
    return PeerPod(name=name_of(pod), labels=dict(meta(pod).get("labels") or {}), ports=ports)


# -- evaluation (pure) -----------------------------------------------------------------------


def in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def peer_matches(
    peer: PolicyPeer,
    policy_namespace: str,
    labels: dict[str, str] | None,
    namespace: str | None,
    namespace_labels: dict[str, str],
    ip: str | None,
) -> bool:
    """Whether a rule's peer covers the other end: a pod (``labels`` in ``namespace``) or an
    address outside the cluster (``labels`` None, ``ip``)."""
    if peer.ip_block:
        return (
            ip is not None
            and in_cidr(ip, peer.ip_block)
            and not any(in_cidr(ip, c) for c in peer.ip_block_except)
        )
    if labels is None:
        return False
    if peer.namespace_selector is not None:
        if not selects(peer.namespace_selector, namespace_labels):
            return False
    elif namespace != policy_namespace:
        return False
    return peer.pod_selector is None or selects(peer.pod_selector, labels)


def port_matches(
    port: PolicyPort, number: int | None, protocol: str, named: dict[str, int]
) -> bool:
    if port.protocol.upper() != protocol.upper():
        return False
    if port.port is None:
        return True
    if number is None:
        return False
    if port.port.isdigit():
        first = int(port.port)
        return first == number or (port.end_port is not None and first <= number <= port.end_port)
    return named.get(port.port) == number


def allowed_by(
    policies: list[NetworkPolicySnapshot],
    direction: str,
    labels: dict[str, str] | None,
    namespace: str | None,
    namespace_labels: dict[str, str],
    ip: str | None,
    port: int | None,
    protocol: str,
    named: dict[str, int],
) -> tuple[bool | None, list[str]]:
    """(allowed, the policies that allow it) for traffic that ``policies`` may restrict;
    allowed is None when none of them restricts ``direction`` (everything is allowed)."""
    applicable = [p for p in policies if restricts(p, direction)]
    if not applicable:
        return None, []
    by = []
    for policy in applicable:
        rules = policy.egress_rules if direction == "Egress" else policy.ingress_rules
        for rule in rules:
            peers_ok = not rule.peers or any(
                peer_matches(peer, policy.namespace, labels, namespace, namespace_labels, ip)
                for peer in rule.peers
            )
            ports_ok = not rule.ports or any(
                port_matches(p, port, protocol, named) for p in rule.ports
            )
            if peers_ok and ports_ok:
                by.append(policy.name)
                break
    return bool(by), by


def evaluate(path: NetworkPathSnapshot, ctx: Context) -> None:
    """Fill in both verdicts of a path from the policies and namespace labels gathered."""
    labels_of = {n.name: n.labels for n in ctx.namespaces}
    named = {p.name: p.port for pod in path.pods for p in pod.ports if p.name}
    egress = [
        p for p in ctx.network_policies if p.namespace == path.source_namespace and p.selects_target
    ]
    path.egress_policies = [p.name for p in egress if restricts(p, "Egress")]
    dest_labels = path.pods[0].labels if path.pods else None
    path.egress_allowed, path.egress_allowed_by = allowed_by(
        egress,
        "Egress",
        dest_labels,
        path.namespace,
        labels_of.get(path.namespace or "", {}),
        path.ip,
        path.target_port,
        path.protocol,
        named,
    )
    if path.pods:
        path.ingress_allowed, path.ingress_allowed_by = allowed_by(
            path.ingress_policies,
            "Ingress",
            path.source_labels,
            path.source_namespace,
            labels_of.get(path.source_namespace, {}),
            None,
            path.target_port,
            path.protocol,
            named,
        )


# -- evidence --------------------------------------------------------------------------------


def _verdict(allowed: bool | None, policies: list[str], by: list[str]) -> str:
    if allowed is None:
        return "no policy restricts it"
    if allowed:
        return f"allowed by {', '.join(by)}"
    return f"denied: no rule of {', '.join(policies)} allows it"


def describe(path: NetworkPathSnapshot, ctx: Context) -> str:
    labels_of = {n.name: n.labels for n in ctx.namespaces}
    src_ns = labels_of.get(path.source_namespace, {})
    where = f"{path.namespace}/{path.service}" if path.service else path.ip or path.destination
    port = f":{path.port}" if path.port else ""
    target = (
        f" (pods' port {path.target_port}/{path.protocol})"
        if path.target_port and path.target_port != path.port
        else f"/{path.protocol}"
    )
    parts = [
        f"{path.source_namespace}/{path.source_pod} -> {where}{port}{target}",
        f"source namespace labels {kv(src_ns) or '-'}",
    ]
    if path.namespace and path.namespace != path.source_namespace:
        parts.append(f"destination namespace labels {kv(labels_of.get(path.namespace, {})) or '-'}")
    if path.service_exists is False:
        parts.append(f"service {path.namespace}/{path.service} does not exist")
    elif path.service:
        parts.append(f"{len(path.pods)} destination pods")
    parts.append(
        "egress: " + _verdict(path.egress_allowed, path.egress_policies, path.egress_allowed_by)
    )
    if path.service:
        names = [p.name for p in path.ingress_policies]
        parts.append("ingress: " + _verdict(path.ingress_allowed, names, path.ingress_allowed_by))
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for path in ctx.network_paths:
        denied = path.egress_allowed is False or path.ingress_allowed is False
        out.add(
            Tier.OBJECT_BAD if denied else Tier.BACKGROUND,
            path_id(path.destination),
            EvidenceSource.NETWORK_POLICY,
            f"pod/{path.source_namespace}/{path.source_pod}",
            describe(path, ctx),
        )
        for policy in path.ingress_policies:
            rules = "; ".join(policy.ingress) or "deny all"
            out.add(
                Tier.OBJECT_BAD if path.ingress_allowed is False else Tier.BACKGROUND,
                path_policy_id(path.destination, policy.name),
                EvidenceSource.NETWORK_POLICY,
                f"networkpolicy/{policy.namespace}/{policy.name}",
                f"selects {kv(policy.pod_selector) or 'all pods'} (the destination's pods); "
                f"ingress: {rules}",
            )
        if path.monitor:
            tls = ", a tlsConfig" if path.monitor_tls else ", no tlsConfig"
            out.add(
                Tier.BACKGROUND,
                monitor_id(path.monitor),
                EvidenceSource.SERVICE,
                f"servicemonitor/{path.namespace}/{path.monitor}",
                f"ServiceMonitor {path.monitor} scrapes port {path.port_name or path.port} of "
                f"Service {path.service} with scheme {path.scheme}{tls}"
                + (f"; the port's appProtocol is {path.app_protocol}" if path.app_protocol else ""),
            )
    for ns in ctx.namespaces:
        out.add(
            Tier.BACKGROUND,
            namespace_id(ns.name),
            EvidenceSource.NETWORK_POLICY,
            f"namespace/{ns.name}",
            f"labels {kv(ns.labels) or '-'}",
        )


SOURCE = Source(
    "network_paths",
    Stage.LEADS,
    read,
    evidence,
    resources=("namespaces", "services", "pods", "networkpolicies.networking.k8s.io"),
)
