"""What an alert's cause is, as an identity other alerts can share.

Two alerts belong to one incident when the rules prove the same cause for both: the same
category about the same object. The object is read from the evidence the root cause cites
(``service/orders-db``, ``node/worker-2/Ready``, ``quota/compute``, ``pvc/data-0``,
``revision/orders-api-7d9f8c6b5``), never from the alert's labels, so an unrelated alert in
the same namespace keeps a key of its own. A cause inside the pod (an OOM, a bad image, a
config error) is the pod template's: its key is the revision the pod runs, so every replica
of a bad rollout shares it. A cause that names no object of its own falls back to the
Alertmanager group the alert came in; ``unknown`` has no key and is never correlated.

A :class:`Signature` is the cheaper proof used during a storm: a pod of the same revision,
failing the same way (same container, state, reasons, exit codes), on the same node when the
cause is the node, has the primary's template and failure and joins without being gathered.

Pure: a diagnosis and its context in, a key out.
"""

from __future__ import annotations

from dataclasses import dataclass

from oncallm.models.analysis import Category, Diagnosis
from oncallm.models.evidence import Context, PodSnapshot

#: Object kinds a key may name, by the evidence id's first segment.
_ID_KINDS = {
    "netpol": "netpol",
    "quota": "quota",
    "pvc": "pvc",
    "missing": "missing",
    "rolebinding": "rolebinding",
    "service": "service",
    "dns": "dns",
    "node": "node",
    "storage": "node",
    "hpa": "hpa",
    "revision": "revision",
    "workload": "workload",
}
#: Events about these kinds name the same objects as their items do.
_EVENT_KINDS = {
    "Node": "node",
    "PersistentVolumeClaim": "pvc",
    "ReplicaSet": "revision",
    "ResourceQuota": "quota",
    "HorizontalPodAutoscaler": "hpa",
    "NetworkPolicy": "netpol",
}
#: Kinds without a namespace in their key.
_CLUSTER_KINDS = frozenset({"node", "dns", "storageclass"})

CAUSE_OBJECTS: dict[Category, tuple[str, ...]] = {
    Category.NODE_NOT_READY: ("node",),
    Category.DISK_PRESSURE: ("node",),
    Category.DEPENDENCY_UNREACHABLE: ("service",),
    Category.NETWORK_POLICY_BLOCK: ("netpol", "service"),
    Category.DNS_FAILURE: ("dns",),
    Category.QUOTA_EXCEEDED: ("quota",),
    Category.PVC_PENDING: ("pvc",),
    Category.MISSING_SECRET_OR_CONFIGMAP: ("missing",),
    Category.RBAC_FORBIDDEN: ("rolebinding",),
    Category.HPA_MAXED: ("hpa",),
    Category.ROLLOUT_STUCK: ("revision", "workload"),
    Category.JOB_BACKOFF_LIMIT: ("workload",),
}
"""The objects whose evidence names a category's cause, most specific first. A category not
listed (a cause in the pod's own spec, image or code) is keyed by the pod's revision."""


@dataclass(frozen=True, order=True)
class CauseKey:
    """One cause: a category about one object (``service/orders/orders-db``)."""

    category: Category
    object: str

    @property
    def text(self) -> str:
        return f"{self.category.value} {self.object}"

    @property
    def kind(self) -> str:
        return self.object.split("/", 1)[0]

    @property
    def node_scoped(self) -> bool:
        """The cause is a node: a pod joins only from that node."""
        return self.kind == "node"

    @property
    def per_volume(self) -> bool:
        """The cause is a claim or its class: pods of one template differ in their claims, so
        a signature alone does not prove a pod shares it."""
        return self.kind in ("pvc", "storageclass")


def cause_key(diagnosis: Diagnosis, ctx: Context, group_key: str = "") -> CauseKey | None:
    """The identity of the diagnosed cause; None when it cannot be shared (``unknown``)."""
    category = diagnosis.category
    if category is Category.UNKNOWN:
        return None
    namespace = ctx.target.namespace or ""
    found = _cited_objects(diagnosis.evidence, ctx, namespace)
    for kind in CAUSE_OBJECTS.get(category, ()):
        if kind in found:
            return CauseKey(category, found[kind])
    owner = _owner_object(diagnosis.evidence, ctx)
    if owner is not None:
        return CauseKey(category, owner)
    if group_key:
        return CauseKey(category, f"group/{group_key}")
    return None


