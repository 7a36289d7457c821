"""The alerted object's workload, its owner chain, its revisions and its pods.

Reads from the alert's target: a pod's controller (a ReplicaSet stands for its Deployment, a
Job for its CronJob), a workload and its ReplicaSets, an HPA's scale target, a PVC's, a node's
or a Service's pods. Leaves the pods raw in the scope for the ``pods`` source.

Evidence: ``workload/<Kind>/<name>`` (replicas and conditions) for the workload and each
owner, and ``revision/<name>`` for each ReplicaSet, with what it changed.
"""

from __future__ import annotations

import re
from typing import Any

from oncallm.gathering.objects import (
    Obj,
    conditions,
    controller_of,
    label_selector,
    match_labels,
    meta,
    name_of,
)
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.target import COMPONENT
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, RevisionSnapshot, WorkloadSnapshot
from oncallm.models.policy import Depth

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


def workload_id(kind: str, name: str) -> str:
    """``workload/<Kind>/<name>``: replicas and conditions of a Deployment, Job, ..."""
    return f"workload/{kind}/{name}"


def revision_id(name: str) -> str:
    """``revision/<name>``: one ReplicaSet or ControllerRevision, with what it changed."""
    return f"revision/{name}"


# -- reading ---------------------------------------------------------------------------------


