"""Custom resources in the causal path, read through API discovery: the ExternalSecrets that
render a Secret the pods use (pull Secrets included), the cert-manager Certificates whose
Secret the pods use (or Linkerd's identity issuer, when a proxy cannot get its identity) or
that a failing webhook's CA is injected from, their Issuers and
ClusterIssuers, and the Argo CD Application that manages the alerted workload.

A kind the cluster does not serve reads as absent (the readers answer None or ``[]``), so a
cluster without external-secrets, cert-manager or Argo CD gets no missing evidence from here.

Evidence: ``externalsecret/<name>``, ``certificate/<name>``, ``issuer/<Kind>/<name>`` and
``argocd/<name>``; those not Ready (or degraded, or failing to sync) among the broken objects.
"""

from __future__ import annotations

import re
from typing import Any

from oncallm.gathering.objects import Obj, conditions, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    ArgoApplicationSnapshot,
    CertificateSnapshot,
    Context,
    ExternalSecretSnapshot,
    IssuerSnapshot,
)

EXTERNAL_SECRETS = "external-secrets.io"
CERT_MANAGER = "cert-manager.io"
ARGO_CD = "argoproj.io"
#: Namespaces searched for ExternalSecrets and Certificates, and Applications kept.
MAX_NAMESPACES = 3
MAX_APPLICATIONS = 2


def external_secret_id(name: str) -> str:
    """``externalsecret/<name>``: an ExternalSecret that renders a Secret the pods use."""
    return f"externalsecret/{name}"


def certificate_id(name: str) -> str:
    """``certificate/<name>``: a cert-manager Certificate in the causal path."""
    return f"certificate/{name}"


def issuer_id(kind: str, name: str) -> str:
    """``issuer/<Issuer|ClusterIssuer>/<name>``: the issuer of a gathered Certificate."""
    return f"issuer/{kind}/{name}"


def application_id(name: str) -> str:
    """``argocd/<name>``: the Argo CD Application that manages the alerted workload."""
    return f"argocd/{name}"


#: A Linkerd proxy that cannot get its workload certificate from the identity service, and
#: the identity service's address, which names Linkerd's namespace.
LINKERD_NO_IDENTITY = re.compile(
    r"Failed to obtain identity|issuer certificate is invalid|Waiting for identity", re.IGNORECASE
)
LINKERD_IDENTITY_ADDRESS = re.compile(r"linkerd-identity(?:-headless)?\.([a-z0-9-]+)\.svc")
#: The Secret holding Linkerd's identity issuer (its intermediate CA), as its charts name it.
LINKERD_ISSUER_SECRET = "linkerd-identity-issuer"


def linkerd_issuer(ctx: Context) -> tuple[str, str] | None:
    """(namespace, Secret) of Linkerd's identity issuer, when a proxy logs that it cannot get
    its identity: the issuer signs every proxy's certificate, so its Certificate (and that
    Certificate's Issuer, the trust anchor) is in the causal path."""
    lines = [line for lg in ctx.logs for line in lg.lines]
    if not any(LINKERD_NO_IDENTITY.search(line) for line in lines):
        return None
    namespace = next(
        (m.group(1) for line in lines for m in [LINKERD_IDENTITY_ADDRESS.search(line)] if m),
        "linkerd",
    )
    return namespace, LINKERD_ISSUER_SECRET


def used_secrets(ctx: Context) -> dict[tuple[str, str], str]:
    """(namespace, Secret) -> how the pods use it, for every Secret they reference."""
    used: dict[tuple[str, str], str] = {}
    issuer = linkerd_issuer(ctx)
    if issuer is not None:
        used[issuer] = "Linkerd's identity issuer, which signs the proxies' certificates"
    for p in ctx.pull_credentials:
        for s in p.secrets:
            used.setdefault((s.namespace, s.name), f"imagePullSecret of pod {p.pod}")
    for pod in ctx.pods:
        for name in pod.image_pull_secrets:
            used.setdefault((pod.namespace, name), f"imagePullSecret of pod {pod.name}")
        for name in pod.secrets:
            used.setdefault((pod.namespace, name), f"used by pod {pod.name}")
    return used


