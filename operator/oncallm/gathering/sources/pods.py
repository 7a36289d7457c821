"""The target's pods and their containers, unhealthiest first.

Reads nothing: snapshots the pods the ``workload`` source found, the alerted pod first, then
the worst; a ``quick`` analysis of a pod keeps only that pod.

Evidence: ``container/<pod>/<container>`` (state, last state, exit code, restarts, limits) and
``pod/<pod>`` (phase, reason, conditions, node).
"""

from __future__ import annotations

import re

from oncallm.gathering.objects import Obj, conditions, controller_of, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier, kv
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import ContainerSnapshot, Context, EnvKeyRef, PodSnapshot
from oncallm.models.policy import Depth


def container_id(pod: str, container: str) -> str:
    """``container/<pod>/<container>``: a container's state, last state and restarts."""
    return f"container/{pod}/{container}"


def pod_id(pod: str) -> str:
    """``pod/<pod>``: a pod's phase, reason and conditions."""
    return f"pod/{pod}"


# -- reading ---------------------------------------------------------------------------------


async def read(scope: Scope) -> None:
    pods = [pod_snapshot(p) for p in scope.raw_pods]
    focus = scope.target.name if scope.target.kind == "Pod" else None
    pods.sort(key=lambda p: (p.name != focus, -pod_badness(p), p.name))
    limit = 1 if focus and not scope.standard else scope.settings.max_pods
    scope.ctx.pods = pods[:limit]


# -- snapshots -------------------------------------------------------------------------------


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


#: Words of a container's command and args kept, and characters of each: enough to name the
#: program and its script or module, never a whole inline script.
MAX_COMMAND_WORDS = 8
MAX_COMMAND_CHARS = 160
#: Flags past those words that are kept too: the addresses a server binds (a control-plane
#: component's twentieth flag may be its ``--bind-address``).
_ADDRESS_FLAG = re.compile(r"^--?[\w.-]*(?:bind|listen|address|addr)[\w.-]*=")


def _command_words(words: list[object]) -> list[str]:
    kept = [str(w)[:MAX_COMMAND_CHARS] for w in words[:MAX_COMMAND_WORDS]]
    later = [str(w) for w in words[MAX_COMMAND_WORDS:] if _ADDRESS_FLAG.search(str(w))]
    return kept + [w[:MAX_COMMAND_CHARS] for w in later[:MAX_COMMAND_WORDS]]


#: Sidecars that a mesh or agent injector adds to the pod, and the pod annotations it sizes
#: them from (``resource bound`` -> annotation). The injector writes the container's resources
#: from these at admission, so the pod template's annotation, not the container, is what to
#: change; an unset annotation means the injector's global default applies.
SIDECAR_SIZING: dict[str, dict[str, str]] = {
    "istio-proxy": {
        "cpu request": "sidecar.istio.io/proxyCPU",
        "cpu limit": "sidecar.istio.io/proxyCPULimit",
        "memory request": "sidecar.istio.io/proxyMemory",
        "memory limit": "sidecar.istio.io/proxyMemoryLimit",
    },
    "linkerd-proxy": {
        "cpu request": "config.linkerd.io/proxy-cpu-request",
        "cpu limit": "config.linkerd.io/proxy-cpu-limit",
        "memory request": "config.linkerd.io/proxy-memory-request",
        "memory limit": "config.linkerd.io/proxy-memory-limit",
    },
    "vault-agent": {
        "cpu request": "vault.hashicorp.com/agent-requests-cpu",
        "cpu limit": "vault.hashicorp.com/agent-limits-cpu",
        "memory request": "vault.hashicorp.com/agent-requests-mem",
        "memory limit": "vault.hashicorp.com/agent-limits-mem",
    },
}
SIDECAR_SIZING["vault-agent-init"] = SIDECAR_SIZING["vault-agent"]


#: Pod annotations that name the identity an injected agent logs in as (the Vault agent's
#: role and auth mount): what an authority's refusal is about.
IDENTITY_ANNOTATIONS = ("vault.hashicorp.com/role", "vault.hashicorp.com/auth-path")

#: The pod annotations that change how a service mesh's sidecar treats the kubelet's probes.
MESH_ANNOTATIONS = ("sidecar.istio.io/rewriteAppHTTPProbers", "sidecar.istio.io/status")


LIMIT_RANGER = "kubernetes.io/limit-ranger"
"""The pod annotation the LimitRanger admission plugin writes when it fills in requests or
limits from a LimitRange's defaults."""
_RANGER_PART = re.compile(
    r"(?P<what>[\w, ]+?) (?P<kind>request|limit) for (?:init )?container (?P<c>[\w.-]+)"
)