async def read(scope: Scope) -> None:
    t, ns, reader = scope.target, scope.target.namespace, scope.reader
    if t.kind == "Pod":
        pod = await scope.get("Pod", ns, t.name)
        if pod is None:
            scope.missing(f"pod {ns}/{t.name}", "the pod no longer exists")
            # The alert may outlive the pod; look at its siblings through a guessed owner.
            owner = guess_deployment(t.name)
            if owner:
                await _by_name(scope, "Deployment", ns, owner, guessed=True)
            return
        owner_ref = controller_of(pod)
        if owner_ref:
            await _by_name(scope, owner_ref[0], ns, owner_ref[1], focus=pod)
        else:
            scope.raw_pods = [pod]
        return
    if t.kind in WORKLOAD_KINDS:
        await _by_name(scope, t.kind, ns, t.name)
    elif t.kind == "HorizontalPodAutoscaler":
        hpa = await scope.get("HorizontalPodAutoscaler", ns, t.name)
        if hpa:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") and ref.get("name"):
                await _by_name(scope, str(ref["kind"]), ns, str(ref["name"]))
    elif t.kind == "PersistentVolumeClaim" and ns:
        pods = await reader.list("Pod", ns)
        scope.raw_pods = [
            p
            for p in pods
            if any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == t.name
                for v in (p.get("spec") or {}).get("volumes") or []
            )
        ]
    elif t.kind == "Node":
        scope.raw_pods = await reader.list("Pod", None, field_selector=f"spec.nodeName={t.name}")
    elif t.kind == "Service" and ns:
        svc = await scope.get("Service", ns, t.name)
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if selector:
            scope.raw_pods = await reader.list("Pod", ns, label_selector=label_selector(selector))
        elif svc is None:
            # An application's own alert names its job's ``service`` (the metrics Service, or
            # a label the application sets itself); with no Service of that name, the
            # workload of the same name is what the alert is about (charts name the Service
            # after its workload: node-exporter's DaemonSet and Service share a name).
            for kind in ("Deployment", "StatefulSet", "DaemonSet"):
                await _by_name(scope, kind, ns, t.name, guessed=True)
                if scope.raw_pods:
                    break
    elif t.kind == "PodMonitor" and ns:
        monitor = await scope.get("PodMonitor", ns, t.name, api_version=PROMETHEUS_OPERATOR)
        selector = ((monitor or {}).get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels") or {}
        if labels:
            scope.raw_pods = await reader.list("Pod", ns, label_selector=label_selector(labels))
    elif t.kind == "PodDisruptionBudget" and ns:
        await _disruption_budget(scope, ns, t.name)
    elif t.kind == "PersistentVolume":
        await _volume(scope, t.name)
    elif t.kind == COMPONENT:
        scope.raw_pods = await component_pods(scope, t.name, t.namespace)
    elif t.kind == "Cluster" and scope.alert.name in CAPACITY_ALERTS:
        # Overcommit is a cluster-wide sum: what it costs is the pods that no longer fit.
        pending = await reader.list("Pod", None, field_selector="status.phase=Pending")
        scope.raw_pods = [p for p in pending if not (p.get("spec") or {}).get("nodeName")]


#: The labels that the pods of a cluster component carry, as kubeadm (static pods
#: ``component=<name>, tier=control-plane``), its kube-proxy DaemonSet (``k8s-app``) and the
#: kube-state-metrics chart label them. A component that is down is most often its pods
#: failing: a flag a new version removed, a certificate, a crash. Managed control planes run
#: no such pods; then nothing is read and the other sources stand alone.
COMPONENT_PODS: dict[str, tuple[str | None, str]] = {
    "apiserver": ("kube-system", "component=kube-apiserver"),
    "kube-scheduler": ("kube-system", "component=kube-scheduler"),
    "kube-controller-manager": ("kube-system", "component=kube-controller-manager"),
    "etcd": ("kube-system", "component=etcd"),
    "kube-proxy": ("kube-system", "k8s-app=kube-proxy"),
    "kube-state-metrics": (None, "app.kubernetes.io/name=kube-state-metrics"),
}


async def component_pods(scope: Scope, name: str, namespace: str | None) -> list[Obj]:
    """The pods of a cluster component (``COMPONENT_PODS``); none for one that runs outside
    pods (the kubelet) or that the table does not know."""
    known = COMPONENT_PODS.get(name)
    if known is None:
        return []
    where, selector = known
    return await scope.reader.list("Pod", namespace or where, label_selector=selector)


#: prometheus-operator's group: a PodMonitor says which pods a scrape job covers.
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"

CAPACITY_ALERTS = frozenset(
    {
        "KubeCPUOvercommit",
        "KubeMemoryOvercommit",
        "KubeCPUQuotaOvercommit",
        "KubeMemoryQuotaOvercommit",
    }
)
"""Cluster-wide capacity alerts: their evidence is the unscheduled pods, wherever they are."""


async def _volume(scope: Scope, name: str) -> None:
    """A PersistentVolume stands for the claim it is bound to (its claimRef) and the pods that
    mount that claim: a volume in error is felt by the workload that waits for it."""
    pv = await scope.get("PersistentVolume", None, name)
    ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
    claim, namespace = ref.get("name"), ref.get("namespace")
    if not claim or not namespace:
        return
    pods = [
        p
        for p in await scope.reader.list("Pod", str(namespace))
        if any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
            for v in (p.get("spec") or {}).get("volumes") or []
        )
    ]
    owners = {controller_of(p) for p in pods} - {None}
    if len(owners) == 1:
        kind, owner = next(iter(owners))  # type: ignore[misc]
        await _by_name(scope, kind, str(namespace), owner)
    if not scope.raw_pods:
        scope.raw_pods = pods


