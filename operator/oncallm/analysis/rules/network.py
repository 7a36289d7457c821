"""Rules about what the pod talks to: Services, DNS, NetworkPolicies, TLS, the API server.

These find the cause *past* the crashing pod: a pod that exits because its database Service
has no endpoints is a dependency problem, so these rules score above the application-crash
rule (see docs/rules.md).
"""

from __future__ import annotations

import ipaddress
import re

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    is_error_line,
    netpol_id,
    revision_id,
    service_id,
    workload_id,
)
from oncallm.analysis.rules.base import (
    Finding,
    Hit,
    Link,
    RuleSettings,
    cite_hits,
    controller,
    crashed_container,
    grep,
    loopback_binding,
    namespace,
    pod_cites,
    pod_commands,
    quote_line,
    target_pod,
    workload_state,
)
from oncallm.gathering.sources.credential_refreshers import (
    TOKEN_REFUSED,
    refresher_id,
)
from oncallm.gathering.sources.custom_resources import certificate_id, issuer_id, linkerd_issuer
from oncallm.gathering.sources.dns import (
    NAME_RESOLUTION_FAILURE,
    coredns_line_id,
    coredns_pod_id,
    corefile_id,
    dns_name_id,
    dns_node_local_id,
    loop_id,
    upstream_id,
)
from oncallm.gathering.sources.load_balancers import lb_health_id
from oncallm.gathering.sources.metrics import alert_expression
from oncallm.gathering.sources.network_paths import (
    monitor_id,
    namespace_id,
    path_id,
    path_policy_id,
)
from oncallm.gathering.sources.role_bindings import AUTH_DELEGATOR, grants, role_binding_id
from oncallm.gathering.sources.scrape_paths import is_scrape_alert
from oncallm.gathering.sources.tls_peers import tls_peer_id
from oncallm.gathering.sources.webhooks import webhook_id, webhook_service_id
from oncallm.models.analysis import Category
from oncallm.models.evidence import (
    ContainerSnapshot,
    Context,
    NetworkPolicySnapshot,
    PodSnapshot,
    RoleBindingSnapshot,
    ServiceSnapshot,
    TLSPeerSnapshot,
)

# --- dependency without endpoints ---------------------------------------------------------------

_CONN = re.compile(
    r"connection refused|ECONNREFUSED|could not connect|couldn't connect|failed to connect"
    r"|unable to connect|can't connect|cannot connect|no route to host|EHOSTUNREACH"
    r"|connection reset|no healthy upstream|upstream connect error|Is the server running"
    r"|server closed the connection|dial tcp [^\s]+: connect|Connection to \S+ failed"
    r"|no such host|Name or service not known|unavailable"
    # pg_isready's "host:port - no response" (nothing answered), other clients' "no response from"
    r"|:\d+ - no response|no response from",
    re.IGNORECASE,
)


def _mentions(line: str, svc: ServiceSnapshot) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(svc.name)}(?![\w-])", line) is not None or bool(
        svc.cluster_ip and svc.cluster_ip in line
    )


def _down(svc: ServiceSnapshot) -> bool:
    """No ready endpoints, or endpoints listed for pods none of which is Ready (a Service
    with publishNotReadyAddresses, as Vault's and many databases' charts set). An ExternalName
    Service has no endpoints by design: its name is a DNS alias."""
    if svc.external_name:
        return False
    return svc.ready_endpoints == 0 or (bool(svc.matching_pods) and svc.ready_pods == 0)


def _why_no_endpoints(svc: ServiceSnapshot) -> str:
    selector = ",".join(f"{k}={v}" for k, v in svc.selector.items())
    if svc.ready_endpoints and svc.ready_pods == 0:
        return (
            f"its {len(svc.matching_pods)} pod(s) ({', '.join(svc.matching_pods[:3])}) are "
            "not ready, though the Service publishes their addresses (publishNotReadyAddresses)"
        )
    if not svc.selector:
        return "it has no selector and no manually managed endpoints"
    if not svc.matching_pods:
        return f"its selector {selector} matches no pods" + (
            f": {svc.backing}" if svc.backing else " (is the workload scaled to zero?)"
        )
    return f"its {len(svc.matching_pods)} pod(s) ({', '.join(svc.matching_pods[:3])}) are not ready"


def _dependency_down_below(
    ctx: Context,
    ev: EvidenceIndex,
    svc: ServiceSnapshot,
    hits: list[Hit],
    *,
    category: Category,
    score: float,
    summary: str,
    why: str,
    link: str,
    impact: str,
    action: str,
    recommendation: str,
    commands: list[str],
) -> Finding:
    """The dependency is down for a cause of its own pods (their memory, their volumes): the
    deepest proven cause is that one, two links below the clients' failures, with the
    Service without endpoints as the link between. ``summary`` may name the failing client
    as ``{client}``."""
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    client = pod.name if pod else "its clients"
    return Finding(
        category,
        score,
        summary=summary.replace("{client}", client),
        root_cause=(
            f"The pods behind Service {svc.namespace}/{svc.name} {why}, so the Service has no "
            f"ready endpoints and {client} cannot reach it"
            + (f": {quote_line(hits[-1].line, 160)}" if hits else "")
            + "."
        ),
        because=[
            Link(
                summary=f"Service {svc.name} has no ready endpoints: {link}.",
                evidence=[service_id(svc.name)],
                category=Category.DEPENDENCY_UNREACHABLE,
            )
        ],
        evidence=ev.cite(
            service_id(svc.name), *cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])
        ),
        impact=f"{workload_state(ctx)}; everything that needs {svc.name} {impact}.",
        immediate_actions=[action],
        recommendations=[recommendation],
        commands=[*commands, *(pod_commands(ctx, pod, c) if pod else [])],
    )


def _dependency_volume(
    ctx: Context, ev: EvidenceIndex, svc: ServiceSnapshot, hits: list[Hit]
) -> Finding:
    """The dependency's pods wait for volumes that are never provisioned."""
    claims = "; ".join(svc.backend_claims)
    return _dependency_down_below(
        ctx, ev, svc, hits,
        category=Category.PVC_PENDING,
        score=0.9,
        summary=(
            f"Service {svc.name} has no endpoints: its pods are Pending on claims that are not "
            f"bound ({svc.backend_claims[0][:120]})."
        ),
        why=(
            "cannot be scheduled because their PersistentVolumeClaims are not bound "
            f"({quote_line(claims, 520)})"
        ),
        link="its pods wait for their volumes",
        impact="waits for its volume",
        action=(
            "Fix what the provisioner reports for the claim (its StorageClass, the CSI driver, "
            "a cloud quota or volume limit), then the pod schedules and the Service gets "
            "endpoints."
        ),
        recommendation=(
            "Alert on PersistentVolumeClaims Pending for more than a few minutes "
            "(kube_persistentvolumeclaim_status_phase)."
        ),
        commands=[
            f"kubectl -n {svc.namespace} get pvc",
            f"kubectl -n {svc.namespace} get events --field-selector "
            "involvedObject.kind=PersistentVolumeClaim",
            kc.endpoints(svc.namespace, svc.name),
        ],
    )  # fmt: skip


def _dependency_oom(
    ctx: Context, ev: EvidenceIndex, svc: ServiceSnapshot, hits: list[Hit]
) -> Finding:
    """The dependency's own pods are OOMKilled."""
    failures = "; ".join(svc.backend_failures[:3])
    return _dependency_down_below(
        ctx, ev, svc, hits,
        category=Category.OOM_KILLED,
        score=0.92,
        summary=(
            f"{svc.name}'s pods are OOMKilled, so Service {svc.name} has no ready endpoints and "
            "{client} cannot connect."
        ),
        why=f"are killed for exceeding their memory limit ({failures})",
        link=failures,
        impact="fails until it fits in memory",
        action=(
            f"Raise the memory limit of {svc.name}'s pods, or bound what fills it (a cache's "
            "maxmemory, a queue's length), then let its clients reconnect."
        ),
        recommendation=(
            "Alert on the dependency's own restarts and memory, not only on its clients' errors."
        ),
        commands=[
            kc.endpoints(svc.namespace, svc.name),
            f"kubectl -n {svc.namespace} get pods -l "
            + ",".join(f"{k}={v}" for k, v in svc.selector.items()),
        ],
    )  # fmt: skip


def _unserved_port(ctx: Context, ev: EvidenceIndex, conn_hits: list[Hit]) -> Finding | None:
    """A dependency Service with ready endpoints whose targetPort its pods do not listen on:
    every connection through the Service is refused, though the backend runs."""
    for svc in ctx.services:
        if svc.relation != "dependency" or not svc.unserved_ports:
            continue
        hits = [h for h in conn_hits if _mentions(h.line, svc)] or conn_hits
        if not hits:
            continue
        crashed = crashed_container(ctx)
        pod, c = crashed if crashed else (target_pod(ctx), None)
        ports = ", ".join(svc.unserved_ports)
        return Finding(
            Category.DEPENDENCY_UNREACHABLE,
            0.88,
            summary=(
                f"Service {svc.name} sends traffic to a port its pods do not listen on ({ports}); "
                f"{pod.name if pod else 'the pods'} cannot connect."
            ),
            root_cause=(
                f"Service {svc.namespace}/{svc.name} has {svc.ready_endpoints} ready endpoints, "
                f"but its targetPort ({ports}) is no port its pods declare"
                + (
                    f" (they declare {', '.join(map(str, svc.declared_ports))})"
                    if svc.declared_ports
                    else ""
                )
                + f", so connections through it fail: {quote_line(hits[-1].line, 160)}. "
                "The backend runs; the Service's port mapping is wrong."
            ),
            evidence=ev.cite(
                service_id(svc.name), *cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])
            ),
            impact=f"{workload_state(ctx)}; every call through Service {svc.name} fails.",
            immediate_actions=[
                f"Set the targetPort of Service {svc.name} to the port its pods listen on (or "
                "a named port), or revert the Service change.",
            ],
            recommendations=[
                "Use named targetPorts that follow the container's port name, so a port change "
                "in the pod template cannot break the Service.",
            ],
            commands=[
                kc.describe("service", svc.namespace, svc.name),
                kc.endpoints(svc.namespace, svc.name),
                *(pod_commands(ctx, pod, c) if pod else []),
            ],
        )
    return None


#: A connection that failed, timeouts included (a port nothing listens on behind a ClusterIP,
#: an address nothing answers, drop packets: the client times out rather than being refused).
_CONN_FAILED = re.compile(
    _CONN.pattern + r"|i/o timeout|timed out|ETIMEDOUT|connection attempt failed|connect ?timeout",
    re.IGNORECASE,
)


def _port_numbers(svc: ServiceSnapshot) -> set[int]:
    """The Service's own ports (``6432/TCP->pgbouncer`` is 6432)."""
    out = set()
    for p in svc.ports:
        head = p.split("/", 1)[0]
        if head.isdigit():
            out.add(int(head))
    return out


def _client_ports(ctx: Context, svc: ServiceSnapshot) -> list[tuple[int, str]]:
    """The ports the pods' configuration (env values, ConfigMap-resolved env) dials Service
    ``svc`` on, each with the setting that says so (``SPRING_DATASOURCE_URL``)."""
    form = re.compile(
        rf"(?<![\w.-]){re.escape(svc.name)}(?:\.{re.escape(svc.namespace)})?"
        rf"(?:\.svc(?:\.cluster\.local)?)?:(\d{{2,5}})(?!\d)"
    )
    found: list[tuple[int, str]] = []
    for pod in ctx.pods:
        for c in pod.containers:
            for name, value in [*c.env.items(), *c.config_env.items()]:
                for m in form.finditer(value):
                    if (int(m.group(1)), name) not in found:
                        found.append((int(m.group(1)), name))
    return found


def _port_not_exposed(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """The pods dial a dependency Service on a port the Service does not expose: kube-proxy
    has no rule for it, so the connections time out (or are refused) though the Service and
    its endpoints are healthy."""
    failing = [h for h in grep(ctx, ev, _CONN_FAILED) if is_error_line(h.line)]
    if not failing:
        return None
    for svc in ctx.services:
        exposed = _port_numbers(svc)
        if svc.relation != "dependency" or not exposed or svc.ready_endpoints == 0:
            continue
        wrong = [(port, name) for port, name in _client_ports(ctx, svc) if port not in exposed]
        if not wrong:
            continue
        port, setting = wrong[0]
        user = next(
            (p for p in ctx.pods for c in p.containers if setting in {*c.env, *c.config_env}),
            None,
        )
        crashed = crashed_container(ctx)
        pod, c = crashed if crashed else (user or target_pod(ctx), None)
        hits = [h for h in failing if _mentions(h.line, svc)] or failing
        served = ", ".join(str(p) for p in sorted(exposed))
        return Finding(
            Category.DEPENDENCY_UNREACHABLE,
            0.9,
            summary=(
                f"{pod.name if pod else 'The pods'} dial Service {svc.name} on port {port}, which "
                f"it does not expose (its ports: {served}); the connections fail."
            ),
            root_cause=(
                f"{setting} points the pods at {svc.name}:{port}, but Service "
                f"{svc.namespace}/{svc.name} exposes only port {served}, so nothing answers on "
                f"{port} and connections fail: {quote_line(hits[-1].line, 160)}. The Service "
                f"and its {svc.ready_endpoints} ready endpoints are healthy; the client's port "
                "is wrong."
            ),
            evidence=ev.cite(
                service_id(svc.name), *cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])
            ),
            impact=f"{workload_state(ctx)}; every call to {svc.name} from these pods fails.",
            immediate_actions=[
                f"Set {setting} to {svc.name}:{min(exposed)} (the port Service {svc.name} "
                "exposes), or roll back the change that set it.",
            ],
            recommendations=[
                "Take a dependency's address and port from one place (its Service's DNS SRV "
                "record or a shared ConfigMap) instead of repeating the port in each client.",
            ],
            commands=[
                kc.describe("service", svc.namespace, svc.name),
                *(pod_commands(ctx, pod, c) if pod else []),
            ],
        )
    return None