def limit_ranger_defaults(text: str) -> dict[str, list[str]]:
    """``LimitRanger plugin set: cpu, memory request for container redis; memory limit for
    container redis`` -> ``{"redis": ["cpu request", "memory request", "memory limit"]}``."""
    out: dict[str, list[str]] = {}
    for part in text.removeprefix("LimitRanger plugin set:").split(";"):
        m = _RANGER_PART.search(part.strip())
        if m is None:
            continue
        for resource in m.group("what").split(","):
            if resource.strip():
                out.setdefault(m.group("c"), []).append(f"{resource.strip()} {m.group('kind')}")
    return out


def sidecar_sizing(
    container: str, annotations: dict[str, str]
) -> dict[str, tuple[str, str | None]]:
    """The sizing annotations of an injected sidecar and their values on the pod."""
    return {
        bound: (key, annotations.get(key))
        for bound, key in SIDECAR_SIZING.get(container, {}).items()
    }


def container_snapshot(spec: Obj, status: Obj | None, *, init: bool = False) -> ContainerSnapshot:
    status = status or {}
    state, detail = _state(status.get("state"))
    last, last_detail = _state(status.get("lastState"))
    config_maps: list[str] = []
    secrets: list[str] = []
    env: dict[str, str] = {}
    key_refs: list[EnvKeyRef] = []
    for var in spec.get("env") or []:
        source = var.get("valueFrom") or {}
        for ref_key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if ref_key in source:
                ref = source[ref_key] or {}
                (config_maps if kind == "ConfigMap" else secrets).append(ref.get("name", ""))
                key_refs.append(
                    EnvKeyRef(
                        env=str(var.get("name", "")),
                        kind=kind,
                        name=str(ref.get("name", "")),
                        key=str(ref.get("key", "")),
                        optional=bool(ref.get("optional", False)),
                    )
                )
        if "value" in var:
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
        read_only_root=bool((spec.get("securityContext") or {}).get("readOnlyRootFilesystem")),
        ports={
            str(p.get("name") or p["containerPort"]): int(p["containerPort"])
            for p in spec.get("ports") or []
            if isinstance(p.get("containerPort"), int)
        },
        liveness_probe=_probe(spec.get("livenessProbe")),
        readiness_probe=_probe(spec.get("readinessProbe")),
        startup_probe=_probe(spec.get("startupProbe")),
        command=_command_words([*(spec.get("command") or []), *(spec.get("args") or [])]),
        mounts={
            str(m.get("mountPath", "")): str(m.get("name", ""))
            for m in spec.get("volumeMounts") or []
            if m.get("mountPath")
        },
        config_maps=[c for c in config_maps if c],
        secrets=[s for s in secrets if s],
        env=env,
        key_refs=key_refs,
    )


def placement(spec: Obj) -> list[str]:
    """Where the pod may run, as the scheduler reads it: its nodeSelector, its required node
    affinity terms and its tolerations, one short line each (``instance-type In c6i.4xlarge``)."""
    out = [f"nodeSelector {k}={v}" for k, v in (spec.get("nodeSelector") or {}).items()]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        # matchFields pins a pod to named nodes: the DaemonSet controller writes
        # ``metadata.name In <node>`` into every pod it creates.
        for expr in [*(term.get("matchExpressions") or []), *(term.get("matchFields") or [])]:
            values = ",".join(str(v) for v in expr.get("values") or [])
            out.append(
                f"requires node {expr.get('key')} {expr.get('operator')}"
                + (f" {values}" if values else "")
            )
    for tol in spec.get("tolerations") or []:
        key = tol.get("key")
        if key and not str(key).startswith("node.kubernetes.io/"):
            out.append(
                f"tolerates {key}"
                + (f"={tol['value']}" if tol.get("value") else "")
                + (f":{tol['effect']}" if tol.get("effect") else "")
            )
    return out[:12]


#: node-affinity keys (or field) whose value is a node's name
_NODE_NAME_KEYS = ("metadata.name", "kubernetes.io/hostname")


def pinned_node(spec: Obj) -> str | None:
    """The one node a pod may run on, when its spec names a single node: a hostname
    nodeSelector, or a required node-affinity term ``metadata.name In <node>`` (the DaemonSet
    controller writes one into each pod it creates) or ``kubernetes.io/hostname In <node>``.
    None when it may run on several, or the spec does not say."""
    nodes: set[str] = set()
    if host := (spec.get("nodeSelector") or {}).get("kubernetes.io/hostname"):
        nodes.add(str(host))
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in [*(term.get("matchExpressions") or []), *(term.get("matchFields") or [])]:
            values = expr.get("values") or []
            if expr.get("key") in _NODE_NAME_KEYS and expr.get("operator") == "In":
                if len(values) != 1:
                    return None
                nodes.add(str(values[0]))
    return nodes.pop() if len(nodes) == 1 else None


