"""The pods' PersistentVolumeClaims (and an alerted one), each with its volume and class.

Reads each claim, its PersistentVolume and its StorageClass, at most ten claims; a claim
that does not exist goes to the missing objects (``missing/...``, see ``config_refs``). A
claim whose volume does not exist (Lost) has the logs of its namespace's newest Job pods
searched for the deletion of that volume (a clean-up CronJob).

Evidence: ``pvc/<name>``: phase, class (and whether it exists), request, volume, provisioner.
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.logs import first_container_log
from oncallm.gathering.sources.pods import pod_snapshot
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, PVCSnapshot

#: Claims looked at per analysis.
MAX_CLAIMS = 10


def pvc_id(name: str) -> str:
    """``pvc/<name>``: one PersistentVolumeClaim."""
    return f"pvc/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    names = {c for p in scope.ctx.pods for c in p.pvcs}
    if scope.target.kind == "PersistentVolumeClaim":
        names.add(scope.target.name)
    for name in sorted(names)[:MAX_CLAIMS]:
        async with scope.guard(f"pvc {name}"):
            pvc = await scope.get("PersistentVolumeClaim", ns, name)
            if pvc is None:
                scope.ctx.missing_objects.append(f"PersistentVolumeClaim {ns}/{name}")
                continue
            spec = pvc.get("spec") or {}
            pv = (
                await scope.get("PersistentVolume", None, spec["volumeName"])
                if spec.get("volumeName")
                else None
            )
            sc_name = spec.get("storageClassName")
            sc = await scope.get("StorageClass", None, sc_name) if sc_name else None
            snap = pvc_snapshot(pvc, pv, sc, sc_checked=bool(sc_name))
            for host in _pinned_hosts(pv)[:3]:
                # a local volume pinned to a node: is the node still there?
                if await scope.get("Node", None, host) is None:
                    snap.volume_nodes_missing.append(host)
            if snap.phase == "Pending" and snap.provisioner and snap.volume_name is None:
                snap.provisioner_pods = await provisioner_pods(scope, snap.provisioner)
            if snap.volume_name and pv is None:
                snap.volume_missing = True
                snap.volume_deleted_by = await volume_deleter(
                    scope, snap.namespace, snap.volume_name
                )
            scope.ctx.pvcs.append(snap)


#: Job pods of the claim's namespace whose logs are searched for the deletion of its volume,
#: the newest first, and the lines read of each.
DELETER_PODS = 5
DELETER_LINES = 200
_DELETED = re.compile(r"delet|remov|purg|reclaim", re.IGNORECASE)


async def volume_deleter(scope: Scope, ns: str, volume: str) -> str | None:
    """Who logged deleting ``volume``: a clean-up Job of the claim's namespace (a janitor
    CronJob that took a bound volume for an orphan). Without audit logs, the deleter's own
    log is the evidence an engineer would look for; only Job pods are searched, since a
    volume is deleted by a script far more often than by a long-running service."""
    async with scope.guard(f"job pods in {ns}"):
        pods = await scope.reader.list("Pod", ns, label_selector="job-name")
        pods.sort(key=lambda p: str(meta(p).get("creationTimestamp") or ""), reverse=True)
        for pod in pods[:DELETER_PODS]:
            log = await first_container_log(scope, pod, DELETER_LINES)
            for line in (log.lines if log else [])[::-1]:
                if volume in line and _DELETED.search(line):
                    job = (meta(pod).get("labels") or {}).get("job-name", "?")
                    return f"Job {job} (pod {name_of(pod)}): {line.strip()[:300]}"
    return None


#: Where CSI drivers' controllers usually run, and the sidecar every CSI controller has.
CSI_NAMESPACE = "kube-system"
CSI_PROVISIONER_SIDECAR = "csi-provisioner"
#: Words of a driver's name that do not tell one driver from another.
_COMMON_WORDS = {
    *("csi", "io", "com", "k8s", "driver", "storage", "kubernetes"),
    *("aws", "amazon", "gcp", "gke", "google", "azure", "cloud"),  # a vendor has several drivers
}
_SCANNED_PODS = 300
"""Pods of kube-system looked at for a driver's controller (the namespace is listed once)."""


def _words(text: str) -> set[str]:
    return {w for w in text.replace(".", "-").replace("/", "-").split("-") if w} - _COMMON_WORDS


async def provisioner_pods(scope: Scope, provisioner: str) -> list[str]:
    """The controller pods of the CSI driver a Pending claim waits for: the pods of
    kube-system that run the csi-provisioner sidecar and share a word with the driver's name
    (``ebs`` of ``ebs.csi.aws.com`` in ``ebs-csi-controller``), each with its state: a driver
    whose controller crash-loops provisions nothing."""
    if "/" in provisioner and "csi" not in provisioner:
        return []  # an in-tree provisioner (kubernetes.io/aws-ebs): no controller pods
    wanted = _words(provisioner)
    out: list[str] = []
    async with scope.guard(f"controller pods of {provisioner}"):
        for pod in (await scope.reader.list("Pod", CSI_NAMESPACE))[:_SCANNED_PODS]:
            containers = (pod.get("spec") or {}).get("containers") or []
            if not any(c.get("name") == CSI_PROVISIONER_SIDECAR for c in containers):
                continue
            names = " ".join([name_of(pod), *(str(c.get("image", "")) for c in containers)])
            if wanted and not any(word in names for word in wanted):
                continue
            snap = pod_snapshot(pod)
            bad = [
                f"{c.name} {c.reason or c.state}"
                + (f" (exit {c.last_exit_code})" if c.last_exit_code not in (None, 0) else "")
                + f", {c.restart_count} restarts"
                for c in snap.containers
                if not c.init and (not c.ready or c.restart_count)
            ]
            out.append(f"{snap.name}: " + ("; ".join(bad[:2]) if bad else "running"))
        if not out:
            out = await _provisioner_workloads(scope, wanted)
    return out[:3]