def _endpoints_kept_by_hand(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A dependency Service without a selector: its Endpoints are written by hand (or by an
    external controller) and point outside the cluster's pods. When the pods' connections to
    it, or to one of those addresses, fail, the backend behind the address is gone."""
    failing = [h for h in grep(ctx, ev, _CONN_FAILED) if is_error_line(h.line)]
    for svc in ctx.services:
        if svc.relation != "dependency" or svc.selector or not svc.addresses:
            continue
        ips = [a.rsplit(":", 1)[0] for a in svc.addresses]
        hits = [h for h in failing if _mentions(h.line, svc) or any(ip in h.line for ip in ips)]
        if not hits:
            continue
        crashed = crashed_container(ctx)
        pod, c = crashed if crashed else (target_pod(ctx), None)
        where = ", ".join(svc.addresses)
        return Finding(
            Category.DEPENDENCY_UNREACHABLE,
            0.88,
            summary=(
                f"Service {svc.name} has no selector and its hand-kept endpoints ({where}) do "
                f"not answer; {pod.name if pod else 'the pods'} cannot reach it."
            ),
            root_cause=(
                f"Service {svc.namespace}/{svc.name} has no selector: its Endpoints are kept by "
                f"hand and point at {where}, outside the cluster's pods. Connections there "
                f"fail ({quote_line(hits[-1].line, 160)}): the backend behind {where} is gone "
                "or unreachable, and nothing updates the Endpoints."
            ),
            evidence=ev.cite(
                service_id(svc.name), *cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])
            ),
            impact=f"{workload_state(ctx)}; every call to {svc.name} fails.",
            immediate_actions=[
                f"Check that the backend at {where} still runs and accepts connections from "
                f"the pods; if it moved, update the Endpoints of {svc.name} (or make it an "
                "ExternalName Service for its DNS name).",
            ],
            recommendations=[
                "Keep external backends behind an ExternalName Service or an EndpointSlice "
                "managed from the same inventory that retires the machines.",
            ],
            commands=[
                kc.endpoints(svc.namespace, svc.name),
                kc.describe("service", svc.namespace, svc.name),
                *(pod_commands(ctx, pod, c) if pod else []),
            ],
        )
    return None


def dependency_unreachable(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A Service the pod depends on has no ready endpoints, and the pod fails talking to it."""
    best: tuple[float, ServiceSnapshot, list[Hit]] | None = None
    conn_hits = [h for h in grep(ctx, ev, _CONN) if is_error_line(h.line)]
    for svc in ctx.services:
        if svc.relation != "dependency" or not _down(svc):
            continue
        named = [h for h in conn_hits if _mentions(h.line, svc)]
        named += [
            h
            for h in grep(ctx, ev, re.compile(re.escape(svc.name)))
            if is_error_line(h.line) and h not in named
        ]
        if named and _tolerated(ctx, named):
            # the program says it copes (defaults, cache, degraded) or a healthy pod of the
            # workload logs the same failure and serves: the outage is real, not this crash
            score, hits = 0.6, named
        elif named:
            score, hits = 0.91, named
        elif conn_hits:
            score, hits = 0.85, conn_hits
        elif _pods_unhealthy(ctx):
            score, hits = 0.62, []
        else:
            score, hits = 0.5, []
        if best is None or score > best[0]:
            best = (score, svc, hits)
    if best is None:
        return (
            _unserved_port(ctx, ev, conn_hits)
            or _port_not_exposed(ctx, ev)
            or _endpoints_kept_by_hand(ctx, ev)
        )
    score, svc, hits = best
    if svc.backend_reason == "OOMKilled" and score >= 0.85:
        return _dependency_oom(ctx, ev, svc, hits)
    if svc.backend_claims and svc.ready_endpoints == 0:
        return _dependency_volume(ctx, ev, svc, hits)
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    who = f"{c.name} in pod {pod.name}" if pod and c else (pod.name if pod else "the workload")
    effect = "crash-loops" if c and c.restart_count else "fails"
    quote = f" ({quote_line(hits[-1].line, 160)})" if hits else ""
    port = f" port {svc.ports[0]}" if svc.ports else ""
    cmds = [
        kc.endpoints(svc.namespace, svc.name),
        kc.describe("service", svc.namespace, svc.name),
    ]
    if svc.selector:
        cmds.append(kc.pods_by_selector(svc.namespace, svc.selector))
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
    if svc.ready_endpoints:
        state = "no ready pods behind its endpoints"
        counts = f"{svc.ready_endpoints} endpoints listed, 0 of {len(svc.matching_pods)} pods ready"
    else:
        state = "no endpoints"
        counts = f"0 ready, {svc.not_ready_endpoints} not ready"
    return Finding(
        Category.DEPENDENCY_UNREACHABLE,
        score,
        summary=(f"Service {svc.name} has {state}, so {who} cannot reach it and {effect}."),
        root_cause=(
            f"Service {svc.namespace}/{svc.name}{port} that {who} depends on has {state} "
            f"({counts}): {_why_no_endpoints(svc)}; "
            f"connections to it fail{quote} and {who} {effect}."
        ),
        evidence=ev.cite(
            service_id(svc.name),
            *cite_hits(hits),
            *(pod_cites(ev, pod, c) if pod else []),
        ),
        impact=(
            f"{workload_state(ctx)}; everything that needs {svc.name} fails until it has ready "
            "endpoints again."
        ),
        immediate_actions=[
            f"Bring back the pods behind Service {svc.name}: check that the workload with labels "
            f"{','.join(f'{k}={v}' for k, v in svc.selector.items()) or '(none)'} exists, is "
            "scaled up and ready.",
            f"Once {svc.name} has endpoints, {who} recovers on its next restart; no change to it "
            "is needed.",
        ],
        recommendations=[
            "Let the client retry with back-off instead of exiting, and report the dependency in "
            "readiness, not liveness, so an outage downstream does not crash-loop this service.",
            f"Alert on the dependency directly (e.g. KubeStatefulSetReplicasMismatch or "
            f"endpoint count of {svc.name}).",
        ],
        commands=cmds,
    )


#: A dependency failure the program itself says it copes with.
_HANDLED = re.compile(
    r"using (?:the )?(?:default|fallback|cached)|fall(?:ing)?[ -]?back (?:to|on)\b"
    r"|keeping (?:the )?(?:cached|last|previous)|serving (?:from )?(?:cache|stale)"
    r"|continuing without|degraded mode|running degraded",
    re.IGNORECASE,
)


def _tolerated(ctx: Context, hits: list[Hit]) -> bool:
    """Every failure naming the dependency is one the program copes with: its own line says
    so (using defaults, keeping cached data), or it comes from a pod of the workload that is
    ready and never restarted, which shows the failure does not bring a pod down."""
    healthy = {
        p.name
        for p in ctx.pods
        if p.containers and all(c.ready and not c.restart_count for c in p.containers if not c.init)
    }
    return all(_HANDLED.search(h.line) or h.log.pod in healthy for h in hits)


def _pods_unhealthy(ctx: Context) -> bool:
    return any(
        c.restart_count or (not c.ready and not c.init) for p in ctx.pods for c in p.containers
    )


# --- DNS --------------------------------------------------------------------------------------

_DNS = NAME_RESOLUTION_FAILURE
_HOST = re.compile(
    r"lookup (?!address information)([\w.-]+)|ENOTFOUND ([\w.-]+)|EAI_AGAIN ([\w.-]+)"
    r"|host name \"([\w.-]+)\""
    r"|UnknownHostException: ([\w.-]+)|resolve host:? '?([\w.-]+)|translate host name \"([\w.-]+)\""
    r"|host='([\w.-]+)'|name resolution \(([\w.-]+)\)|resolve '([\w.-]+)'"
    r"|server host '([\w.-]+)'|bad address '([\w.-]+)'|resolve \"([\w.-]+)\""
    r"|upstream \"([\w.-]+?)(?::\d+)?\"|([\w-]+(?:\.[\w-]+)+) could not be resolved"
    r"|getaddrinfo for ([\w.-]+)|UnknownHostException: ([\w.-]+)"
)
_DNS_SERVER = re.compile(
    r"server misbehaving|on [\d.]+:53: (?:read|dial) udp.*i/o timeout"
    r"|Temporary failure in name resolution|EAI_AGAIN|connection timed out; no servers could be"
    r" reached",
    re.I,
)
"""The resolver got no answer (a timeout, SERVFAIL), as opposed to an answer that the name
does not exist: the DNS path is broken, not the name."""


def _own_nameservers(ctx: Context, pod: PodSnapshot | None) -> str:
    """A pod that sends its lookups somewhere else than the cluster DNS: dnsPolicy None or
    Default, or a dnsConfig nameserver that is not the kube-dns Service's address."""
    if pod is None or (pod.dns_policy.startswith("ClusterFirst") and not pod.nameservers):
        return ""
    cluster = ctx.dns.service.cluster_ip if ctx.dns and ctx.dns.service else None
    servers = [n for n in pod.nameservers if n != cluster]
    if pod.dns_policy == "None" and servers:
        local = ctx.dns.node_local if ctx.dns else None
        return (
            f"pod {pod.name} resolves through its own dnsConfig (dnsPolicy None, nameserver "
            f"{', '.join(servers)})"
            + (f", not the cluster DNS at {cluster}" if cluster else "")
            + (
                f"; that link-local address is NodeLocal DNSCache's, and {local}"
                if local
                else ", and that server does not answer cluster names"
            )
        )
    if pod.dns_policy == "Default":
        return (
            f"pod {pod.name} uses dnsPolicy Default: it resolves with its node's resolver, which "
            "knows no cluster Service names"
        )
    return ""


_KUBERNETES_ZONES = re.compile(r"^\s*kubernetes\s+([^{\n]+?)\s*\{", re.M)
"""The zones CoreDNS's kubernetes plugin answers for (``kubernetes cluster.local in-addr.arpa``)."""


#: CoreDNS refusing its Corefile at start: a plugin's parse error, a fatal.
_COREDNS_FATAL = re.compile(
    r"\[FATAL\]|plugin/\w+: .*(?:not an IP address|unknown|invalid|error)|Error during parsing"
    r"|Unknown directive|Corefile:\d+",
    re.IGNORECASE,
)


def _corefile_fault(ctx: Context) -> tuple[str, list[Link]]:
    """CoreDNS's own fault, from its Corefile and logs: a forward to /etc/resolv.conf that the
    loop plugin caught (the node's resolver is a local stub pointing back), or upstreams the
    Corefile forwards to that do not answer."""
    dns = ctx.dns
    if dns is None:
        return "", []
    if dns.loop_detected:
        text = (
            "CoreDNS detected a forwarding loop"
            + (
                " (its Corefile forwards to /etc/resolv.conf, which points back at a local "
                "resolver)"
                if dns.forwards_to_resolv_conf
                else ""
            )
            + f": {quote_line(dns.loop_detected[0], 160)}; the CoreDNS pods exit, so nothing "
            "answers cluster DNS (ConfigMap kube-system/coredns)"
        )
        return text, [
            Link(
                summary=text + ".",
                evidence=[loop_id(), corefile_id()],
                category=Category.DNS_FAILURE,
            )
        ]
    zone = _KUBERNETES_ZONES.search(dns.corefile or "")
    if (
        zone
        and "cluster.local" not in zone.group(1).split()
        and any(".svc.cluster.local" in line for line in [dns.trigger])
    ):
        text = (
            f"the Corefile's kubernetes plugin serves zone {zone.group(1).strip()}, not "
            "cluster.local, so CoreDNS answers NXDOMAIN for every Service name the pods use "
            "(ConfigMap kube-system/coredns)"
        )
        return text, [
            Link(summary=text + ".", evidence=[corefile_id()], category=Category.DNS_FAILURE)
        ]
    crashing = [
        p
        for p in dns.pods
        if any(c.restart_count and (c.state == "waiting" or not c.ready) for c in p.containers)
    ]
    why_line = next(
        (
            (log, n, line)
            for log in sorted(dns.logs, key=lambda lg: not lg.previous)
            if log.pod in {p.name for p in crashing}
            for n, line in enumerate(log.lines, 1)
            if _COREDNS_FATAL.search(line)
        ),
        None,
    )
    if crashing and why_line is not None and not dns.dead_upstreams:
        log, n, line = why_line
        text = (
            f"the CoreDNS pods crash-loop ({', '.join(p.name for p in crashing[:2])}) on their "
            f"configuration: {quote_line(line, 200)}; nothing answers cluster DNS until the "
            "Corefile (ConfigMap kube-system/coredns) is fixed"
        )
        return text, [
            Link(
                summary=text + ".",
                evidence=[
                    corefile_id(),
                    coredns_pod_id(crashing[0].name),
                    coredns_line_id(log, n),
                ],
                category=Category.DNS_FAILURE,
            )
        ]
    if dns.dead_upstreams:
        zones = [
            f"{f.zone} -> {' '.join(f.targets)}"
            for f in dns.forwards
            if any(t.split(":")[0] in dns.dead_upstreams for t in f.targets)
        ]
        text = (
            f"CoreDNS forwards {'; '.join(zones) or 'queries'} (ConfigMap kube-system/coredns), "
            f"and upstream {', '.join(dns.dead_upstreams)} does not answer, so CoreDNS returns "
            "SERVFAIL for those names"
        )
        return text, [
            Link(
                summary=text + ".",
                evidence=[corefile_id(), *(upstream_id(ip) for ip in dns.dead_upstreams[:2])],
                category=Category.DNS_FAILURE,
            )
        ]
    return "", []


_VALID_FOR = re.compile(
    r"certificate is valid for (?P<names>[^\n]+?), not (?P<host>[\w.-]+)", re.IGNORECASE
)
#: The resolver's default ndots for ClusterFirst pods: a name with fewer dots is tried with
#: each search domain first.
NDOTS = 5


def _search_domain_hijack(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A public host name resolves to a server of the cluster's own domain: the TLS peer
    presents a wildcard certificate of domain D (``valid for *.D, not api.partner.com``). With
    ndots:5 the resolver tries ``api.partner.com.D`` first, and a wildcard record in D answers
    for it: DNS sends the pod to the wrong server, which its certificate only shows."""
    for h in grep(ctx, ev, _VALID_FOR):
        names = [n.strip().rstrip(",") for n in h.match.group("names").split(",")]
        host = h.match.group("host").rstrip(".")
        wild = [n[2:] for n in names if n.startswith("*.")]
        if not wild or host.count(".") >= NDOTS or any(host.endswith(d) for d in wild):
            continue
        domain = wild[0]
        crashed = crashed_container(ctx)
        pod, c = crashed if crashed else (target_pod(ctx), None)
        return Finding(
            Category.DNS_FAILURE,
            0.84,
            summary=(
                f"{host} resolves to a server of {domain}: with ndots:5 the search domain "
                f"{domain} is tried first and its wildcard record answers."
            ),
            root_cause=(
                f"The pods reach {host} at the wrong server: its certificate is for "
                f"{', '.join(names[:3])} ({quote_line(h.line, 200)}). {host} has fewer than "
                f"{NDOTS} dots, so with the resolver's default ndots:5 it is first looked up as "
                f"{host}.{domain} (a search domain the pods inherit), and a wildcard record of "
                f"{domain} answers for that name. Name resolution, not the partner's "
                "certificate, is wrong."
            ),
            evidence=ev.cite(*cite_hits([h]), *(pod_cites(ev, pod, c) if pod else [])),
            impact=f"{workload_state(ctx)}; every call to {host} goes to the wrong server.",
            immediate_actions=[
                f"Write the name fully qualified ({host}. with a trailing dot) or set "
                "dnsConfig options ndots:1 for these pods; remove the wildcard record of "
                f"{domain} or the search domain from the nodes' resolv.conf.",
            ],
            recommendations=[
                "Keep wildcard records out of domains that nodes put in their DNS search list.",
            ],
            commands=[
                *(
                    [f"kubectl -n {pod.namespace} exec {pod.name} -- cat /etc/resolv.conf"]
                    if pod
                    else []
                ),
                f"kubectl run -it --rm dnsutils --image=registry.k8s.io/e2e-test-images/"
                f"jessie-dnsutils:1.3 -- nslookup {host}",
            ],
        )
    return None


def _setting_naming(pod: PodSnapshot | None, host: str) -> str:
    """The env var (and the ConfigMap it comes from) whose value holds ``host``, or its first
    label: where the name that does not resolve is configured."""
    if pod is None:
        return ""
    short = host.split(".")[0]
    for c in pod.containers:
        for var, value in {**c.config_env, **c.env}.items():
            if host in value or re.search(rf"(?<![\w-]){re.escape(short)}(?![\w-])", value):
                origin = c.config_env_source.get(var) if var not in c.env else None
                return f"{var}" + (f" (ConfigMap {origin})" if origin else "")
    return ""


def _external_alias(ctx: Context, host: str) -> ServiceSnapshot | None:
    """The ExternalName Service that ``host`` names (``warehouse-db``, ``warehouse-db.etl``,
    ``warehouse-db.etl.svc.cluster.local``): resolving it means resolving its external name."""
    name, _, rest = host.partition(".")
    for svc in ctx.services:
        if not svc.external_name or svc.name != name:
            continue
        if not rest or rest.split(".")[0] in (svc.namespace, "svc"):
            return svc
    return None


def dns_failure(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The pod cannot resolve a host name (NXDOMAIN, or the cluster DNS does not answer), or
    resolves a public name under a search domain whose wildcard record answers."""
    hits = grep(ctx, ev, _DNS)
    if not hits:
        return _search_domain_hijack(ctx, ev)
    hosts: list[str] = []
    for h in hits:
        m = _HOST.search(h.line)
        host = next((g for g in m.groups() if g), None) if m else None
        if host and host not in hosts:
            hosts.append(host)
    server_side = any(_DNS_SERVER.search(h.line) for h in hits)
    score = 0.86
    dns_allowed, dns_policies = _dns_egress(ctx)
    if server_side and dns_policies and dns_allowed is not None and dns_allowed < {"UDP", "TCP"}:
        score = 0.7  # the NetworkPolicy rule explains why DNS does not answer
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    who = f"{c.name} in pod {pod.name}" if pod and c else (pod.name if pod else "the workload")
    host = hosts[0] if hosts else "a host name"
    corefile, because = _corefile_fault(ctx)
    own = _own_nameservers(ctx, pod)
    if ctx.dns is not None and ctx.dns.absent_pod and not (corefile or own or server_side):
        # a pod's name under its headless Service resolves only while the pod exists: the
        # pod is missing (its StatefulSet did not create it), DNS answers as it should
        return None
    if corefile or own:
        # the resolver itself is proven at fault (CoreDNS's loop, a Corefile it refuses, dead
        # upstreams, or a pod that asks another server): every lookup fails, so a failed
        # connection to a dependency by name is its symptom, not a second cause
        score = max(score, 0.9)
    if own:
        why = own
    elif corefile:
        why = corefile
    elif server_side:
        why = "the cluster DNS service does not answer (CoreDNS down or unreachable)"
    elif alias := _external_alias(ctx, host):
        why = (
            f"Service {alias.namespace}/{alias.name} is an ExternalName alias of "
            f"{alias.external_name}, so the cluster DNS answers {host} with a CNAME to "
            f"{alias.external_name}, and that name does not resolve (its record was removed "
            "or renamed, or the upstream resolver cannot answer it): fix the record or the "
            "Service's externalName"
        )
        because.append(
            Link(
                summary=f"Service {alias.name} is an alias of {alias.external_name}.",
                evidence=[service_id(alias.name)],
                category=Category.DNS_FAILURE,
            )
        )
    elif host.endswith(".svc") or ".svc." in host or "." not in host:
        why = (
            f"no Service by that name exists (check the name and namespace in {host}, and "
            "that the Service was deployed)"
        )
        if ctx.dns is not None and ctx.dns.missing_service:
            because.append(
                Link(
                    summary=f"No Service {ctx.dns.missing_service} exists.",
                    evidence=[dns_name_id()],
                    category=Category.DNS_FAILURE,
                )
            )
            if ctx.dns.same_name_elsewhere:
                why = (
                    f"no Service {ctx.dns.missing_service} exists, but one of that name runs in "
                    f"{', '.join(ctx.dns.same_name_elsewhere)}: it moved to another namespace"
                )
            elif ctx.dns.similar_in_namespace:
                why = (
                    f"no Service {ctx.dns.missing_service} exists; its namespace has "
                    f"{', '.join(ctx.dns.similar_in_namespace)}: the Service was renamed"
                )
        setting = _setting_naming(pod, host)
        if setting:
            why += f"; the name comes from {setting}"
    else:
        why = "the name does not exist in DNS or the upstream resolver fails"
    if not server_side and pod is not None:
        sources = sorted(
            {cm for c2 in pod.containers for cm in c2.config_maps} | set(pod.config_maps)
        )
        if sources:
            why += f"; the pod takes its configuration from ConfigMap {', '.join(sources[:3])}"
    ns = namespace(ctx)
    cmds = []
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
        cmds.append(kc.exec_in(pod.namespace, pod.name, c.name if c else None, f"nslookup {host}"))
    cmds += [
        "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide",
        "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50",
        kc.get_kind("service", ns),
    ]
    return Finding(
        Category.DNS_FAILURE,
        score,
        summary=f"{who} cannot resolve {host}: {why}.",
        root_cause=(
            f"DNS resolution fails for {host}"
            + (f" (and {', '.join(hosts[1:3])})" if len(hosts) > 1 else "")
            + f" from {who}: {quote_line(hits[-1].line, 200)} — {why}."
        ),
        evidence=ev.cite(
            *cite_hits(hits),
            *[eid for link in because for eid in link.evidence],
            *(pod_cites(ev, pod, c) if pod else []),
            dns_node_local_id() if own and ctx.dns and ctx.dns.node_local else None,
        ),
        because=because,
        impact=f"{workload_state(ctx)}; every call to {host} fails before it is sent.",
        immediate_actions=[
            f"Resolve {host} from inside the pod (nslookup) to see whether the name or the DNS "
            "server is at fault.",
            "If the name is wrong (typo, wrong namespace, Service not deployed), fix the "
            "configuration; if CoreDNS is failing, look at its pods and logs.",
        ],
        recommendations=[
            "Use fully qualified Service names (name.namespace.svc.cluster.local) in config.",
            "Alert on CoreDNS errors (CoreDNSErrorsHigh) and run NodeLocal DNSCache.",
        ],
        commands=cmds,
    )


# --- NetworkPolicy ------------------------------------------------------------------------------

_TIMEOUT = re.compile(
    r"i/o timeout|timed out|timeout|deadline exceeded|ETIMEDOUT|ESOCKETTIMEDOUT", re.IGNORECASE
)


def _denies_egress(np: NetworkPolicySnapshot) -> bool:
    return np.selects_target and "Egress" in np.policy_types


def _allows(np: NetworkPolicySnapshot, svc: ServiceSnapshot) -> bool:
    """Whether an egress rule (as gathering describes it) lets traffic reach ``svc``."""
    for rule in np.egress:
        if svc.name in rule:
            return True
        if svc.selector and all(
            f"{k}={v}" in rule or f"'{k}': '{v}'" in rule for k, v in svc.selector.items()
        ):
            return True
        if rule.startswith("anywhere"):
            ports = rule.partition(" ports ")[2]
            wanted = {p.split("->")[-1].split("/")[0] for p in svc.ports}
            wanted |= {p.split("/")[0] for p in svc.ports}
            if not ports or any(p.split("/")[0] in wanted for p in ports.split(",")):
                return True
    return False


def _egress_blocked(ctx: Context) -> bool:
    return any(_denies_egress(np) for np in ctx.network_policies)


def _dns_protocols(np: NetworkPolicySnapshot) -> set[str] | None:
    """The protocols one egress policy lets out on port 53; None when a rule of it allows
    every port."""
    allowed: set[str] = set()
    for rule in np.egress:
        ports = rule.partition(" ports ")[2]
        if not ports:
            return None
        for port in ports.split(","):
            number, _, proto = port.partition("/")
            if number in ("53", "dns", "dns-tcp", "dns-udp"):
                allowed.add(proto.upper() or ("TCP" if number == "dns-tcp" else "UDP"))
    return allowed


def _dns_egress(ctx: Context) -> tuple[set[str] | None, list[NetworkPolicySnapshot]]:
    """What the pod may send on port 53 under its egress policies, which add up: the union
    of their rules (None: unrestricted, or a policy allows every port), and the policies."""
    policies = [np for np in ctx.network_policies if _denies_egress(np)]
    if not policies:
        return None, []
    allowed: set[str] = set()
    for np in policies:
        protocols = _dns_protocols(np)
        if protocols is None:
            return None, policies
        allowed |= protocols
    return allowed, policies


def _dns_blocked(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """Lookups time out while the NetworkPolicies of the pod let no DNS traffic out, or let it
    out on UDP only: an answer too large for UDP comes back truncated and the resolver retries
    over TCP 53, which is dropped, so large names (CNAME chains, many records) fail while small
    ones resolve."""
    allowed, policies = _dns_egress(ctx)
    if not policies or allowed is None or allowed >= {"UDP", "TCP"}:
        return None
    hits = [h for h in grep(ctx, ev, _DNS) if _DNS_SERVER.search(h.line)]
    if not hits:
        return None
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    who = f"pod {pod.name}" if pod else "the alerted pods"
    names = ", ".join(np.name for np in policies)
    if allowed == {"UDP"}:
        np = next((n for n in policies if _dns_protocols(n)), policies[0])
        summary = (
            f"NetworkPolicy {np.name} lets DNS out from {who} on UDP 53 only: lookups whose "
            "answer needs TCP fail."
        )
        cause = (
            f"The egress policies of {who} ({names}) add up to DNS on UDP port 53 only "
            f"(NetworkPolicy {np.namespace}/{np.name}: {'; '.join(np.egress)}). An answer too "
            "large for UDP (a long CNAME chain, many records) comes back truncated, the "
            "resolver retries over TCP 53, and that is dropped: those names time out while "
            f"small ones resolve: {quote_line(hits[-1].line, 160)}. CoreDNS itself is not at "
            "fault."
        )
        action = f"Allow TCP 53 to kube-dns next to UDP 53 in NetworkPolicy {np.name}."
    else:
        np = policies[0]
        rules = "; ".join(r for n in policies for r in n.egress) or "none: all egress is denied"
        summary = f"NetworkPolicy {np.name} blocks DNS (port 53) from {who}, so every lookup fails."
        cause = (
            f"NetworkPolicy {np.namespace}/{np.name} selects {who} and restricts its egress, and "
            f"no egress policy of the pod ({names}) allows DNS (UDP/TCP 53 to kube-dns; allowed "
            f"egress: {rules}), so name lookups time out: {quote_line(hits[-1].line, 160)}. "
            "CoreDNS itself is not at fault."
        )
        action = (
            f"Add an egress rule to NetworkPolicy {np.name} allowing UDP and TCP 53 to the "
            "kube-dns pods in kube-system, or revert the policy change."
        )
    return Finding(
        Category.NETWORK_POLICY_BLOCK,
        0.9 if not allowed else 0.86,
        summary=summary,
        root_cause=cause,
        evidence=ev.cite(
            netpol_id(np.name), *cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])
        ),
        impact=f"{workload_state(ctx)}; every call by name fails before it is sent.",
        immediate_actions=[action],
        recommendations=[
            "Start every egress allow-list from a shared 'allow DNS' policy with UDP and TCP 53.",
        ],
        commands=[
            kc.describe("networkpolicy", np.namespace, np.name),
            *(pod_commands(ctx, pod, c) if pod else []),
        ],
    )


def _denied_path(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A connection the logs show failing, to a destination that exists, that the policies on
    its source (egress) or destination (ingress) side do not allow, evaluated with their full
    semantics (podSelector, namespaceSelector against the namespaces' real labels, ipBlock,
    ports). The policy that denies is the cause, whatever the client says about it."""
    for path in ctx.network_paths:
        if path.service_exists is False:
            continue
        if path.egress_allowed is False:
            side, names = "egress from", path.egress_policies
            where = f"{path.source_namespace}/{path.source_pod}"
        elif path.ingress_allowed is False and path.pods:
            side, names = "ingress to", [p.name for p in path.ingress_policies]
            where = f"the pods of {path.namespace}/{path.service or path.destination}"
        else:
            continue
        labels = next((n.labels for n in ctx.namespaces if n.name == path.source_namespace), {})
        dest = f"{path.namespace}/{path.service}" if path.service else path.ip or path.destination
        port = f" port {path.target_port or path.port}/{path.protocol}" if path.port else ""
        pod = next((p for p in ctx.pods if p.name == path.source_pod), None) or target_pod(ctx)
        c = pod.containers[0] if pod and pod.containers else None
        policy_ids = [
            netpol_id(n) if side.startswith("egress") else path_policy_id(path.destination, n)
            for n in names
        ]
        hint = ""
        if side.startswith("ingress") and labels:
            hint = (
                f"; the source namespace {path.source_namespace} is labelled "
                f"{', '.join(f'{k}={v}' for k, v in sorted(labels.items())[:4])}"
            )
        return Finding(
            Category.NETWORK_POLICY_BLOCK,
            0.93,
            summary=(
                f"NetworkPolicy {', '.join(names)} denies {side} {where}: {path.source_pod} cannot "
                f"reach {dest}{port}."
            ),
            root_cause=(
                f"NetworkPolicy {', '.join(names)} denies {side} {where}, so the connection from "
                f"{path.source_namespace}/{path.source_pod} to {dest}{port} fails"
                + (f" ({quote_line(path.line, 160)})" if path.line else "")
                + hint
                + "; no rule of the policy matches this source, destination and port. The "
                "destination itself runs."
            ),
            evidence=ev.cite(
                path_id(path.destination),
                *policy_ids,
                namespace_id(path.source_namespace),
                *(pod_cites(ev, pod, c) if pod else []),
            ),
            impact=f"{workload_state(ctx)}; every request over this path fails.",
            immediate_actions=[
                f"Fix NetworkPolicy {names[0] if names else '?'}: allow {side} {where} for "
                f"{path.source_namespace}/{path.source_pod} on{port or ' its port'} (check its "
                "podSelector, namespaceSelector against the namespace's labels, and ports), or "
                "revert the policy or label change.",
            ],
            recommendations=[
                "Select namespaces by kubernetes.io/metadata.name, which Kubernetes sets itself, "
                "rather than hand-kept labels.",
            ],
            commands=[
                *(
                    kc.describe(
                        "networkpolicy",
                        path.source_namespace if side.startswith("egress") else path.namespace,
                        n,
                    )
                    for n in names[:2]
                ),
                f"kubectl get namespace {path.source_namespace} --show-labels",
                *(pod_commands(ctx, pod, c) if pod else []),
            ],
        )
    return None


_URL = re.compile(r"\b([a-z][a-z0-9+]*)://(?:[^@/\s]+@)?([\w.-]+)(?::(\d+))?", re.I)
"""A URL in a pod's environment: scheme, host (after any credentials) and port."""
#: The port a URL's scheme implies when it names none.
_DEFAULT_PORTS = {
    "https": 443,
    "http": 80,
    "amqps": 5671,
    "amqp": 5672,
    "postgres": 5432,
    "postgresql": 5432,
    "mysql": 3306,
    "redis": 6379,
    "rediss": 6380,
    "mongodb": 27017,
    "nats": 4222,
    "kafka": 9092,
}
_CLUSTER_SUFFIXES = (".svc", ".cluster.local", ".svc.cluster.local")


def _external_urls(ctx: Context) -> dict[str, tuple[int, str]]:
    """The hosts outside the cluster the pods' environment points at, by host: (port, how
    it reaches it). A URL whose host is a public name (``https://api.parcelhub.io/v3``), or
    a cluster name that is an ExternalName Service's alias of one (``amqps://orders-mq.
    events.svc.cluster.local:5671``: ``ExternalName Service events/orders-mq ->
    b-3f9c.mq.eu-west-1.on.aws``)."""
    urls: dict[str, tuple[int, str]] = {}
    for pod in ctx.pods:
        for c in pod.containers:
            for var, value in c.env.items():
                for m in _URL.finditer(value):
                    host = m.group(2).lower()
                    port = int(m.group(3) or _DEFAULT_PORTS.get(m.group(1).lower(), 0))
                    alias = _external_alias(ctx, host)
                    if alias is not None:
                        urls[host] = (
                            port,
                            f"{var} -> ExternalName Service {alias.namespace}/{alias.name} -> "
                            f"{alias.external_name}",
                        )
                    elif (
                        "." in host
                        and not host.endswith(_CLUSTER_SUFFIXES)
                        and not (host.replace(".", "").isdigit())
                    ):
                        urls[host] = (port, var)
    return {h: v for h, v in urls.items() if v[0]}


def _private_range(cidr: str) -> bool:
    """A CIDR inside the private, link-local or loopback ranges: an ``except`` of such a range
    (the cloud metadata address, the cluster's own networks) leaves every public host
    admitted."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return net.is_private or net.is_link_local or net.is_loopback


def _external_timeouts_admitted(
    ctx: Context,
    policies: list[NetworkPolicySnapshot],
    timeouts: list[Hit],
    hosts: dict[str, int] | None = None,
) -> bool:
    """Whether every host outside the cluster that the timed-out lines name (a URL in the
    pods' environment: ``CARRIER_API_BASE=https://api.parcelhub.io/v3``) is reachable under
    the egress policies: a rule that admits any address (``ipBlock 0.0.0.0/0``, or no peers)
    on the URL's port. Then the policies let the connection out and what times out is the
    far end, not the policy. False when the lines name no such host."""
    named = hosts or {
        h: port
        for h, (port, _) in _external_urls(ctx).items()
        if any(h in t.line.lower() for t in timeouts)
    }
    if not named:
        return False

    def admits(port: int) -> bool:
        for np in policies:
            for rule in np.egress_rules:
                anywhere = not rule.peers or any(
                    peer.ip_block == "0.0.0.0/0"
                    and all(_private_range(x) for x in peer.ip_block_except)
                    for peer in rule.peers
                )
                port_ok = not rule.ports or any(
                    pp.protocol == "TCP"
                    and pp.port is not None
                    and pp.port.isdigit()
                    and int(pp.port) <= port <= (pp.end_port or int(pp.port))
                    for pp in rule.ports
                )
                if anywhere and port_ok:
                    return True
        return False

    return all(admits(port) for port in named.values())


def network_policy_block(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Connections time out to a Service that has ready endpoints, and a NetworkPolicy that
    selects the pod restricts its egress without allowing that Service."""
    path = _denied_path(ctx, ev)
    if path is not None:
        return path
    policies = [np for np in ctx.network_policies if _denies_egress(np)]
    if not policies:
        return None
    dns = _dns_blocked(ctx, ev)
    if dns is not None:
        return dns
    timeouts = [h for h in grep(ctx, ev, _TIMEOUT) if is_error_line(h.line)]
    healthy = [s for s in ctx.services if s.relation == "dependency" and s.ready_endpoints > 0]
    blocked = [(np, s) for s in healthy for np in policies if not _allows(np, s)]
    named = [(np, s, [h for h in timeouts if _mentions(h.line, s)]) for np, s in blocked]
    named = [t for t in named if t[2]]
    if named:
        np, svc, hits = named[0]
        score = 0.9
    elif blocked and timeouts:
        (np, svc), hits = blocked[0], timeouts
        score = 0.84
    elif timeouts:
        if _external_timeouts_admitted(ctx, policies, timeouts):
            return None  # the policies let it out: the far end is what does not answer
        np, svc, hits = policies[0], None, timeouts
        score = 0.78
    else:
        np, svc, hits = policies[0], None, []
        score = 0.5
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    who = f"pod {pod.name}" if pod else "the alerted pods"
    dest = (
        f"Service {svc.namespace}/{svc.name} ({svc.ready_endpoints} ready endpoints)"
        if svc
        else "its dependencies"
    )
    # egress is allowed by the union of every policy that selects the pod: name them all
    if svc is None and len(policies) > 1:
        allowed = [r for p in policies for r in p.egress]
        rules = "; ".join(allowed) if allowed else "none: all egress is denied"
        names = ", ".join(p.name for p in policies[:4])
    else:
        rules = "; ".join(np.egress) if np.egress else "none: all egress is denied"
        names = np.name
    several = "," in names
    kind = "NetworkPolicies" if several else "NetworkPolicy"
    verb = ("block", "select", "restrict") if several else ("blocks", "selects", "restricts")
    cmds = [
        kc.describe("networkpolicy", np.namespace, np.name),
        kc.get_kind("networkpolicy", np.namespace),
    ]
    if svc is not None:
        cmds.append(kc.endpoints(svc.namespace, svc.name))
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
    return Finding(
        Category.NETWORK_POLICY_BLOCK,
        score,
        summary=f"{kind} {names} {verb[0]} egress from {who} to {dest}.",
        root_cause=(
            f"{kind} {np.namespace}/{names} {verb[1]} {who} and {verb[2]} its egress "
            f"(allowed egress: {rules}), so connections to {dest} time out"
            + (f" ({quote_line(hits[-1].line, 160)})" if hits else "")
            + "; the destination itself is healthy."
        ),
        evidence=ev.cite(
            netpol_id(np.name),
            *(netpol_id(p.name) for p in policies[1:4] if svc is None),
            service_id(svc.name) if svc else None,
            *cite_hits(hits),
            *(pod_cites(ev, pod, c) if pod else []),
        ),
        impact=f"{workload_state(ctx)}; every request that needs {dest} times out.",
        immediate_actions=[
            f"Add an egress rule to NetworkPolicy {np.name} that allows {dest}"
            + (f" on port {svc.ports[0]}" if svc and svc.ports else "")
            + " (and DNS: UDP/TCP 53 to kube-system), or revert the policy change.",
        ],
        recommendations=[
            "Test NetworkPolicies in staging with the same CNI; keep an explicit allow-list per "
            "workload next to its manifests.",
            "Log the destination in client timeout errors so a block is recognisable.",
        ],
        commands=cmds,
    )


# --- expired certificates -----------------------------------------------------------------------

_CERT_EXPIRED = re.compile(
    r"certificate has expired|certificate expired|certificate_expired|CERT_HAS_EXPIRED"
    r"|CertificateExpiredException|invalid peer certificate: Expired"  # Java, rustls
    r"|certificate is not yet valid|expired certificate|NotAfter: "
    # .NET's chain status for a certificate outside its validity period
    r"|certificate chain: NotTimeValid|\bNotTimeValid\b",
    re.IGNORECASE,
)
_CERT_OTHER = re.compile(
    r"x509: certificate signed by unknown authority|x509: certificate is valid for"
    r"|certificate verify failed|unable to get local issuer certificate|self[- ]signed certificate"
    r"|tls: bad certificate|SSLHandshakeException|PKIX path building failed"
    r"|The remote certificate is invalid",  # .NET (UntrustedRoot, a name mismatch)
    re.IGNORECASE,
)
_AFTER = re.compile(r"current time (\S+) is after (\S+?)(?:[,;)\s\"']|$)|NotAfter: (\S+)")
_PEER = re.compile(
    r"(?:Get|Post|Put|Delete|Patch|Head) \"?https://([\w.-]+(?::\d+)?)"
    r"|dial tcp ([\w.-]+:\d+)|https://([\w.-]+(?::\d+)?)|host[=:] ?'?([\w.-]+)"
    # any client naming the in-cluster server it dials (Sarama's "Failed to connect to broker
    # events-kafka-bootstrap.events.svc:9094")
    r"|\b([\w-]+\.[\w-]+\.svc(?:\.cluster\.local)?(?::\d+)?)"
)
CERT_ALERTS = (
    "CertManagerCertExpirySoon",
    "CertManagerCertNotReady",
    "KubeClientCertificateExpiration",
    "X509CertificateExpiration",
    "SSLCertExpiringSoon",
    "ProbeSSLCertExpire",
)


_PEER_REJECTS_OURS = re.compile(
    r"Received fatal alert: certificate_expired|remote error: tls: expired certificate"
    r"|alert certificate expired|SSLV3_ALERT_CERTIFICATE_EXPIRED",
    re.I,
)
"""A TLS alert the peer sent: it refused the certificate this side presented (mTLS)."""


#: A ConfigMap or Secret named as a trust store: a CA bundle a pod mounts to verify servers.
_TRUST_STORE = re.compile(r"(?:^|[-_.])(?:ca|cas|trust|truststore|bundle|roots?)(?:$|[-_.])", re.I)


def cert_expired(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """TLS fails with "x509: certificate has expired" (or another certificate error)."""
    hits = grep(ctx, ev, _CERT_EXPIRED)
    expired = bool(hits)
    if not hits:
        hits = grep(ctx, ev, _CERT_OTHER)
    alert_only = not hits and ctx.alert.name in CERT_ALERTS
    if not hits and not alert_only:
        return None
    score = 0.93 if expired else (0.72 if hits else 0.62)
    peer = None
    when = None
    for h in hits:
        m = _PEER.search(h.line)
        if m and peer is None:
            peer = next(g for g in m.groups() if g)
        a = _AFTER.search(h.line)
        if a and when is None:
            when = a.group(2) or a.group(3)
    if peer is None and len(ctx.tls_peers) == 1:
        # the error names no server; the one in-cluster server the pods dial over TLS is it
        server = ctx.tls_peers[0]
        peer = f"{server.destination}.svc"
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    who = f"{c.name} in pod {pod.name}" if pod and c else (pod.name if pod else ctx.target.display)
    tls_secrets = sorted({s for p in ctx.pods for s in p.secrets if "tls" in s or "cert" in s})
    secret_ns = namespace(ctx)
    if peer and not any(_PEER_REJECTS_OURS.search(h.line) for h in hits):
        # the server's certificate failed: the Secrets its pods mount are what it presents
        host = peer.split(":")[0]
        served = sorted(
            {
                (server.namespace, sec)
                for server in ctx.tls_peers
                if host.startswith(server.destination)
                for sec in server.secrets
            }
        )
        if served:
            tls_secrets = [sec for _, sec in served]
            secret_ns = served[0][0]
    cmds = [f"kubectl -n {secret_ns} get certificates.cert-manager.io"]
    for secret in tls_secrets[:2]:
        cmds.append(
            f"kubectl -n {secret_ns} get secret {secret} -o jsonpath='{{.data.tls\\.crt}}' "
            "| base64 -d | openssl x509 -noout -subject -enddate"
        )
    if peer:
        host = peer.split(":")[0]
        port = peer.split(":")[1] if ":" in peer else "443"
        cmds.append(
            f"openssl s_client -connect {host}:{port} -servername {host} </dev/null 2>/dev/null "
            "| openssl x509 -noout -enddate"
        )
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
    what = "has expired" if expired else "is not trusted"
    used = {sec for p in ctx.pods for sec in p.secrets}
    client = any(_PEER_REJECTS_OURS.search(h.line) for h in hits)
    if client and pod is not None:
        mounted = sorted(pod.secrets)
        what = "has expired: the peer rejects this pod's own client certificate" + (
            f" (Secrets the pod mounts: {', '.join(mounted[:3])})" if mounted else ""
        )
    stores = (
        sorted({n for n in [*pod.config_maps, *pod.secrets] if _TRUST_STORE.search(n)})
        if pod is not None and not expired and not client
        else []
    )
    if stores:
        # verification failed against the CA bundle the pod mounts: the server's certificate
        # is signed by an issuer the bundle lacks (a new CA, a bundle not updated)
        what = (
            f"is not trusted by the CA bundle the pod mounts ({', '.join(stores[:3])}): the "
            "bundle lacks the issuer that signed it"
        )
    if not client:
        # the server's certificate failed: the Secrets its pods present are the ones to follow
        used |= {sec for server in ctx.tls_peers for sec in server.secrets}
    mesh_issuer = linkerd_issuer(ctx)
    if mesh_issuer is not None:
        # the proxy's own certificate comes from Linkerd's identity issuer, which expired
        used.add(mesh_issuer[1])
    chain, because = certificate_chain(ctx, secrets=used)
    stale = _not_reloaded(ctx, peer) if expired and not client else None
    first_action = (
        f"Renew the certificate{' of ' + peer if peer else ''}"
        + (f" (Secret {', '.join(tls_secrets)})" if tls_secrets else "")
        + "; with cert-manager, check why the Certificate did not renew "
        "(kubectl describe certificate) and trigger renewal with `cmctl renew`."
    )
    if stale is not None and not chain:
        text, link, server = stale
        because = [link]
        what = "has expired" + (f" (valid until {when})" if when else "") + f": {text}"
        when = None
        selector = ",".join(f"{k}={v}" for k, v in server.selector.items())
        cmds.insert(0, f"kubectl -n {server.namespace} get pods -l {selector} -o wide")
        first_action = (
            f"Restart the pods of Service {server.namespace}/{server.service} so they load the "
            "renewed certificate (kubectl rollout restart of their workload), then make the "
            "server reload it on change (a reloader, or a sidecar that signals it)."
        )
    if stores:
        first_action = (
            f"Add the CA that now issues the server's certificate to {', '.join(stores[:3])} "
            "(keep the old one while both are in use), then restart the pods that read it."
        )
    return Finding(
        Category.CERT_EXPIRED,
        score,
        summary=(
            f"TLS certificate {('of ' + peer) if peer else 'in use'} {what}"
            + (f" (not after {when})" if when else "")
            + f"; {who} cannot connect."
        ),
        root_cause=(
            f"The TLS certificate {('presented by ' + peer) if peer else 'used by ' + who} {what}"
            + (f" (valid until {when})" if when else "")
            + ", so TLS handshakes fail"
            + (f": {quote_line(hits[-1].line, 200)}" if hits else f" (alert {ctx.alert.name})")
            + "."
            + (f" It was not renewed: {chain}." if chain else "")
        ),
        because=because,
        evidence=ev.cite(
            *[i for link in because for i in link.evidence],
            *cite_hits(hits),
            *(pod_cites(ev, pod, c) if pod else []),
            ALERT_ID if alert_only else None,
        ),
        impact=f"{workload_state(ctx)}; every TLS connection to {peer or 'the peer'} fails.",
        immediate_actions=[
            first_action,
            "Restart the pods that cache the old certificate after it is replaced.",
        ],
        recommendations=[
            "Issue certificates with cert-manager and alert 14 days before expiry "
            "(CertManagerCertExpirySoon / probe_ssl_earliest_cert_expiry).",
        ],
        commands=cmds,
    )


def _not_reloaded(ctx: Context, peer: str | None) -> tuple[str, Link, TLSPeerSnapshot] | None:
    """The server presents an expired certificate although cert-manager renewed its Secret
    after the server's pods started: they load the key pair at start and never reload it."""
    if not peer:
        return None
    host = peer.split(":")[0]
    for server in ctx.tls_peers:
        if not host.startswith(server.destination):
            continue
        for name in server.certificates:
            cert = next(
                (c for c in ctx.certificates if c.name == name and c.namespace == server.namespace),
                None,
            )
            if cert is None or cert.conditions.get("Ready", ("",))[0] != "True":
                continue
            if not (cert.not_before and server.started_at and cert.not_before > server.started_at):
                continue
            text = (
                f"Certificate {cert.namespace}/{cert.name} renewed Secret {cert.secret_name} at "
                f"{cert.not_before} (valid until {cert.not_after or '?'}), but the pods of "
                f"Service {server.namespace}/{server.service} ({', '.join(server.pods[:3])}) "
                f"started {server.started_at}, before it, and still present the certificate "
                "they loaded at start: the server does not reload a renewed Secret"
            )
            link = Link(
                summary=text[:590] + ".",
                evidence=[tls_peer_id(server.destination), certificate_id(cert.name)],
                category=Category.CERT_EXPIRED,
            )
            return text, link, server
    return None


def certificate_chain(
    ctx: Context, *, secrets: set[str] | None = None, webhook: str | None = None
) -> tuple[str, list[Link]]:
    """Why a certificate was not renewed, one step past the handshake: the cert-manager
    Certificate that issues the Secret (or injects a webhook's CA), its Ready condition and
    failed attempts, and its Issuer or ClusterIssuer when that is not Ready or missing."""
    texts: list[str] = []
    ids: list[str] = []
    for cert in ctx.certificates:
        wanted = (secrets is not None and cert.secret_name in secrets) or (
            webhook is not None and webhook in cert.why
        )
        if not wanted:
            continue
        if not cert.exists:
            texts.append(
                f"Certificate {cert.namespace}/{cert.name}, which {cert.why}, does not exist, "
                "so cert-manager never updates the caBundle"
            )
            continue
        ready = cert.conditions.get("Ready", ("", "", ""))
        if webhook is not None and "serving certificate" in cert.why:
            texts.append(
                f"Certificate {cert.namespace}/{cert.name} (Secret {cert.secret_name}) {cert.why}: "
                "point inject-ca-from at it"
            )
            ids.append(certificate_id(cert.name))
            continue
        if ready[0] == "True" and not cert.failed_issuance_attempts:
            continue  # a Ready Certificate renews on time: not what failed
        issuer = next(
            (i for i in ctx.issuers if i.kind == cert.issuer_kind and i.name == cert.issuer_name),
            None,
        )
        text = f"Certificate {cert.namespace}/{cert.name} (Secret {cert.secret_name})"
        if cert.not_after:
            text += f" expires {cert.not_after}"
        if ready[0] and ready[0] != "True":
            text += f", Ready={ready[0]} {ready[1]}: {quote_line(ready[2], 140)}"
        if cert.failed_issuance_attempts:
            text += f", {cert.failed_issuance_attempts} failed issuance attempt(s)"
        if issuer is not None:
            i_ready = issuer.conditions.get("Ready", ("", "", ""))
            if not issuer.exists:
                text += f"; its {issuer.kind} {issuer.name} does not exist"
            elif i_ready[0] != "True":
                text += (
                    f"; its {issuer.kind} {issuer.name} is not Ready ({i_ready[1]}: "
                    f"{quote_line(i_ready[2], 140)})"
                )
            ids.append(issuer_id(issuer.kind, issuer.name))
        texts.append(text)
        ids.append(certificate_id(cert.name))
    if not texts:
        return "", []
    text = "; ".join(texts[:2])
    return text, [Link(summary=text[:590] + ".", evidence=ids, category=Category.CERT_EXPIRED)]


_WEBHOOK_CERT = re.compile(r"x509:|certificate has expired|certificate signed by unknown", re.I)


#: An admission step that ran and refused the pods, by how to name it: a policy webhook
#: (Gatekeeper, Kyverno), the built-in PodSecurity admission (the namespace's
#: pod-security.kubernetes.io/enforce label), a ValidatingAdmissionPolicy, and the built-in
#: Priority and RuntimeClass admission, which refuse a template naming a class that does
#: not exist (deleted or renamed after the template was written).
_DENIALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "the validating admission webhook {}",
        re.compile(r'admission webhook "(?P<hook>[^"]+)" denied the request:\s*(?P<why>.+)', re.I),
    ),
    (
        "PodSecurity admission at level {} (the namespace's pod-security.kubernetes.io/enforce "
        "label)",
        re.compile(r'violates PodSecurity "(?P<hook>[^"]+)":\s*(?P<why>.+)', re.I),
    ),
    (
        "ValidatingAdmissionPolicy {}",
        re.compile(
            r"ValidatingAdmissionPolicy '(?P<hook>[^']+)'(?: with binding '[^']+')? denied "
            r"request:\s*(?P<why>.+)",
            re.I,
        ),
    ),
    (
        "Priority admission (the template's priorityClassName {} names no PriorityClass)",
        re.compile(r"(?P<why>no PriorityClass with name (?P<hook>[\w.-]+) was found)", re.I),
    ),
    (
        "RuntimeClass admission (the template's runtimeClassName {} names no RuntimeClass)",
        re.compile(r'(?P<why>RuntimeClass "(?P<hook>[^"]+)" not found)', re.I),
    ),
)


def _denial(message: str) -> tuple[str, str] | None:
    """(who denied, why) when ``message`` is an admission denial of the pods."""
    for name, pattern in _DENIALS:
        m = pattern.search(message)
        if m:
            return name.format(m.group("hook")), m.group("why").strip()
    return None


def _policy_denial(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A validating admission webhook (a policy engine: Gatekeeper, Kyverno) ran and denied
    the pods: the webhook works; the pod template breaks a policy of the cluster, so the
    template is what to fix (or the policy to amend)."""
    found: list[tuple[str, str, str | None]] = [
        (e.message, f"{e.object_kind} {e.object_name}", ev.event(e))
        for e in ctx.events
        if _denial(e.message)
    ]
    found += [
        (m, f"{w.kind} {w.name}", workload_id(w.kind, w.name))
        for w in [ctx.workload, *ctx.owners]
        if w is not None
        for (_, (_s, _r, m)) in w.conditions.items()
        if _denial(m)
    ]
    if not found:
        return None
    message, who, cite = found[0]
    denied = _denial(message)
    assert denied is not None
    hook, why = denied
    return Finding(
        Category.BAD_CONFIG,
        0.93,
        summary=f"{hook[0].upper() + hook[1:]} denies the pods of {who}: {quote_line(why, 160)}.",
        root_cause=(
            f"{who} cannot create its pods: {hook} runs and denies them "
            f"({quote_line(why, 260)}). The admission check works; the pod template breaks "
            "a policy of the cluster, so no new pod is admitted until the template complies."
        ),
        evidence=ev.cite(cite),
        impact=f"{workload_state(ctx)}; no new pod of it is created.",
        immediate_actions=[
            "Change the pod template to satisfy the policy named in the denial (or roll back "
            "the change that broke it); amend the policy only if it is wrong.",
        ],
        recommendations=[
            "Run the cluster's admission policies against rendered manifests in CI "
            "(gator test, kyverno apply) so a deploy cannot break one.",
        ],
        commands=[
            f"kubectl -n {namespace(ctx)} get events --field-selector reason=FailedCreate",
            "kubectl get constraints",
        ],
    )


def admission_webhook(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The API server cannot call an admission webhook (``failed calling webhook``), so with
    failurePolicy Fail it refuses the objects the webhook intercepts: a ReplicaSet cannot
    create its pods. The webhook's backend is the cause: its Service without ready endpoints,
    or its serving certificate expired (and why cert-manager did not renew it). A webhook that
    ran and denied the pods is a policy the template breaks (bad_config)."""
    denied = _policy_denial(ctx, ev)
    if denied is not None:
        return denied
    for w in ctx.webhooks:
        where = (
            f"Service {w.service_namespace}/{w.service_name}"
            if w.service_name
            else (w.url or "its URL")
        )
        config = f"{w.kind} {w.configuration}" if w.configuration else "its configuration"
        refused = next((e for e in ctx.events if f'webhook "{w.name}"' in e.message), None)
        common_ev = [webhook_id(w.name), ev.event(refused) if refused else None]
        down = bool(w.service_name) and (w.service_exists is False or w.ready_endpoints == 0)
        if not down and (_WEBHOOK_CERT.search(w.error) or w.ca_expired):
            chain, because = certificate_chain(ctx, webhook=w.name)
            return Finding(
                Category.CERT_EXPIRED,
                0.93,
                summary=(
                    f"Admission webhook {w.name} presents an expired or untrusted certificate, "
                    "so the API server refuses what it intercepts."
                ),
                root_cause=(
                    f"The API server cannot call admission webhook {w.name} ({config}, "
                    f"failurePolicy {w.failure_policy}) at {where}: TLS fails "
                    f"({quote_line(w.error, 200)})"
                    + (f"; the caBundle expired {w.ca_not_after}" if w.ca_expired else "")
                    + ", so every request it intercepts"
                    + (f" ({', '.join(w.rules[:2])})" if w.rules else "")
                    + " is refused"
                    + (f". {chain}" if chain else "")
                    + "."
                ),
                because=because,
                evidence=ev.cite(*common_ev, *[i for link in because for i in link.evidence]),
                impact=f"{workload_state(ctx)}; no pod the webhook intercepts can be created.",
                immediate_actions=[
                    f"Renew the webhook's serving certificate (and its caBundle) for {where}; "
                    "with cert-manager fix the Issuer named in the root cause, then `cmctl "
                    "renew` the Certificate.",
                    f"While it is broken, set failurePolicy Ignore on webhook {w.name} if "
                    "admission may be skipped safely.",
                ],
                recommendations=[
                    "Alert on webhook certificate expiry (cert-manager CertManagerCertExpirySoon) "
                    "and on apiserver_admission_webhook_rejection_count.",
                ],
                commands=[
                    f"kubectl get {w.kind.lower() or 'validatingwebhookconfiguration'} "
                    f"{w.configuration or ''} -o yaml".replace("  ", " "),
                    f"kubectl -n {w.service_namespace or namespace(ctx)} get "
                    "certificates.cert-manager.io",
                ],
            )
        if not down and w.blocked_by:
            policy = w.blocked_by[0].split(":")[0]
            ns = w.service_namespace or namespace(ctx)
            return Finding(
                Category.NETWORK_POLICY_BLOCK,
                0.92,
                summary=(
                    f"NetworkPolicy {ns}/{policy} drops the API server's calls to admission "
                    f"webhook {w.name}, so what it intercepts is refused."
                ),
                root_cause=(
                    f"The API server's calls to admission webhook {w.name} ({config}, "
                    f"failurePolicy {w.failure_policy}) at {where} time out "
                    f"({quote_line(w.error, 200)}) though the Service has {w.ready_endpoints} "
                    f"ready endpoint(s): NetworkPolicy {ns}/{policy} selects the webhook's pods "
                    "and admits ingress only from pods and namespaces it selects "
                    f"({'; '.join(b.split(': ', 1)[-1] for b in w.blocked_by[:2])}), and the "
                    "API server calls from the control plane's network, not from a pod, so "
                    "its packets are dropped; every request the webhook intercepts"
                    + (f" ({', '.join(w.rules[:2])})" if w.rules else "")
                    + " is refused."
                ),
                evidence=ev.cite(*common_ev, webhook_service_id(w.name)),
                impact=f"{workload_state(ctx)}; no pod the webhook intercepts can be created.",
                immediate_actions=[
                    f"Admit the API server to the webhook's port in NetworkPolicy {policy} "
                    "(an ipBlock of the control plane's addresses, or a rule without peers "
                    "on that port), or set failurePolicy Ignore on the webhook meanwhile.",
                ],
                recommendations=[
                    "Give every namespace that serves an admission webhook an explicit "
                    "ingress rule for the API server before a default-deny baseline lands.",
                ],
                commands=[
                    f"kubectl -n {ns} get networkpolicy {policy} -o yaml",
                    kc.endpoints(ns, w.service_name or ""),
                ],
            )
        if down:
            state = (
                "does not exist"
                if w.service_exists is False
                else f"has no ready endpoints ({w.not_ready_endpoints} not ready)"
                + (f": {w.backing}" if w.backing else "")
            )
            return Finding(
                Category.DEPENDENCY_UNREACHABLE,
                0.93,
                summary=(
                    f"Admission webhook {w.name} is down: {where} {state}, so the API server "
                    "refuses what it intercepts."
                ),
                root_cause=(
                    f"The API server cannot call admission webhook {w.name} ({config}, "
                    f"failurePolicy {w.failure_policy}): its {where} {state} — "
                    f"{quote_line(w.error, 200)}; every request it intercepts"
                    + (f" ({', '.join(w.rules[:2])})" if w.rules else "")
                    + " is refused, so the controllers cannot create their pods."
                ),
                evidence=ev.cite(*common_ev, webhook_service_id(w.name)),
                impact=f"{workload_state(ctx)}; no pod the webhook intercepts can be created.",
                immediate_actions=[
                    f"Bring the webhook's backend back ({where}: scale its Deployment up, fix "
                    "its pods), or set failurePolicy Ignore on it until it runs.",
                ],
                recommendations=[
                    "Run webhook backends with 2+ replicas and a PodDisruptionBudget, and scope "
                    "them with a namespaceSelector that excludes their own namespace.",
                ],
                commands=[
                    kc.endpoints(w.service_namespace or namespace(ctx), w.service_name or ""),
                    f"kubectl -n {w.service_namespace} get pods -o wide",
                    f"kubectl get {w.kind.lower() or 'validatingwebhookconfiguration'} "
                    f"{w.configuration} -o yaml",
                ],
            )
    return None


# --- RBAC ---------------------------------------------------------------------------------------

_FORBIDDEN = re.compile(
    r"forbidden: User \\?\"(?P<user>system:serviceaccount:(?P<ns>[\w.-]+):(?P<sa>[\w.-]+)|[^\"\\]+)"
    r"\\?\" cannot (?P<verb>\w+) resource \\?\"(?P<res>[\w./-]+)\\?\""
    r"(?: in API group \\?\"(?P<group>[\w.]*)\\?\")?"
    r"(?: in the namespace \\?\"(?P<where>[\w.-]+)\\?\"| at the cluster scope)?",
    re.IGNORECASE,
)


def _binding_kind(b: RoleBindingSnapshot) -> str:
    return "RoleBinding" if b.namespace else "ClusterRoleBinding"


def _near_miss(
    ctx: Context, verb: str, resource: str, group: str, sa_ns: str | None, sa: str | None
) -> tuple[str, list[str]] | None:
    """The binding one step from working: it grants exactly what was refused, but binds another
    subject (a renamed ServiceAccount, a dropped subject), or its role is gone."""
    if not sa:
        return None
    me = f"ServiceAccount {sa_ns}/{sa}"
    for b in ctx.role_bindings:
        if not b.role_exists and me in b.subjects:
            return (
                f"{_binding_kind(b)} {b.name} binds {me} to {b.role_kind} {b.role_name}, "
                "which does not exist",
                [role_binding_id(b.name)],
            )
    for b in ctx.role_bindings:
        if me in b.subjects or not grants(b, verb, resource, group):
            continue
        others = [s.split("/", 1)[-1] for s in b.subjects if s.startswith("ServiceAccount ")]
        text = (
            f"{_binding_kind(b)} {b.name} grants {verb} {resource} through {b.role_kind} "
            f"{b.role_name}, but binds {', '.join(b.subjects) or 'nobody'}, not {me}"
        )
        if others and sa not in others:
            text += (
                f"; the pod runs as ServiceAccount {sa} where ServiceAccount {others[0]} was "
                "meant (set serviceAccountName, or add the subject)"
            )
        return text, [role_binding_id(b.name)]
    mine = [b for b in ctx.role_bindings if me in b.subjects and b.role_exists]
    if mine:
        # bound, but to roles that lack this: the role to extend
        roles = ", ".join(
            f"{b.role_kind} {b.role_name} ({_binding_kind(b)} {b.name})" for b in mine[:3]
        )
        return (
            f"{me} is bound to {roles}, which grant{'s' if len(mine) == 1 else ''} other "
            f"things but not {verb} {resource}: add it to {mine[0].role_kind} "
            f"{mine[0].role_name}",
            [role_binding_id(b.name) for b in mine[:3]],
        )
    return None


_NO_SERVICE_ACCOUNT = re.compile(
    r'(?:error looking up service account [\w.-]+/([\w.-]+)|serviceaccount "([\w.-]+)" not found)'
)
"""The pod's ServiceAccount is gone: admission refuses every pod that names it."""


def _missing_service_account(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    refused = [e for e in ctx.events if _NO_SERVICE_ACCOUNT.search(e.message)]
    if not refused:
        return None
    m = _NO_SERVICE_ACCOUNT.search(refused[0].message)
    assert m is not None
    sa = m.group(1) or m.group(2)
    ns = refused[0].object_namespace or namespace(ctx)
    who = f"{refused[0].object_kind} {refused[0].object_name}"
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.9,
        summary=f"ServiceAccount {sa} does not exist, so {who} cannot create its pods.",
        root_cause=(
            f"{who} cannot create pods: their ServiceAccount {ns}/{sa} does not exist, and the "
            f"API server refuses every pod that names it ({quote_line(refused[0].message, 200)})."
        ),
        evidence=ev.cite(*[ev.event(e) for e in refused[:2]]),
        impact=f"{workload_state(ctx)}; no pod of it runs until the ServiceAccount exists.",
        immediate_actions=[
            f"Recreate ServiceAccount {sa} in {ns} with its RoleBindings (from the chart that "
            "owns it), or point serviceAccountName at the account that replaced it.",
        ],
        recommendations=["Ship the ServiceAccount with the workload that uses it."],
        commands=[
            f"kubectl -n {ns} get serviceaccounts",
            f"kubectl -n {ns} get rolebindings -o wide",
        ],
    )


_TOKEN_WORDS = re.compile(r"token|credential", re.I)


def credential_not_refreshed(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """An outside API refuses the credential a pod sends (401, an expired or invalid token),
    and the CronJob that should rewrite the Secret holding it no longer succeeds (suspended,
    or its recent Jobs fail): the token aged past its lifetime in the Secret. The refresher's
    own failure is the cause of the cause; a refresher whose ServiceAccount may not write the
    Secret (``forbidden ... cannot patch resource "secrets"``) names the Role to fix."""
    stale = [
        s for s in ctx.credential_refreshers if s.refresher.suspended or s.refresher.failed_jobs
    ]
    if not stale:
        return None
    users = {p.name for p in ctx.pods if any(x.secret in p.secrets for x in stale)}
    hits = [h for h in grep(ctx, ev, TOKEN_REFUSED) if h.log.pod in users]
    if not hits:
        return None
    s = stale[0]
    r = s.refresher
    alerted = target_pod(ctx)
    # the alerted pod's words first, and among them the line that says why (the token) over
    # a bare status code
    hits.sort(
        key=lambda h: (
            alerted is not None and h.log.pod == alerted.name,
            bool(_TOKEN_WORDS.search(h.line)),
        )
    )
    who = hits[-1].log.pod
    forbidden = _FORBIDDEN.search(s.failure or "")
    if r.suspended:
        why = f"CronJob {r.name} is suspended"
    elif forbidden:
        sa = forbidden.group("sa") or forbidden.group("user")
        why = (
            f"the Jobs of CronJob {r.name} fail: its ServiceAccount {sa} may not "
            f"{forbidden.group('verb')} {forbidden.group('res')}"
            + (f" in {forbidden.group('where')}" if forbidden.group("where") else "")
            + f" ({quote_line(s.failure or '', 200)}), so its Role no longer lets it write "
            f"Secret {s.secret}"
        )
    else:
        why = f"the Jobs of CronJob {r.name} fail" + (
            f" ({quote_line(s.failure, 200)})" if s.failure else ""
        )
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.88,
        summary=(
            f"{who} is refused by the API it calls because the token in Secret {s.secret} is "
            f"stale: {why.split(':')[0]}."
        ),
        root_cause=(
            f"{who} fails because the API it calls refuses its credential "
            f"({quote_line(hits[-1].line, 200)}); the credential comes from Secret {s.secret}, "
            f"which CronJob {r.name} ({r.schedule}) rewrites, last successfully "
            f"{r.last_success or 'never'}, and {why}."
        ),
        evidence=ev.cite(refresher_id(s.secret, r.name), *cite_hits(hits), ALERT_ID),
        impact=f"{workload_state(ctx)}; every call with the stale token fails until it is renewed.",
        immediate_actions=[
            (
                f"Resume CronJob {r.name} (kubectl patch cronjob {r.name} -p "
                '\'{"spec":{"suspend":false}}\')'
                if r.suspended
                else f"Fix what the Jobs of CronJob {r.name} fail on"
                + (
                    f": grant its ServiceAccount '{forbidden.group('verb')}' on "
                    f"{forbidden.group('res')} (Secret {s.secret}) in its Role"
                    if forbidden
                    else ""
                )
            )
            + f", then run it once now: kubectl create job --from=cronjob/{r.name} "
            f"{r.name}-manual.",
            f"Restart the pods that read Secret {s.secret} once it holds a fresh token.",
        ],
        recommendations=[
            "Alert when a credential refresher's last success is older than half the token's "
            "lifetime (kube_cronjob_status_last_successful_time).",
        ],
        commands=[
            f"kubectl -n {s.namespace} get cronjob {r.name} -o wide",
            f"kubectl -n {s.namespace} get jobs --sort-by=.metadata.creationTimestamp",
            *([f"kubectl -n {s.namespace} logs {s.failure_pod}"] if s.failure_pod else []),
        ],
    )


def rbac_forbidden(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The API server answers 403: the pod's service account lacks a Role(Binding)."""
    missing = _missing_service_account(ctx, ev)
    if missing is not None:
        return missing
    hits = grep(ctx, ev, _FORBIDDEN)
    forbidden_events = [e for e in ctx.events if _FORBIDDEN.search(e.message)]
    if not hits and not forbidden_events:
        return None
    m = hits[-1].match if hits else _FORBIDDEN.search(forbidden_events[0].message)
    assert m is not None
    user = m.group("user")
    verb, res = m.group("verb"), m.group("res")
    group = m.group("group") or ""
    where = m.group("where")
    sa_ns, sa = m.group("ns"), m.group("sa")
    scope = f"in namespace {where}" if where else "at the cluster scope"
    who = f"ServiceAccount {sa_ns}/{sa}" if sa else f"User {user}"
    resource = f"{res}.{group}" if group else res
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    role = f"{sa or 'app'}-{res.split('/')[0].replace('.', '-')}-{verb}"
    cmds = [
        kc.auth_can_i(verb, resource, where, user),
        f"kubectl -n {where or sa_ns or namespace(ctx)} get rolebindings -o wide",
    ]
    if where and sa:
        cmds.append(f"kubectl -n {where} create role {role} --verb={verb} --resource={resource}")
        cmds.append(
            f"kubectl -n {where} create rolebinding {role} --role={role} "
            f"--serviceaccount={sa_ns}:{sa}"
        )
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
    near = _near_miss(ctx, verb, res.split("/")[0], group, sa_ns, sa)
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.92,
        summary=f"{who} is not allowed to {verb} {resource} {scope}.",
        root_cause=(
            f"The Kubernetes API refuses requests of {who} (used by "
            f"{pod.name if pod else ctx.target.display}): it may not {verb} {resource} {scope}, "
            f"{quote_line(hits[-1].line if hits else forbidden_events[0].message, 220)}; no "
            "Role/ClusterRole bound to it grants this" + (f": {near[0]}" if near else "") + "."
        ),
        evidence=ev.cite(
            *cite_hits(hits),
            *[ev.event(e) for e in forbidden_events[:2]],
            *(pod_cites(ev, pod, c) if pod else []),
            *(near[1] if near else []),
        ),
        impact=f"{workload_state(ctx)}; the feature that needs {resource} does not work.",
        immediate_actions=[
            f"Grant {who} '{verb}' on {resource} {scope} with a Role and RoleBinding "
            f"(ClusterRole/ClusterRoleBinding for the cluster scope), or restore the binding "
            "that was removed.",
        ],
        recommendations=[
            "Ship the Role/RoleBinding in the same chart as the workload; test with "
            "`kubectl auth can-i --as` in CI.",
        ],
        commands=cmds,
    )


# --- an outside authority refuses the pod's identity --------------------------------------------

#: An authority's refusal of the identity a pod logs in with (its ServiceAccount token),
#: by authority: Vault's Kubernetes auth, AWS IRSA (STS web identity), GKE Workload Identity,
#: Azure Workload Identity.
_IDENTITY_REFUSED: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "Vault",
        re.compile(
            r"service account (?:name|namespace) not authorized|namespace not authorized"
            r"|\binvalid role name\b|login unauthorized",
            re.I,
        ),
    ),
    (
        "AWS STS",
        re.compile(
            r"sts:AssumeRoleWithWebIdentity|WebIdentityErr|InvalidIdentityToken"
            r"|AssumeRoleWithWebIdentity.*AccessDenied",
            re.I,
        ),
    ),
    (
        "Google IAM",
        re.compile(r"iam\.serviceAccounts\.getAccessToken'? denied|workloadIdentityUser", re.I),
    ),
    ("Azure AD", re.compile(r"AADSTS70021|No matching federated identity record", re.I)),
)
#: A Vault login request (``PUT .../v1/auth/kubernetes/login``) in a log.
_VAULT_LOGIN = re.compile(r"/v1/auth/(?P<mount>[\w./-]+?)/login\b", re.I)
#: Vault's answer to it when it refuses, within a few lines of the request.
_VAULT_DENIED = re.compile(r"Code: 40[03]\b|permission denied", re.I)
#: Lines after a Vault login request searched for its answer.
_VAULT_ANSWER_LINES = 8


def _vault_login_denied(ctx: Context, ev: EvidenceIndex) -> list[Hit]:
    """The log lines where Vault answers a Kubernetes-auth login with 403: Vault's multi-line
    error names the login URL, then ``Code: 403`` and ``permission denied``."""
    hits: list[Hit] = []
    for log in sorted(ctx.logs, key=lambda lg: not lg.previous):
        for i, line in enumerate(log.lines):
            if not _VAULT_LOGIN.search(line):
                continue
            for j in range(i, min(i + _VAULT_ANSWER_LINES, len(log.lines))):
                m = _VAULT_DENIED.search(log.lines[j])
                if m:
                    hits.append(Hit(log, j + 1, log.lines[j].strip(), m, ev.line(log, j + 1)))
                    break
    return hits


def _logging_identity(
    ctx: Context, hit: Hit
) -> tuple[PodSnapshot | None, ContainerSnapshot | None, str, str, str]:
    """The pod and container whose log line ``hit`` is, how to name them, and the
    ServiceAccount (and namespace) they run as: the identity an authority refused."""
    pod = next((p for p in ctx.pods if p.name == hit.log.pod), None) or target_pod(ctx)
    c = pod.container(hit.log.container) if pod else None
    where = (
        f"container {c.name} of pod {pod.name}"
        if pod and c
        else (pod.name if pod else ctx.target.display)
    )
    sa = (pod.service_account if pod else None) or "default"
    return pod, c, where, sa, pod.namespace if pod else namespace(ctx)


def _unbound_token_reviewer(ctx: Context) -> RoleBindingSnapshot | None:
    """A binding of system:auth-delegator every ServiceAccount of which is gone: no
    account it names can create tokenreviews, Vault's own included."""
    for b in ctx.role_bindings:
        accounts = [s for s in b.subjects if s.startswith("ServiceAccount ")]
        if b.role_name == AUTH_DELEGATOR and accounts and set(accounts) <= set(b.missing_subjects):
            return b
    return None


def _token_review_refused(
    ctx: Context,
    ev: EvidenceIndex,
    binding: RoleBindingSnapshot,
    hits: list[Hit],
    pod: PodSnapshot | None,
    c: ContainerSnapshot | None,
    where: str,
    who: str,
) -> Finding:
    """Vault refuses the login because it cannot review the pod's token: the
    system:auth-delegator binding names a ServiceAccount that no longer exists."""
    gone = ", ".join(binding.missing_subjects)
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.9,
        summary=(
            f"Vault refuses every Kubernetes-auth login: ClusterRoleBinding {binding.name} "
            f"grants {AUTH_DELEGATOR} only to {gone}, which does not exist."
        ),
        root_cause=(
            f"{where[0].upper() + where[1:]} logs in to Vault with the pod's {who}, and Vault "
            f"refuses it ({quote_line(hits[-1].line, 160)}) because it cannot verify the token: "
            f"Vault checks each login with a TokenReview (create tokenreviews, granted by "
            f"ClusterRole {AUTH_DELEGATOR}) made as its own ServiceAccount, and "
            f"ClusterRoleBinding {binding.name} grants that role only to {gone}, which does "
            "not exist (Vault moved or its account was renamed)."
        ),
        evidence=ev.cite(
            role_binding_id(binding.name),
            *cite_hits(hits),
            *(pod_cites(ev, pod, c) if pod else []),
        ),
        impact=(
            f"{workload_state(ctx)}; no pod can log in to Vault through Kubernetes auth, so "
            "none gets the secrets Vault hands out."
        ),
        immediate_actions=[
            f"Add the ServiceAccount the Vault server runs as to the subjects of "
            f"ClusterRoleBinding {binding.name} (or bind it to {AUTH_DELEGATOR} anew); the "
            "next login attempt succeeds without restarting the pods.",
        ],
        recommendations=[
            "Install Vault's auth-delegator binding with Vault itself (its Helm chart's "
            "server.authDelegator), so moving or renaming Vault moves the binding too.",
        ],
        commands=[
            f"kubectl get clusterrolebinding {binding.name} -o yaml",
            "kubectl get serviceaccounts -A | grep vault",
            *(pod_commands(ctx, pod, c) if pod else []),
        ],
    )


