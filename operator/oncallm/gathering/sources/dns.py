"""The cluster DNS, once the pods' logs or events show names that do not resolve: CoreDNS's
pods in kube-system (``k8s-app=kube-dns``), their log tails, the ``kube-dns`` Service's
endpoints and the ``coredns`` ConfigMap's Corefile.

The Corefile is read for what breaks resolution cluster-wide: ``forward . /etc/resolv.conf``
(a loop when the node's resolver is a local stub such as systemd-resolved's 127.0.0.53; the
``loop`` plugin then stops CoreDNS), and forward targets that CoreDNS's own logs show timing
out (a dead upstream).

Evidence: ``dns/corefile``, ``dns/loop``, ``dns/upstream/<ip>``, ``dns/service``,
``dns/coredns/<pod>`` and ``dns/log/<pod>/<container>/<previous|current>#L<n>`` (the error
lines of CoreDNS's logs).
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.logs import add_error_lines, fetch_log, line_ids
from oncallm.gathering.sources.pods import describe_pod, pod_is_unhealthy, pod_snapshot
from oncallm.gathering.sources.services import service_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, DNSForward, DNSSnapshot, PodSnapshot

NAMESPACE = "kube-system"
LABEL = "k8s-app=kube-dns"
CONFIG_MAP = "coredns"
SERVICE = "kube-dns"
#: CoreDNS pods whose logs are read, and lines of each.
MAX_PODS = 3
LOG_LINES = 100

NAME_RESOLUTION_FAILURE = re.compile(
    # glibc / Python / Ruby / PHP / Kafka's librdkafka (getaddrinfo's messages)
    r"no such host|temporary failure in name resolution|name or service not known"
    r"|no address associated with hostname|nodename nor servname|getaddrinfo"
    # musl (Alpine images) and busybox tools
    r"|name does not resolve|bad address '|nslookup: can't resolve"
    # Node.js (getaddrinfo and c-ares queries)
    r"|\bENOTFOUND\b|\bEAI_AGAIN\b|\bESERVFAIL\b|query(?:A|AAAA|Srv|Txt|Cname|Any)? ETIMEOUT"
    # JVM, .NET, Ruby's Resolv, Rust (std and hickory), gRPC, urllib3 2.x
    r"|UnknownHostException|UnresolvedAddressException|no such host is known"
    r"|Resolv::ResolvError|failed to lookup address information|no record found for Query"
    r"|produced zero addresses|NameResolutionError"
    # curl, wget, libpq, MySQL/MariaDB clients, nginx
    r"|could not resolve (?:host|hostname|address|name|server)"
    r"|could not resolve [\"']?[\w-]+(?:\.[\w-]+)+"
    r"|couldn't resolve host|unable to resolve host"
    r"|could not translate host name|unknown (?:MySQL )?server host"
    r"|host not found in upstream|could not be resolved \(\d+: "
    # Go's resolver, DNS answers, and generic wording
    r"|server misbehaving|\bNXDOMAIN\b|\bSERVFAIL\b|lookup \S+ on [\d.:\[\]a-f]+:53"
    r"|name resolution|dns (?:lookup|resolution) (?:failed|error)",
    re.IGNORECASE,
)
"""A line that says a name did not resolve, in the wording of the resolvers and clients pods
run: glibc and musl, Go, Node.js, the JVM, .NET, Python, Ruby, Rust, curl, database clients,
nginx. The one list of that wording: the DNS source, the network paths and the DNS rule read
it."""

SERVICE_DNS = re.compile(
    r"(?<![\w.-])(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.)?"
    r"([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc"
    r"(?:\.cluster\.local)?\.?(?::(\d+))?"
)
"""A Service in a cluster DNS form, ``name.namespace.svc[.cluster.local][:port]``, also with
the pod's hostname in front: ``kafka-0.kafka-headless.ns.svc`` is a pod of a StatefulSet
behind its headless Service (the governing ``serviceName``)."""

_LOOP = re.compile(r"plugin/loop.*(?:loop|detected)", re.IGNORECASE)
_UPSTREAM_FAILURE = re.compile(
    r"(?:->|\s)\[?(\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:]+)\]?:53\b[^\n]*?"
    r"(?:i/o timeout|connection refused|no route to host|network is unreachable)"
    r"|(?:i/o timeout|connection refused)[^\n]*?(\d{1,3}(?:\.\d{1,3}){3}):53\b",
    re.IGNORECASE,
)


def corefile_id() -> str:
    """``dns/corefile``: the coredns ConfigMap's forwards and plugins."""
    return "dns/corefile"


