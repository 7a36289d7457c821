"""An admission webhook that an event or a status names (``failed calling webhook "x"``): its
Validating/MutatingWebhookConfiguration, its Service's endpoints, its caBundle's expiry and
the serving certificate's as the API server's x509 error states it, and its failurePolicy.

Reads only when such a message is there: both kinds of webhook configuration (cluster-wide),
then the webhook's Service and Endpoints; when the call timed out against ready endpoints, one
endpoint pod and the NetworkPolicies of the webhook's namespace, to tell whether they admit
the API server.

Evidence: ``webhook/<name>`` (the configuration: policy, timeout, what it intercepts, the CA
and where cert-manager injects it from) and ``webhook/<name>/service`` (its Service's
endpoints), both among the broken objects.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from cryptography import x509

from oncallm.gathering.objects import Obj, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.gathering.sources.network_paths import allowed_by, port_matches
from oncallm.gathering.sources.network_policies import (
    label_selector_of,
    network_policy_snapshot,
    restricts,
    selects,
)
from oncallm.gathering.sources.services import backing_workload
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, WebhookSnapshot

API_VERSION = "admissionregistration.k8s.io/v1"
KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
INJECT_CA = "cert-manager.io/inject-ca-from"
#: Webhooks followed per analysis.
MAX_WEBHOOKS = 3

_FAILED = re.compile(r'failed calling (?:admission )?webhook "([^"]+)"')
_EXPIRED = re.compile(r"x509: certificate has expired[^:]*: current time (\S+) is after (\S+)")


def webhook_id(name: str) -> str:
    """``webhook/<name>``: an admission webhook's configuration."""
    return f"webhook/{name}"


def webhook_service_id(name: str) -> str:
    """``webhook/<name>/service``: the Service an admission webhook calls, and its endpoints."""
    return f"webhook/{name}/service"


def failing_webhooks(ctx: Context) -> dict[str, str]:
    """Webhook name -> the first message that says calling it failed."""
    texts = [e.message for e in ctx.events]
    for w in [w for w in [ctx.workload] if w is not None] + list(ctx.owners):
        texts.extend(m for _, _, m in w.conditions.values())
    for pod in ctx.pods:
        texts.append(pod.message)
        texts.extend(m for _, _, m in pod.conditions.values())
    found: dict[str, str] = {}
    for text in texts:
        for match in _FAILED.finditer(text or ""):
            found.setdefault(match.group(1), text.strip())
    return dict(list(found.items())[:MAX_WEBHOOKS])


async def read(scope: Scope) -> None:
    failing = failing_webhooks(scope.ctx)
    if not failing:
        return
    configurations: list[Obj] = []
    for kind in KINDS:
        async with scope.guard(kind):
            for obj in await scope.reader.list(kind, None, api_version=API_VERSION):
                obj.setdefault("kind", kind)
                configurations.append(obj)
    for name, error in failing.items():
        snap = webhook_snapshot(name, error, configurations, scope.now)
        scope.ctx.webhooks.append(snap)
        if snap.service_name and snap.service_namespace:
            async with scope.guard(f"service {snap.service_namespace}/{snap.service_name}"):
                ns, svc = snap.service_namespace, snap.service_name
                service = await scope.get("Service", ns, svc)
                snap.service_exists = service is not None
                endpoints = await scope.get("Endpoints", ns, svc)
                for subset in (endpoints or {}).get("subsets") or []:
                    snap.ready_endpoints += len(subset.get("addresses") or [])
                    snap.not_ready_endpoints += len(subset.get("notReadyAddresses") or [])
                selector = ((service or {}).get("spec") or {}).get("selector") or {}
                if selector and not snap.ready_endpoints and not snap.not_ready_endpoints:
                    snap.backing = await backing_workload(scope, ns, selector)
                if snap.ready_endpoints and _TIMEOUT.search(error):
                    snap.blocked_by = await _blocking_policies(
                        scope, snap, service or {}, endpoints or {}
                    )


#: A call that got no answer (dropped on the way), as opposed to one refused or failing TLS.
_TIMEOUT = re.compile(r"context deadline exceeded|i/o timeout|Client\.Timeout|timed out", re.I)


async def _blocking_policies(
    scope: Scope, snap: WebhookSnapshot, service: Obj, endpoints: Obj
) -> list[str]:
    """The NetworkPolicies of the webhook's namespace that select its pods, restrict their
    ingress, and on none of their rules admit the API server on the webhook's port. The API
    server calls from the control plane's network, not from a pod: a rule whose peers are only
    pod and namespace selectors never admits it; an ipBlock may (its address is unknown here),
    and so does a rule without peers. Any policy that admits it allows the call."""
    ns = snap.service_namespace or ""
    ref = next(
        (a.get("targetRef") or {} for sub in endpoints.get("subsets") or []
         for a in sub.get("addresses") or []),
        {},
    )  # fmt: skip
    pod = await scope.get("Pod", ns, str(ref.get("name"))) if ref.get("name") else None
    spec = service.get("spec") or {}
    labels = {str(k): str(v) for k, v in ((meta(pod).get("labels") if pod else None)
              or spec.get("selector") or {}).items()}  # fmt: skip
    named = {
        str(port.get("name")): int(port.get("containerPort", 0))
        for c in ((pod or {}).get("spec") or {}).get("containers") or []
        for port in c.get("ports") or []
        if port.get("name")
    }
    target = next(
        (p.get("targetPort", p.get("port")) for p in spec.get("ports") or []
         if int(p.get("port", 0)) == (snap.service_port or 443)),
        snap.service_port,
    )  # fmt: skip
    number = named.get(str(target)) if isinstance(target, str) and not target.isdigit() else None
    number = number if number is not None else int(str(target)) if str(target).isdigit() else None
    policies = [
        network_policy_snapshot(np, [])
        for np in await scope.reader.list("NetworkPolicy", ns, api_version="networking.k8s.io/v1")
    ]
    selecting = [p for p in policies if selects(p.selector, labels) and restricts(p, "Ingress")]
    if not selecting:
        return []
    allowed, _ = allowed_by(selecting, "Ingress", None, None, {}, None, number, "TCP", named)
    maybe = any(
        peer.ip_block
        for p in selecting
        for rule in p.ingress_rules
        for peer in rule.peers
        if not rule.ports or any(port_matches(x, number, "TCP", named) for x in rule.ports)
    )
    if allowed or maybe:
        return []
    return [
        f"{p.name}: ingress only from {'; '.join(p.ingress) or 'nowhere (deny all)'}"
        for p in selecting
    ]


