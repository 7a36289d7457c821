"""The kubelets' serving certificates behind a failing kubelet scrape.

A kubelet started with ``serverTLSBootstrap: true`` gets its serving certificate (port 10250)
from a CertificateSigningRequest with signer ``kubernetes.io/kubelet-serving``, and renews it
the same way before it expires. The controller manager never approves that signer: an approver
must (a person, or kubelet-csr-approver and the like). When none does, the CSRs stay pending,
the old certificate expires, and everything that scrapes the kubelet (Prometheus, metrics-
server) fails with ``x509: certificate has expired``, while the node stays Ready.

Reads, when the alert is about scraping the kubelet (TargetDown of job ``kubelet``,
KubeletDown) or a log line shows an x509 error toward port 10250: which kubelet targets are
down (``up == 0``, from Prometheus), and the kubelet-serving CSRs per node, pending or not.

Evidence: ``csr/<node>`` (a node's kubelet-serving CSRs: how many pending, since when, the
last one issued) and ``metric/kubelet_targets_down``.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.scrape_paths import KUBELET_PORT, SCRAPE_ALERTS
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, KubeletCSRs, MetricSnapshot

SIGNER = "kubernetes.io/kubelet-serving"
#: The signer of the kubelet's client certificate (how it authenticates to the API server).
#: kube-controller-manager approves a renewal only when the node may create it: the
#: ClusterRoleBinding of ``CLIENT_RENEWAL_ROLE`` to group system:nodes (kubeadm's
#: ``kubeadm:node-autoapprove-certificate-rotation``).
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_RENEWAL_ROLE = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
#: Alerts about client certificates expiring: the API server's view of the certificates its
#: clients present, and the kubelets' own.
CLIENT_CERT_ALERTS = (
    "KubeClientCertificateExpiration",
    "KubeletClientCertificateExpiration",
    "KubeletClientCertificateRenewalErrors",
)
_NODE_USER = "system:node:"

#: An x509 failure of a client of the kubelet's HTTPS port: Prometheus, metrics-server.
KUBELET_X509 = re.compile(rf":{KUBELET_PORT}\b[^\n]*x509:|x509:[^\n]*:{KUBELET_PORT}\b")

#: Nodes whose CSRs are kept, the most pending first.
MAX_NODES = 10


def csr_id(node: str, signer: str = SIGNER) -> str:
    """``csr/<node>``: a node's kubelet-serving CertificateSigningRequests;
    ``csr/<node>/client``: its kubelet-client ones."""
    return f"csr/{node}" if signer == SIGNER else f"csr/{node}/client"


def trigger(ctx: Context) -> bool:
    alert = ctx.alert
    if (
        alert.name == "KubeletDown"
        or alert.name in CLIENT_CERT_ALERTS
        or (alert.name in SCRAPE_ALERTS and alert.labels.get("job") == "kubelet")
    ):
        return True
    return any(KUBELET_X509.search(line) for lg in ctx.logs for line in lg.lines)


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    if not trigger(ctx):
        return
    if scope.metrics is not None:
        async with scope.guard("kubelet targets down"):
            query = 'up{job="kubelet"} == 0'
            values = await scope.metrics.query(query)
            if values:
                ctx.metrics.append(
                    MetricSnapshot(
                        name="kubelet_targets_down",
                        query=query,
                        values=values,
                        description="kubelet scrape targets down now",
                    )
                )
    async with scope.guard("certificatesigningrequests"):
        csrs = await scope.reader.list("CertificateSigningRequest", None)
        ctx.kubelet_csrs = node_csrs(csrs)
    if ctx.alert.name in CLIENT_CERT_ALERTS:
        async with scope.guard("clusterrolebindings"):
            bindings = await scope.reader.list("ClusterRoleBinding", None)
            ctx.client_renewal_bindings = [
                str(meta(b).get("name", ""))
                for b in bindings
                if (b.get("roleRef") or {}).get("name") == CLIENT_RENEWAL_ROLE
            ]


def requested_subject(request: str) -> str:
    """The common name a CSR asks for (``system:node:<node>``), from its PEM request; empty
    when it cannot be read. The API server sets ``spec.username`` to whoever created the CSR,
    which is the node for a kubelet's own; the subject says the node in any case."""
    try:
        csr = x509.load_pem_x509_csr(base64.b64decode(request))
    except (ValueError, binascii.Error):
        return ""
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def node_csrs(csrs: list[Obj]) -> list[KubeletCSRs]:
    """The kubelet-serving CSRs by node: pending (neither approved nor denied), the oldest
    pending one, and when the last issued one was created."""
    nodes: dict[str, KubeletCSRs] = {}
    for csr in csrs:
        spec = csr.get("spec") or {}
        user = str(spec.get("username", ""))
        if not user.startswith(_NODE_USER):
            user = requested_subject(str(spec.get("request", "")))
        signer = str(spec.get("signerName", ""))
        if signer not in (SIGNER, CLIENT_SIGNER) or not user.startswith(_NODE_USER):
            continue
        node = user.removeprefix(_NODE_USER)
        snap = nodes.setdefault(f"{node} {signer}", KubeletCSRs(node=node, signer=signer))
        created = str(meta(csr).get("creationTimestamp") or "")
        status = csr.get("status") or {}
        decided = {str(c.get("type")) for c in status.get("conditions") or []}
        if "Denied" in decided or "Failed" in decided:
            snap.denied += 1
        elif "Approved" in decided:
            if created > (snap.last_issued or ""):
                snap.last_issued = created
        else:
            snap.pending += 1
            snap.pending_names.append(str(meta(csr).get("name", "")))
            if not snap.oldest_pending or created < snap.oldest_pending:
                snap.oldest_pending = created
    ranked = sorted(nodes.values(), key=lambda s: (-s.pending, s.node, s.signer))
    return ranked[:MAX_NODES]


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for snap in ctx.kubelet_csrs:
        client = snap.signer == CLIENT_SIGNER
        text = (
            f"{snap.pending} {snap.signer} CSRs of node {snap.node} pending"
            + (
                f" (oldest created {snap.oldest_pending}: {', '.join(snap.pending_names[:3])})"
                if snap.pending
                else ""
            )
            + (f"; {snap.denied} denied" if snap.denied else "")
            + (
                f"; the last one approved was created {snap.last_issued}"
                if snap.last_issued
                else "; none approved"
            )
            + (
                ": the kubelet renews its client certificate only through an approved CSR, "
                "which kube-controller-manager approves when a ClusterRoleBinding grants "
                f"system:nodes {CLIENT_RENEWAL_ROLE}"
                if client
                else ": with serverTLSBootstrap the kubelet renews its serving certificate "
                "only through an approved CSR, and kube-controller-manager never approves "
                "this signer"
            )
        )
        out.add(
            Tier.NODE_BAD if snap.pending else Tier.BACKGROUND,
            csr_id(snap.node, snap.signer),
            EvidenceSource.NODE,
            f"node/{snap.node}",
            text,
        )


SOURCE = Source(
    "kubelet_certs",
    Stage.LEADS,
    read,
    evidence,
    resources=(
        "certificatesigningrequests.certificates.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
    ),
)
