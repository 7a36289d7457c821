"""Image pull credentials, once a registry refuses a pull (401, 403, unauthorized, denied):
the pod's imagePullSecrets and its ServiceAccount's, whether each exists, and what keeps it
fresh: a CronJob of the namespace whose job writes it (its schedule, suspension, last success
and its newest Jobs), or an ExternalSecret (the ``custom_resources`` source reads those).

OnCallM never reads Secrets (its ClusterRoles grant none): a Secret is known to be missing
when the kubelet says so (``FailedToRetrieveImagePullSecret``), and its age is that of its
refresher's last success.

Evidence: ``pullcreds/<pod>`` (the refusal and the pod's pull secrets), ``pullsecret/<name>``
(one Secret: where the pod gets it, whether it exists, what refreshes it) and
``refresher/CronJob/<name>`` (the CronJob and its Jobs).
"""

from __future__ import annotations

import json
import re

from oncallm.gathering.objects import Obj, conditions, controller_of, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import (
    Context,
    EventSnapshot,
    PodSnapshot,
    PullCredentialsSnapshot,
    PullSecretSnapshot,
    SecretRefresher,
)

PULL_WAITING = ("ErrImagePull", "ImagePullBackOff")
AUTH_REFUSAL = re.compile(
    r"\b(?:401|403)\b|unauthori[sz]ed|forbidden|denied|authentication required"
    r"|no basic auth credentials|authorization failed|not authorized|invalid credentials",
    re.IGNORECASE,
)
"""A pull error that is about credentials, not about the image."""

_UNRETRIEVED = re.compile(r"Unable to retrieve some image pull secrets \(([^)]*)\)")
#: Pods followed, and Jobs shown per CronJob.
MAX_PODS = 3
MAX_JOBS = 3


def pull_credentials_id(pod: str) -> str:
    """``pullcreds/<pod>``: a pull the registry refused, and the pod's pull secrets."""
    return f"pullcreds/{pod}"


def pull_secret_id(name: str) -> str:
    """``pullsecret/<name>``: one image pull Secret and what refreshes it."""
    return f"pullsecret/{name}"


def refresher_id(kind: str, name: str) -> str:
    """``refresher/<Kind>/<name>``: what writes a pull Secret (a CronJob)."""
    return f"refresher/{kind}/{name}"


def refused_pulls(ctx: Context) -> list[tuple[PodSnapshot, str, str]]:
    """(pod, image, the refusal) for pods whose image pull the registry refused."""
    out = []
    for pod in ctx.pods:
        waiting = [c for c in pod.containers if c.state == "waiting" and c.reason in PULL_WAITING]
        if not waiting:
            continue
        texts = [c.message for c in waiting] + [
            e.message for e in ctx.events if e.object_kind == "Pod" and e.object_name == pod.name
        ]
        refusal = next(
            (t for t in texts if AUTH_REFUSAL.search(t) and ("pull" in t.lower() or "401" in t)),
            None,
        )
        if refusal:
            out.append((pod, waiting[0].image, refusal.strip()))
    return out[:MAX_PODS]


