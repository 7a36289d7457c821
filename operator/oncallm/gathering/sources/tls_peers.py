"""The server behind a refused TLS certificate, when it runs in the cluster.

A client's handshake fails on the certificate its peer presents ("x509: certificate has
expired", "invalid peer certificate: Expired"). When the peer is a Service of the cluster,
named in a cluster DNS form (``rates-api.lattice-rates.svc``) by the error or, when the error
names no server, by a TLS setting of the failing pod (``amqps://``, ``https://``, a TLS port),
this source reads the Service,
its pods (when the oldest started), the Secrets they mount and the cert-manager Certificates
that issue those Secrets. A Certificate renewed after the pods started, while the pods still
present the expired certificate, means the server never reloaded its key pair.

Reads nothing unless a log line shows a certificate error that names such a peer.

Evidence: ``tlspeer/<service.namespace>`` (the server's pods, start and Secrets); the
Certificates are ``certificate/<name>`` items, as ``custom_resources`` writes them.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import label_selector
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.custom_resources import CERT_MANAGER, certificate_snapshot
from oncallm.gathering.sources.dns import SERVICE_DNS
from oncallm.gathering.sources.pods import pod_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, TLSPeerSnapshot

#: Servers followed per analysis.
MAX_PEERS = 2
#: A TLS failure on the certificate the other side presents.
CERT_ERROR = re.compile(
    r"x509:|certificate has expired|certificate expired|invalid peer certificate"
    r"|CERT_HAS_EXPIRED|CertificateExpiredException|certificate verify failed"
    r"|PKIX path|SSLHandshakeException|unknown authority"
    # .NET's SslStream: "The remote certificate is invalid because of errors in the
    # certificate chain: NotTimeValid" (or UntrustedRoot, RemoteCertificateNameMismatch)
    r"|remote certificate is invalid|RemoteCertificate\w*Mismatch",
    re.IGNORECASE,
)


def tls_peer_id(destination: str) -> str:
    """``tlspeer/<service.namespace>``: a server of the cluster whose certificate fails."""
    return f"tlspeer/{destination}"


#: A setting that dials a server over TLS: a TLS scheme, or a port TLS servers listen on.
TLS_SETTING = re.compile(
    r"\b(?:https|amqps|rediss|wss|ldaps|grpcs|mqtts|ssl|tls)://"
    r"|\.svc(?:\.cluster\.local)?:(?:443|636|5671|6380|8443|8883|9093|9443)\b"
    # a connection string that turns TLS on: libpq's sslmode, Npgsql's SSL Mode, JDBC's
    # ssl/useSSL, Redis/Mongo tls=true
    r"|\bssl ?mode=(?:require|verify[-_ ]?(?:ca|full)|prefer)|\b(?:use)?ssl=true|\btls=true",
    re.IGNORECASE,
)


def peers(ctx: Context) -> list[tuple[str, str]]:
    """(namespace, Service) of the cluster's servers the logs' certificate errors name; when
    the errors name no server (a Node.js ``CERT_HAS_EXPIRED``, a Java handshake exception),
    the servers that the failing pods' settings dial over TLS."""
    found: list[tuple[str, str]] = []
    failing: set[str] = set()
    for log in ctx.logs:
        for line in log.lines[-200:]:
            if not CERT_ERROR.search(line):
                continue
            failing.add(log.pod)
            for m in SERVICE_DNS.finditer(line):
                if (m.group(2), m.group(1)) not in found:
                    found.append((m.group(2), m.group(1)))
    if not found and failing:
        for pod in ctx.pods:
            if pod.name not in failing:
                continue
            for c in pod.containers:
                for value in [*c.env.values(), *c.config_env.values()]:
                    if not TLS_SETTING.search(value):
                        continue
                    for m in SERVICE_DNS.finditer(value):
                        if (m.group(2), m.group(1)) not in found:
                            found.append((m.group(2), m.group(1)))
    return found[:MAX_PEERS]


async def read(scope: Scope) -> None:
    for ns, name in peers(scope.ctx):
        async with scope.guard(f"tls peer {name}.{ns}"):
            svc = await scope.get("Service", ns, name)
            selector = ((svc or {}).get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            raw = await scope.reader.list("Pod", ns, label_selector=label_selector(selector))
            pods = [pod_snapshot(p) for p in raw[:5]]
            secrets = sorted({s for p in pods for s in p.secrets})
            starts = [
                str(c.started_at) for p in pods for c in p.containers if not c.init and c.started_at
            ]
            peer = TLSPeerSnapshot(
                destination=f"{name}.{ns}",
                service=name,
                namespace=ns,
                selector={str(k): str(v) for k, v in selector.items()},
                pods=[p.name for p in pods],
                started_at=min(starts) if starts else None,
                secrets=secrets,
            )
            if secrets:
                known = {(c.namespace, c.name) for c in scope.ctx.certificates}
                for obj in await scope.reader.list("Certificate", ns, api_version=CERT_MANAGER):
                    cert = certificate_snapshot(obj)
                    if cert.secret_name not in secrets:
                        continue
                    peer.certificates.append(cert.name)
                    if (cert.namespace, cert.name) not in known:
                        cert.why = (
                            f"issues Secret {cert.secret_name} that the pods of Service "
                            f"{ns}/{name} serve"
                        )
                        scope.ctx.certificates.append(cert)
            scope.ctx.tls_peers.append(peer)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for peer in ctx.tls_peers:
        out.add(
            Tier.OBJECT_BAD,
            tls_peer_id(peer.destination),
            EvidenceSource.SERVICE,
            f"service/{peer.namespace}/{peer.service}",
            f"TLS server of the failing handshakes: pods {', '.join(peer.pods) or 'none'}"
            + (f", the oldest started {peer.started_at}" if peer.started_at else "")
            + f"; Secrets mounted {', '.join(peer.secrets) or 'none'}"
            + (
                f"; issued by Certificate {', '.join(peer.certificates)}"
                if peer.certificates
                else ""
            ),
            time=peer.started_at,
        )


SOURCE = Source(
    "tls_peers",
    Stage.LEADS,
    read,
    evidence,
    resources=("services", "pods", "certificates.cert-manager.io"),
)
