"""What gathering collects about an alert's target: plain snapshots, no API objects.

Gathering (``oncallm.gathering``) reads the cluster and fills a :class:`Context`; the rules,
the language model and the reports read only this. Every snapshot can describe itself as
:class:`~oncallm.models.analysis.EvidenceRef` items with stable ids, which is what a
diagnosis cites.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from oncallm.models.alert import Alert
from oncallm.models.analysis import EvidenceRef, MissingEvidence, TargetRef


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContainerSnapshot(Snapshot):
    name: str
    image: str = ""
    init: bool = False
    ready: bool = False
    restart_count: int = 0
    #: "running", "waiting", "terminated" or "unknown"
    state: str = "unknown"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    last_state: str | None = None
    last_reason: str = ""
    last_message: str = ""
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
    liveness_probe: str | None = None
    readiness_probe: str | None = None
    startup_probe: str | None = None
    #: ConfigMaps and Secrets the container reads through env or envFrom (names only).
    config_maps: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class PodSnapshot(Snapshot):
    name: str
    namespace: str
    phase: str = ""
    reason: str = ""
    message: str = ""
    node_name: str | None = None
    #: condition type -> (status, reason, message)
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    containers: list[ContainerSnapshot] = Field(default_factory=list)
    owner_kind: str | None = None
    owner_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    service_account: str | None = None
    pvcs: list[str] = Field(default_factory=list)
    config_maps: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    deleting: bool = False
    created_at: str | None = None

    def container(self, name: str) -> ContainerSnapshot | None:
        return next((c for c in self.containers if c.name == name), None)


class RevisionSnapshot(Snapshot):
    """One revision of a workload (a ReplicaSet, or a ControllerRevision)."""

    name: str
    revision: int | None = None
    images: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    #: what differs from the revision before it, one line per change
    changes: list[str] = Field(default_factory=list)


class WorkloadSnapshot(Snapshot):
    kind: str
    name: str
    namespace: str
    desired: int | None = None
    ready: int | None = None
    updated: int | None = None
    available: int | None = None
    unavailable: int | None = None
    #: condition type -> (status, reason, message)
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    revisions: list[RevisionSnapshot] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)
    # Jobs
    backoff_limit: int | None = None
    failed: int | None = None
    succeeded: int | None = None
    active: int | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    progress_deadline_seconds: int | None = None


class NodeSnapshot(Snapshot):
    name: str
    #: condition type -> (status, reason, message)
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)
    unschedulable: bool = False
    allocatable: dict[str, str] = Field(default_factory=dict)
    requested: dict[str, str] = Field(default_factory=dict)
    pods: int = 0
    #: the well-known topology labels (kubernetes.io/arch, zone, instance type)
    labels: dict[str, str] = Field(default_factory=dict)


class EventSnapshot(Snapshot):
    type: str = "Normal"
    reason: str = ""
    message: str = ""
    count: int = 1
    object_kind: str = ""
    object_name: str = ""
    object_namespace: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None


class LogSnapshot(Snapshot):
    pod: str
    namespace: str
    container: str
    previous: bool = False
    lines: list[str] = Field(default_factory=list)
    truncated: bool = False


class PVCSnapshot(Snapshot):
    name: str
    namespace: str
    phase: str = ""
    storage_class: str | None = None
    storage_class_exists: bool | None = None
    provisioner: str | None = None
    requested: str | None = None
    volume_name: str | None = None
    volume_phase: str | None = None
    access_modes: list[str] = Field(default_factory=list)


class ServiceSnapshot(Snapshot):
    name: str
    namespace: str
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[str] = Field(default_factory=list)
    ready_endpoints: int = 0
    not_ready_endpoints: int = 0
    #: pods matching the selector, by name
    matching_pods: list[str] = Field(default_factory=list)
    #: why it was gathered: "target", "member" (the workload backs it) or "dependency"
    relation: str = "member"


class QuotaSnapshot(Snapshot):
    name: str
    namespace: str
    hard: dict[str, str] = Field(default_factory=dict)
    used: dict[str, str] = Field(default_factory=dict)


class LimitRangeSnapshot(Snapshot):
    name: str
    namespace: str
    limits: list[str] = Field(default_factory=list)


class HPASnapshot(Snapshot):
    name: str
    namespace: str
    target_kind: str = ""
    target_name: str = ""
    min_replicas: int | None = None
    max_replicas: int = 0
    current_replicas: int = 0
    desired_replicas: int = 0
    #: condition type -> (status, reason, message)
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    metrics: list[str] = Field(default_factory=list)


class RoleBindingSnapshot(Snapshot):
    """A RoleBinding (or ClusterRoleBinding) and what its role grants, read after a 403."""

    name: str
    namespace: str | None = None
    role_kind: str = "Role"
    role_name: str = ""
    role_exists: bool = True
    #: ``ServiceAccount ns/name``, ``User name``, ``Group name``
    subjects: list[str] = Field(default_factory=list)
    #: one entry per policy rule: ``verbs=get,list resources=pods groups=``
    rules: list[tuple[list[str], list[str], list[str]]] = Field(default_factory=list)


class NetworkPolicySnapshot(Snapshot):
    name: str
    namespace: str
    pod_selector: dict[str, str] = Field(default_factory=dict)
    policy_types: list[str] = Field(default_factory=list)
    #: a one-line description of each ingress/egress rule; empty list means deny all
    ingress: list[str] = Field(default_factory=list)
    egress: list[str] = Field(default_factory=list)
    selects_target: bool = False


class MetricSnapshot(Snapshot):
    name: str
    query: str
    #: the latest value of each series, keyed by its labels as text
    values: dict[str, float] = Field(default_factory=dict)
    description: str = ""


class HistorySnapshot(Snapshot):
    """An earlier analysis of the same alert and target."""

    analysis: str
    starts_at: str | None = None
    phase: str | None = None
    category: str | None = None
    root_cause: str | None = None


class Context(Snapshot):
    """Everything gathered for one alert."""

    alert: Alert
    target: TargetRef
    pods: list[PodSnapshot] = Field(default_factory=list)
    workload: WorkloadSnapshot | None = None
    #: the owner chain above the workload (e.g. the CronJob of a Job)
    owners: list[WorkloadSnapshot] = Field(default_factory=list)
    nodes: list[NodeSnapshot] = Field(default_factory=list)
    events: list[EventSnapshot] = Field(default_factory=list)
    logs: list[LogSnapshot] = Field(default_factory=list)
    pvcs: list[PVCSnapshot] = Field(default_factory=list)
    services: list[ServiceSnapshot] = Field(default_factory=list)
    quotas: list[QuotaSnapshot] = Field(default_factory=list)
    limit_ranges: list[LimitRangeSnapshot] = Field(default_factory=list)
    hpas: list[HPASnapshot] = Field(default_factory=list)
    network_policies: list[NetworkPolicySnapshot] = Field(default_factory=list)
    #: the bindings of a namespace whose ServiceAccount was refused (403), and its accounts
    role_bindings: list[RoleBindingSnapshot] = Field(default_factory=list)
    service_accounts: list[str] = Field(default_factory=list)
    metrics: list[MetricSnapshot] = Field(default_factory=list)
    history: list[HistorySnapshot] = Field(default_factory=list)
    #: ConfigMaps and Secrets referenced by the pods that do not exist (names only)
    missing_objects: list[str] = Field(default_factory=list)
    missing: list[MissingEvidence] = Field(default_factory=list)
    #: gathered evidence, flattened with stable ids (filled by ``oncallm.gathering.evidence``)
    evidence: list[EvidenceRef] = Field(default_factory=list)

    def evidence_by_id(self) -> dict[str, EvidenceRef]:
        return {e.id: e for e in self.evidence}