def _cited_objects(evidence: list[str], ctx: Context, namespace: str) -> dict[str, str]:
    """The first object of each kind the cited ids name, as key objects."""
    found: dict[str, str] = {}
    for eid in evidence:
        parts = eid.split("/")
        kind, name = _ID_KINDS.get(parts[0]), "/".join(parts[1:2])
        if parts[0] == "event" and len(parts) >= 3:
            kind, name = _EVENT_KINDS.get(parts[1]), parts[2]
        elif parts[0] == "workload" and len(parts) >= 3:
            name = f"{parts[1]}/{parts[2]}"
        elif parts[0] == "dns":
            name = "cluster"  # every dns/ item is about the cluster's DNS
        elif parts[0] == "missing":
            name = eid.split("/", 1)[1]  # "ConfigMap ns/name": already namespaced
        if kind is None or not name or kind in found:
            continue
        if kind == "pvc":
            kind, name = _claim_object(name, ctx)
        found.setdefault(kind, _scoped(kind, name, namespace))
        if kind == "storageclass":
            found.setdefault("pvc", found[kind])
    return found


def _claim_object(claim: str, ctx: Context) -> tuple[str, str]:
    """A pending claim whose class is missing or cannot provision is its class's problem,
    shared by every claim of that class; a bound claim that cannot attach is its own."""
    pvc = next((p for p in ctx.pvcs if p.name == claim), None)
    if pvc is None or pvc.phase == "Bound":
        return "pvc", claim
    if pvc.storage_class is None:
        return "storageclass", "(default)"
    return "storageclass", pvc.storage_class


def _scoped(kind: str, name: str, namespace: str) -> str:
    if kind in _CLUSTER_KINDS or kind == "missing":
        return f"{kind}/{name}"
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _owner_object(evidence: list[str], ctx: Context) -> str | None:
    """The revision (or workload) of the pod the cause is about: the first pod the evidence
    cites, else the alerted pod, else the alerted workload."""
    pods = {p.name: p for p in ctx.pods}
    for eid in evidence:
        parts = eid.split("/")
        if parts[0] in ("container", "pod", "log") and len(parts) >= 2 and parts[1] in pods:
            owner = pod_owner(pods[parts[1]])
            if owner is not None:
                return owner
    if ctx.target.kind == "Pod" and ctx.target.name in pods:
        owner = pod_owner(pods[ctx.target.name])
        if owner is not None:
            return owner
    if ctx.workload is not None:
        w = ctx.workload
        return f"workload/{w.namespace}/{w.kind}/{w.name}"
    return None


def pod_owner(pod: PodSnapshot) -> str | None:
    """``revision/<ns>/<ReplicaSet>`` (or the StatefulSet/DaemonSet revision hash),
    ``workload/<ns>/<Kind>/<name>`` for another controller, None for a bare pod."""
    if not pod.owner_kind or not pod.owner_name:
        return None
    if pod.owner_kind == "ReplicaSet":
        return f"revision/{pod.namespace}/{pod.owner_name}"
    revision = pod.labels.get("controller-revision-hash")
    if revision and pod.owner_kind in ("StatefulSet", "DaemonSet"):
        return f"revision/{pod.namespace}/{revision}"
    return f"workload/{pod.namespace}/{pod.owner_kind}/{pod.owner_name}"


@dataclass(frozen=True)
class Signature:
    """How a pod fails: its template (revision) and the state of the alerted container."""

    owner: str
    container: str
    state: str
    reason: str
    exit_code: int | None
    last_reason: str
    last_exit_code: int | None
    ready: bool
    #: set only when the incident's cause is a node
    node: str | None = None

    def on_node(self, node: str | None) -> Signature:
        return Signature(
            self.owner,
            self.container,
            self.state,
            self.reason,
            self.exit_code,
            self.last_reason,
            self.last_exit_code,
            self.ready,
            node,
        )


def signature(pod: PodSnapshot, container: str | None = None) -> Signature | None:
    """The pod's failure signature; None for a bare pod, a healthy one, or one without the
    container."""
    owner = pod_owner(pod)
    if owner is None:
        return None
    regular = [c for c in pod.containers if not c.init]
    chosen = next((c for c in pod.containers if container and c.name == container), None)
    if chosen is None:
        chosen = next(
            (c for c in pod.containers if c.restart_count or not c.ready or c.state != "running"),
            None,
        )
    if chosen is None:
        if pod.phase in ("Pending", "Failed", "Unknown") or pod.deleting:
            chosen = regular[0] if regular else None
        if chosen is None:
            return None
    return Signature(
        owner=owner,
        container=chosen.name,
        state=f"{pod.phase}/{chosen.state}" + ("/deleting" if pod.deleting else ""),
        reason=chosen.reason or pod.reason,
        exit_code=chosen.exit_code,
        last_reason=chosen.last_reason,
        last_exit_code=chosen.last_exit_code,
        ready=chosen.ready,
    )