def webhook_snapshot(
    name: str, error: str, configurations: list[Obj], now: datetime | None = None
) -> WebhookSnapshot:
    snap = WebhookSnapshot(name=name, error=error, found=False)
    expired = _EXPIRED.search(error)
    if expired:
        snap.serving_not_after = expired.group(2)
    for config in configurations:
        for hook in config.get("webhooks") or []:
            if hook.get("name") != name:
                continue
            client = hook.get("clientConfig") or {}
            service = client.get("service") or {}
            snap.found = True
            snap.configuration = name_of(config)
            snap.kind = str(config.get("kind", ""))
            snap.failure_policy = str(hook.get("failurePolicy", "Fail"))
            snap.timeout_seconds = hook.get("timeoutSeconds")
            snap.rules = [
                f"{','.join(r.get('operations') or [])} {','.join(r.get('resources') or [])}"
                for r in hook.get("rules") or []
            ]
            if hook.get("namespaceSelector"):
                snap.namespace_selector = label_selector_of(hook["namespaceSelector"])
            snap.service_namespace = service.get("namespace")
            snap.service_name = service.get("name")
            snap.service_port = int(service.get("port", 443))
            snap.path = service.get("path")
            snap.url = client.get("url")
            snap.inject_ca_from = (meta(config).get("annotations") or {}).get(INJECT_CA)
            snap.ca_not_after, snap.ca_expired = ca_expiry(client.get("caBundle"), now)
            return snap
    return snap


def ca_expiry(bundle: str | None, now: datetime | None = None) -> tuple[str | None, bool | None]:
    """The earliest notAfter of a caBundle (base64 PEM) and whether it has passed."""
    if not bundle:
        return None, None
    try:
        certs = x509.load_pem_x509_certificates(base64.b64decode(bundle))
    except ValueError:
        return None, None
    if not certs:
        return None, None
    not_after = min(c.not_valid_after_utc for c in certs)
    text = not_after.isoformat().replace("+00:00", "Z")
    return text, not_after < (now or datetime.now(UTC))


def describe(w: WebhookSnapshot) -> str:
    if not w.found:
        return (
            f"no Validating/MutatingWebhookConfiguration has a webhook {w.name} (removed since?); "
            f"the failure: {w.error}"
        )
    parts = [
        f"{w.kind} {w.configuration}: webhook {w.name}, failurePolicy {w.failure_policy}"
        + (f", timeout {w.timeout_seconds}s" if w.timeout_seconds is not None else ""),
    ]
    if w.rules:
        parts.append(f"intercepts {'; '.join(w.rules)}")
    if w.namespace_selector is not None and w.namespace_selector.match_labels:
        parts.append(f"in namespaces {kv(w.namespace_selector.match_labels)}")
    target = (
        f"service {w.service_namespace}/{w.service_name}:{w.service_port}{w.path or ''}"
        if w.service_name
        else f"url {w.url}"
    )
    parts.append(f"calls {target}")
    if w.ca_not_after:
        parts.append(
            f"caBundle valid until {w.ca_not_after}" + (" (expired)" if w.ca_expired else "")
        )
    if w.serving_not_after:
        parts.append(f"serving certificate expired at {w.serving_not_after}")
    if w.inject_ca_from:
        parts.append(f"CA injected by cert-manager from Certificate {w.inject_ca_from}")
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for w in ctx.webhooks:
        obj = f"{w.kind.lower()}/{w.configuration}" if w.found else f"webhook/{w.name}"
        out.add(Tier.OBJECT_BAD, webhook_id(w.name), EvidenceSource.SERVICE, obj, describe(w))
        if not w.service_name:
            continue
        if w.service_exists is False:
            text = f"service {w.service_namespace}/{w.service_name} does not exist"
        else:
            text = (
                f"service {w.service_namespace}/{w.service_name}: {w.ready_endpoints} ready / "
                f"{w.not_ready_endpoints} not ready endpoints"
                + ("" if w.ready_endpoints else " (no ready endpoints)")
                + (f"; {w.backing}" if w.backing else "")
                + (
                    "; NetworkPolicies select its pods and admit the API server on no rule: "
                    + " | ".join(w.blocked_by)
                    if w.blocked_by
                    else ""
                )
            )
        out.add(
            Tier.OBJECT_BAD,
            webhook_service_id(w.name),
            EvidenceSource.SERVICE,
            f"service/{w.service_namespace}/{w.service_name}",
            f"the webhook {w.name} calls {text}",
        )


SOURCE = Source(
    "webhooks",
    Stage.LEADS,
    read,
    evidence,
    resources=(
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "services",
        "endpoints",
        "deployments.apps",
        "statefulsets.apps",
        "horizontalpodautoscalers.autoscaling",
        "pods",
        "networkpolicies.networking.k8s.io",
    ),
)