async def read(scope: Scope) -> None:
    used = used_secrets(scope.ctx)
    namespaces = sorted({ns for ns, _ in used})[:MAX_NAMESPACES]
    async with scope.guard("externalsecrets"):
        await _external_secrets(scope, namespaces, used)
    async with scope.guard("certificates"):
        await _certificates(scope, namespaces, used)
    async with scope.guard("argo cd applications"):
        await _applications(scope)


async def _external_secrets(
    scope: Scope, namespaces: list[str], used: dict[tuple[str, str], str]
) -> None:
    ctx = scope.ctx
    for ns in namespaces:
        for obj in await scope.reader.list("ExternalSecret", ns, api_version=EXTERNAL_SECRETS):
            snap = external_secret_snapshot(obj)
            why = used.get((snap.namespace, snap.target))
            if why is None:
                continue
            snap.why = f"renders Secret {snap.target} ({why})"
            if snap.conditions.get("Ready", ("True",))[0] != "True":
                snap.last_error = await _last_warning(scope, ns, "ExternalSecret", snap.name)
            ctx.external_secrets.append(snap)
            for p in ctx.pull_credentials:
                for s in p.secrets:
                    if (s.namespace, s.name) == (snap.namespace, snap.target):
                        s.external_secrets.append(snap.name)


async def _last_warning(scope: Scope, namespace: str, kind: str, name: str) -> str:
    """The newest Warning event of an object: a controller's own words on why it fails (the
    secret store's 403), which its status condition often shortens."""
    events = await scope.reader.list(
        "Event",
        namespace,
        field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
    )
    warnings = [e for e in events if e.get("type") == "Warning"]
    warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return " ".join(str(warnings[-1].get("message", "")).split())[:400] if warnings else ""


def external_secret_keys(spec: Obj) -> list[str] | None:
    """The keys an ExternalSecret writes: its spec.data secretKeys and its template's data
    keys; None when a dataFrom without a template decides them at sync time."""
    template = ((spec.get("target") or {}).get("template") or {}).get("data") or {}
    if template:
        return sorted(str(k) for k in template)
    if spec.get("dataFrom"):
        return None
    return sorted(str(d.get("secretKey")) for d in spec.get("data") or [] if d.get("secretKey"))


def remote_keys(spec: Obj) -> list[str]:
    """The secret store's keys an ExternalSecret reads, in spec order, at most five."""
    keys = [str((d.get("remoteRef") or {}).get("key", "")) for d in spec.get("data") or []]
    for d in spec.get("dataFrom") or []:
        keys.append(str((d.get("extract") or {}).get("key", "")))
        name = ((d.get("find") or {}).get("name") or {}).get("regexp")
        keys.append(f"find {name}" if name else "")
    out: list[str] = []
    for k in keys:
        if k and k not in out:
            out.append(k)
    return out[:5]


def external_secret_snapshot(obj: Obj) -> ExternalSecretSnapshot:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    store = spec.get("secretStoreRef") or {}
    return ExternalSecretSnapshot(
        name=name_of(obj),
        namespace=str(meta(obj).get("namespace", "")),
        target=str((spec.get("target") or {}).get("name") or name_of(obj)),
        keys=external_secret_keys(spec),
        remote_keys=remote_keys(spec),
        store=f"{store.get('kind', 'SecretStore')}/{store.get('name', '?')}" if store else "",
        refresh_interval=spec.get("refreshInterval"),
        refresh_time=status.get("refreshTime"),
        conditions=conditions(obj),
    )


_SECRET_NOT_FOUND = re.compile(r'secret "([\w.-]+)" not found')


def missing_secrets(ctx: Context) -> dict[str, str]:
    """namespace -> a Secret its pods mount that the kubelet reports missing."""
    out: dict[str, str] = {}
    for e in ctx.events:
        m = _SECRET_NOT_FOUND.search(e.message)
        if m and e.object_namespace:
            out.setdefault(e.object_namespace, m.group(1))
    return out