#: Annotations a scaler leaves on the workload it scaled down, naming itself.
SCALED_BY = (
    ("downscaler/original-replicas", "kube-downscaler"),
    ("keda.sh/paused-replicas", "KEDA"),
)


async def _provisioner_workloads(scope: Scope, wanted: set[str]) -> list[str]:
    """With no controller pod at all, the Deployment or StatefulSet of kube-system whose pod
    template runs the csi-provisioner sidecar: scaled to 0 (by hand or by a downscaler, whose
    annotation says so) nothing provisions."""
    out: list[str] = []
    for kind in ("Deployment", "StatefulSet"):
        for obj in (await scope.reader.list(kind, CSI_NAMESPACE))[:_SCANNED_PODS]:
            spec = obj.get("spec") or {}
            template = (spec.get("template") or {}).get("spec") or {}
            containers = template.get("containers") or []
            if not any(c.get("name") == CSI_PROVISIONER_SIDECAR for c in containers):
                continue
            names = " ".join([name_of(obj), *(str(c.get("image", "")) for c in containers)])
            if wanted and not any(word in names for word in wanted):
                continue
            replicas = spec.get("replicas", 1)
            ready = (obj.get("status") or {}).get("readyReplicas") or 0
            notes = (obj.get("metadata") or {}).get("annotations") or {}
            by = next(
                (f" by {who} ({key}={notes[key]})" for key, who in SCALED_BY if key in notes), ""
            )
            state = (
                f"{kind} scaled to 0 replicas{by}: no controller pod runs"
                if replicas == 0
                else f"{kind} with {ready}/{replicas} ready replicas and no pod"
            )
            out.append(f"{name_of(obj)}: {state}")
    return out


HOSTNAME = "kubernetes.io/hostname"


def _affinity_terms(pv: Obj | None) -> list[Obj]:
    required = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    return [
        e for t in required.get("nodeSelectorTerms") or [] for e in t.get("matchExpressions") or []
    ]


def _term(e: Obj) -> str:
    values = ", ".join(str(v) for v in e.get("values") or [])
    return f"{e.get('key')} {e.get('operator')} ({values})"


def _pinned_hosts(pv: Obj | None) -> list[str]:
    return [
        str(v)
        for e in _affinity_terms(pv)
        if e.get("key") == HOSTNAME and e.get("operator") == "In"
        for v in e.get("values") or []
    ]


def pvc_snapshot(
    pvc: Obj, pv: Obj | None, storage_class: Obj | None, sc_checked: bool
) -> PVCSnapshot:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    sc_name = spec.get("storageClassName")
    return PVCSnapshot(
        name=str(meta(pvc).get("name", "")),
        namespace=str(meta(pvc).get("namespace", "")),
        phase=str(status.get("phase", "")),
        storage_class=sc_name,
        storage_class_exists=(storage_class is not None) if (sc_name and sc_checked) else None,
        provisioner=(storage_class or {}).get("provisioner"),
        requested=((spec.get("resources") or {}).get("requests") or {}).get("storage"),
        volume_name=spec.get("volumeName"),
        volume_phase=((pv or {}).get("status") or {}).get("phase"),
        access_modes=list(spec.get("accessModes") or []),
        volume_affinity=[_term(e) for e in _affinity_terms(pv)][:4],
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for pvc in ctx.pvcs:
        sc = pvc.storage_class or "(default)"
        if pvc.storage_class_exists is False:
            sc += " (StorageClass does not exist)"
        text = (
            f"{pvc.phase or 'Unknown'}; storageClass {sc}; requests {pvc.requested or '-'}; "
            f"volume {pvc.volume_name or 'none'}"
            + (f" ({pvc.volume_phase})" if pvc.volume_phase else "")
            + (f"; provisioner {pvc.provisioner}" if pvc.provisioner else "")
            + (
                f"; its CSI controller: {'; '.join(pvc.provisioner_pods)}"
                if pvc.provisioner_pods
                else ""
            )
            + (
                f"; volume node affinity {'; '.join(pvc.volume_affinity)}"
                if pvc.volume_affinity
                else ""
            )
            + (
                f"; pinned to node {', '.join(pvc.volume_nodes_missing)}, which does not exist"
                if pvc.volume_nodes_missing
                else ""
            )
            + ("; its volume does not exist" if pvc.volume_missing else "")
            + (f"; deleted by {pvc.volume_deleted_by}" if pvc.volume_deleted_by else "")
        )
        out.add(
            Tier.OBJECT_BAD
            if pvc.phase != "Bound" or pvc.volume_nodes_missing
            else Tier.BACKGROUND,
            pvc_id(pvc.name),
            EvidenceSource.PVC,
            f"persistentvolumeclaim/{pvc.namespace}/{pvc.name}",
            text,
        )


SOURCE = Source(
    "pvcs",
    Stage.AROUND,
    read,
    evidence,
    resources=(
        "persistentvolumeclaims",
        "persistentvolumes",
        "pods",
        "pods/log",
        "storageclasses.storage.k8s.io",
        "nodes",
    ),
)
