"""Rules about controllers and capacity: failed Jobs, stuck rollouts, maxed HPAs, throttling.

Most of them are *wrappers*: a Job fails, a rollout stalls, a Deployment lacks replicas or an
HPA runs at its maximum because the pods below fail. They see the other rules' ranked findings
(computed once) and describe the link they are in the causal chain; the engine makes a proven
cause below them the root cause. A wrapper names its own category only when it is itself at
fault (a rollout that deadlocks itself) or when nothing deeper is proven.
"""

from __future__ import annotations

import re

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    hpa_id,
    is_error_line,
    metric_id,
    pod_id,
    revision_id,
    workload_id,
)
from oncallm.analysis.rules.base import (
    Finding,
    RuleSettings,
    Scope,
    cite_hits,
    controller,
    crashed_container,
    double_quantity,
    events,
    exit_code,
    grep,
    injected_sizing,
    log_of,
    pod_cites,
    pod_commands,
    quote_line,
    target_pod,
    workload_state,
)
from oncallm.analysis.rules.pods import limit_range_default
from oncallm.gathering.sources.dns import dns_name_id
from oncallm.gathering.sources.namespace_limits import limit_range_id
from oncallm.models.analysis import Category
from oncallm.models.evidence import (
    Context,
    HPASnapshot,
    PodSnapshot,
    RevisionSnapshot,
    WorkloadSnapshot,
)
from oncallm.models.quantity import parse_quantity


def proven(causes: list[Finding], settings: RuleSettings) -> Finding | None:
    """The best cause strong enough to be proven: a wrapper yields to it and names it.

    Only causes in the pod or outside it count: a capacity finding (throttling) is a symptom
    of the same load that a maxed HPA reports, not a cause below it."""
    for cause in causes:
        if cause.scope in (Scope.POD, Scope.OUTSIDE) and cause.score >= settings.proven_cause_score:
            return cause
    return None


# --- Job backoff limit --------------------------------------------------------------------------


#: The Job controller's reasons on its Failed condition and on the Event it records.
_JOB_FAILED_REASONS = (
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "PodFailurePolicy",
    "MaxFailedIndexesExceeded",
    "FailedIndexes",
)


def _failed_job(ctx: Context) -> tuple[WorkloadSnapshot | None, str, str]:
    for w in [ctx.workload, *ctx.owners]:
        if w is None or w.kind != "Job":
            continue
        status, reason, message = w.conditions.get("Failed", ("False", "", ""))
        if status == "True" or reason in _JOB_FAILED_REASONS:
            return w, reason or "BackoffLimitExceeded", message
    for e in events(ctx, reasons=_JOB_FAILED_REASONS):
        return None, e.reason, e.message
    return None, "", ""


