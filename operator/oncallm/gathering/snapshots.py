"""Turn Kubernetes objects (JSON dicts) into the snapshots of :mod:`oncallm.models.evidence`.

Pure functions: no I/O, so every rule about what counts is tested without a cluster.
"""

from __future__ import annotations

from typing import Any

from oncallm.models.evidence import (
    ContainerSnapshot,
    EventSnapshot,
    HPASnapshot,
    LimitRangeSnapshot,
    NetworkPolicySnapshot,
    NodeSnapshot,
    PodSnapshot,
    PVCSnapshot,
    QuotaSnapshot,
    RevisionSnapshot,
    ServiceSnapshot,
    WorkloadSnapshot,
)

Obj = dict[str, Any]


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _conditions(obj: Obj) -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        out[str(cond.get("type"))] = (
            str(cond.get("status", "Unknown")),
            str(cond.get("reason", "")),
            str(cond.get("message", "")),
        )
    return out


def controller_of(obj: Obj) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner, if any."""
    refs = _meta(obj).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return str(ref.get("kind")), str(ref.get("name"))
    if refs:
        return str(refs[0].get("kind")), str(refs[0].get("name"))
    return None


def _probe(probe: Obj | None) -> str | None:
    if not probe:
        return None
    if "httpGet" in probe:
        h = probe["httpGet"]
        what = f"http GET {h.get('path', '/')} port {h.get('port')}"
    elif "tcpSocket" in probe:
        what = f"tcp port {probe['tcpSocket'].get('port')}"
    elif "exec" in probe:
        what = "exec " + " ".join(probe["exec"].get("command") or [])
    elif "grpc" in probe:
        what = f"grpc port {probe['grpc'].get('port')}"
    else:
        what = "probe"
    timing = (
        f" delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s"
        f" period={probe.get('periodSeconds', 10)}s"
        f" failureThreshold={probe.get('failureThreshold', 3)}"
    )
    return what + timing


def _state(state: Obj | None) -> tuple[str, Obj]:
    for key in ("waiting", "terminated", "running"):
        if state and key in state:
            return key, state[key] or {}
    return "unknown", {}


def container_snapshot(spec: Obj, status: Obj | None, *, init: bool = False) -> ContainerSnapshot:
    status = status or {}
    state, detail = _state(status.get("state"))
    last, last_detail = _state(status.get("lastState"))
    config_maps: list[str] = []
    secrets: list[str] = []
    env: dict[str, str] = {}
    for var in spec.get("env") or []:
        source = var.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            config_maps.append(source["configMapKeyRef"].get("name", ""))
        elif "secretKeyRef" in source:
            secrets.append(source["secretKeyRef"].get("name", ""))
        elif "value" in var:
            env[str(var.get("name"))] = str(var.get("value"))
    for src in spec.get("envFrom") or []:
        if "configMapRef" in src:
            config_maps.append(src["configMapRef"].get("name", ""))
        if "secretRef" in src:
            secrets.append(src["secretRef"].get("name", ""))
    resources = spec.get("resources") or {}
    return ContainerSnapshot(
        name=str(spec.get("name", "")),
        image=str(spec.get("image", "")),
        init=init,
        ready=bool(status.get("ready", False)),
        restart_count=int(status.get("restartCount", 0) or 0),
        state=state,
        reason=str(detail.get("reason", "")),
        message=str(detail.get("message", "")),
        exit_code=detail.get("exitCode"),
        started_at=detail.get("startedAt"),
        finished_at=detail.get("finishedAt"),
        last_state=None if last == "unknown" else last,
        last_reason=str(last_detail.get("reason", "")),
        last_message=str(last_detail.get("message", "")),
        last_exit_code=last_detail.get("exitCode"),
        last_finished_at=last_detail.get("finishedAt"),
        requests={k: str(v) for k, v in (resources.get("requests") or {}).items()},
        limits={k: str(v) for k, v in (resources.get("limits") or {}).items()},
        liveness_probe=_probe(spec.get("livenessProbe")),
        readiness_probe=_probe(spec.get("readinessProbe")),
        startup_probe=_probe(spec.get("startupProbe")),
        config_maps=[c for c in config_maps if c],
        secrets=[s for s in secrets if s],
        env=env,
    )


def pod_snapshot(pod: Obj) -> PodSnapshot:
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    init_statuses = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
    containers = [
        container_snapshot(c, init_statuses.get(c.get("name")), init=True)
        for c in spec.get("initContainers") or []
    ] + [container_snapshot(c, statuses.get(c.get("name"))) for c in spec.get("containers") or []]
    pvcs, cms, secrets = [], [], []
    for vol in spec.get("volumes") or []:
        if "persistentVolumeClaim" in vol:
            pvcs.append(vol["persistentVolumeClaim"].get("claimName", ""))
        if "configMap" in vol:
            cms.append(vol["configMap"].get("name", ""))
        if "secret" in vol:
            secrets.append(vol["secret"].get("secretName", ""))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "configMap" in src and src["configMap"].get("name") != "kube-root-ca.crt":
                cms.append(src["configMap"].get("name", ""))
            if "secret" in src:
                secrets.append(src["secret"].get("name", ""))
    for c in containers:
        cms.extend(c.config_maps)
        secrets.extend(c.secrets)
    owner = controller_of(pod)
    return PodSnapshot(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        phase=str(status.get("phase", "")),
        reason=str(status.get("reason", "")),
        message=str(status.get("message", "")),
        node_name=spec.get("nodeName"),
        conditions=_conditions(pod),
        containers=containers,
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
        labels=dict(meta.get("labels") or {}),
        service_account=spec.get("serviceAccountName"),
        pvcs=sorted({p for p in pvcs if p}),
        config_maps=sorted({c for c in cms if c}),
        secrets=sorted({s for s in secrets if s}),
        deleting=bool(meta.get("deletionTimestamp")),
        created_at=meta.get("creationTimestamp"),
    )


def pod_is_unhealthy(pod: PodSnapshot) -> bool:
    """Not running cleanly: not Running/Succeeded, a container not ready, or restarts."""
    if pod.phase not in ("Running", "Succeeded") or pod.deleting or pod.reason == "Evicted":
        return True
    return any(
        (not c.ready and not c.init) or c.restart_count > 0 or c.state == "waiting"
        for c in pod.containers
    )


def pod_badness(pod: PodSnapshot) -> int:
    """How interesting a pod is to a diagnosis: failing, restarting pods first."""
    score = 0
    if pod.phase in ("Failed", "Pending", "Unknown"):
        score += 50
    if pod.reason == "Evicted" or pod.deleting:
        score += 40
    for c in pod.containers:
        if c.state == "waiting":
            score += 40
        if c.state == "terminated" and c.exit_code not in (0, None):
            score += 30
        if c.last_state == "terminated":
            score += 20
        score += min(c.restart_count, 20)
        if not c.ready and not c.init:
            score += 5
    return score


def _images(template: Obj) -> dict[str, str]:
    spec = (template.get("spec") or {}) if template else {}
    return {str(c.get("name")): str(c.get("image", "")) for c in spec.get("containers") or []}


def _env_resources(template: Obj) -> dict[str, str]:
    """A flat view of what a pod template sets, to describe a revision's changes."""
    out: dict[str, str] = {}
    spec = (template.get("spec") or {}) if template else {}
    for c in spec.get("containers") or []:
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
        value = (_meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision")
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
                name=str(_meta(rs).get("name", "")),
                revision=revision(rs) or None,
                images=_images(template),
                created_at=_meta(rs).get("creationTimestamp"),
                replicas=int(status.get("replicas", 0) or 0),
                ready_replicas=int(status.get("readyReplicas", 0) or 0),
                changes=revision_changes(previous, template),
            )
        )
    return list(reversed(out))