def _references(spec: Obj) -> tuple[set[str], set[str]]:
    """Every ConfigMap and Secret the pod spec references (``Kind name``), and those among them
    it requires: a reference marked ``optional: true`` lets the kubelet start the pod without
    the object, so only a required one can hold a container back."""
    every: set[str] = set()
    required: set[str] = set()

    def add(kind: str, ref: Obj | None, name_key: str = "name") -> None:
        name = str((ref or {}).get(name_key) or "")
        if not name or name == "kube-root-ca.crt":
            return
        every.add(f"{kind} {name}")
        if not (ref or {}).get("optional", False):
            required.add(f"{kind} {name}")

    for vol in spec.get("volumes") or []:
        add("ConfigMap", vol.get("configMap"))
        add("Secret", vol.get("secret"), "secretName")
        for src in (vol.get("projected") or {}).get("sources") or []:
            add("ConfigMap", src.get("configMap"))
            add("Secret", src.get("secret"))
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for src in c.get("envFrom") or []:
            add("ConfigMap", src.get("configMapRef"))
            add("Secret", src.get("secretRef"))
        for var in c.get("env") or []:
            source = var.get("valueFrom") or {}
            add("ConfigMap", source.get("configMapKeyRef"))
            add("Secret", source.get("secretKeyRef"))
    return every, required


def pod_snapshot(pod: Obj) -> PodSnapshot:
    m, spec, status = meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    init_statuses = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
    containers = [
        container_snapshot(c, init_statuses.get(c.get("name")), init=True)
        for c in spec.get("initContainers") or []
    ] + [container_snapshot(c, statuses.get(c.get("name"))) for c in spec.get("containers") or []]
    annotations = {str(k): str(v) for k, v in (m.get("annotations") or {}).items()}
    defaulted = limit_ranger_defaults(annotations.get(LIMIT_RANGER, ""))
    for c in containers:
        c.sized_by = sidecar_sizing(c.name, annotations)
        c.defaulted = defaulted.get(c.name, [])
    pvcs, cms, secrets = [], [], []
    every, required = _references(spec)
    volume_sources: dict[str, str] = {}
    memory_volumes: dict[str, str] = {}
    for vol in spec.get("volumes") or []:
        if "persistentVolumeClaim" in vol:
            pvcs.append(vol["persistentVolumeClaim"].get("claimName", ""))
        empty_dir = vol.get("emptyDir") or {}
        if empty_dir.get("medium") == "Memory":
            memory_volumes[str(vol.get("name", ""))] = str(empty_dir.get("sizeLimit") or "")
        if "configMap" in vol:
            cms.append(vol["configMap"].get("name", ""))
            volume_sources[str(vol.get("name", ""))] = f"ConfigMap {cms[-1]}"
        if "secret" in vol:
            secrets.append(vol["secret"].get("secretName", ""))
            volume_sources[str(vol.get("name", ""))] = f"Secret {secrets[-1]}"
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "configMap" in src and src["configMap"].get("name") != "kube-root-ca.crt":
                cms.append(src["configMap"].get("name", ""))
            if "secret" in src:
                secrets.append(src["secret"].get("name", ""))
    whole = {
        str(vol.get("name", "")): str(vol["configMap"].get("name", ""))
        for vol in spec.get("volumes") or []
        if "configMap" in vol and not vol["configMap"].get("items")
    }
    mounted = {
        str(c.get("name", "")): c.get("volumeMounts") or []
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }
    for c in containers:
        cms.extend(c.config_maps)
        secrets.extend(c.secrets)
        for mount in mounted.get(c.name, []):
            sub, volume = str(mount.get("subPath") or ""), str(mount.get("name", ""))
            if sub and volume in whole:
                c.config_sub_paths[sub.split("/")[0]] = whole[volume]
    owner = controller_of(pod)
    return PodSnapshot(
        name=str(m.get("name", "")),
        namespace=str(m.get("namespace", "")),
        phase=str(status.get("phase", "")),
        reason=str(status.get("reason", "")),
        message=str(status.get("message", "")),
        node_name=spec.get("nodeName"),
        conditions=conditions(pod),
        containers=containers,
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
        labels=dict(m.get("labels") or {}),
        service_account=spec.get("serviceAccountName"),
        pvcs=sorted({p for p in pvcs if p}),
        config_maps=sorted({c for c in cms if c}),
        secrets=sorted({s for s in secrets if s}),
        optional_refs=sorted(every - required),
        volume_sources=volume_sources,
        memory_volumes=memory_volumes,
        deleting=bool(m.get("deletionTimestamp")),
        created_at=m.get("creationTimestamp"),
        image_pull_secrets=[
            str(ref.get("name")) for ref in spec.get("imagePullSecrets") or [] if ref.get("name")
        ],
        placement=placement(spec),
        pinned_node=pinned_node(spec),
        dns_policy=str(spec.get("dnsPolicy") or "ClusterFirst"),
        nameservers=[str(n) for n in (spec.get("dnsConfig") or {}).get("nameservers") or []],
        identity={k: annotations[k] for k in IDENTITY_ANNOTATIONS if k in annotations},
        mesh={k: annotations[k] for k in MESH_ANNOTATIONS if k in annotations},
        automount_token=spec.get("automountServiceAccountToken"),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
        resized_by=_resized(annotations)[0],
        resized=_resized(annotations)[1],
    )