#: An AWS API refusing the caller: S3's ``AccessDenied``, IAM's "is not authorized to perform".
_AWS_DENIED = re.compile(
    r"\bAccessDenied(?:Exception)?\b|is not authorized to perform|UnauthorizedOperation", re.I
)


def _aws_role(ctx: Context, hit: Hit) -> str | None:
    """The IAM role (IRSA: the ``AWS_ROLE_ARN`` the EKS webhook injects) of the container
    that logged ``hit``."""
    pod = next((p for p in ctx.pods if p.name == hit.log.pod), None)
    c = pod.container(hit.log.container) if pod else None
    return (c.env.get("AWS_ROLE_ARN") or None) if c else None


def _aws_role_refused(ctx: Context, ev: EvidenceIndex) -> list[Hit]:
    """An AWS API refusing a container that runs as an IAM role through its ServiceAccount
    (IRSA): the role lacks the permission, so the pod's identity is refused."""
    return [h for h in grep(ctx, ev, _AWS_DENIED) if _aws_role(ctx, h)]


def identity_refused(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """An authority outside the cluster (Vault, AWS STS, Google IAM, Azure AD) refuses the
    identity the pod logs in with, its ServiceAccount: the role or trust policy there does not
    allow this ServiceAccount (renamed, moved, never added), or the authority cannot verify
    the token (Vault's own ServiceAccount may not create tokenreviews)."""
    authority, hits = "", []
    for name, pattern in _IDENTITY_REFUSED:
        hits = grep(ctx, ev, pattern)
        if hits:
            authority = name
            break
    if not hits:
        hits = _vault_login_denied(ctx, ev)
        authority = "Vault" if hits else ""
    if not hits:
        hits = _aws_role_refused(ctx, ev)
        authority = "AWS IAM" if hits else ""
    if not hits:
        return None
    pod, c, where, sa, ns = _logging_identity(ctx, hits[-1])
    who = f"ServiceAccount {ns}/{sa}"
    role = pod.identity.get("vault.hashicorp.com/role") if pod else None
    change = next(
        (
            (r, ch)
            for r in sorted(
                ctx.workload.revisions if ctx.workload else [], key=lambda r: -(r.revision or 0)
            )[:1]
            for ch in r.changes
            if ch.startswith("serviceAccountName:")
        ),
        None,
    )
    changed = (
        f" Revision {change[0].revision} ({change[0].name}) changed {change[1]}: the "
        f"{authority} side still allows only the ServiceAccount it was set up for."
        if change
        else ""
    )
    reviewer = _unbound_token_reviewer(ctx) if authority == "Vault" else None
    if reviewer is not None:
        return _token_review_refused(ctx, ev, reviewer, hits, pod, c, where, who)
    if authority == "Vault":
        fix = (
            f"Allow {who} in Vault role {role or '<the role>'} (vault read "
            f"auth/kubernetes/role/{role or '<role>'}: bound_service_account_names and "
            "bound_service_account_namespaces), or run the pods as the ServiceAccount the role "
            "allows. If Vault refuses every login, its own ServiceAccount may not create "
            "tokenreviews: bind it to the ClusterRole system:auth-delegator."
        )
    elif authority == "AWS STS":
        fix = (
            f"Add system:serviceaccount:{ns}:{sa} to the trust policy (sub condition) of the IAM "
            "role, or annotate the ServiceAccount with the role it may assume "
            "(eks.amazonaws.com/role-arn)."
        )
    elif authority == "AWS IAM":
        arn = _aws_role(ctx, hits[-1]) or "the pod's IAM role"
        fix = (
            f"Grant {arn} the action the log shows refused (its IAM policy, and the resource's "
            "own policy such as the bucket policy or KMS key policy), or point the "
            "ServiceAccount's eks.amazonaws.com/role-arn at the role that has it."
        )
    elif authority == "Google IAM":
        fix = (
            "Grant roles/iam.workloadIdentityUser on the Google service account to member "
            f"serviceAccount:<project>.svc.id.goog[{ns}/{sa}]."
        )
    else:
        fix = f"Add a federated identity credential for subject system:serviceaccount:{ns}:{sa}."
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.88,
        summary=f"{authority} refuses the identity of {where}: {who}.",
        root_cause=(
            f"{where[0].upper() + where[1:]} logs in to {authority} with the pod's {who}"
            + (f" (Vault role {role})" if role else "")
            + (f" (IAM role {_aws_role(ctx, hits[-1])})" if authority == "AWS IAM" else "")
            + f", and {authority} refuses it: {quote_line(hits[-1].line, 200)}.{changed}"
        ),
        evidence=ev.cite(
            *cite_hits(hits),
            *(pod_cites(ev, pod, c) if pod else []),
            *([revision_id(change[0].name)] if change else []),
        ),
        impact=(
            f"{workload_state(ctx)}; without the credentials {authority} hands out, the "
            "pods cannot start or reach what those credentials open."
        ),
        immediate_actions=[fix],
        recommendations=[
            "Change a workload's ServiceAccount together with the roles that trust it, in "
            "the same change.",
        ],
        commands=[
            f"kubectl -n {ns} get serviceaccount {sa} -o yaml",
            *(pod_commands(ctx, pod, c) if pod else []),
        ],
    )


