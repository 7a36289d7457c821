"""What keeps an application's credential fresh, once an outside API refuses it.

A token for a partner API, a registry or a cloud service often lives in a Secret that a
CronJob of the namespace rewrites before the token expires (an OAuth client-credentials
exchange, ``aws ecr get-login-password``, a vault read). When that CronJob stops succeeding
(suspended, its image gone, its ServiceAccount no longer allowed to patch the Secret), the
token in the Secret ages past its lifetime and every call with it is answered 401: the pods
that use it fail, and their logs only say ``invalid_token``.

Reads, when a pod's log shows a 401 or an expired or invalid token: the CronJobs of the
namespace whose job template names a Secret that pod uses (as the ``pull_credentials`` source
does for pull Secrets), their newest Jobs, and the last lines of the newest failed Job's pod.

Evidence: ``credrefresher/<secret>/<cronjob>`` (the Secret, the CronJob, its last success,
its Jobs, and why its newest failed Job failed in its own words).
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import controller_of, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.logs import first_container_log
from oncallm.gathering.sources.pull_credentials import refresher, writes_secret
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, CredentialRefresherSnapshot

#: An outside API refusing the credential a program sent: a 401, an expired or invalid token.
TOKEN_REFUSED = re.compile(
    r"\b401\b|\bUnauthori[sz]ed\b|invalid_token|\btoken (?:has )?expired|expired token"
    r"|ExpiredToken|access token (?:is )?(?:expired|invalid)",
    re.IGNORECASE,
)
#: Lines read of a failed refresher Job's pod, and the refreshers followed.
FAILURE_LINES = 50
MAX_REFRESHERS = 3
#: A failure line of a refresher: the error it stopped on.
_FAILURE = re.compile(r"error|forbidden|denied|fail|refused|unauthori[sz]ed|not found", re.I)


def refresher_id(secret: str, cronjob: str) -> str:
    """``credrefresher/<secret>/<cronjob>``: a CronJob that writes a Secret the pods use."""
    return f"credrefresher/{secret}/{cronjob}"


def refusing_pods(ctx: Context) -> list[str]:
    """The pods whose own logs show an outside API refusing their credential."""
    return sorted(
        {lg.pod for lg in ctx.logs if any(TOKEN_REFUSED.search(line) for line in lg.lines)}
    )


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    refusing = set(refusing_pods(ctx))
    secrets = sorted({s for p in ctx.pods if p.name in refusing for s in p.secrets})
    ns = scope.namespace
    if not secrets or not ns:
        return
    cronjobs = await scope.reader.list("CronJob", ns)
    if not cronjobs:
        return
    jobs = await scope.reader.list("Job", ns)
    found = 0
    for secret in secrets:
        for cronjob in cronjobs:
            if found >= MAX_REFRESHERS or not writes_secret(cronjob, secret):
                continue
            found += 1
            snap = CredentialRefresherSnapshot(
                namespace=ns, secret=secret, refresher=refresher(cronjob, jobs)
            )
            failed = [
                j
                for j in jobs
                if controller_of(j) == ("CronJob", name_of(cronjob))
                and (j.get("status") or {}).get("failed")
            ]
            failed.sort(key=lambda j: str(meta(j).get("creationTimestamp") or ""), reverse=True)
            if failed:
                await _failure(scope, ns, name_of(failed[0]), snap)
            ctx.credential_refreshers.append(snap)


async def _failure(scope: Scope, ns: str, job: str, snap: CredentialRefresherSnapshot) -> None:
    """The line the newest failed Job's pod stopped on."""
    async with scope.guard(f"pods of job {job}"):
        pods = await scope.reader.list("Pod", ns, label_selector=f"job-name={job}")
        for pod in pods[:1]:
            log = await first_container_log(scope, pod, FAILURE_LINES)
            lines = [line.strip() for line in (log.lines if log else []) if line.strip()]
            said = [line for line in lines if _FAILURE.search(line)]
            if said:
                snap.failure = said[-1][:400]
                snap.failure_pod = name_of(pod)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for s in ctx.credential_refreshers:
        r = s.refresher
        out.add(
            Tier.OBJECT_BAD if r.failed_jobs or r.suspended else Tier.BACKGROUND,
            refresher_id(s.secret, r.name),
            EvidenceSource.EVENT,
            f"cronjob/{r.namespace}/{r.name}",
            f"CronJob {r.name} ({r.schedule or 'no schedule'}) writes Secret {s.secret}, which "
            "the pods use"
            + (": suspended" if r.suspended else "")
            + f"; last success {r.last_success or 'never'}"
            + (f"; jobs: {'; '.join(r.recent_jobs)}" if r.recent_jobs else "; no jobs")
            + (
                f"; its newest failed Job's pod {s.failure_pod} says: {s.failure}"
                if s.failure
                else ""
            ),
        )


SOURCE = Source(
    "credential_refreshers",
    Stage.LEADS,
    read,
    evidence,
    resources=("cronjobs.batch", "jobs.batch", "pods", "pods/log"),
)