async def _certificates(
    scope: Scope, namespaces: list[str], used: dict[tuple[str, str], str]
) -> None:
    ctx = scope.ctx
    found: dict[tuple[str, str], CertificateSnapshot] = {}
    missing_in = missing_secrets(ctx)
    for ns in namespaces:
        for obj in await scope.reader.list("Certificate", ns, api_version=CERT_MANAGER):
            snap = certificate_snapshot(obj)
            why = used.get((snap.namespace, snap.secret_name))
            if why is not None:
                snap.why = f"issues Secret {snap.secret_name} ({why})"
                found.setdefault((snap.namespace, snap.name), snap)
            elif ns in missing_in:
                # A pod mounts a Secret that does not exist: a Certificate beside it may write
                # the same certificate under another name.
                snap.why = f"in the namespace of missing Secret {missing_in[ns]}"
                found.setdefault((snap.namespace, snap.name), snap)
    elsewhere = {
        (ns, secret)
        for ns, secret in missing_in.items()
        if not any(c.secret_name == secret for c in found.values())
    }
    if elsewhere:
        # Secrets are namespaced: a Certificate in another namespace (cert-manager's, a shared
        # one) may issue it, and a mirroring controller copy it only where it is told to.
        for obj in await scope.reader.list("Certificate", None, api_version=CERT_MANAGER):
            snap = certificate_snapshot(obj)
            for ns, secret in elsewhere:
                if snap.secret_name == secret and snap.namespace != ns:
                    snap.why = f"issues Secret {secret} in namespace {snap.namespace}, not in {ns}"
                    found.setdefault((snap.namespace, snap.name), snap)
    for hook in ctx.webhooks:
        if not hook.inject_ca_from or "/" not in hook.inject_ca_from:
            continue
        ns, name = hook.inject_ca_from.split("/", 1)
        if (ns, name) in found:
            continue
        injected = await scope.get("Certificate", ns, name, api_version=CERT_MANAGER)
        if injected is not None:
            snap = certificate_snapshot(injected)
            snap.why = f"the CA of webhook {hook.name} is injected from it"
            found[(ns, name)] = snap
            continue
        # The annotation names a Certificate that is gone: cert-manager never updates the
        # caBundle again. Which Certificate issues the Service's serving certificate now?
        found[(ns, name)] = CertificateSnapshot(
            name=name,
            namespace=ns,
            exists=False,
            why=f"is named by webhook {hook.name}'s inject-ca-from",
        )
        if hook.service_name and hook.service_namespace:
            host = f"{hook.service_name}.{hook.service_namespace}.svc"
            for obj in await scope.reader.list(
                "Certificate", hook.service_namespace, api_version=CERT_MANAGER
            ):
                serving = certificate_snapshot(obj)
                if any(d == host or d.startswith(host + ".") for d in serving.dns_names):
                    serving.why = (
                        f"issues the serving certificate of webhook {hook.name}'s Service "
                        f"{hook.service_namespace}/{hook.service_name}"
                    )
                    found.setdefault((serving.namespace, serving.name), serving)
    ctx.certificates.extend(found.values())
    issuers: dict[tuple[str, str | None, str], IssuerSnapshot] = {}
    for cert in ctx.certificates:
        namespace = cert.namespace if cert.issuer_kind == "Issuer" else None
        key = (cert.issuer_kind, namespace, cert.issuer_name)
        if not cert.issuer_name or key in issuers:
            continue
        issuer = await scope.get(
            cert.issuer_kind, namespace, cert.issuer_name, api_version=CERT_MANAGER
        )
        issuers[key] = (
            issuer_snapshot(issuer)
            if issuer is not None
            else IssuerSnapshot(
                kind=cert.issuer_kind, name=cert.issuer_name, namespace=namespace, exists=False
            )
        )
    ctx.issuers.extend(issuers.values())