def job_backoff_limit(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """The Job gave up (BackoffLimitExceeded); the chain follows to why its pods failed.

    A Job fails because its pods fail: a proven cause of the pods' failure is the root cause,
    and this finding is the link above it. Only when nothing explains the pods is the backoff
    limit itself the diagnosis, with the pods' exit code and last error line."""
    job, reason, message = _failed_job(ctx)
    if not reason:
        return None
    name = job.name if job else (ctx.target.name if ctx.target.kind == "Job" else "the Job")
    ns = job.namespace if job else (ctx.target.namespace or "default")
    cron = next((o for o in ctx.owners if o.kind == "CronJob"), None)
    overlap = _overlapping_run(ctx, ev, cron, name)
    if overlap is not None:
        return overlap
    cause = proven(causes, settings)
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    stopped = _past_pod_deadline(ctx, name)
    if cause is not None:
        why = _lower_first(cause.summary.rstrip("."))
        evidence = cause.evidence
        extra = cause.commands
    elif stopped:
        first = stopped[0]
        deadline = f" ({first.active_deadline_seconds} s)" if first.active_deadline_seconds else ""
        last = _last_line(ctx, first)
        why = (
            f"its pod{'s' if len(stopped) > 1 else ''} {', '.join(p.name for p in stopped[:3])} "
            f"ran past the pod's activeDeadlineSeconds{deadline} and the kubelet stopped "
            f"{'them' if len(stopped) > 1 else 'it'} (DeadlineExceeded: "
            f"{quote_line(first.message or _POD_DEADLINE_MESSAGE, 100)})"
            + (f", still working: last line {quote_line(last)}" if last else "")
            + "; the run takes longer than the deadline allows (more data, a slower "
            "dependency), so raise activeDeadlineSeconds or split the work"
        )
        evidence = ev.cite(
            *[pod_id(p.name) for p in stopped[:2]],
            *[ev.event(e) for e in events(ctx, reasons=("DeadlineExceeded",))[:1]],
        )
        extra = pod_commands(ctx, first, first.containers[0] if first.containers else None)
    elif pod is not None and c is not None:
        log = log_of(ctx, pod.name, c.name)
        last = (
            next(
                (ln for ln in reversed(log.lines) if is_error_line(ln)),
                log.lines[-1] if log.lines else "",
            )
            if log
            else ""
        )
        why = f"its pod {pod.name} exits with code {exit_code(c)}" + (
            f", last error {quote_line(last)}" if last else ""
        )
        evidence = pod_cites(ev, pod, c)
        extra = pod_commands(ctx, pod, c)
    else:
        why = "its pods failed (no pod was left to inspect)"
        evidence, extra = [], []
    limit = job.backoff_limit if job and job.backoff_limit is not None else 6
    failed = job.failed if job and job.failed is not None else limit + 1
    gave_up = {
        "BackoffLimitExceeded": f"reached its backoffLimit of {limit} after {failed} failed pods",
        "DeadlineExceeded": "ran past its activeDeadlineSeconds (DeadlineExceeded)",
        "PodFailurePolicy": "was failed by a FailJob rule of its podFailurePolicy",
        "MaxFailedIndexesExceeded": "had more failed indexes than its maxFailedIndexes",
        "FailedIndexes": "had indexes fail past their backoffLimitPerIndex",
    }.get(reason, f"failed ({reason})")
    cmds = [kc.describe("job", ns, name)]
    if pod is not None:
        cmds += pod_commands(ctx, pod, c)
    cmds += extra
    if cron is not None:
        cmds.append(f"kubectl -n {ns} create job {cron.name}-manual --from=cronjob/{cron.name}")
    return Finding(
        Category.JOB_BACKOFF_LIMIT,
        0.96,
        summary=f"Job {name} failed ({reason}): {why}."[:600],
        root_cause=(
            f"Job {ns}/{name}"
            + (f" (of CronJob {cron.name})" if cron else "")
            + f" {gave_up} and was marked Failed"
            + (f" ({quote_line(message, 120)})" if message else "")
            + f"; each attempt failed because {why}."
        ),
        evidence=ev.cite(
            workload_id("Job", name),
            *[ev.event(e) for e in events(ctx, reasons=("BackoffLimitExceeded",))[:1]],
            *evidence,
        ),
        impact=(
            f"The work of Job {name} did not happen"
            + (f"; CronJob {cron.name} will try again on its next schedule" if cron else "")
            + "."
        ),
        immediate_actions=[
            "Fix the failure of the pods named in the root cause, then re-run the Job"
            + (f" (create a Job from CronJob {cron.name})" if cron else "")
            + ".",
            *(cause.immediate_actions[:2] if cause else []),
        ],
        recommendations=[
            "Make Jobs idempotent and log the reason before exiting non-zero; alert on "
            "KubeJobFailed with the pod's last log lines.",
            *(cause.recommendations[:2] if cause else []),
        ],
        commands=cmds,
    )


#: The kubelet's status message on a pod it stopped at its activeDeadlineSeconds.
_POD_DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _past_pod_deadline(ctx: Context, job: str) -> list[PodSnapshot]:
    """The Job's pods the kubelet stopped at their own ``activeDeadlineSeconds`` (the pod
    template's, not the Job's): status.reason DeadlineExceeded. Their containers end with the
    SIGTERM's 143 or the SIGKILL's 137, which says nothing about the program; the deadline is
    why each attempt failed."""
    return [
        p
        for p in ctx.pods
        if p.reason == "DeadlineExceeded" and (p.owner_name == job or p.name.startswith(job))
    ]


def _last_line(ctx: Context, pod: PodSnapshot) -> str:
    """The last line the pod's first container logged before it was stopped."""
    for c in pod.containers:
        log = log_of(ctx, pod.name, c.name)
        if log is not None:
            return next((ln for ln in reversed(log.lines) if ln.strip()), "")
    return ""


#: A run refused because another holds the work: a lock, a lease, "already running".
_HELD_BY_ANOTHER = re.compile(
    r"\block\b|\blocked\b|another (?:\w+ )?(?:instance|run|job|process|\w+) (?:is )?"
    r"(?:running|in progress|active)|already (?:running|in progress|locked)|lease (?:is )?held",
    re.IGNORECASE,
)


def _overlapping_run(
    ctx: Context, ev: EvidenceIndex, cron: WorkloadSnapshot | None, job: str
) -> Finding | None:
    """A CronJob that lets its runs overlap (concurrencyPolicy Allow) started this Job while
    an earlier one still ran, and this one's pods fail because the earlier holds the work (a
    lock, "already running"): the schedule and its concurrency policy are the fault, not the
    pods, which do what they are written to do."""
    if cron is None or cron.concurrency_policy not in (None, "Allow"):
        return None
    others = [j for j in cron.active_jobs if j != job]
    if not others:
        return None
    pods = [p.name for p in ctx.pods if p.name.startswith(job)]
    held = [
        h
        for h in grep(ctx, ev, _HELD_BY_ANOTHER, pods=pods or None)
        if is_error_line(h.line) or "fatal" in h.line.lower()
    ]
    if not held:
        return None
    ns = cron.namespace
    return Finding(
        Category.JOB_BACKOFF_LIMIT,
        0.95,
        at_fault=True,
        summary=(
            f"CronJob {cron.name} (concurrencyPolicy {cron.concurrency_policy or 'Allow'}) "
            f"started Job {job} while {others[0]} still ran; its pods fail on the work the "
            "earlier run holds."
        ),
        root_cause=(
            f"CronJob {ns}/{cron.name} runs on schedule '{cron.schedule or '?'}' with "
            f"concurrencyPolicy {cron.concurrency_policy or 'Allow'}, so Job {job} started "
            f"while Job {others[0]} was still running; every attempt of {job} fails because "
            f"the earlier run holds the work ({quote_line(held[-1].line, 160)}), and the Job "
            "reached its backoffLimit. The runs last longer than the schedule's interval."
        ),
        evidence=ev.cite(
            workload_id("CronJob", cron.name), workload_id("Job", job), *cite_hits(held[-2:])
        ),
        impact=(
            f"Runs of {cron.name} fail while an earlier one is active; the work is done late "
            "or twice."
        ),
        immediate_actions=[
            f"Set concurrencyPolicy: Forbid on CronJob {cron.name} (or Replace), or give the "
            "schedule an interval longer than one run.",
        ],
        recommendations=[
            "Alert on CronJobs whose Jobs outlast their schedule interval "
            "(kube_cronjob_status_active > 1).",
        ],
        commands=[
            kc.describe("cronjob", ns, cron.name),
            f"kubectl -n {ns} get jobs -l batch.kubernetes.io/cronjob-name={cron.name}",
            kc.describe("job", ns, job),
        ],
    )


def _lower_first(text: str) -> str:
    """The sentence with its first letter lowered, unless its first word is a name that keeps
    its capitals (``NetworkPolicy``, ``ConfigMap``, ``OOMKilled``)."""
    first = text.split(" ", 1)[0]
    if first[1:] != first[1:].lower():
        return text
    return text[:1].lower() + text[1:]


# --- rollout stuck ------------------------------------------------------------------------------


def _stuck(ctx: Context) -> WorkloadSnapshot | None:
    for w in [ctx.workload, *ctx.owners]:
        if w is None:
            continue
        status, reason, _ = w.conditions.get("Progressing", ("", "", ""))
        if status == "False" and reason == "ProgressDeadlineExceeded":
            return w
    return None


def _revisions(w: WorkloadSnapshot) -> tuple[RevisionSnapshot | None, RevisionSnapshot | None]:
    ordered = sorted(w.revisions, key=lambda r: r.revision or 0)
    newest = ordered[-1] if ordered else None
    before = ordered[-2] if len(ordered) > 1 else None
    return newest, before


_SELF_BLOCKING = re.compile(
    r"didn't match pod anti-affinity rules|didn't satisfy existing pods anti-affinity|"
    r"didn't have free ports for the requested pod ports|Multi-Attach error",
    re.I,
)
"""What a rollout fails on because of its own old pods: with required anti-affinity or a
hostPort per node, the surge pod has nowhere to go until an old pod leaves; with a
ReadWriteOnce volume under RollingUpdate, the new pod cannot attach the volume the old pod
holds (Multi-Attach). No old pod leaves until a new one is ready: the strategy deadlocks."""


def _daemonset_surge_blocked(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A DaemonSet rolling out with maxSurge: its new pod for a node must run beside the old
    one until it is ready, and a hostPort (or required anti-affinity) of its own old pod keeps
    it Pending there. No old pod leaves, so the rollout never advances. A DaemonSet has no
    progress deadline, so the Pending surge pod is the sign."""
    w = ctx.workload
    if w is None or w.kind != "DaemonSet" or w.updated is None or w.desired is None:
        return None
    if w.updated >= w.desired:
        return None
    own = [p for p in ctx.pods if p.owner_kind == "DaemonSet" and p.owner_name == w.name]
    pending = {p.name for p in own if p.phase == "Pending"}
    blocked = [
        e
        for e in events(ctx, reasons=("FailedScheduling",), pattern=_SELF_BLOCKING)
        if e.object_name in pending
    ]
    running = [p for p in own if p.phase == "Running" and all(c.ready for c in p.containers)]
    if not blocked or not running:
        return None
    e = blocked[0]
    return Finding(
        Category.ROLLOUT_STUCK,
        0.96,
        at_fault=True,
        summary=(
            f"The rollout of DaemonSet {w.name} is stuck: its surge pod {e.object_name} cannot "
            "be scheduled beside the old pod of its node, which holds the same host port."
        ),
        root_cause=(
            f"DaemonSet {w.namespace}/{w.name} rolls out with a surge pod per node "
            f"(updated {w.updated}/{w.desired}): the new pod {e.object_name} must run beside "
            f"the node's old pod until it is ready, but it cannot be scheduled there "
            f"({quote_line(e.message, 200)}): the old pod holds the hostPort (or its "
            "anti-affinity), and the old pod leaves only once the new one is ready. The "
            "strategy deadlocks itself; the old pods are healthy."
        ),
        evidence=ev.cite(workload_id("DaemonSet", w.name), ev.event(e)),
        impact=(
            f"DaemonSet {w.name} stays on the old revision on {w.desired - w.updated} of "
            f"{w.desired} nodes; no further change reaches them."
        ),
        immediate_actions=[
            f"Set updateStrategy.rollingUpdate of DaemonSet {w.name} to maxSurge 0 and "
            "maxUnavailable 1 (a pod with a hostPort cannot surge), or drop the hostPort.",
        ],
        recommendations=[
            "Use maxSurge only for DaemonSets whose pods can run twice on a node (no hostPort, "
            "no exclusive device).",
        ],
        commands=[
            kc.rollout_status("DaemonSet", w.namespace, w.name),
            kc.describe("daemonset", w.namespace, w.name),
            kc.events_for(w.namespace, e.object_name),
        ],
    )


def rollout_stuck(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """Deployment Progressing=False ProgressDeadlineExceeded: the new revision does not come up.

    The rollout is the fault only when it blocks itself: its new pods cannot be scheduled next
    to its own healthy old pods (anti-affinity, host ports) under a strategy that keeps every
    old pod until a new one is ready. Otherwise the new pods fail for a cause of their own
    (an OOM, a missing key, an image, a dependency), which is the root cause, and this finding
    is the link that says which revision and how to roll back.
    """
    w = _stuck(ctx)
    if w is None:
        return _daemonset_surge_blocked(ctx, ev)
    _, _, message = w.conditions["Progressing"]
    newest, before = _revisions(w)
    new_pods = [p for p in ctx.pods if newest is not None and p.owner_name == newest.name]
    old_pods = [p for p in ctx.pods if p.owner_kind == "ReplicaSet" and p not in new_pods]
    old_healthy = bool(old_pods) and all(
        all(c.ready for c in p.containers if not c.init) for p in old_pods
    )
    new_names = {p.name for p in new_pods}
    blocked = [
        e
        for e in events(
            ctx, reasons=("FailedScheduling", "FailedAttachVolume"), pattern=_SELF_BLOCKING
        )
        if e.object_name in new_names
    ]
    claims = sorted({c for p in new_pods for c in p.pvcs})
    at_fault = old_healthy and bool(blocked)
    cause = None if at_fault else proven(causes, settings)
    score = 0.96 if at_fault else 0.85
    images = ", ".join(newest.images.values()) if newest else ""
    changes = ""
    if newest and newest.changes:
        # the image first: it is what a reader recognises as "the deploy"
        ordered = sorted(newest.changes, key=lambda ch: ".image:" not in ch)
        changes = "; ".join(ordered[:2]) + (
            f" and {len(ordered) - 2} more" if len(ordered) > 2 else ""
        )
    rev_text = (
        f"revision {newest.revision} (ReplicaSet {newest.name}"
        + (f", image {images}" if images else "")
        + (f"; changed: {changes}" if changes else "")
        + ")"
        if newest
        else "the new revision"
    )
    if at_fault and blocked[0].reason == "FailedAttachVolume":
        why = (
            f"they cannot attach the ReadWriteOnce claim {', '.join(claims) or '(its volume)'} "
            f"that the old pod holds ({quote_line(blocked[0].message, 160)}), and the old pod "
            "stays until a new one is ready: RollingUpdate deadlocks on a single-attach volume"
        )
    elif at_fault:
        why = (
            f"they cannot be scheduled beside the old pods ({quote_line(blocked[0].message, 160)})"
            ", and the old pods stay until a new one is ready: the strategy deadlocks itself"
        )
    elif cause is not None:
        why = _lower_first(cause.summary.rstrip("."))
    else:
        why = "the new pods never became ready"
    cmds = [
        kc.rollout_status(w.kind, w.namespace, w.name),
        kc.rollout_history(w.kind, w.namespace, w.name),
        kc.rollout_undo(
            w.kind, w.namespace, w.name, before.revision if before is not None else None
        ),
    ]
    if cause is not None:
        cmds += cause.commands
    return Finding(
        Category.ROLLOUT_STUCK,
        score,
        summary=(
            f"The rollout of {w.kind} {w.name} to revision "
            f"{newest.revision if newest else '?'}"
            + (f" ({images})" if images else "")
            + " is stuck (ProgressDeadlineExceeded)"
            + (f": {why}" if cause is not None or at_fault else "")
            + "."
        )[:600],
        root_cause=(
            f"{w.kind} {w.namespace}/{w.name} cannot finish rolling out {rev_text}: "
            f"Progressing=False ProgressDeadlineExceeded ({quote_line(message, 120)}); "
            f"the new pods fail because {why}."
        ),
        evidence=ev.cite(
            workload_id(w.kind, w.name),
            revision_id(newest.name) if newest else None,
            *[ev.event(e) for e in blocked[:2]],
            *(cause.evidence if cause else []),
            revision_id(before.name) if before else None,
        ),
        impact=(
            f"{workload_state(ctx)}; the old revision"
            + (f" ({before.name})" if before else "")
            + " still serves, but at reduced capacity and no further deploys go out."
        ),
        immediate_actions=[
            f"Roll back to revision {before.revision if before else 'the previous one'} "
            f"(kubectl rollout undo) to restore full capacity.",
            *(
                [
                    f"Let the rollout make room: use strategy Recreate for {w.kind} {w.name} "
                    "(a single-attach volume), or set maxUnavailable to 1 / maxSurge 0, or relax "
                    "its required anti-affinity / hostPort."
                ]
                if at_fault
                else []
            ),
            *(cause.immediate_actions[:2] if cause else []),
        ],
        at_fault=at_fault,
        recommendations=[
            "Gate rollouts on readiness with a canary or progressive delivery (Argo Rollouts, "
            "Flagger) that rolls back by itself.",
            *(cause.recommendations[:1] if cause else []),
        ],
        commands=cmds,
    )


def _selector_text(w: WorkloadSnapshot) -> str:
    return ",".join(f"{k}={v}" for k, v in w.selector.items()) or f"app={w.name}"


def _on_delete(
    ctx: Context, ev: EvidenceIndex, w: WorkloadSnapshot, cause: Finding | None
) -> Finding:
    """updateStrategy OnDelete (a StatefulSet's or a DaemonSet's): the controller replaces a pod
    with the new revision only when someone deletes it, so an applied change never rolls out by
    itself."""
    revision = f"revision {w.update_revision}" if w.update_revision else "the new template"
    old = f"on {w.current_revision}" if w.current_revision else "on the old template"
    waiting = (w.desired or 0) - (w.updated or 0)
    return Finding(
        Category.ROLLOUT_STUCK,
        0.9,
        summary=(
            f"{w.kind} {w.name} uses updateStrategy OnDelete: {w.updated or 0} of "
            f"{w.desired} pods run {revision}; the rest wait to be deleted."
        ),
        root_cause=(
            f"{w.kind} {w.namespace}/{w.name} has updateStrategy OnDelete, so the controller "
            f"moves a pod to {revision} only when the pod is deleted; {waiting} pods stay "
            f"{old} ({w.updated or 0}/{w.desired} updated) until someone deletes them."
        ),
        evidence=ev.cite(workload_id(w.kind, w.name), ALERT_ID),
        impact=f"{workload_state(ctx)}; the {w.kind} runs two revisions side by side.",
        immediate_actions=[
            (
                f"Delete the old pods of {w.name} one at a time (highest ordinal first, "
                "waiting for each to be Ready), or switch updateStrategy to RollingUpdate."
                if w.kind == "StatefulSet"
                else f"Delete the old pods of {w.name} node by node (each is recreated from "
                "the new template), or switch updateStrategy to RollingUpdate."
            ),
        ],
        recommendations=[
            "Use OnDelete only with a runbook or operator that deletes the pods; alert on "
            + (
                "KubeStatefulSetUpdateNotRolledOut."
                if w.kind == "StatefulSet"
                else "KubeDaemonSetRolloutStuck."
            ),
        ],
        commands=[
            kc.rollout_status(w.kind, w.namespace, w.name),
            f"kubectl -n {w.namespace} get pods -l {_selector_text(w)} -L controller-revision-hash",
        ],
        at_fault=cause is None,
    )


REVISION_LABEL = "controller-revision-hash"


def _forced_rollback(ctx: Context, ev: EvidenceIndex, w: WorkloadSnapshot) -> Finding | None:
    """A StatefulSet pod fails on a revision the StatefulSet no longer wants (neither its
    current nor its update revision): the template was fixed, but a rolling update waits for
    the broken pod to become Ready before it replaces anything, so it never does. Kubernetes
    documents it as the forced rollback: the broken pod must be deleted. The pod's own error
    belongs to the superseded revision; the rollout is what is stuck."""
    stale = [
        p
        for p in ctx.pods
        if p.labels.get(REVISION_LABEL) not in (None, w.update_revision, w.current_revision)
        and any(not c.ready and not c.init for c in p.containers)
    ]
    if not stale:
        return None
    pod = stale[0]
    revision = pod.labels[REVISION_LABEL]
    return Finding(
        Category.ROLLOUT_STUCK,
        0.9,
        summary=(
            f"StatefulSet {w.name} never replaces {pod.name}, which fails on superseded "
            f"revision {revision}: the fixed revision {w.update_revision} waits for it."
        ),
        root_cause=(
            f"Pod {pod.name} of StatefulSet {w.namespace}/{w.name} runs revision {revision}, "
            f"which the StatefulSet no longer wants (update revision {w.update_revision}, "
            f"current {w.current_revision}), and it is not Ready. A rolling update "
            "(podManagementPolicy OrderedReady) waits for the broken pod to become Ready before "
            "it replaces any pod, so the fixed template never rolls out: the forced rollback "
            "case, where the broken pod must be deleted by hand."
        ),
        evidence=ev.cite(workload_id(w.kind, w.name), pod_id(pod.name), ALERT_ID),
        impact=f"{workload_state(ctx)}; the fix already in the template does not reach the pods.",
        immediate_actions=[
            f"Delete pod {pod.name} so the controller recreates it from revision "
            f"{w.update_revision} (kubectl -n {w.namespace} delete pod {pod.name}).",
        ],
        recommendations=[
            "After reverting a bad StatefulSet template, delete the pods the bad revision broke; "
            "alert on KubeStatefulSetUpdateNotRolledOut.",
        ],
        commands=[
            f"kubectl -n {w.namespace} get pods -l {_selector_text(w)} -L {REVISION_LABEL}",
            f"kubectl -n {w.namespace} delete pod {pod.name}",
            kc.rollout_status(w.kind, w.namespace, w.name),
        ],
        at_fault=True,
    )


def partition_held(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """A StatefulSet's update stops at its rollingUpdate partition: ordinals below it keep the
    old revision by design; with updateStrategy OnDelete (a StatefulSet's or a DaemonSet's)
    nothing moves until a pod is deleted. A partition left over from a canary is the rollout's
    own fault, so this wrapper is at fault when no pod fails for a cause of its own."""
    w = controller(ctx)
    if w is None or w.kind not in ("StatefulSet", "DaemonSet"):
        return None
    if w.kind == "DaemonSet":  # no revisions in its status: its updated count tells
        if w.update_strategy != "OnDelete" or (w.updated or 0) >= (w.desired or 0):
            return None
        return _on_delete(ctx, ev, w, proven(causes, settings))
    if not w.update_revision or w.update_revision == w.current_revision:
        return None
    if (w.updated or 0) >= (w.desired or 0):
        return None
    if w.update_strategy == "OnDelete":
        return _on_delete(ctx, ev, w, proven(causes, settings))
    forced = _forced_rollback(ctx, ev, w)
    if forced is not None:
        return forced
    if not w.partition:
        return None
    cause = proven(causes, settings)
    held = [f"{w.name}-{i}" for i in range(min(w.partition, w.desired or w.partition))]
    pending = next((r for r in w.revisions if r.name == w.update_revision), None)
    waits = (
        f" The update they wait for: {'; '.join(pending.changes[:3])}."
        if pending is not None and pending.changes
        else f" The update they wait for runs {', '.join(pending.images.values())}."
        if pending is not None and pending.images
        else ""
    )
    return Finding(
        Category.ROLLOUT_STUCK,
        0.9,
        summary=(
            f"StatefulSet {w.name} stops its update at partition {w.partition}: "
            f"{len(held)} of {w.desired} pods stay on revision {w.current_revision}."
        ),
        root_cause=(
            f"StatefulSet {w.namespace}/{w.name} has updateStrategy rollingUpdate partition "
            f"{w.partition}, so only ordinals >= {w.partition} move to revision "
            f"{w.update_revision}; {', '.join(held[:4])} stay on {w.current_revision} "
            f"({w.updated or 0}/{w.desired} updated). A partition left from a canary holds the "
            "rollout." + waits
        ),
        evidence=ev.cite(workload_id(w.kind, w.name), ALERT_ID),
        impact=f"{workload_state(ctx)}; the StatefulSet runs two revisions side by side.",
        immediate_actions=[
            f"Set partition to 0 to finish the rollout: kubectl -n {w.namespace} patch "
            f"statefulset {w.name} -p "
            '\'{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}\'',
        ],
        recommendations=[
            "Reset the partition in the same change that promotes a canary, or drive canaries "
            "with a tool that does (Argo Rollouts, Flagger).",
        ],
        commands=[
            kc.rollout_status(w.kind, w.namespace, w.name),
            kc.describe(w.kind, w.namespace, w.name),
        ],
        at_fault=cause is None,
    )


def ordered_ready_stalled(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """A StatefulSet with podManagementPolicy OrderedReady creates pod N+1 only once pod N is
    Ready. When a pod's readiness waits on its peers (a ZooKeeper, etcd or Consul quorum that
    needs the next ordinals), the set deadlocks: the peers are never created because the pod
    is never Ready. Without a cause of the pod's own, the policy is the fault."""
    w = controller(ctx)
    if w is None or w.kind != "StatefulSet" or w.pod_management_policy != "OrderedReady":
        return None
    ordinals = {
        int(p.name.rsplit("-", 1)[1]): p
        for p in ctx.pods
        if p.owner_name == w.name and p.name.rsplit("-", 1)[-1].isdigit()
    }
    if not ordinals or len(ordinals) >= (w.desired or 0):
        return None
    last = max(ordinals)
    stuck = ordinals[last]
    if stuck.conditions.get("Ready", ("",))[0] == "True" or stuck.deleting:
        return None
    cause = proven(causes, settings)
    missing = [f"{w.name}-{i}" for i in range(last + 1, w.desired or 0)]
    # the deadlock is proven when the unready pod waits for a member that does not exist:
    # its log names one, or it cannot resolve one's name under the headless Service
    absent = ctx.dns.absent_pod.split("/", 1)[1] if ctx.dns and ctx.dns.absent_pod else None
    waits = absent in missing or any(
        m in line for lg in ctx.logs if lg.pod == stuck.name for line in lg.lines for m in missing
    )
    if not waits:
        return None
    probe = next((c.readiness_probe for c in stuck.containers if c.readiness_probe), None)
    return Finding(
        Category.ROLLOUT_STUCK,
        0.88,
        summary=(
            f"StatefulSet {w.name} (OrderedReady) waits for {stuck.name} to be Ready before it "
            f"creates {', '.join(missing[:3])}, and {stuck.name} is never Ready."
        ),
        root_cause=(
            f"StatefulSet {w.namespace}/{w.name} has podManagementPolicy OrderedReady, so it "
            f"creates {missing[0]} only once {stuck.name} is Ready; {stuck.name} stays unready"
            + (f" (readiness probe {probe})" if probe else "")
            + f", so {', '.join(missing[:3])} {'is' if len(missing) == 1 else 'are'} never "
            "created. A readiness that needs the other members (a quorum) deadlocks the set."
        ),
        evidence=ev.cite(
            workload_id(w.kind, w.name),
            pod_id(stuck.name),
            *(e for e in ev.ids if e.startswith(f"event/Pod/{stuck.name}/Unhealthy")),
            dns_name_id(),
        ),
        impact=f"{workload_state(ctx)}; the members that would make it healthy do not exist.",
        immediate_actions=[
            f"Set podManagementPolicy: Parallel on StatefulSet {w.name} (it cannot be changed in "
            "place: delete the StatefulSet with --cascade=orphan and re-create it), or make "
            "the readiness probe pass before a quorum forms.",
        ],
        recommendations=[
            "Run quorum systems (ZooKeeper, etcd, Consul) with podManagementPolicy Parallel, "
            "or publishNotReadyAddresses on their headless Service so peers can find each other.",
        ],
        commands=[
            kc.describe(w.kind, w.namespace, w.name),
            f"kubectl -n {w.namespace} get pods -l {_selector_text(w)} -o wide",
        ],
        at_fault=cause is None,
    )


# --- HPA at max ---------------------------------------------------------------------------------


_MEMORY_TARGET = re.compile(r"\bmemory target (\d+)\b")
#: The JVM's initial heap: committed at start (and touched with AlwaysPreTouch), so the
#: container's memory never falls below it, whatever the load.
_INITIAL_HEAP = re.compile(r"-Xms(\d+)([kKmMgG]?)\b|-XX:InitialHeapSize=(\d+)([kKmMgG]?)\b")
_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _memory_floor(ctx: Context, ev: EvidenceIndex, hpa: HPASnapshot) -> Finding | None:
    """An HPA that scales on memory utilization while its pods' runtime holds a fixed heap at
    or above the target share of their memory request: utilization can never fall below the
    target, so the HPA adds replicas until its maximum whatever the load. The metric, not
    demand, is the fault."""
    target = next((m for x in hpa.metrics if (m := _MEMORY_TARGET.search(x))), None)
    if target is None:
        return None
    share = int(target.group(1)) / 100
    for pod in ctx.pods:
        for c in pod.containers:
            request = parse_quantity(c.requests.get("memory"))
            values = {**c.config_env, **c.env}.values()
            heap = next((m for v in values if (m := _INITIAL_HEAP.search(v))), None)
            if not request or heap is None:
                continue
            number, unit = (heap.group(1), heap.group(2)) if heap.group(1) else heap.group(3, 4)
            floor = int(number) * _UNIT[unit.lower()]
            if floor < share * request:
                continue
            return Finding(
                Category.BAD_CONFIG,
                0.88,
                summary=(
                    f"HPA {hpa.name} scales on memory, and {c.name}'s fixed heap "
                    f"({heap.group(0)}) already fills {floor / request:.0%} of its "
                    f"{c.requests.get('memory')} request, above the {share:.0%} target: it sits "
                    f"at maxReplicas {hpa.max_replicas} whatever the load."
                ),
                root_cause=(
                    f"HorizontalPodAutoscaler {hpa.namespace}/{hpa.name} targets {share:.0%} "
                    f"memory utilization, but container {c.name} of {pod.name} starts with "
                    f"{heap.group(0)}: the runtime commits that heap at start, so each pod uses "
                    f"at least {floor / request:.0%} of its {c.requests.get('memory')} memory "
                    "request at any load. Utilization never falls to the target, so the HPA "
                    f"keeps adding replicas up to maxReplicas {hpa.max_replicas}"
                    + (f" ({', '.join(hpa.metrics)})" if hpa.metrics else "")
                    + "."
                ),
                evidence=ev.cite(hpa_id(hpa.name), *pod_cites(ev, pod, c), ALERT_ID),
                impact=(
                    f"{workload_state(ctx)}; it runs {hpa.max_replicas} replicas for the load "
                    "of far fewer, and cannot scale further when real load comes."
                ),
                immediate_actions=[
                    f"Scale HPA {hpa.name} on CPU or a request-rate metric instead of memory, "
                    f"or raise its memory target above {floor / request:.0%}.",
                ],
                recommendations=[
                    "Do not autoscale JVMs (or any runtime with a fixed heap) on memory "
                    "utilization: their memory does not follow load.",
                ],
                commands=[
                    kc.describe("hpa", hpa.namespace, hpa.name),
                    kc.top_pod(pod.namespace, pod.name),
                ],
                at_fault=True,
            )
    return None


def hpa_maxed(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """An HPA runs at maxReplicas and wants more (ScalingLimited TooManyReplicas).

    Pods that crash or hang make every remaining pod busier, so an HPA also maxes out when
    its pods fail: then their cause is the root cause and this is the link above it."""
    cause = proven(causes, settings)
    for hpa in ctx.hpas:
        if hpa.max_replicas <= 0 or hpa.current_replicas < hpa.max_replicas:
            continue
        floored = _memory_floor(ctx, ev, hpa) if cause is None else None
        if floored is not None:
            return floored
        limited = hpa.conditions.get("ScalingLimited", ("False", "", ""))
        wants_more = limited[0] == "True" and limited[1] in ("TooManyReplicas", "")
        wants_more = wants_more or hpa.desired_replicas > hpa.max_replicas
        score = 0.86 if wants_more else 0.74
        load = ", ".join(hpa.metrics)
        keda = hpa.owner_kind == "ScaledObject"
        ns = hpa.namespace
        return Finding(
            Category.HPA_MAXED,
            score,
            summary=(
                f"HPA {hpa.name} is at its maximum of {hpa.max_replicas} replicas"
                + (" and wants more" if wants_more else "")
                + "."
            ),
            root_cause=(
                f"HorizontalPodAutoscaler {ns}/{hpa.name} runs {hpa.target_kind} "
                f"{hpa.target_name} at maxReplicas {hpa.max_replicas}"
                + (
                    f" (set by KEDA ScaledObject {hpa.owner_name}'s maxReplicaCount)"
                    if keda
                    else ""
                )
                + (
                    f" (ScalingLimited {limited[1]}: {quote_line(limited[2], 120)})"
                    if limited[0] == "True"
                    else ""
                )
                + (f"; load is {load}" if load else "")
                + (
                    f"; its pods also fail: {_lower_first(cause.summary.rstrip('.'))}"
                    if cause is not None
                    else ": demand exceeds what the maximum allows, so each pod stays above target."
                )
            ),
            evidence=ev.cite(
                hpa_id(hpa.name),
                workload_id(hpa.target_kind, hpa.target_name),
                *[metric_id(m.name) for m in ctx.metrics[:2]],
                ALERT_ID,
            ),
            impact=(
                f"{hpa.target_kind} {hpa.target_name} cannot scale further; latency rises and "
                "requests may fail under more load."
            ),
            immediate_actions=[
                (
                    f"Raise maxReplicaCount of ScaledObject {hpa.owner_name}: KEDA owns HPA "
                    f"{hpa.name} and writes its maxReplicas from it, so a change to the HPA is "
                    "undone"
                    if keda
                    else f"Raise maxReplicas of HPA {hpa.name}"
                )
                + " (if the nodes and downstream services can take it), or shed/rate-limit the "
                "extra load.",
                "Check whether the load is real (traffic growth) or a retry storm / slow "
                "dependency making each request cost more.",
            ],
            recommendations=[
                "Size maxReplicas from load tests with headroom; alert on KubeHpaMaxedOut "
                "together with latency.",
            ],
            commands=[
                kc.describe("hpa", ns, hpa.name),
                f"kubectl -n {ns} patch scaledobject {hpa.owner_name} --type=merge "
                f'-p \'{{"spec":{{"maxReplicaCount":{hpa.max_replicas * 2}}}}}\''
                if keda
                else f"kubectl -n {ns} patch hpa {hpa.name} --type=merge "
                f'-p \'{{"spec":{{"maxReplicas":{hpa.max_replicas * 2}}}}}\'',
                f"kubectl -n {ns} top pods",
                kc.get_kind("hpa", ns),
            ],
        )
    return None


# --- CPU throttling -----------------------------------------------------------------------------

_THROTTLE_PCT = re.compile(r"([0-9.]+)\s*% throttling", re.I)


def cpu_throttling(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> Finding | None:
    """The container hits its CPU limit: CFS throttling metric or the CPUThrottlingHigh alert."""
    ratio: float | None = None
    metric_name = None
    for m in ctx.metrics:
        if "throttl" not in (m.name + m.query).lower() or not m.values:
            continue
        value = max(m.values.values())
        value = value / 100 if value > 1 else value
        if value >= settings.cpu_throttling_ratio:
            ratio, metric_name = value, m.name
            break
    alerted = ctx.alert.name == "CPUThrottlingHigh"
    if ratio is None and not alerted:
        return None
    if ratio is None:
        pct = _THROTTLE_PCT.search(ctx.alert.annotations.get("description", ""))
        ratio = float(pct.group(1)) / 100 if pct else None
    name = ctx.alert.labels.get("container") or ctx.target.container
    pod_name = ctx.alert.labels.get("pod")
    pod = next((p for p in ctx.pods if p.name == pod_name), None) or target_pod(ctx)
    c = None
    if pod is not None:
        c = pod.container(name) if name else None
        c = c or next((x for x in pod.containers if x.limits.get("cpu")), None)
    limit = c.limits.get("cpu") if c else None
    raised = double_quantity(limit)
    w = controller(ctx)
    where = f"container {c.name} of pod {pod.name}" if c and pod else ctx.target.display
    pct_text = f" in {ratio:.0%} of its CFS periods" if ratio is not None else ""
    cmds = []
    if pod is not None:
        cmds += [kc.top_pod(pod.namespace, pod.name), kc.describe("pod", pod.namespace, pod.name)]
    injected = injected_sizing(ctx, pod, c, "cpu limit", raised) if pod and c else None
    defaulted = limit_range_default(ctx, c, "cpu", limit) if c else None
    if injected is not None:
        cmds += [injected.command] if injected.command else []
    elif w is not None and c is not None and raised:
        cmds.append(kc.set_resources(w.kind, w.namespace, w.name, c.name, limits=f"cpu={raised}"))
    return Finding(
        Category.CPU_THROTTLING,
        0.8 if metric_name else 0.76,
        summary=f"{where} is CPU-throttled{pct_text}: its CPU limit {limit or '?'} is too low.",
        root_cause=(
            f"{where[0].upper() + where[1:]} is throttled by the kernel{pct_text} because it "
            f"wants more CPU than its limit of {limit or '(unknown)'}"
            + (injected.text if injected else "")
            + (defaulted.text if defaulted else "")
            + "; requests slow down (latency, timeouts) without the container crashing."
        ),
        evidence=ev.cite(
            metric_id(metric_name) if metric_name else None,
            ALERT_ID,
            *(pod_cites(ev, pod, c) if pod else []),
            limit_range_id(defaulted.limit_range) if defaulted and defaulted.limit_range else None,
        ),
        impact=f"{workload_state(ctx)}; latency of {where} rises while it is throttled.",
        immediate_actions=[
            injected.action
            if injected
            else defaulted.action
            if defaulted
            else f"Raise the CPU limit of {c.name if c else 'the container'}"
            + (f" ({limit} -> {raised})" if raised else "")
            + " or remove it (keep the request), then watch the throttling ratio drop.",
        ],
        recommendations=[
            "Set CPU requests from observed usage and avoid tight CPU limits on latency-"
            "sensitive services; scale out with an HPA instead.",
        ],
        commands=cmds,
    )


# --- link-only wrappers: they name no category of their own ------------------------------------


def replicas_mismatch(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """A Deployment, StatefulSet or DaemonSet has fewer ready replicas than it wants.

    That is what KubeDeploymentReplicasMismatch and its siblings see, never why: the link
    names the controller and its counts above the cause of its missing pods."""
    w = controller(ctx)
    if w is None or w.kind not in ("Deployment", "StatefulSet", "DaemonSet"):
        return None
    if w.desired is None or (w.ready or 0) >= w.desired:
        return None
    cause = proven(causes, settings)
    return Finding(
        Category.UNKNOWN,
        0.3,
        summary=(
            f"{w.kind} {w.namespace}/{w.name} has {w.ready or 0}/{w.desired} ready replicas"
            + (f" because {_lower_first(cause.summary.rstrip('.'))}" if cause else "")
            + "."
        )[:600],
        root_cause=f"{w.kind} {w.namespace}/{w.name} runs below its desired replica count.",
        evidence=ev.cite(workload_id(w.kind, w.name)),
        commands=[kc.describe(w.kind, w.namespace, w.name)],
    )


def pod_not_ready(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """The alerted pod is not Ready (KubePodNotReady): a link above why it is not."""
    if ctx.target.kind != "Pod":
        return None
    pod = target_pod(ctx)
    if pod is None or pod.conditions.get("Ready", ("True", "", ""))[0] == "True":
        return None
    cause = proven(causes, settings)
    return Finding(
        Category.UNKNOWN,
        0.3,
        summary=(
            f"Pod {pod.namespace}/{pod.name} is not ready ({pod.phase or 'Unknown'})"
            + (f" because {_lower_first(cause.summary.rstrip('.'))}" if cause else "")
            + "."
        )[:600],
        root_cause=f"Pod {pod.namespace}/{pod.name} is not ready.",
        evidence=pod_cites(ev, pod, None),
    )


def target_down(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> Finding | None:
    """Prometheus cannot scrape a target (TargetDown): a link above why its pods do not answer."""
    if ctx.alert.name != "TargetDown":
        return None
    cause = proven(causes, settings)
    job = ctx.alert.labels.get("job") or ctx.target.name
    return Finding(
        Category.UNKNOWN,
        0.3,
        summary=(
            f"Prometheus cannot scrape {job} in {ctx.target.namespace or 'the cluster'}"
            + (f" because {_lower_first(cause.summary.rstrip('.'))}" if cause else "")
            + "."
        )[:600],
        root_cause=f"The scrape targets of {job} are down.",
        evidence=ev.cite(ALERT_ID),
    )


__all__ = [
    "cpu_throttling",
    "hpa_maxed",
    "job_backoff_limit",
    "ordered_ready_stalled",
    "partition_held",
    "pod_not_ready",
    "proven",
    "replicas_mismatch",
    "rollout_stuck",
    "target_down",
]