# --- the Kubernetes API no longer accepts the pod's token ----------------------------------------

#: The Kubernetes API answering 401 to a client in a pod, in the wording of its clients: the
#: API's Status object, the Python client's ApiException, client-go, fabric8, kubectl.
_API_UNAUTHORIZED = re.compile(
    r'"reason":\s*"Unauthorized",\s*"code":\s*401|ApiException: \(401\)'
    r"|the server has asked for the client to provide credentials"
    r"|Failure executing: \w+ at: https://\S+/apis?/\S+\. Message: Unauthorized"
    r"|You must be logged in to the server \(Unauthorized\)"
    # client-go's reflector: ``failed to list *v1.Pod: Unauthorized``
    r"|\bfailed to (?:list|watch) \*?[\w./-]+: Unauthorized\b"
    r"|(?:kubernetes\.default|https://10\.96\.0\.1\b|/api/v1/)[^\n]*\b(?:401|Unauthorized)\b",
    re.I,
)


def api_token_rejected(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The Kubernetes API answers 401 Unauthorized to the pod's own client: the API server
    no longer accepts the token it sends. A 401 is authentication, not RBAC (that is a 403):
    a bound ServiceAccount token expires and the kubelet rotates the file, so a client that
    read it once at start sends an expired token; or the ServiceAccount was deleted and
    recreated, which invalidates the tokens of the pods that still run."""
    hits = grep(ctx, ev, _API_UNAUTHORIZED)
    if not hits:
        return None
    pod, c, where, sa, ns = _logging_identity(ctx, hits[-1])
    w = controller(ctx)
    legacy = _legacy_token_secret(pod)
    return Finding(
        Category.RBAC_FORBIDDEN,
        0.86,
        summary=(
            f"The Kubernetes API refuses the token of {where} (401 Unauthorized): "
            f"ServiceAccount {ns}/{sa}'s token is no longer valid"
            + (f" (it authenticates with the legacy token Secret {legacy})." if legacy else ".")
        ),
        root_cause=(
            f"The Kubernetes API answers 401 Unauthorized to {where}, which runs as "
            f"ServiceAccount {ns}/{sa}: {quote_line(hits[-1].line, 200)}. A 401 means the API "
            "server does not accept the token at all (RBAC would answer 403)"
            + (
                f". The pod turns the projected token off (automountServiceAccountToken: "
                f"false) and mounts Secret {legacy} instead: a legacy ServiceAccount token "
                "Secret, which the API server stops accepting when the legacy-token cleaner "
                "marks it invalid after a year unused (label "
                "kubernetes.io/legacy-token-invalid-since, Kubernetes 1.29+), or when its "
                "ServiceAccount is deleted and recreated."
                if legacy
                else ": the projected ServiceAccount token expires and the kubelet rotates "
                "the file, so a client that read it once at start keeps sending an expired "
                "token; or the ServiceAccount was deleted and recreated, which voids the "
                "tokens of the pods still running."
            )
        ),
        evidence=ev.cite(*cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])),
        impact=f"{workload_state(ctx)}; every call the pod makes to the Kubernetes API fails.",
        immediate_actions=[
            *(
                [
                    f"Use the projected token: drop the Secret {legacy} volume and set "
                    "automountServiceAccountToken: true (or mount a serviceAccountToken "
                    f"projection); to revive the Secret meanwhile, kubectl -n {ns} label "
                    f"secret {legacy} kubernetes.io/legacy-token-invalid-since-",
                ]
                if legacy
                else []
            ),
            "Restart the pods so they read a fresh token"
            + (f" (kubectl rollout restart {w.kind.lower()}/{w.name})" if w else "")
            + ".",
            "Make the program re-read its token file (/var/run/secrets/kubernetes.io/"
            "serviceaccount/token) on every request or when it changes: current Kubernetes "
            "client libraries do.",
        ],
        recommendations=[
            "Keep Kubernetes client libraries current: old ones read the token once and fail "
            "an hour later (BoundServiceAccountTokenVolume).",
        ],
        commands=[
            f"kubectl -n {ns} get serviceaccount {sa} -o yaml",
            *([f"kubectl -n {ns} get secret {legacy} --show-labels"] if legacy else []),
            *([kc.rollout_restart(w.kind, w.namespace, w.name)] if w else []),
            *(pod_commands(ctx, pod, c) if pod else []),
        ],
    )


def _legacy_token_secret(pod: PodSnapshot | None) -> str | None:
    """The Secret a pod authenticates to the Kubernetes API with, when it turns the projected
    ServiceAccount token off (automountServiceAccountToken: false) and mounts a Secret whose
    name says token: the legacy token Secret of its ServiceAccount."""
    if pod is None or pod.automount_token is not False:
        return None
    mounted = [
        src.removeprefix("Secret ")
        for src in pod.volume_sources.values()
        if src.startswith("Secret ")
    ]
    return next((name for name in mounted if "token" in name.lower()), None)


# --- a scrape sent to a port the pods do not serve ---------------------------------------------


def scrape_port_unserved(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Prometheus cannot scrape a Service whose pods run and are ready: the Service maps the
    scraped port to a numeric targetPort that no container of its pods declares (the exporter
    moved, the Service did not), so every scrape is refused."""
    if not is_scrape_alert(ctx.alert.name, alert_expression(ctx.alert.generator_url) or ""):
        return None
    svc = next((s for s in ctx.services if s.relation != "dependency" and s.unserved_ports), None)
    if svc is None or svc.ready_endpoints == 0:
        return None
    ports = ", ".join(svc.unserved_ports)
    return Finding(
        Category.BAD_CONFIG,
        0.86,
        summary=(
            f"Service {svc.namespace}/{svc.name} sends its scrapes to a port its pods do not "
            f"serve ({ports}): Prometheus' connections are refused."
        ),
        root_cause=(
            f"Prometheus scrapes Service {svc.namespace}/{svc.name}, whose port mapping {ports} "
            "names a targetPort that no container of its pods declares. Its "
            f"{svc.ready_endpoints} endpoints are ready and the application runs; the "
            "Service's targetPort is wrong (the exporter's port changed, the Service did not)."
        ),
        evidence=ev.cite(service_id(svc.name), ALERT_ID),
        impact=(
            f"No metrics from {svc.name}: its dashboards and every alert on its metrics are "
            "blind until the port is fixed."
        ),
        immediate_actions=[
            f"Set the targetPort of Service {svc.name} to the port the exporter listens on, "
            "or to the container port's name so that it follows the pod template.",
        ],
        recommendations=[
            "Use named targetPorts for metrics ports, so a port change in the pod template "
            "cannot break the scrape.",
        ],
        commands=[
            kc.describe("service", svc.namespace, svc.name),
            kc.endpoints(svc.namespace, svc.name),
        ],
    )


# --- a scrape that speaks plain HTTP to a TLS port -----------------------------------------

#: A Service port that names TLS: by the Kubernetes convention (``https``, ``https-metrics``,
#: ``metrics-tls``) or its appProtocol.
_TLS_PORT_NAME = re.compile(r"^(?:https|tls)(?:$|[-_])|[-_](?:https|tls)$", re.I)
#: A program saying it serves TLS: controller-runtime's metrics server (``"secure": true``),
#: kube-rbac-proxy and the Kubernetes components (``Serving securely on``), and Go's
#: net/http answering a plain-HTTP client on a TLS listener.
_SERVES_TLS = re.compile(
    r'Serving metrics server.*"secure"\s*:\s*true|Serving securely on'
    r"|first record does not look like a TLS handshake"
    r"|client sent an HTTP request to an HTTPS server",
    re.I,
)


def scrape_scheme_mismatch(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Prometheus scrapes a TLS port in plain HTTP: the ServiceMonitor's endpoint has no
    ``scheme: https`` while the port it scrapes serves TLS (named https/tls, appProtocol
    https, or the program logs a secure listener). The TLS server refuses every plain
    request, so the target is down while the program runs; typical after an operator
    upgrade that moved its metrics behind TLS (controller-runtime's secure metrics)."""
    if not is_scrape_alert(ctx.alert.name, alert_expression(ctx.alert.generator_url) or ""):
        return None
    path = next(
        (
            p
            for p in ctx.network_paths
            if p.kind == "scrape"
            and p.monitor
            and p.scheme != "https"
            and p.egress_allowed is not False
            and p.ingress_allowed is not False
        ),
        None,
    )
    if path is None:
        return None
    named = bool(_TLS_PORT_NAME.search(path.port_name or "")) or (
        (path.app_protocol or "").lower() in ("https", "tls")
    )
    logged = grep(ctx, ev, _SERVES_TLS)
    if not named and not logged:
        return None
    port = path.port_name or str(path.port or "?")
    why = (
        f"port {port}"
        + (f" (appProtocol {path.app_protocol})" if path.app_protocol else "")
        + (" serves TLS" if named else "")
        + (
            (" and " if named else " serves TLS: ") + quote_line(logged[-1].line, 160)
            if logged
            else ""
        )
    )
    return Finding(
        Category.BAD_CONFIG,
        0.87 if logged else 0.84,
        summary=(
            f"ServiceMonitor {path.monitor} scrapes port {port} of Service {path.service} in "
            f"plain HTTP (no scheme: https), but that port serves TLS: every scrape fails."
        ),
        root_cause=(
            f"ServiceMonitor {path.namespace}/{path.monitor} scrapes Service {path.service} on "
            f"port {port} with scheme {path.scheme}, and {why}. A TLS listener refuses a plain "
            "HTTP request, so Prometheus marks the target down while the program runs; the "
            "ServiceMonitor needs scheme: https and a tlsConfig (and, behind an authenticating "
            "proxy or controller-runtime's secure metrics, a bearerTokenFile and a "
            "ClusterRole that grants get on /metrics)."
        ),
        evidence=ev.cite(
            monitor_id(path.monitor or ""),
            path_id(path.destination),
            *cite_hits(logged[-1:]),
            ALERT_ID,
        ),
        impact=(
            f"No metrics from {path.service}: its dashboards and every alert on its metrics "
            "are blind until the scrape speaks TLS."
        ),
        immediate_actions=[
            f"Set scheme: https on the endpoint of ServiceMonitor {path.monitor} (port {port}) "
            "with tlsConfig (insecureSkipVerify: true, or the serving CA) and, where the metrics "
            "need authorization, bearerTokenFile: "
            "/var/run/secrets/kubernetes.io/serviceaccount/token.",
        ],
        recommendations=[
            "Ship the ServiceMonitor in the same chart or kustomization as the operator, so a "
            "change of the metrics endpoint changes both.",
        ],
        commands=[
            f"kubectl -n {path.namespace} get servicemonitor {path.monitor} -o yaml",
            kc.describe("service", path.namespace or "", path.service or ""),
        ],
    )


_PORT_NUMBER = re.compile(r"\d+")


def _scraped_ports(ctx: Context, svc: ServiceSnapshot | None) -> set[int]:
    """The ports Prometheus scrapes: the target Service's ports and targetPorts, and the port
    of the alert's ``instance`` (``10.94.5.10:10257``)."""
    ports: set[int] = set()
    for mapping in svc.ports if svc else []:
        ports |= {
            int(n) for n in _PORT_NUMBER.findall(mapping.replace("/TCP", "").replace("/UDP", ""))
        }
    instance = ctx.alert.labels.get("instance", "")
    if ":" in instance and instance.rsplit(":", 1)[1].isdigit():
        ports.add(int(instance.rsplit(":", 1)[1]))
    return ports


def scrape_on_loopback(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """Prometheus cannot scrape a target whose program runs but listens on the loopback
    address only (kubeadm runs kube-controller-manager and kube-scheduler with
    ``--bind-address=127.0.0.1``; an exporter started with ``--listen 127.0.0.1:9100``): the
    scrape of the pod's or node's address is refused, however healthy the program is."""
    if not is_scrape_alert(ctx.alert.name, alert_expression(ctx.alert.generator_url) or ""):
        return None
    svc = next((s for s in ctx.services if s.relation != "dependency"), None)
    ports = _scraped_ports(ctx, svc)
    for pod in ctx.pods:
        if svc is not None and svc.matching_pods and pod.name not in svc.matching_pods:
            continue
        for c in pod.containers:
            if c.init or c.state != "running":
                continue
            bound = loopback_binding(ctx, ev, pod, c, ports)
            if bound is None:
                continue
            said, cited = bound
            where = f"Service {svc.namespace}/{svc.name}" if svc else f"pod {pod.name}"
            return Finding(
                Category.BAD_CONFIG,
                0.86,
                summary=(
                    f"Container {c.name} of pod {pod.name} listens on the loopback address "
                    f"only, so Prometheus' scrapes of {where} are refused."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.namespace}/{pod.name} runs but binds its "
                    f"server to the loopback address: {said}. Prometheus scrapes the pod's (or "
                    f"node's) address on port {', '.join(map(str, sorted(ports)))}, where "
                    "nothing listens, so every scrape is refused."
                ),
                evidence=ev.cite(
                    cited, *pod_cites(ev, pod, c), service_id(svc.name) if svc else None, ALERT_ID
                ),
                impact=(
                    f"No metrics from {pod.name}: its dashboards and every alert on its "
                    "metrics are blind, though the program itself works."
                ),
                immediate_actions=[
                    f"Bind container {c.name} to 0.0.0.0 or the pod/node address (for a kubeadm "
                    "static pod: --bind-address=0.0.0.0 in its manifest under "
                    "/etc/kubernetes/manifests, or in the ClusterConfiguration's extraArgs), "
                    "or stop scraping it there.",
                ],
                recommendations=[
                    "When kube-prometheus-stack scrapes control-plane components, set their "
                    "bind addresses in the kubeadm ClusterConfiguration so a rebuild keeps them.",
                ],
                commands=[
                    kc.describe("pod", pod.namespace, pod.name),
                    *([kc.endpoints(svc.namespace, svc.name)] if svc is not None else []),
                ],
            )
    return None


# --- a dial of the pod's own loopback that no sibling answers ------------------------------------

#: A refused connection to a loopback address and port: ``ECONNREFUSED ::1:5432``, ``dial tcp
#: [::1]:6379: connect: connection refused``, psycopg's ``at "localhost" (::1), port 5432``.
_LOOPBACK_DIAL = re.compile(
    r"(?P<host>127\.0\.0\.1|::1|localhost)\]?\)?(?::|,? port )(?P<port>\d{2,5})\b", re.I
)
#: A server saying where it listens: ``Listening on 127.0.0.1:5432``, ``bound to [::1]:6379``.
_LISTENS = re.compile(
    r"(?:listen\w*|serving|bound|bind\w*|accepting)\b[^\n]{0,40}?"
    r"(?P<host>127\.0\.0\.1|0\.0\.0\.0|::1|::|localhost|\*)\]?:(?P<port>\d{2,5})\b",
    re.I,
)


def _family(host: str) -> str:
    return "IPv6" if ":" in host else "IPv4"


def _answers(listen_host: str, dial_host: str) -> bool:
    """Whether a server listening on ``listen_host`` accepts a connection to ``dial_host``
    (a wildcard listens on its family; ``::`` on both, Linux' dual-stack default)."""
    if listen_host in ("::", "*"):
        return True
    if listen_host == "0.0.0.0":
        return dial_host == "127.0.0.1"
    return listen_host == dial_host


def loopback_unserved(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The program dials a sidecar over the pod's loopback and is refused, while the sidecar
    logs that it listens there on another address family (127.0.0.1 against ``::1``:
    ``localhost`` resolves to IPv6 first in Node.js 17+, glibc with ``::1 localhost`` first)
    or on another port. Both containers run; the address the program is configured with is
    wrong for the listener it means."""
    for h in grep(ctx, ev, _CONN):
        dial = _LOOPBACK_DIAL.search(h.line)
        if dial is None or not re.search(r"refused|ECONNREFUSED", h.line, re.I):
            continue
        host, port = dial.group("host").lower(), int(dial.group("port"))
        if host == "localhost":
            continue  # the resolved address is not said: the family cannot be told
        pod = next((p for p in ctx.pods if p.name == h.log.pod), None)
        if pod is None:
            continue
        siblings = [c.name for c in pod.containers if c.name != h.log.container]
        heard = [
            (g, m)
            for g in grep(ctx, ev, _LISTENS, pods=[pod.name], skip_noise=False)
            if g.log.container in siblings
            for m in [_LISTENS.search(g.line)]
            if m
        ]
        if not heard or any(
            int(m.group("port")) == port and _answers(m.group("host").lower(), host)
            for _, m in heard
        ):
            continue
        same_port = [(g, m) for g, m in heard if int(m.group("port")) == port]
        g, m = (same_port or heard)[0]
        listener = f"{m.group('host')}:{m.group('port')}"
        sidecar = g.log.container
        c = pod.container(h.log.container)
        setting = next(
            (
                f"{k}={v}"
                for k, v in {**(c.config_env if c else {}), **(c.env if c else {})}.items()
                if v.strip("[]") in ("localhost", host) or v.startswith(("localhost:", f"{host}:"))
            ),
            "",
        )
        why = (
            f"the program dials {_family(host)} {host} (localhost resolves to {host} first"
            f"{', set by ' + setting if setting else ''}) and the sidecar listens on "
            f"{_family(m.group('host'))} only"
            if same_port
            else f"the program dials port {port}"
            + (f" ({setting})" if setting else "")
            + f" and the sidecar listens on port {m.group('port')}"
        )
        return Finding(
            Category.BAD_CONFIG,
            0.9,
            summary=(
                f"{h.log.container} in {pod.name} dials {host}:{port}, where container "
                f"{sidecar} does not listen ({listener})."
            ),
            root_cause=(
                f"Container {h.log.container} of pod {pod.namespace}/{pod.name} connects to its "
                f"sidecar {sidecar} over the pod's loopback and is refused "
                f"({quote_line(h.line, 160)}): {why} ({quote_line(g.line, 140)}). Both "
                "containers run; the address is wrong for the listener."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h]), *cite_hits([g])),
            impact=f"{workload_state(ctx)}; every connection through {sidecar} fails.",
            immediate_actions=[
                (
                    f"Point {setting.split('=')[0] if setting else 'the client'} at "
                    f"{m.group('host') if m.group('host') not in ('0.0.0.0', '::', '*') else host}"
                    f":{m.group('port')} (not {'localhost' if setting else host}), or make "
                    f"{sidecar} listen on both loopback addresses, then roll out again."
                ),
            ],
            recommendations=[
                "Name loopback addresses explicitly (127.0.0.1) between containers of a pod: "
                "what localhost resolves to changes with the base image and runtime version.",
            ],
            commands=[
                kc.logs(pod.namespace, pod.name, sidecar),
                *pod_commands(ctx, pod, c),
            ],
        )
    return None


# --- a load balancer's readiness gate -------------------------------------------------------------

_PROBE_PATH = re.compile(r"http GET (\S+)")


def readiness_gate_failing(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The pods' containers are ready, but a readiness gate that a load balancer's controller
    sets from its own health check of the pods stays False: the load balancer's health check
    (its path, port or success codes, written on the Ingress) fails where the kubelet's probe
    passes."""
    if not ctx.readiness_gates:
        return None
    g = ctx.readiness_gates[0]
    pod = next((p for p in ctx.pods if p.name == g.pod), None)
    if pod is None or not all(c.ready for c in pod.containers if not c.init):
        return None
    path = next((v for k, v in g.health_check.items() if k.endswith("healthcheck-path")), None)
    probe = next(
        (m.group(1) for c in pod.containers if c.readiness_probe
         for m in [_PROBE_PATH.search(c.readiness_probe)] if m),
        None,
    )  # fmt: skip
    differs = path is not None and probe is not None and path != probe
    check = ", ".join(f"{k}: {v}" for k, v in g.health_check.items()) or "its default check"
    return Finding(
        Category.FAILING_PROBE,
        0.87 if differs else 0.84,
        summary=(
            f"The load balancer of Ingress {g.ingress} fails its health check of {pod.name}: "
            f"readiness gate {g.gate} stays False although the containers are ready."
        ),
        root_cause=(
            f"Pod {pod.name}'s containers are ready, but its readiness gate {g.gate} is not "
            f"({g.reason or 'False'}: {quote_line(g.message, 120)}): the load balancer's "
            f"controller sets it from the load balancer's own health check, which Ingress "
            f"{g.ingress} configures ({check})"
            + (
                f". The load balancer checks {path} while the pods' readiness probe answers on "
                f"{probe}"
                if differs
                else ""
            )
            + "."
        ),
        evidence=ev.cite(lb_health_id(g.ingress), *pod_cites(ev, pod, None)),
        impact=(
            f"{workload_state(ctx)}; the load balancer sends no traffic to the new pods and a "
            "rollout waiting for them stops."
        ),
        immediate_actions=[
            f"Point the health check of Ingress {g.ingress} at an endpoint the pods serve"
            + (f" (alb.ingress.kubernetes.io/healthcheck-path: {probe})" if differs else "")
            + ", or restore the old endpoint in the application.",
        ],
        recommendations=[
            "Keep the load balancer's health-check path in the same chart as the readiness "
            "probe, from one value.",
        ],
        commands=[
            kc.describe("ingress", pod.namespace, g.ingress),
            f"kubectl -n {pod.namespace} get pod {pod.name} -o jsonpath='{{.status.conditions}}'",
        ],
    )


# --- a dependency outside the cluster does not answer ----------------------------------------


def external_dependency_unreachable(
    ctx: Context, ev: EvidenceIndex, _: RuleSettings
) -> Finding | None:
    """The pods' connections to a host outside the cluster (a managed broker or database, a
    third-party API), named by a URL in their environment, time out or are refused, while no
    egress policy keeps them in: the far end, or the network path to it (a cloud security
    group, a peering, a firewall), is what does not answer."""
    urls = _external_urls(ctx)
    if not urls:
        return None
    failed = [h for h in grep(ctx, ev, _CONN_FAILED) if is_error_line(h.line)]
    hits: list[Hit] = []
    target = None
    for host, (port, via) in urls.items():
        port_at = re.compile(rf":{port}(?!\d)")
        hits = [h for h in failed if host in h.line.lower() or port_at.search(h.line)]
        if hits:
            target = (host, port, via)
            break
    if target is None:
        return None
    host, port, via = target
    policies = [np for np in ctx.network_policies if _denies_egress(np)]
    if policies and not _external_timeouts_admitted(ctx, policies, hits, {host: port}):
        return None  # an egress policy may be what stops it: the policy rules judge that
    pod, c, where, _sa, ns = _logging_identity(ctx, hits[-1])
    # Below the pod's own causes (a probe that fails, a crash): a far end that does not
    # answer is inferred from the clients' side only, so it explains what nothing else does.
    return Finding(
        Category.DEPENDENCY_UNREACHABLE,
        0.72,
        summary=(
            f"{where} cannot reach {host}:{port}, a dependency outside the cluster: its "
            "connections time out or are refused."
        ),
        root_cause=(
            f"{where} connects to {host}:{port} ({via}), outside the cluster, and every "
            f"attempt fails: {quote_line(hits[-1].line, 200)}. "
            + (
                "The pod's egress policies admit that address and port, "
                if policies
                else "No NetworkPolicy restricts the pod's egress, "
            )
            + "so the far end, or the network path to it (a cloud security group, a "
            "peering or VPN, a firewall, an allow-list on the provider's side), does not "
            "answer."
        ),
        evidence=ev.cite(*cite_hits(hits), *(pod_cites(ev, pod, c) if pod else [])),
        impact=f"{workload_state(ctx)}; everything that needs {host} fails or waits.",
        immediate_actions=[
            f"Check {host}:{port} from inside the cluster (kubectl -n {ns} run nettest --rm -it "
            f"--image=busybox -- nc -zv -w 5 {host} {port}) and on the provider's status page.",
            "Check the path: the security group or firewall in front of it, the VPC peering or "
            "private endpoint, and the provider's allow-list of client addresses (the nodes' "
            "egress IPs).",
        ],
        recommendations=[
            "Alert on the dependency itself (a blackbox probe of its port) so its outage is "
            "named before the clients fail.",
        ],
        commands=[*(pod_commands(ctx, pod, c) if pod else [])] or [f"kubectl -n {ns} get pods"],
    )
