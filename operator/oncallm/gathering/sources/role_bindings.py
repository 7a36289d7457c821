"""After a 403 from the API server: the refused namespace's RoleBindings, the ClusterRoleBindings
of the refused ServiceAccount, their roles, and the namespace's ServiceAccounts. After a
Kubernetes-auth login to Vault: the bindings of system:auth-delegator, and whether the
ServiceAccounts they name exist (Vault reviews tokens as its own ServiceAccount).

A ServiceAccount is refused because no binding grants it what it asked for. The usual reasons
are one step away: a binding that grants exactly that but names another subject (a chart
renamed the ServiceAccount, an edit dropped a subject), or a binding whose Role is gone. The
source reads nothing unless a log line or event of the analysis shows such a refusal.

Evidence: ``rolebinding/<name>`` for each binding read (its role, its subjects and what the
role grants).
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, RoleBindingSnapshot

REFUSED = re.compile(
    r"forbidden: User \\?\"system:serviceaccount:(?P<ns>[\w.-]+):(?P<sa>[\w.-]+)\\?\" cannot"
    r"(?:.*? in the namespace \\?\"(?P<where>[\w.-]+)\\?\")?",
    re.IGNORECASE,
)
"""The API server's refusal of a ServiceAccount, with the namespace it was refused in."""

MAX_BINDINGS = 20
"""RoleBindings of the refused namespace that are read (each may cost one Role GET)."""


def role_binding_id(name: str) -> str:
    """``rolebinding/<name>``: a RoleBinding, its role's rules and its subjects."""
    return f"rolebinding/{name}"


def _refusal(ctx: Context) -> tuple[str, str] | None:
    """(namespace refused in, ``ServiceAccount ns/name`` refused) of the first refusal."""
    texts = [e.message for e in ctx.events] + [line for lg in ctx.logs for line in lg.lines]
    for text in texts:
        m = REFUSED.search(text)
        if m:
            return m.group("where") or m.group("ns"), f"ServiceAccount {m['ns']}/{m['sa']}"
    return None


#: A Kubernetes-auth login to Vault, in the request URL Vault's clients log with its answer.
VAULT_KUBERNETES_LOGIN = re.compile(r"/v1/auth/kubernetes[\w./-]*/login\b", re.IGNORECASE)

#: The ClusterRole that lets a token reviewer (Vault's own ServiceAccount) create
#: tokenreviews: without it, Vault cannot verify any pod's token and refuses every login.
AUTH_DELEGATOR = "system:auth-delegator"


async def read(scope: Scope) -> None:
    if any(VAULT_KUBERNETES_LOGIN.search(line) for lg in scope.ctx.logs for line in lg.lines):
        await _read_token_reviewers(scope)
    refused = _refusal(scope.ctx)
    if refused is None:
        return
    ns, account = refused
    async with scope.guard("clusterrolebindings"):
        # the cluster-wide bindings of the refused account: a ClusterRole that lacks the rule
        for binding in await scope.reader.list("ClusterRoleBinding", None):
            snap = role_binding_snapshot(binding, None)
            if account not in snap.subjects:
                continue
            role = await scope.get("ClusterRole", None, snap.role_name)
            scope.ctx.role_bindings.append(role_binding_snapshot(binding, role))
            if len(scope.ctx.role_bindings) >= MAX_BINDINGS:
                break
    async with scope.guard(f"rolebindings in {ns}"):
        bindings = (await scope.reader.list("RoleBinding", ns))[:MAX_BINDINGS]
        roles: dict[tuple[str, str], Obj | None] = {}
        for binding in bindings:
            ref = binding.get("roleRef") or {}
            key = (str(ref.get("kind", "Role")), str(ref.get("name", "")))
            if key not in roles:
                kind, name = key
                roles[key] = await scope.get(kind, ns if kind == "Role" else None, name)
            scope.ctx.role_bindings.append(role_binding_snapshot(binding, roles[key]))
    async with scope.guard(f"serviceaccounts in {ns}"):
        scope.ctx.service_accounts = sorted(
            str(meta(sa).get("name", "")) for sa in await scope.reader.list("ServiceAccount", ns)
        )