def workload_snapshot(
    obj: Obj, revisions: list[RevisionSnapshot] | None = None
) -> WorkloadSnapshot:
    kind = str(obj.get("kind", ""))
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    owner = controller_of(obj)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    snap = WorkloadSnapshot(
        kind=kind,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        conditions=_conditions(obj),
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
    elif kind == "DaemonSet":
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
    elif kind == "CronJob":
        snap.active = len(status.get("active") or [])
    return snap


def node_snapshot(node: Obj, pods_on_node: list[Obj] | None = None) -> NodeSnapshot:
    meta, spec, status = _meta(node), node.get("spec") or {}, node.get("status") or {}
    taints = [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in spec.get("taints") or []
    ]
    requested: dict[str, float] = {}
    for pod in pods_on_node or []:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            for res, qty in ((c.get("resources") or {}).get("requests") or {}).items():
                requested[res] = requested.get(res, 0.0) + parse_quantity(str(qty))
    return NodeSnapshot(
        name=str(meta.get("name", "")),
        conditions=_conditions(node),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
        allocatable={k: str(v) for k, v in (status.get("allocatable") or {}).items()},
        requested={k: format_quantity(k, v) for k, v in requested.items()},
        pods=len(pods_on_node or []),
    )


_SUFFIXES = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("250m", "1Gi", "2") as a number of base units."""
    text = text.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * _SUFFIXES[suffix]
            except ValueError:
                return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


def format_quantity(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{round(value * 1000)}m"
    if resource in ("memory", "ephemeral-storage"):
        return f"{round(value / 1024**2)}Mi"
    return f"{value:g}"


def event_snapshot(event: Obj) -> EventSnapshot:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    series = event.get("series") or {}
    count = event.get("count") or series.get("count") or 1
    return EventSnapshot(
        type=str(event.get("type", "Normal")),
        reason=str(event.get("reason", "")),
        message=str(event.get("message") or event.get("note") or ""),
        count=int(count),
        object_kind=str(involved.get("kind", "")),
        object_name=str(involved.get("name", "")),
        object_namespace=involved.get("namespace"),
        first_seen=event.get("firstTimestamp") or event.get("eventTime"),
        last_seen=event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp"),
    )


def pvc_snapshot(
    pvc: Obj, pv: Obj | None, storage_class: Obj | None, sc_checked: bool
) -> PVCSnapshot:
    meta, spec, status = _meta(pvc), pvc.get("spec") or {}, pvc.get("status") or {}
    sc_name = spec.get("storageClassName")
    return PVCSnapshot(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        phase=str(status.get("phase", "")),
        storage_class=sc_name,
        storage_class_exists=(storage_class is not None) if (sc_name and sc_checked) else None,
        provisioner=(storage_class or {}).get("provisioner"),
        requested=((spec.get("resources") or {}).get("requests") or {}).get("storage"),
        volume_name=spec.get("volumeName"),
        volume_phase=((pv or {}).get("status") or {}).get("phase"),
        access_modes=list(spec.get("accessModes") or []),
    )


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_snapshot(
    svc: Obj, endpoints: Obj | None, pods: list[PodSnapshot], relation: str
) -> ServiceSnapshot:
    meta, spec = _meta(svc), svc.get("spec") or {}
    ready = not_ready = 0
    for subset in (endpoints or {}).get("subsets") or []:
        ready += len(subset.get("addresses") or [])
        not_ready += len(subset.get("notReadyAddresses") or [])
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    ports = [
        f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        + (f"->{p.get('targetPort')}" if p.get("targetPort") else "")
        for p in spec.get("ports") or []
    ]
    return ServiceSnapshot(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        type=str(spec.get("type", "ClusterIP")),
        cluster_ip=spec.get("clusterIP"),
        selector=selector,
        ports=ports,
        ready_endpoints=ready,
        not_ready_endpoints=not_ready,
        matching_pods=[p.name for p in pods if selector_matches(selector, p.labels)],
        relation=relation,
    )


def quota_snapshot(quota: Obj) -> QuotaSnapshot:
    status = quota.get("status") or {}
    hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
    return QuotaSnapshot(
        name=str(_meta(quota).get("name", "")),
        namespace=str(_meta(quota).get("namespace", "")),
        hard={k: str(v) for k, v in hard.items()},
        used={k: str(v) for k, v in (status.get("used") or {}).items()},
    )


def limit_range_snapshot(lr: Obj) -> LimitRangeSnapshot:
    limits = []
    for item in (lr.get("spec") or {}).get("limits") or []:
        parts = [str(item.get("type", ""))]
        for key in ("max", "min", "default", "defaultRequest"):
            if item.get(key):
                parts.append(f"{key} " + ",".join(f"{k}={v}" for k, v in item[key].items()))
        limits.append(" ".join(parts))
    return LimitRangeSnapshot(
        name=str(_meta(lr).get("name", "")),
        namespace=str(_meta(lr).get("namespace", "")),
        limits=limits,
    )


def hpa_snapshot(hpa: Obj) -> HPASnapshot:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    metrics = []
    for m in status.get("currentMetrics") or []:
        res = m.get("resource") or {}
        current = res.get("current") or {}
        if res:
            value = current.get("averageUtilization", current.get("averageValue"))
            metrics.append(f"{res.get('name')} current {value}")
    for m in spec.get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if res:
            value = target.get("averageUtilization", target.get("averageValue"))
            metrics.append(f"{res.get('name')} target {value}")
    return HPASnapshot(
        name=str(_meta(hpa).get("name", "")),
        namespace=str(_meta(hpa).get("namespace", "")),
        target_kind=str(ref.get("kind", "")),
        target_name=str(ref.get("name", "")),
        min_replicas=spec.get("minReplicas"),
        max_replicas=int(spec.get("maxReplicas", 0) or 0),
        current_replicas=int(status.get("currentReplicas", 0) or 0),
        desired_replicas=int(status.get("desiredReplicas", 0) or 0),
        conditions=_conditions(hpa),
        metrics=metrics,
    )


def _peer(rule: Obj, key: str) -> str:
    peers = []
    for peer in rule.get(key) or []:
        if "ipBlock" in peer:
            peers.append(f"ipBlock {peer['ipBlock'].get('cidr')}")
        parts = []
        if "namespaceSelector" in peer:
            parts.append(f"namespaces {peer['namespaceSelector'].get('matchLabels') or 'any'}")
        if "podSelector" in peer:
            parts.append(f"pods {peer['podSelector'].get('matchLabels') or 'any'}")
        if parts:
            peers.append(" ".join(parts))
    ports = [f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in rule.get("ports") or []]
    text = ", ".join(peers) or "anywhere"
    return text + (f" ports {','.join(ports)}" if ports else "")


def network_policy_snapshot(np: Obj, target_pods: list[PodSnapshot]) -> NetworkPolicySnapshot:
    spec = np.get("spec") or {}
    selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
    types = list(spec.get("policyTypes") or ["Ingress"])
    selects = any(all(p.labels.get(k) == v for k, v in selector.items()) for p in target_pods)
    return NetworkPolicySnapshot(
        name=str(_meta(np).get("name", "")),
        namespace=str(_meta(np).get("namespace", "")),
        pod_selector={str(k): str(v) for k, v in selector.items()},
        policy_types=types,
        ingress=[_peer(r, "from") for r in spec.get("ingress") or []],
        egress=[_peer(r, "to") for r in spec.get("egress") or []],
        selects_target=selects,
    )