def registry_of(image: str) -> str:
    """``harbor.example/edge/app:1`` -> ``harbor.example``; Docker Hub for bare names."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def unretrieved(events: list[EventSnapshot], pod: str) -> set[str]:
    """Pull Secrets the kubelet said it could not retrieve for a pod."""
    names: set[str] = set()
    for e in events:
        if e.object_name == pod:
            for match in _UNRETRIEVED.finditer(e.message):
                names |= {n.strip() for n in match.group(1).split(",") if n.strip()}
    return names


async def read(scope: Scope) -> None:
    refused = refused_pulls(scope.ctx)
    if not refused:
        return
    ns = scope.namespace or refused[0][0].namespace
    cronjobs = await scope.reader.list("CronJob", ns)
    jobs = await scope.reader.list("Job", ns) if cronjobs else []
    accounts: dict[str, Obj | None] = {}
    for pod, image, refusal in refused:
        account = pod.service_account or "default"
        if account not in accounts:
            accounts[account] = await scope.get("ServiceAccount", pod.namespace, account)
        sa = accounts[account]
        missing = unretrieved(scope.ctx.events, pod.name)
        named = [(s, "pod spec") for s in pod.image_pull_secrets] + [
            (str(ref.get("name")), f"serviceaccount {account}")
            for ref in (sa or {}).get("imagePullSecrets") or []
            if ref.get("name") and ref.get("name") not in pod.image_pull_secrets
        ]
        scope.ctx.pull_credentials.append(
            PullCredentialsSnapshot(
                pod=pod.name,
                namespace=pod.namespace,
                image=image,
                registry=registry_of(image),
                error=refusal,
                service_account=account,
                service_account_exists=sa is not None,
                secrets=[
                    PullSecretSnapshot(
                        name=name,
                        namespace=pod.namespace,
                        via=via,
                        exists=False if name in missing else None,
                        refreshers=[refresher(c, jobs) for c in cronjobs if writes_secret(c, name)],
                    )
                    for name, via in named
                ],
            )
        )


def writes_secret(cronjob: Obj, secret: str) -> bool:
    """Whether a CronJob's job names the Secret: in its command, arguments or environment."""
    template = ((cronjob.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
    text = json.dumps(template)
    return re.search(rf"(?<![\w.-]){re.escape(secret)}(?![\w.-])", text) is not None


def refresher(cronjob: Obj, jobs: list[Obj]) -> SecretRefresher:
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    name = name_of(cronjob)
    own = [j for j in jobs if controller_of(j) == ("CronJob", name)]
    own.sort(key=lambda j: str(meta(j).get("creationTimestamp", "")), reverse=True)
    recent = [job_outcome(j) for j in own[:MAX_JOBS]]
    return SecretRefresher(
        kind="CronJob",
        name=name,
        namespace=str(meta(cronjob).get("namespace", "")),
        suspended=bool(spec.get("suspend", False)),
        schedule=str(spec.get("schedule", "")),
        last_schedule=status.get("lastScheduleTime"),
        last_success=status.get("lastSuccessfulTime"),
        recent_jobs=[text for text, _ in recent],
        failed_jobs=sum(1 for _, failed in recent if failed),
        annotations={
            str(k): str(v)
            for k, v in (meta(cronjob).get("annotations") or {}).items()
            if not str(k).startswith("kubectl.kubernetes.io/")
        },
    )


def job_outcome(job: Obj) -> tuple[str, bool]:
    """``name: failed (BackoffLimitExceeded) at T``, and whether it failed."""
    conds = conditions(job)
    status = job.get("status") or {}
    when = status.get("completionTime") or meta(job).get("creationTimestamp")
    failed = conds.get("Failed", ("False", "", ""))
    if failed[0] == "True":
        return f"{name_of(job)}: failed ({failed[1] or 'Failed'}) at {when}", True
    if conds.get("Complete", ("False",))[0] == "True":
        return f"{name_of(job)}: succeeded at {when}", False
    if status.get("failed"):
        return f"{name_of(job)}: {status['failed']} failed pods, still running", True
    return f"{name_of(job)}: running since {meta(job).get('creationTimestamp')}", False


def refusal_fragment(error: str, limit: int = 240) -> str:
    """The part of a pull error that says why: from the segment with the refusal to the end
    (``...: 401 Unauthorized``), so a long message keeps its point when cut."""
    match = AUTH_REFUSAL.search(error)
    if not match:
        return error[:limit]
    start = error.rfind(": ", 0, match.start())
    fragment = error[start + 2 if start >= 0 else 0 :]
    return fragment if len(fragment) <= limit else fragment[: limit - 1] + "…"


def _describe_secret(s: PullSecretSnapshot, ctx: Context) -> str:
    parts = [f"Secret {s.namespace}/{s.name} (from the {s.via})"]
    if s.exists is False:
        parts.append("the kubelet could not retrieve it: it does not exist")
    externals = [
        e for e in ctx.external_secrets if e.namespace == s.namespace and e.target == s.name
    ]
    refreshed = [
        f"CronJob {r.name}" + (" (suspended)" if r.suspended else "") for r in s.refreshers
    ]
    refreshed += [f"ExternalSecret {e.name}" for e in externals]
    parts.append(
        f"refreshed by {', '.join(refreshed)}"
        if refreshed
        else "nothing in the namespace refreshes it"
    )
    last = [r.last_success for r in s.refreshers if r.last_success] + [
        e.refresh_time for e in externals if e.refresh_time
    ]
    if last:
        parts.append(f"last refreshed {max(last)}")
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    shown: set[str] = set()
    for p in ctx.pull_credentials:
        secrets = ", ".join(f"{s.name} ({s.via})" for s in p.secrets) or "none"
        out.add(
            Tier.OBJECT_BAD,
            pull_credentials_id(p.pod),
            EvidenceSource.POD_STATUS,
            f"pod/{p.namespace}/{p.pod}",
            f"{p.registry} refused the pull of {p.image}: {refusal_fragment(p.error)}; "
            f"pull secrets: {secrets}",
        )
        for s in p.secrets:
            # Pods of one workload share their Secrets and refreshers: each is shown once.
            if f"secret/{s.namespace}/{s.name}" in shown:
                continue
            shown.add(f"secret/{s.namespace}/{s.name}")
            out.add(
                Tier.OBJECT_BAD,
                pull_secret_id(s.name),
                EvidenceSource.POD_STATUS,
                f"secret/{s.namespace}/{s.name}",
                _describe_secret(s, ctx),
            )
            for r in s.refreshers:
                if f"{r.kind}/{r.namespace}/{r.name}" in shown:
                    continue
                shown.add(f"{r.kind}/{r.namespace}/{r.name}")
                notes = "; ".join(f"{k}: {v}" for k, v in r.annotations.items())
                text = (
                    f"CronJob {r.name} ({r.schedule or 'no schedule'})"
                    + (": suspended" if r.suspended else "")
                    + f"; last schedule {r.last_schedule or 'never'}, "
                    f"last success {r.last_success or 'never'}"
                    + (f"; jobs: {'; '.join(r.recent_jobs)}" if r.recent_jobs else "; no jobs")
                    + (f"; {notes}" if notes else "")
                )
                out.add(
                    Tier.OBJECT_BAD if r.suspended or r.failed_jobs else Tier.BACKGROUND,
                    refresher_id(r.kind, r.name),
                    EvidenceSource.WORKLOAD,
                    f"cronjob/{r.namespace}/{r.name}",
                    text,
                    time=r.last_success,
                )


SOURCE = Source(
    "pull_credentials",
    Stage.LEADS,
    read,
    evidence,
    resources=("serviceaccounts", "cronjobs.batch", "jobs.batch"),
)