async def _read_token_reviewers(scope: Scope) -> None:
    """The bindings of system:auth-delegator, and which of their ServiceAccounts exist: Vault
    verifies a pod's token through a TokenReview made as its own ServiceAccount, so a binding
    left naming an account that is gone (Vault moved to another namespace, its chart renamed
    the account) refuses every Kubernetes-auth login."""
    async with scope.guard("clusterrolebindings of system:auth-delegator"):
        for binding in await scope.reader.list("ClusterRoleBinding", None):
            if (binding.get("roleRef") or {}).get("name") != AUTH_DELEGATOR:
                continue
            snap = role_binding_snapshot(
                binding, await scope.get("ClusterRole", None, AUTH_DELEGATOR)
            )
            for subject in snap.subjects:
                if subject.startswith("ServiceAccount ") and "/" in subject:
                    ns, name = subject.removeprefix("ServiceAccount ").split("/", 1)
                    if await scope.get("ServiceAccount", ns, name) is None:
                        snap.missing_subjects.append(subject)
            scope.ctx.role_bindings.append(snap)
            if len(scope.ctx.role_bindings) >= MAX_BINDINGS:
                break


def role_binding_snapshot(binding: Obj, role: Obj | None) -> RoleBindingSnapshot:
    ref = binding.get("roleRef") or {}
    subjects = []
    for s in binding.get("subjects") or []:
        kind, name = str(s.get("kind", "")), str(s.get("name", ""))
        if kind == "ServiceAccount":
            ns = s.get("namespace") or meta(binding).get("namespace") or ""
            subjects.append(f"ServiceAccount {ns}/{name}")
        else:
            subjects.append(f"{kind} {name}")
    rules = [
        (
            [str(v) for v in r.get("verbs") or []],
            [str(x) for x in r.get("resources") or []],
            [str(g) for g in r.get("apiGroups") or []],
        )
        for r in (role or {}).get("rules") or []
    ]
    return RoleBindingSnapshot(
        name=str(meta(binding).get("name", "")),
        namespace=meta(binding).get("namespace"),
        role_kind=str(ref.get("kind", "Role")),
        role_name=str(ref.get("name", "")),
        role_exists=role is not None,
        subjects=subjects,
        rules=rules,
    )


def grants(binding: RoleBindingSnapshot, verb: str, resource: str, group: str) -> bool:
    """Whether the binding's role allows ``verb`` on ``resource`` in API group ``group``."""
    for verbs, resources, groups in binding.rules:
        if (verb in verbs or "*" in verbs) and (resource in resources or "*" in resources):
            if group in groups or "*" in groups or (not groups and group == ""):
                return True
    return False


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for b in ctx.role_bindings:
        grants_text = "; ".join(
            f"{','.join(verbs)} {','.join(res)}" for verbs, res, _ in b.rules[:6]
        )
        out.add(
            Tier.OBJECT_BAD,
            role_binding_id(b.name),
            EvidenceSource.WORKLOAD,
            f"rolebinding/{b.namespace}/{b.name}",
            f"binds {b.role_kind} {b.role_name}"
            + ("" if b.role_exists else " (which does not exist)")
            + f" to {', '.join(_subject(b, s) for s in b.subjects) or 'nobody'}"
            + (f"; grants {grants_text}" if grants_text else ""),
        )


def _subject(binding: RoleBindingSnapshot, subject: str) -> str:
    return f"{subject} (which does not exist)" if subject in binding.missing_subjects else subject


SOURCE = Source(
    "role_bindings",
    Stage.LEADS,
    read,
    evidence,
    resources=(
        "clusterrolebindings.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "roles.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "serviceaccounts",
    ),
)