def loop_id() -> str:
    """``dns/loop``: CoreDNS's loop plugin found queries coming back to itself."""
    return "dns/loop"


def upstream_id(ip: str) -> str:
    """``dns/upstream/<ip>``: a forward target that does not answer."""
    return f"dns/upstream/{ip}"


def dns_name_id() -> str:
    """``dns/name``: the cluster Service a failing name asks for, and what exists instead."""
    return "dns/name"


def dns_node_local_id() -> str:
    """``dns/node-local``: the NodeLocal DNSCache DaemonSet behind a link-local nameserver."""
    return "dns/node-local"


def dns_service_id() -> str:
    """``dns/service``: the kube-dns Service and its endpoints."""
    return "dns/service"


def coredns_pod_id(pod: str) -> str:
    """``dns/coredns/<pod>``: one CoreDNS pod's state."""
    return f"dns/coredns/{pod}"


#: ``dns/log/<pod>/<container>/<previous|current>#L<n>``: a line of CoreDNS's log.
coredns_line_id = line_ids("dns/log")


def resolution_failure(ctx: Context) -> str | None:
    """The first line of the pods' logs, events or container messages that shows a name that
    did not resolve; None when there is none."""
    texts: list[str] = []
    for log in sorted(ctx.logs, key=lambda lg: not lg.previous):
        texts.extend(log.lines)
    texts.extend(e.message for e in ctx.events)
    for pod in ctx.pods:
        for c in pod.containers:
            texts.extend((c.message, c.last_message))
    return next((t.strip() for t in texts if t and NAME_RESOLUTION_FAILURE.search(t)), None)


async def read(scope: Scope) -> None:
    trigger = resolution_failure(scope.ctx)
    if trigger is None:
        return
    dns = DNSSnapshot(trigger=trigger)
    scope.ctx.dns = dns
    reader = scope.reader
    async with scope.guard("coredns pods"):
        dns.pods = [
            pod_snapshot(p) for p in await reader.list("Pod", NAMESPACE, label_selector=LABEL)
        ]
    for pod in dns.pods[:MAX_PODS]:
        for c in [c for c in pod.containers if not c.init][:1]:
            if c.restart_count > 0 or c.last_state == "terminated":
                await _log(scope, dns, pod, c.name, previous=True)
            await _log(scope, dns, pod, c.name, previous=False)
    async with scope.guard(f"configmap {NAMESPACE}/{CONFIG_MAP}"):
        config = await scope.get("ConfigMap", NAMESPACE, CONFIG_MAP)
        dns.corefile = ((config or {}).get("data") or {}).get("Corefile")
    async with scope.guard(f"service {NAMESPACE}/{SERVICE}"):
        svc = await scope.get("Service", NAMESPACE, SERVICE)
        if svc is not None:
            endpoints = await scope.get("Endpoints", NAMESPACE, SERVICE)
            dns.service = service_snapshot(svc, endpoints, dns.pods, "dependency")
    examine(dns)
    await _named_service(scope, dns)
    await _node_local(scope, dns)


#: NodeLocal DNSCache: the DaemonSet that answers on a link-local address on every node.
NODE_LOCAL_LABEL = "k8s-app=node-local-dns"


async def _node_local(scope: Scope, dns: DNSSnapshot) -> None:
    """When a pod's own nameserver is a link-local address (169.254.0.0/16, NodeLocal
    DNSCache's 169.254.20.10 by default), what answers there is the node-local-dns DaemonSet
    on its node: whether it runs at all, and where."""
    nodes = {
        p.node_name
        for p in scope.ctx.pods
        if p.node_name and any(n.startswith("169.254.") for n in p.nameservers)
    }
    if not nodes:
        return
    async with scope.guard("node-local-dns daemonset"):
        found = await scope.reader.list("DaemonSet", NAMESPACE, label_selector=NODE_LOCAL_LABEL)
        if not found:
            one = await scope.get("DaemonSet", NAMESPACE, "node-local-dns")
            found = [one] if one is not None else []
        if not found:
            dns.node_local = (
                f"no node-local-dns DaemonSet exists in {NAMESPACE}: nothing answers on the "
                "link-local address"
            )
            return
        ds = found[0]
        status = ds.get("status") or {}
        spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        selector = ", ".join(f"{k}={v}" for k, v in (spec.get("nodeSelector") or {}).items())
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        pods = await scope.reader.list("Pod", NAMESPACE, label_selector=NODE_LOCAL_LABEL)
        on = {str((p.get("spec") or {}).get("nodeName") or "") for p in pods}
        missing = sorted(nodes - on)
        dns.node_local = (
            f"DaemonSet {NAMESPACE}/{name_of(ds)} schedules {desired} pods ({ready} ready)"
            + (f" with nodeSelector {selector}" if selector else "")
            + (f", none on node {', '.join(missing[:2])}" if missing else "")
        )