#: Controllers that copy a Secret into other namespaces, by the annotation that lists them:
#: emberstack Reflector (auto-created copies, then the namespaces allowed to ask for one) and
#: mittwald kubernetes-replicator (push). Each names the namespaces as a comma list.
MIRROR_ANNOTATIONS = (
    ("Reflector", "reflector.v1.k8s.emberstack.com/reflection-auto-namespaces"),
    ("Reflector", "reflector.v1.k8s.emberstack.com/reflection-allowed-namespaces"),
    ("kubernetes-replicator", "replicator.v1.mittwald.de/replicate-to"),
)


def mirror_of(annotations: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The controller that copies a Secret with these annotations, its annotation, and the
    namespaces it names."""
    for controller, key in MIRROR_ANNOTATIONS:
        value = annotations.get(key)
        if value is not None:
            return controller, key, [n.strip() for n in str(value).split(",") if n.strip()]
    return "", "", []


def certificate_snapshot(obj: Obj) -> CertificateSnapshot:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    issuer = spec.get("issuerRef") or {}
    template = (spec.get("secretTemplate") or {}).get("annotations") or {}
    mirrored_by, annotation, mirrored_to = mirror_of(template)
    return CertificateSnapshot(
        mirrored_by=mirrored_by,
        mirror_annotation=annotation,
        mirrored_to=mirrored_to,
        name=name_of(obj),
        namespace=str(meta(obj).get("namespace", "")),
        secret_name=str(spec.get("secretName", "")),
        issuer_kind=str(issuer.get("kind") or "Issuer"),
        issuer_name=str(issuer.get("name", "")),
        dns_names=[str(d) for d in spec.get("dnsNames") or []],
        not_before=status.get("notBefore"),
        not_after=status.get("notAfter"),
        renewal_time=status.get("renewalTime"),
        failed_issuance_attempts=status.get("failedIssuanceAttempts"),
        last_failure_time=status.get("lastFailureTime"),
        conditions=conditions(obj),
    )


def issuer_snapshot(obj: Obj) -> IssuerSnapshot:
    spec = obj.get("spec") or {}
    kinds = [k for k in ("acme", "ca", "vault", "selfSigned", "venafi") if k in spec]
    namespace = meta(obj).get("namespace")
    return IssuerSnapshot(
        kind=str(obj.get("kind") or ("Issuer" if namespace else "ClusterIssuer")),
        name=name_of(obj),
        namespace=namespace,
        type=kinds[0] if kinds else "",
        conditions=conditions(obj),
    )


async def _applications(scope: Scope) -> None:
    ctx = scope.ctx
    workloads = [(w.kind, w.name, w.namespace) for w in [ctx.workload, *ctx.owners] if w]
    if not workloads:
        return
    for obj in await scope.reader.list("Application", None, api_version=ARGO_CD):
        resources = (obj.get("status") or {}).get("resources") or []
        mine = [
            r for r in resources if (r.get("kind"), r.get("name"), r.get("namespace")) in workloads
        ]
        if mine:
            ctx.argo_applications.append(application_snapshot(obj, mine[0]))
        if len(ctx.argo_applications) >= MAX_APPLICATIONS:
            break


def application_snapshot(obj: Obj, resource: Obj) -> ArgoApplicationSnapshot:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    sources: list[Obj] = spec.get("sources") or [{}]
    source: Obj = spec.get("source") or sources[0]
    operation: Obj = status.get("operationState") or {}
    return ArgoApplicationSnapshot(
        name=name_of(obj),
        namespace=str(meta(obj).get("namespace", "")),
        project=str(spec.get("project", "")),
        repo=str(source.get("repoURL", "")),
        path=str(source.get("path") or source.get("chart") or ""),
        target_revision=str(source.get("targetRevision", "")),
        sync_status=str((status.get("sync") or {}).get("status", "")),
        health_status=str((status.get("health") or {}).get("status", "")),
        revision=str((status.get("sync") or {}).get("revision", "")),
        operation_phase=str(operation.get("phase", "")),
        operation_message=str(operation.get("message", "")),
        finished_at=operation.get("finishedAt"),
        conditions=[
            f"{c.get('type')}: {c.get('message', '')}".strip()
            for c in status.get("conditions") or []
        ],
        resource_status=str(resource.get("status", "")),
        resource_health=str((resource.get("health") or {}).get("status", "")),
    )


# -- evidence --------------------------------------------------------------------------------


def _ready(conds: dict[str, tuple[str, str, str]]) -> tuple[bool | None, str]:
    """(Ready or not, ``Ready=False Reason: message``); None without a Ready condition."""
    if "Ready" not in conds:
        return None, "no Ready condition"
    status, reason, message = conds["Ready"]
    return status == "True", f"Ready={status} {reason}: {message}".strip()


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for e in ctx.external_secrets:
        ready, text = _ready(e.conditions)
        out.add(
            Tier.OBJECT_BAD if ready is False else Tier.BACKGROUND,
            external_secret_id(e.name),
            EvidenceSource.WORKLOAD,
            f"externalsecret/{e.namespace}/{e.name}",
            f"ExternalSecret {e.name} {e.why}: {text}; last refresh {e.refresh_time or 'never'}"
            + (f" (refreshInterval {e.refresh_interval})" if e.refresh_interval else "")
            + (f"; store {e.store}" if e.store else "")
            + (f"; keys {', '.join(e.keys)}" if e.keys else "")
            + (f"; reads {', '.join(e.remote_keys)} from the store" if e.remote_keys else "")
            + (f"; last error: {e.last_error}" if e.last_error else ""),
            time=e.refresh_time,
        )
    for c in ctx.certificates:
        ready, text = _ready(c.conditions)
        parts = [f"Certificate {c.name} {c.why}: {text}", f"notAfter {c.not_after or '?'}"]
        if c.renewal_time:
            parts.append(f"renewal due {c.renewal_time}")
        if c.failed_issuance_attempts:
            parts.append(
                f"{c.failed_issuance_attempts} failed issuance attempts, last "
                f"{c.last_failure_time or '?'}"
            )
        parts.append(f"issuer {c.issuer_kind}/{c.issuer_name}")
        out.add(
            Tier.OBJECT_BAD if ready is False else Tier.BACKGROUND,
            certificate_id(c.name),
            EvidenceSource.WORKLOAD,
            f"certificate/{c.namespace}/{c.name}",
            "; ".join(parts),
            time=c.not_after,
        )
    for i in ctx.issuers:
        where = (
            f"{i.kind.lower()}/{i.namespace}/{i.name}"
            if i.namespace
            else f"{i.kind.lower()}/{i.name}"
        )
        if not i.exists:
            ready, text = False, "does not exist"
        else:
            ready, text = _ready(i.conditions)
        out.add(
            Tier.OBJECT_BAD if ready is False else Tier.BACKGROUND,
            issuer_id(i.kind, i.name),
            EvidenceSource.WORKLOAD,
            where,
            f"{i.kind} {i.name}" + (f" ({i.type})" if i.type else "") + f": {text}",
        )
    for a in ctx.argo_applications:
        failing = (
            a.health_status in ("Degraded", "Missing", "Unknown")
            or a.operation_phase in ("Failed", "Error")
            or a.resource_health in ("Degraded", "Missing")
        )
        text = (
            f"Application {a.name} (project {a.project or '-'}, {a.repo} {a.path} @ "
            f"{a.target_revision or 'HEAD'}): sync {a.sync_status or '?'}"
            + (f" at {a.revision[:12]}" if a.revision else "")
            + f", health {a.health_status or '?'}; the workload: "
            f"{a.resource_status or '?'}/{a.resource_health or '?'}"
            + (
                f"; last operation {a.operation_phase}: {a.operation_message}"
                if a.operation_phase
                else ""
            )
            + (f"; {'; '.join(a.conditions)}" if a.conditions else "")
        )
        out.add(
            Tier.OBJECT_BAD if failing else Tier.BACKGROUND,
            application_id(a.name),
            EvidenceSource.WORKLOAD,
            f"application/{a.namespace}/{a.name}",
            text,
            time=a.finished_at,
        )


SOURCE = Source(
    "custom_resources",
    Stage.DEEPER,
    read,
    evidence,
    resources=(
        "externalsecrets.external-secrets.io",
        "certificates.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
        "applications.argoproj.io",
    ),
)