async def _disruption_budget(scope: Scope, namespace: str, name: str) -> None:
    """A PodDisruptionBudget stands for the pods it selects and their controller: too few
    healthy pods is what the budget reports, why they are unhealthy is theirs."""
    pdb = await scope.get("PodDisruptionBudget", namespace, name)
    selector = ((pdb or {}).get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    if not labels:
        return
    pods = await scope.reader.list("Pod", namespace, label_selector=label_selector(labels))
    owners = {controller_of(p) for p in pods} - {None}
    if len(owners) == 1:
        kind, owner = next(iter(owners))  # type: ignore[misc]
        await _by_name(scope, kind, namespace, owner)
    if not scope.raw_pods:
        scope.raw_pods = pods


async def _by_name(
    scope: Scope,
    kind: str,
    namespace: str | None,
    name: str,
    focus: Obj | None = None,
    guessed: bool = False,
) -> None:
    ctx, reader = scope.ctx, scope.reader
    obj = await scope.get(kind, namespace, name)
    if obj is None:
        if not guessed:
            scope.missing(f"{kind.lower()} {namespace}/{name}", "not found")
        if focus is not None:
            scope.raw_pods = [focus]
        return
    # A ReplicaSet stands for its Deployment; a Job for its CronJob (kept as owner).
    owner = controller_of(obj)
    if kind == "ReplicaSet" and owner and owner[0] == "Deployment":
        dep = await scope.get("Deployment", namespace, owner[1])
        if dep is not None:
            obj, kind = dep, "Deployment"
    if kind == "Job" and owner and owner[0] == "CronJob":
        cron = await scope.get("CronJob", namespace, owner[1])
        if cron is not None:
            ctx.owners.append(workload_snapshot(cron))
    revisions = []
    if kind == "Deployment":
        all_rs = await reader.list(
            "ReplicaSet", namespace, label_selector=label_selector(match_labels(obj))
        )
        owned = [r for r in all_rs if controller_of(r) == ("Deployment", name_of(obj))]
        revisions = replicaset_revisions(owned)
    elif kind in ("StatefulSet", "DaemonSet"):
        async with scope.guard(f"controllerrevisions of {kind} {name_of(obj)}"):
            all_cr = await reader.list(
                "ControllerRevision", namespace, label_selector=label_selector(match_labels(obj))
            )
            owned = [r for r in all_cr if controller_of(r) == (kind, name_of(obj))]
            revisions = controller_revisions(owned)
    ctx.workload = workload_snapshot(obj, revisions)
    if kind == "CronJob":
        jobs = [
            j
            for j in await reader.list("Job", namespace)
            if controller_of(j) == ("CronJob", name_of(obj))
        ]
        jobs.sort(key=lambda j: str(meta(j).get("creationTimestamp", "")))
        if jobs:
            latest = jobs[-1]
            ctx.owners.append(ctx.workload)
            ctx.workload = workload_snapshot(latest)
            scope.raw_pods = await reader.list(
                "Pod", namespace, label_selector=f"job-name={name_of(latest)}"
            )
        return
    selector: str | None
    if kind == "Job":
        selector = f"job-name={name_of(obj)}"
    else:
        labels = match_labels(obj)
        selector = label_selector(labels) if labels else None
    if selector:
        scope.raw_pods = await reader.list("Pod", namespace, label_selector=selector)
    if focus is not None and all(name_of(p) != name_of(focus) for p in scope.raw_pods):
        scope.raw_pods.append(focus)


def guess_deployment(pod_name: str) -> str | None:
    """``api-7d9f8c6b5-x2kqp`` -> ``api``: a Deployment's pod name is name-hash-suffix."""
    match = re.match(r"^(.+)-[a-z0-9]{8,10}-[a-z0-9]{5}$", pod_name)
    return match.group(1) if match else None


# -- snapshots -------------------------------------------------------------------------------


def _images(template: Obj) -> dict[str, str]:
    spec = (template.get("spec") or {}) if template else {}
    return {str(c.get("name")): str(c.get("image", "")) for c in spec.get("containers") or []}


def _env_resources(template: Obj) -> dict[str, str]:
    """A flat view of what a pod template sets, to describe a revision's changes."""
    out: dict[str, str] = {}
    spec = (template.get("spec") or {}) if template else {}
    # the pod's own fields a rollout changes that decide where and as whom it runs
    if spec.get("serviceAccountName"):
        out["serviceAccountName"] = str(spec["serviceAccountName"])
    for key, value in (spec.get("nodeSelector") or {}).items():
        out[f"nodeSelector.{key}"] = str(value)
    annotations = (template.get("metadata") or {}).get("annotations") or {} if template else {}
    for key, value in annotations.items():
        out[f"annotations.{key}"] = str(value)[:200]
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        name = c.get("name")
        out[f"{name}.image"] = str(c.get("image", ""))
        for var in c.get("env") or []:
            if "value" in var:
                out[f"{name}.env.{var.get('name')}"] = str(var.get("value"))
            elif "valueFrom" in var:
                out[f"{name}.env.{var.get('name')}"] = _compact(var["valueFrom"])
        for kind in ("requests", "limits"):
            for res, qty in ((c.get("resources") or {}).get(kind) or {}).items():
                out[f"{name}.{kind}.{res}"] = str(qty)
        for arg_key in ("command", "args"):
            if c.get(arg_key):
                out[f"{name}.{arg_key}"] = " ".join(str(a) for a in c[arg_key])
    return out


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={_compact(v)}" for k, v in value.items())
    return str(value)


def revision_changes(older: Obj | None, newer: Obj) -> list[str]:
    """What a pod template changed against the one before it, one line each."""
    if older is None:
        return []
    before, after = _env_resources(older), _env_resources(newer)
    changes = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes.append(f"{key}: {before.get(key, '(unset)')} -> {after.get(key, '(unset)')}")
    return changes[:20]


def replicaset_revisions(replicasets: list[Obj]) -> list[RevisionSnapshot]:
    """A Deployment's ReplicaSets as revisions, newest first, each with what it changed."""

    def revision(rs: Obj) -> int:
        value = (meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision")
        try:
            return int(value) if value is not None else 0
        except ValueError:
            return 0

    ordered = sorted(replicasets, key=revision)
    out = []
    for i, rs in enumerate(ordered):
        template = (rs.get("spec") or {}).get("template") or {}
        previous = ((ordered[i - 1].get("spec") or {}).get("template") or {}) if i else None
        status = rs.get("status") or {}
        out.append(
            RevisionSnapshot(
                name=name_of(rs),
                revision=revision(rs) or None,
                images=_images(template),
                created_at=meta(rs).get("creationTimestamp"),
                replicas=int(status.get("replicas", 0) or 0),
                ready_replicas=int(status.get("readyReplicas", 0) or 0),
                changes=revision_changes(previous, template),
            )
        )
    return list(reversed(out))


def controller_revisions(revisions: list[Obj]) -> list[RevisionSnapshot]:
    """A StatefulSet's or DaemonSet's ControllerRevisions, newest first, each with what it
    changed: their ``data`` holds the pod template the revision rolls out."""

    def number(cr: Obj) -> int:
        try:
            return int(cr.get("revision") or 0)
        except (TypeError, ValueError):
            return 0

    def template(cr: Obj) -> Obj:
        tpl = dict(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
        tpl.pop("$patch", None)
        return tpl

    ordered = sorted(revisions, key=number)
    out = []
    for i, cr in enumerate(ordered):
        tpl = template(cr)
        out.append(
            RevisionSnapshot(
                name=name_of(cr),
                revision=number(cr) or None,
                images=_images(tpl),
                created_at=meta(cr).get("creationTimestamp"),
                changes=revision_changes(template(ordered[i - 1]) if i else None, tpl),
            )
        )
    return list(reversed(out))


def workload_snapshot(
    obj: Obj, revisions: list[RevisionSnapshot] | None = None
) -> WorkloadSnapshot:
    kind = str(obj.get("kind", ""))
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    owner = controller_of(obj)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    snap = WorkloadSnapshot(
        kind=kind,
        name=name_of(obj),
        namespace=str(meta(obj).get("namespace", "")),
        conditions=conditions(obj),
        revisions=revisions or [],
        selector={str(k): str(v) for k, v in selector.items()},
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
    )
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        snap.desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        snap.ready = int(status.get("readyReplicas", 0) or 0)
        snap.updated = int(status.get("updatedReplicas", 0) or 0)
        snap.available = int(status.get("availableReplicas", 0) or 0)
        snap.unavailable = int(status.get("unavailableReplicas", 0) or 0)
        snap.progress_deadline_seconds = spec.get("progressDeadlineSeconds")
        if kind == "StatefulSet":
            snap.update_strategy = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
            rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
            if rolling.get("partition") is not None:
                snap.partition = int(rolling["partition"])
            snap.current_revision = status.get("currentRevision")
            snap.update_revision = status.get("updateRevision")
            snap.pod_management_policy = str(spec.get("podManagementPolicy") or "OrderedReady")
    elif kind == "DaemonSet":
        snap.update_strategy = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
        snap.desired = int(status.get("desiredNumberScheduled", 0) or 0)
        snap.ready = int(status.get("numberReady", 0) or 0)
        snap.updated = int(status.get("updatedNumberScheduled", 0) or 0)
        snap.available = int(status.get("numberAvailable", 0) or 0)
        snap.unavailable = int(status.get("numberUnavailable", 0) or 0)
    elif kind == "Job":
        snap.backoff_limit = int(spec.get("backoffLimit", 6) or 0)
        snap.failed = int(status.get("failed", 0) or 0)
        snap.succeeded = int(status.get("succeeded", 0) or 0)
        snap.active = int(status.get("active", 0) or 0)
        snap.desired = int(spec.get("completions", 1) or 1)
        snap.selector = {"job-name": snap.name}
        snap.active_deadline_seconds = spec.get("activeDeadlineSeconds")
    elif kind == "CronJob":
        snap.active = len(status.get("active") or [])
        snap.active_jobs = [str(r.get("name", "")) for r in status.get("active") or []][:10]
        snap.schedule = spec.get("schedule")
        snap.concurrency_policy = spec.get("concurrencyPolicy") or "Allow"
    return snap


# -- evidence --------------------------------------------------------------------------------


def workload_abnormal(w: WorkloadSnapshot) -> bool:
    for cond, (status, reason, _) in w.conditions.items():
        if cond in ("Failed", "ReplicaFailure") and status == "True":
            return True
        if cond in ("Progressing", "Available") and status == "False":
            return True
        if reason in ("ProgressDeadlineExceeded", "BackoffLimitExceeded", "DeadlineExceeded"):
            return True
    return bool(w.unavailable)


def describe_workload(w: WorkloadSnapshot) -> str:
    parts = [f"{w.kind} {w.name}"]
    if w.kind == "Job":
        parts.append(
            f"active {w.active or 0}, succeeded {w.succeeded or 0}, failed {w.failed or 0}, "
            f"backoffLimit {w.backoff_limit if w.backoff_limit is not None else 6}"
        )
    else:
        parts.append(
            f"desired {w.desired}, ready {w.ready}, updated {w.updated}, "
            f"available {w.available}, unavailable {w.unavailable or 0}"
        )
    if w.update_revision and w.update_revision != w.current_revision:
        parts.append(f"updating {w.current_revision} -> {w.update_revision}")
    if w.partition:
        parts.append(f"rollingUpdate partition {w.partition}")
    for cond, (status, reason, message) in w.conditions.items():
        parts.append(f"{cond}={status} {reason}: {message}".strip())
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for w in [w for w in [ctx.workload] if w is not None] + list(ctx.owners):
        out.add(
            Tier.OBJECT_BAD if workload_abnormal(w) else Tier.BACKGROUND,
            workload_id(w.kind, w.name),
            EvidenceSource.WORKLOAD,
            f"{w.kind.lower()}/{w.namespace}/{w.name}",
            describe_workload(w),
        )
        for rev in w.revisions:
            images = ", ".join(f"{c}={img}" for c, img in rev.images.items())
            changes = f"; changed: {'; '.join(rev.changes)}" if rev.changes else ""
            number = f"revision {rev.revision} " if rev.revision is not None else ""
            out.add(
                Tier.BACKGROUND,
                revision_id(rev.name),
                EvidenceSource.WORKLOAD,
                f"{w.kind.lower()}/{w.namespace}/{w.name}",
                f"{number}{rev.name}: {rev.ready_replicas}/{rev.replicas} ready; "
                f"images {images or '-'}{changes}",
                time=rev.created_at,
            )


SOURCE = Source(
    "workload",
    Stage.TARGET,
    read,
    evidence,
    depth=Depth.QUICK,
    resources=(
        "pods",
        "services",
        "horizontalpodautoscalers.autoscaling",
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "replicasets.apps",
        "jobs.batch",
        "cronjobs.batch",
        "podmonitors.monitoring.coreos.com",
    ),
    label=lambda scope: f"{scope.target.kind.lower()} {scope.target.name}",
)