#: Services named as near matches of a name that does not resolve, at most.
MAX_NEAR = 3


def _tokens(name: str) -> set[str]:
    return {t for t in name.split("-") if len(t) > 2}


async def _named_service(scope: Scope, dns: DNSSnapshot) -> None:
    """When the name that does not resolve is a cluster Service's (``name.namespace.svc``),
    whether that Service exists, where a Service of that name lives instead (a move to
    another namespace), and which Services of that namespace share its words (a rename)."""
    m = SERVICE_DNS.search(dns.trigger)
    if m is None:
        return
    name, namespace = m.group(1), m.group(2)
    host = m.group(0)[: m.start(1) - m.start(0)].rstrip(".")
    async with scope.guard(f"service {namespace}/{name}"):
        if await scope.get("Service", namespace, name) is not None:
            if host and await scope.get("Pod", namespace, host) is None:
                dns.absent_pod = f"{namespace}/{host}"
            return
        dns.missing_service = f"{namespace}/{name}"
        elsewhere = await scope.reader.list("Service", None, field_selector=f"metadata.name={name}")
        dns.same_name_elsewhere = sorted(f"{meta(s).get('namespace')}/{name}" for s in elsewhere)[
            :MAX_NEAR
        ]
        wanted = _tokens(name)
        near = [
            name_of(s)
            for s in await scope.reader.list("Service", namespace)
            if wanted & _tokens(name_of(s))
        ]
        dns.similar_in_namespace = sorted(near)[:MAX_NEAR]


async def _log(
    scope: Scope, dns: DNSSnapshot, pod: PodSnapshot, container: str, *, previous: bool
) -> None:
    tail = min(LOG_LINES, scope.policy.spec.sources.log_lines or LOG_LINES)
    log = await fetch_log(scope, NAMESPACE, pod.name, container, previous=previous, tail=tail)
    if log is not None:
        dns.logs.append(log)


def parse_corefile(corefile: str) -> tuple[list[DNSForward], bool]:
    """The forwards of each server block and whether any block enables ``loop``."""
    forwards: list[DNSForward] = []
    loop = False
    zone = "."
    depth = 0
    for raw in corefile.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.replace("{", " { ").replace("}", " } ").split()
        if depth == 0 and words and words[0] != "}":
            zone = words[0].split(":", 1)[0].removeprefix("dns://") or "."
        elif depth == 1 and words[0] == "forward" and len(words) >= 3:
            targets = [w for w in words[2:] if w not in ("{", "}")]
            forwards.append(DNSForward(zone=zone, targets=targets))
        elif depth == 1 and words[0] == "loop":
            loop = True
        depth += words.count("{") - words.count("}")
    return forwards, loop


def examine(dns: DNSSnapshot) -> None:
    """Fill in what the Corefile and CoreDNS's logs say: forwards, loops, dead upstreams."""
    if dns.corefile:
        dns.forwards, dns.loop_plugin = parse_corefile(dns.corefile)
    dns.forwards_to_resolv_conf = any("/etc/resolv.conf" in f.targets for f in dns.forwards)
    targets = {t.split(":")[0] for f in dns.forwards for t in f.targets}
    lines = [ln for log in dns.logs for ln in log.lines]
    dns.loop_detected = [ln.strip() for ln in lines if _LOOP.search(ln)][:3]
    dead: list[str] = []
    for ln in lines:
        for match in _UPSTREAM_FAILURE.finditer(ln):
            ip = match.group(1) or match.group(2)
            if ip and ip in targets and ip not in dead:
                dead.append(ip)
    dns.dead_upstreams = dead