#: The VPA admission controller's note on a pod whose resources it rewrote:
#: ``Pod resources updated by quote-engine-vpa: container 0: cpu request, cpu limit``.
_VPA_UPDATES = re.compile(r"Pod resources updated by (?P<vpa>[\w.-]+):\s*(?P<what>.*)", re.S)


def _resized(annotations: dict[str, str]) -> tuple[str | None, str]:
    """(the VPA that rewrote the pod's resources, what it set), from ``vpaUpdates``."""
    match = _VPA_UPDATES.match(str(annotations.get("vpaUpdates", "")))
    if match is None:
        return None, ""
    return match["vpa"], " ".join(match["what"].split())


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


# -- evidence --------------------------------------------------------------------------------


def container_abnormal(c: ContainerSnapshot) -> bool:
    """Waiting with a reason, terminated badly, restarted, or running but not ready."""
    if c.state == "waiting" and c.reason:
        return True
    if c.state == "terminated" and (c.exit_code not in (0, None) or c.reason != "Completed"):
        return True
    if c.restart_count > 0 or c.last_exit_code not in (None, 0):
        return True
    return c.state == "running" and not c.ready and not c.init


def pod_abnormal(pod: PodSnapshot) -> bool:
    if pod.deleting or pod.reason or pod.phase in ("Pending", "Failed", "Unknown"):
        return True
    return any(s != "True" and r for _, (s, r, _) in pod.conditions.items())


def describe_container(c: ContainerSnapshot) -> str:
    """One line as ``kubectl describe pod`` would say it."""
    parts = [f"{'init ' if c.init else ''}container {c.name} ({c.image or 'image ?'})"]
    now = c.state
    if c.reason:
        now += f" {c.reason}"
    if c.exit_code is not None:
        now += f" exit code {c.exit_code}"
    if c.message:
        now += f": {c.message}"
    parts.append(now)
    if c.last_state:
        last = f"last state {c.last_state}"
        if c.last_reason:
            last += f" {c.last_reason}"
        if c.last_exit_code is not None:
            last += f" exit code {c.last_exit_code}"
        if c.last_finished_at:
            last += f" at {c.last_finished_at}"
        if c.last_message:
            last += f": {c.last_message}"
        parts.append(last)
    parts.append(f"restarts {c.restart_count}, ready {str(c.ready).lower()}")
    if c.limits:
        parts.append(f"limits {kv(c.limits)}")
    if c.requests:
        parts.append(f"requests {kv(c.requests)}")
    if c.defaulted:
        parts.append(f"set by the namespace's LimitRange default: {', '.join(c.defaulted)}")
    sized = [f"{key}={value}" for key, value in c.sized_by.values() if value is not None]
    if sized:
        parts.append(f"injected sidecar sized by pod annotations {', '.join(sized)}")
    return "; ".join(parts)


def describe_pod(pod: PodSnapshot) -> str:
    parts = [f"phase {pod.phase or 'Unknown'}"]
    if pod.reason:
        parts.append(f"reason {pod.reason}")
    if pod.message:
        parts.append(pod.message)
    parts.append(f"node {pod.node_name or '(not scheduled)'}")
    if pod.deleting:
        parts.append("terminating")
    conds = [
        f"{c}={s}" + (f" ({r}: {m})" if r or m else "")
        for c, (s, r, m) in pod.conditions.items()
        if s != "True"
    ]
    if conds:
        parts.append("; ".join(conds))
    if pod.owner_kind:
        parts.append(f"owned by {pod.owner_kind}/{pod.owner_name}")
    return "; ".join(parts)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for pod in ctx.pods:
        for c in pod.containers:
            out.add(
                Tier.CONTAINER_BAD if container_abnormal(c) else Tier.BACKGROUND,
                container_id(pod.name, c.name),
                EvidenceSource.CONTAINER_STATUS,
                f"pod/{pod.namespace}/{pod.name}",
                describe_container(c),
                time=c.finished_at or c.last_finished_at or c.started_at,
            )
        out.add(
            Tier.POD_BAD if pod_abnormal(pod) else Tier.BACKGROUND,
            pod_id(pod.name),
            EvidenceSource.POD_STATUS,
            f"pod/{pod.namespace}/{pod.name}",
            describe_pod(pod),
            time=pod.created_at,
        )


SOURCE = Source("pods", Stage.PODS, read, evidence, depth=Depth.QUICK)