def _describe_corefile(dns: DNSSnapshot) -> str:
    forwards = "; ".join(f"{f.zone} -> {' '.join(f.targets)}" for f in dns.forwards)
    parts = [f"forward {forwards}" if forwards else "no forward"]
    parts.append("loop plugin on" if dns.loop_plugin else "no loop plugin")
    if dns.forwards_to_resolv_conf:
        parts.append(
            "forwards to /etc/resolv.conf: the node's resolver (a loop if it is a local stub "
            "such as 127.0.0.53)"
        )
    if dns.dead_upstreams:
        parts.append(f"upstreams not answering: {', '.join(dns.dead_upstreams)}")
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    dns = ctx.dns
    if dns is None:
        return
    obj = f"configmap/{NAMESPACE}/{CONFIG_MAP}"
    broken_config = bool(dns.dead_upstreams or (dns.loop_detected and dns.forwards_to_resolv_conf))
    if dns.corefile is not None:
        out.add(
            Tier.OBJECT_BAD if broken_config else Tier.BACKGROUND,
            corefile_id(),
            EvidenceSource.SERVICE,
            obj,
            _describe_corefile(dns),
        )
    if dns.loop_detected:
        cause = "; the Corefile forwards to /etc/resolv.conf" if dns.forwards_to_resolv_conf else ""
        out.add(
            Tier.OBJECT_BAD,
            loop_id(),
            EvidenceSource.LOG,
            f"pod/{NAMESPACE}/coredns",
            f"CoreDNS's loop plugin detected a forwarding loop: {dns.loop_detected[0]}{cause}",
        )
    for ip in dns.dead_upstreams:
        zones = ", ".join(
            f.zone for f in dns.forwards if ip in [t.split(":")[0] for t in f.targets]
        )
        failing = [ln for log in dns.logs for ln in log.lines if ip in ln]
        out.add(
            Tier.OBJECT_BAD,
            upstream_id(ip),
            EvidenceSource.LOG,
            obj,
            f"forward target {ip} (zone {zones or '?'}) does not answer: {len(failing)} CoreDNS "
            f"log lines fail on it, e.g. {failing[0].strip() if failing else '-'}",
        )
    if dns.missing_service is not None:
        ns, name = dns.missing_service.split("/", 1)
        out.add(
            Tier.OBJECT_BAD,
            dns_name_id(),
            EvidenceSource.SERVICE,
            f"service/{dns.missing_service}",
            f"no Service {name} in namespace {ns}"
            + (
                f"; a Service of that name exists in {', '.join(dns.same_name_elsewhere)}"
                if dns.same_name_elsewhere
                else ""
            )
            + (
                f"; Services of {ns} with similar names: {', '.join(dns.similar_in_namespace)}"
                if dns.similar_in_namespace
                else ""
            ),
        )
    if dns.absent_pod is not None:
        ns, member = dns.absent_pod.split("/", 1)
        out.add(
            Tier.OBJECT_BAD,
            dns_name_id(),
            EvidenceSource.SERVICE,
            f"pod/{dns.absent_pod}",
            f"the name asks for pod {member} under an existing headless Service of {ns}, and "
            f"no pod {member} exists: its record exists only while the pod does",
        )
    if dns.node_local is not None:
        out.add(
            Tier.OBJECT_BAD,
            dns_node_local_id(),
            EvidenceSource.WORKLOAD,
            f"daemonset/{NAMESPACE}/node-local-dns",
            f"the pods' link-local nameserver is answered by NodeLocal DNSCache: {dns.node_local}",
        )
    if dns.service is not None:
        svc = dns.service
        out.add(
            Tier.OBJECT_BAD if svc.ready_endpoints == 0 else Tier.BACKGROUND,
            dns_service_id(),
            EvidenceSource.SERVICE,
            f"service/{NAMESPACE}/{SERVICE}",
            f"cluster DNS {svc.cluster_ip or ''}: {svc.ready_endpoints} ready / "
            f"{svc.not_ready_endpoints} not ready endpoints"
            + ("" if svc.ready_endpoints else " (no ready endpoints)"),
        )
    for pod in dns.pods:
        containers = "; ".join(
            f"{c.name} {c.state}{' ' + c.reason if c.reason else ''}, restarts {c.restart_count},"
            f" ready {str(c.ready).lower()}"
            for c in pod.containers
            if not c.init
        )
        out.add(
            Tier.OBJECT_BAD if pod_is_unhealthy(pod) else Tier.BACKGROUND,
            coredns_pod_id(pod.name),
            EvidenceSource.POD_STATUS,
            f"pod/{NAMESPACE}/{pod.name}",
            f"{describe_pod(pod)}; {containers}",
        )
    add_error_lines(out, dns.logs, coredns_line_id)


SOURCE = Source(
    "dns",
    Stage.LEADS,
    read,
    evidence,
    resources=("pods", "pods/log", "configmaps", "services", "endpoints", "daemonsets.apps"),
)
