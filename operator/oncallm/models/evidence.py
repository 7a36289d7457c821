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


class EnvKeyRef(Snapshot):
    """An env var taken from one key of a Secret or ConfigMap (``valueFrom``)."""

    env: str
    kind: str
    name: str
    key: str
    #: ``optional: true``: a missing key leaves the variable unset instead of failing the pod
    optional: bool = False


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
    #: an injected sidecar (istio-proxy, linkerd-proxy, vault-agent): the pod annotations its
    #: injector sizes it from, ``resource bound`` (``memory limit``) -> (annotation, value or
    #: None when unset)
    sized_by: dict[str, tuple[str, str | None]] = Field(default_factory=dict)
    #: resources the LimitRanger admission plugin filled in because the pod template set
    #: none (``memory limit``, ``cpu request``), from the pod's kubernetes.io/limit-ranger
    defaulted: list[str] = Field(default_factory=list)
    #: its securityContext sets readOnlyRootFilesystem: only its volume mounts are writable
    read_only_root: bool = False
    #: the ports it declares: name (or the number, when unnamed) -> containerPort
    ports: dict[str, int] = Field(default_factory=dict)
    liveness_probe: str | None = None
    readiness_probe: str | None = None
    startup_probe: str | None = None
    #: the pod spec's command and args, in order (a few words, each cut short, then any later
    #: flag that sets an address to bind); empty when the image's own entrypoint runs
    command: list[str] = Field(default_factory=list)
    #: its volume mounts: mount path -> volume name (``/etc/ledger/secrets`` -> ``stripe``)
    mounts: dict[str, str] = Field(default_factory=dict)
    #: keys it mounts one by one (``subPath``) from a ConfigMap volume without ``items``:
    #: key -> ConfigMap name. A key the ConfigMap lacks becomes an empty directory, and the
    #: mount of a directory onto the image's file fails the container's start.
    config_sub_paths: dict[str, str] = Field(default_factory=dict)
    #: ConfigMaps and Secrets the container reads through env or envFrom (names only).
    config_maps: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: env vars taken from keys of Secrets and ConfigMaps
    key_refs: list[EnvKeyRef] = Field(default_factory=list)
    #: env vars resolved from the ConfigMaps it reads (envFrom, configMapKeyRef): var -> value;
    #: filled by the ``config_refs`` source, never from Secrets
    config_env: dict[str, str] = Field(default_factory=dict)
    #: var -> the ConfigMap it came from
    config_env_source: dict[str, str] = Field(default_factory=dict)


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
    #: the ConfigMaps and Secrets (``Kind name``) every reference of which is ``optional: true``:
    #: the kubelet starts the pod without them
    optional_refs: list[str] = Field(default_factory=list)
    #: each ConfigMap or Secret volume by its volume name (``config`` -> ``ConfigMap app-config``):
    #: the kubelet's mount errors name the volume, not the object
    volume_sources: dict[str, str] = Field(default_factory=dict)
    #: emptyDir volumes with ``medium: Memory`` (tmpfs) by volume name -> their sizeLimit ("":
    #: none); what a container writes there is charged to its memory cgroup
    memory_volumes: dict[str, str] = Field(default_factory=dict)
    deleting: bool = False
    created_at: str | None = None
    #: the pod spec's imagePullSecrets (names; the ServiceAccount's come on top)
    image_pull_secrets: list[str] = Field(default_factory=list)
    #: where it may run: nodeSelector, required node affinity terms, tolerations (one line each)
    placement: list[str] = Field(default_factory=list)
    #: the one node it may run on, when its spec names a single node (the DaemonSet
    #: controller's ``metadata.name In <node>`` term, or a hostname selector)
    pinned_node: str | None = None
    #: its DNS: dnsPolicy and the nameservers of its dnsConfig
    dns_policy: str = "ClusterFirst"
    nameservers: list[str] = Field(default_factory=list)
    #: spec.automountServiceAccountToken (None: not set, the ServiceAccount decides)
    automount_token: bool | None = None
    #: the VerticalPodAutoscaler whose admission controller rewrote the pod's resources when
    #: it was created (the ``vpaUpdates`` annotation), and what it set (``container 0: cpu
    #: request, cpu limit``)
    resized_by: str | None = None
    resized: str = ""
    #: spec.activeDeadlineSeconds: the kubelet stops the pod this long after it started
    #: (status.reason DeadlineExceeded)
    active_deadline_seconds: int | None = None
    #: the annotations that say as whom the pod logs in to an outside authority (the Vault
    #: role of its injected agent), by key
    identity: dict[str, str] = Field(default_factory=dict)
    #: the annotations that change how a mesh sidecar treats the probes, by key
    mesh: dict[str, str] = Field(default_factory=dict)

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
    #: a Job's activeDeadlineSeconds
    active_deadline_seconds: int | None = None
    #: a CronJob's schedule, its concurrencyPolicy (Allow when unset) and its active Jobs
    schedule: str | None = None
    concurrency_policy: str | None = None
    active_jobs: list[str] = Field(default_factory=list)
    #: a StatefulSet's or DaemonSet's updateStrategy type (RollingUpdate, OnDelete)
    update_strategy: str | None = None
    #: a StatefulSet's rolling update: its partition and its current and update revisions
    partition: int | None = None
    current_revision: str | None = None
    update_revision: str | None = None
    #: a StatefulSet's podManagementPolicy (OrderedReady when unset, or Parallel)
    pod_management_policy: str | None = None


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
    #: the bound volume's required node affinity, one ``key In (a, b)`` per term
    volume_affinity: list[str] = Field(default_factory=list)
    #: nodes that affinity pins the volume to by hostname and that do not exist
    volume_nodes_missing: list[str] = Field(default_factory=list)
    #: a Pending claim's CSI driver controller pods and their state (``ebs-csi-controller-x:
    #: ebs-plugin CrashLoopBackOff (exit 1), 14 restarts``)
    provisioner_pods: list[str] = Field(default_factory=list)
    #: the claim names a volume that does not exist (Lost: deleted while bound)
    volume_missing: bool = False
    #: who logged deleting that volume: ``Job <name> (pod <pod>): <line>``
    volume_deleted_by: str | None = None


class ServiceSnapshot(Snapshot):
    name: str
    namespace: str
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    #: an ExternalName Service's target: the cluster DNS answers its name with a CNAME to it,
    #: and it has no endpoints by design
    external_name: str | None = None
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[str] = Field(default_factory=list)
    ready_endpoints: int = 0
    not_ready_endpoints: int = 0
    #: the ready endpoints' addresses (``10.20.4.17:8443``), at most five
    addresses: list[str] = Field(default_factory=list)
    #: pods matching the selector, by name
    matching_pods: list[str] = Field(default_factory=list)
    #: how many of them are Ready (a Service with publishNotReadyAddresses lists unready pods
    #: as ready endpoints)
    ready_pods: int | None = None
    #: Service ports whose numeric targetPort no container of its pods declares
    #: (``5672->5673``; empty when the pods declare no ports or all match)
    unserved_ports: list[str] = Field(default_factory=list)
    #: the ports its pods do declare, when a targetPort is unserved (where the traffic
    #: should go: ``6380``)
    declared_ports: list[int] = Field(default_factory=list)
    #: for a dependency: how its own pods fail (``redis-0: redis OOMKilled (exit 137) at limit
    #: 256Mi, 6 restarts``), read from them
    backend_failures: list[str] = Field(default_factory=list)
    #: the reason those pods last terminated, when they all agree (``OOMKilled``)
    backend_reason: str | None = None
    #: for a dependency whose pods are Pending on unbound claims: each claim and why it is
    #: not provisioned (``PVC data-pg-0 Pending: ProvisioningFailed: ...``)
    backend_claims: list[str] = Field(default_factory=list)
    #: when no pod matches its selector: the workload that should back it and its replicas
    backing: str = ""
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
    #: the controller that owns the HPA and writes its spec (``ScaledObject orders-consumer``
    #: for KEDA): its own settings are the ones to change
    owner_kind: str | None = None
    owner_name: str | None = None


class KubeletCSRs(Snapshot):
    """A node's CertificateSigningRequests of one kubelet signer: its serving certificate
    (``kubernetes.io/kubelet-serving``) or its client certificate
    (``kubernetes.io/kube-apiserver-client-kubelet``)."""

    node: str
    signer: str = "kubernetes.io/kubelet-serving"
    #: neither approved nor denied
    pending: int = 0
    pending_names: list[str] = Field(default_factory=list)
    oldest_pending: str | None = None
    denied: int = 0
    #: creationTimestamp of the newest approved one
    last_issued: str | None = None


class PeerAuthenticationSnapshot(Snapshot):
    """An Istio PeerAuthentication: the mTLS mode it sets for the workloads it selects."""

    name: str
    namespace: str
    #: STRICT, PERMISSIVE, DISABLE or UNSET
    mode: str = "UNSET"
    #: spec.selector.matchLabels; empty: every workload of the namespace (mesh-wide in the
    #: root namespace)
    selector: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None


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
    #: subjects ``ServiceAccount ns/name`` read and found absent (read only for bindings of
    #: system:auth-delegator after a Vault Kubernetes-auth login was refused)
    missing_subjects: list[str] = Field(default_factory=list)


class LabelRequirement(Snapshot):
    """One matchExpressions term: ``key In (a, b)``, ``key Exists`` ..."""

    key: str
    operator: str
    values: list[str] = Field(default_factory=list)


class LabelSelector(Snapshot):
    """A label selector with both halves; an empty one selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelRequirement] = Field(default_factory=list)


class PolicyPeer(Snapshot):
    """One ``from``/``to`` entry of a NetworkPolicy rule. A pod selector alone means pods of
    the policy's namespace; a namespace selector alone, every pod of those namespaces."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: str | None = None
    ip_block_except: list[str] = Field(default_factory=list)


class PolicyPort(Snapshot):
    """One port of a NetworkPolicy rule: a number or a named container port."""

    protocol: str = "TCP"
    port: str | None = None
    end_port: int | None = None


class PolicyRule(Snapshot):
    """One ingress or egress rule: no peers means any peer, no ports any port."""

    peers: list[PolicyPeer] = Field(default_factory=list)
    ports: list[PolicyPort] = Field(default_factory=list)


class NetworkPolicySnapshot(Snapshot):
    name: str
    namespace: str
    pod_selector: dict[str, str] = Field(default_factory=dict)
    policy_types: list[str] = Field(default_factory=list)
    #: a one-line description of each ingress/egress rule; empty list means deny all
    ingress: list[str] = Field(default_factory=list)
    egress: list[str] = Field(default_factory=list)
    selects_target: bool = False
    #: the full podSelector (matchLabels and matchExpressions)
    selector: LabelSelector | None = None
    #: whether the policy names its policyTypes (else: Ingress, and Egress if it has egress)
    policy_types_set: bool = True
    ingress_rules: list[PolicyRule] = Field(default_factory=list)
    egress_rules: list[PolicyRule] = Field(default_factory=list)


# -- leads: what the evidence so far points at (gathering/sources/, stage LEADS and after) ----


class QuotaConsumer(Snapshot):
    """A workload (or a pod without one) using a resource that a full ResourceQuota caps."""

    kind: str
    name: str
    #: its pods in the namespace that count against the quota (not Succeeded or Failed)
    pods: list[str] = Field(default_factory=list)
    #: its share of the resource in base units (cores, bytes, a count) and as text
    amount: float = 0.0
    amount_text: str = ""
    #: creationTimestamp of its oldest pod
    oldest: str | None = None
    #: the labels of its first pod
    labels: dict[str, str] = Field(default_factory=dict)
    #: a ReplicaSet no controller owns (its Deployment deleted with --cascade=orphan):
    #: nothing scales it down
    orphaned: bool = False


class QuotaConsumersSnapshot(Snapshot):
    """Who uses one resource of a ResourceQuota at or over its limit: the largest first."""

    quota: str
    namespace: str
    resource: str
    used: str = ""
    hard: str = ""
    consumers: list[QuotaConsumer] = Field(default_factory=list)


class EmptyDirVolume(Snapshot):
    name: str
    size_limit: str | None = None
    medium: str = ""


class EphemeralStorageUse(Snapshot):
    """A pod on a node under disk pressure and what it does with ephemeral storage."""

    pod: str
    namespace: str
    owner_kind: str | None = None
    owner_name: str | None = None
    phase: str = ""
    evicted: bool = False
    empty_dirs: list[EmptyDirVolume] = Field(default_factory=list)
    #: hostPath volumes it mounts writable (``/var/lib/x (volume scratch)``): the node's disk,
    #: outside the kubelet's accounting
    host_paths: list[str] = Field(default_factory=list)
    #: container -> its ephemeral-storage request and limit (None: unset)
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
    #: what the kubelet's eviction said each container used: container -> usage (``28Gi``)
    usage: dict[str, str] = Field(default_factory=dict)
    #: the largest of ``usage`` in bytes
    used_bytes: float | None = None
    message: str = ""


class NodeStorageSnapshot(Snapshot):
    """A node with DiskPressure or ephemeral-storage evictions, and who uses its disk."""

    node: str
    disk_pressure: bool = False
    #: pods on it evicted for ephemeral storage
    evictions: int = 0
    #: the kubelet's threshold and what was left, from an eviction message
    threshold: str | None = None
    available: str | None = None
    pods: list[EphemeralStorageUse] = Field(default_factory=list)
    #: the largest images the node holds (``name size``), from its status: what fills an
    #: image filesystem the image garbage collector cannot free
    largest_images: list[str] = Field(default_factory=list)


class NodeCondition(Snapshot):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_heartbeat: str | None = None
    last_transition: str | None = None


class PodWithoutMemoryLimit(Snapshot):
    pod: str
    namespace: str
    owner_kind: str | None = None
    owner_name: str | None = None
    #: the containers without ``limits.memory``
    containers: list[str] = Field(default_factory=list)
    #: the pod's memory request, summed (None: none set)
    memory_request: str | None = None


class NodeHealthSnapshot(Snapshot):
    """A node that is not Ready (or under memory pressure): its conditions with times, the
    system OOM kills on it and the pods on it that no memory limit bounds."""

    node: str
    conditions: list[NodeCondition] = Field(default_factory=list)
    #: SystemOOM (kubelet) and OOMKilling (kernel monitor) events on the node, newest first
    oom_events: list[EventSnapshot] = Field(default_factory=list)
    #: processes those events name as killed (``java (pid 4121)``)
    oom_victims: list[str] = Field(default_factory=list)
    #: node-problem-detector's problem events on the node (a hung task, a kernel oops, a
    #: read-only filesystem, the runtime failing its health check), newest first
    problem_events: list[EventSnapshot] = Field(default_factory=list)
    pods_without_memory_limit: list[PodWithoutMemoryLimit] = Field(default_factory=list)
    #: under PIDPressure: the pods with the most processes (``pod ns/x (Deployment y): N
    #: processes``), from Prometheus
    pid_holders: list[str] = Field(default_factory=list)


class SchedulingReason(Snapshot):
    """One reason of a FailedScheduling message and how many nodes it excluded.

    ``kind`` is one of ``insufficient`` (``resource``: cpu, memory, nvidia.com/gpu ...),
    ``taint`` (``taint``: key=value:effect), ``node_affinity`` (affinity or nodeSelector),
    ``pod_affinity``, ``pod_anti_affinity``, ``topology_spread``, ``volume_node_affinity``,
    ``pvc_unbound``, ``unschedulable`` (cordoned), ``ports``, ``too_many_pods``,
    ``volume_limit``, ``not_ready``, ``other``."""

    kind: str
    nodes: int | None = None
    resource: str | None = None
    taint: str | None = None
    text: str = ""


class ResourceHolder(Snapshot):
    """A workload whose pods hold an extended resource (a GPU) that a Pending pod waits for."""

    kind: str
    name: str
    namespace: str
    amount: float = 0.0
    pods: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)


class ResourceHoldersSnapshot(Snapshot):
    """Who holds a scarce extended resource across the cluster: the largest holders first."""

    resource: str
    #: what every running pod requests of it, and what the nodes offer
    requested: float = 0.0
    allocatable: float | None = None
    holders: list[ResourceHolder] = Field(default_factory=list)


class RetentionSetting(Snapshot):
    """A retention or clean-up setting, in a ConfigMap a volume's writer reads, that disables
    deleting old data (``log.retention.ms=-1``)."""

    config_map: str
    namespace: str
    file: str
    key: str
    value: str
    line: int = 0


class SchedulingSnapshot(Snapshot):
    """A pod's FailedScheduling message, parsed."""

    pod: str
    namespace: str
    #: ``0/6 nodes are available``: 0 and 6
    available: int | None = None
    total: int | None = None
    reasons: list[SchedulingReason] = Field(default_factory=list)
    #: what the scheduler said about preemption, as written
    preemption: str = ""
    message: str = ""
    count: int = 1
    last_seen: str | None = None


class DNSForward(Snapshot):
    """One ``forward`` of the Corefile: the zone and where its queries go."""

    zone: str
    targets: list[str] = Field(default_factory=list)


class DNSSnapshot(Snapshot):
    """The cluster DNS after name-resolution failures: CoreDNS's pods, logs and Corefile."""

    #: the line (log or event) that showed the failure
    trigger: str = ""
    pods: list[PodSnapshot] = Field(default_factory=list)
    logs: list[LogSnapshot] = Field(default_factory=list)
    service: ServiceSnapshot | None = None
    corefile: str | None = None
    forwards: list[DNSForward] = Field(default_factory=list)
    #: the ``loop`` plugin is enabled
    loop_plugin: bool = False
    #: a zone forwards to ``/etc/resolv.conf``: a loop when the node's resolver is a local stub
    forwards_to_resolv_conf: bool = False
    #: CoreDNS log lines where the loop plugin detected a loop
    loop_detected: list[str] = Field(default_factory=list)
    #: forward targets CoreDNS's logs show timing out or failing
    dead_upstreams: list[str] = Field(default_factory=list)
    #: the failing name is a cluster Service's (``namespace/name``) that does not exist
    missing_service: str | None = None
    #: Services of the same name in other namespaces (``namespace/name``)
    same_name_elsewhere: list[str] = Field(default_factory=list)
    #: Services of its namespace that share words of its name (a rename)
    similar_in_namespace: list[str] = Field(default_factory=list)
    #: the failing name is a pod's under an existing headless Service (``ns/zookeeper-1``)
    #: and that pod does not exist: the name cannot resolve, with DNS working
    absent_pod: str | None = None
    #: the pods send lookups to a link-local address (NodeLocal DNSCache's 169.254.20.10):
    #: how the node-local-dns DaemonSet that should answer there runs (None: not read)
    node_local: str | None = None


class GateSnapshot(Snapshot):
    """A readiness gate a load balancer's controller holds False, and the Ingress in front
    of the pods with the annotations of its health check."""

    pod: str
    gate: str
    reason: str = ""
    message: str = ""
    ingress: str = ""
    health_check: dict[str, str] = Field(default_factory=dict)


class MetricsAPISnapshot(Snapshot):
    """What serves the resource metrics API (metrics-server) after an HPA could not read its
    metrics: its pods, the logs of those failing, its Service."""

    #: the event or HPA condition that said the metrics could not be fetched
    trigger: str = ""
    pods: list[PodSnapshot] = Field(default_factory=list)
    logs: list[LogSnapshot] = Field(default_factory=list)
    service: ServiceSnapshot | None = None


class WebhookSnapshot(Snapshot):
    """An admission webhook an event or status names (``failed calling webhook "x"``)."""

    name: str
    #: the message that named it
    error: str = ""
    #: False: no Validating/MutatingWebhookConfiguration has a webhook of that name
    found: bool = True
    configuration: str = ""
    kind: str = ""
    failure_policy: str = "Fail"
    timeout_seconds: int | None = None
    #: what it intercepts, e.g. ``CREATE pods``
    rules: list[str] = Field(default_factory=list)
    namespace_selector: LabelSelector | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int | None = None
    path: str | None = None
    url: str | None = None
    service_exists: bool | None = None
    ready_endpoints: int = 0
    not_ready_endpoints: int = 0
    #: when its Service has no endpoints: the workload that should back it and its replicas
    backing: str = ""
    #: the caBundle's earliest notAfter, when it parses
    ca_not_after: str | None = None
    ca_expired: bool | None = None
    #: the serving certificate's notAfter, as the API server's x509 error states it
    serving_not_after: str | None = None
    #: cert-manager's ``cert-manager.io/inject-ca-from`` (``namespace/certificate``)
    inject_ca_from: str | None = None
    #: when the call times out against ready endpoints: the NetworkPolicies that select the
    #: webhook's pods and admit the API server on none of their rules (``name: its rules``)
    blocked_by: list[str] = Field(default_factory=list)


class SecretRefresher(Snapshot):
    """What keeps a pull Secret fresh: a CronJob whose jobs write it."""

    kind: str
    name: str
    namespace: str
    suspended: bool = False
    schedule: str = ""
    last_schedule: str | None = None
    last_success: str | None = None
    #: its newest Jobs, newest first: ``name: failed (BackoffLimitExceeded) at ...``
    recent_jobs: list[str] = Field(default_factory=list)
    failed_jobs: int = 0
    #: its annotations (``suspended-by``, change tickets)
    annotations: dict[str, str] = Field(default_factory=dict)


class PullSecretSnapshot(Snapshot):
    """One image pull Secret of a pod whose pull the registry refused."""

    name: str
    namespace: str
    #: where the pod gets it: ``pod spec`` or ``serviceaccount <name>``
    via: str = "pod spec"
    #: False when the kubelet said it could not retrieve it; None: unknown (OnCallM never
    #: reads Secrets)
    exists: bool | None = None
    refreshers: list[SecretRefresher] = Field(default_factory=list)
    #: ExternalSecrets whose target is this Secret (see ``Context.external_secrets``)
    external_secrets: list[str] = Field(default_factory=list)


class PullCredentialsSnapshot(Snapshot):
    """A pod whose image pull failed with 401/403/unauthorized/denied, and its credentials."""

    pod: str
    namespace: str
    image: str = ""
    registry: str = ""
    error: str = ""
    service_account: str | None = None
    #: False when the ServiceAccount does not exist
    service_account_exists: bool | None = None
    secrets: list[PullSecretSnapshot] = Field(default_factory=list)


class PodPort(Snapshot):
    name: str = ""
    port: int
    protocol: str = "TCP"


class PeerPod(Snapshot):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    ports: list[PodPort] = Field(default_factory=list)


class NamespaceSnapshot(Snapshot):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)


class NetworkPathSnapshot(Snapshot):
    """A connection the pods' logs show failing, and the NetworkPolicies on both ends of it,
    evaluated: podSelector, namespaceSelector (``Context.namespaces``), ipBlock, ports."""

    #: as the logs or the environment name it (``kafka-bootstrap.kafka-ops.svc:9092``)
    destination: str
    #: ``service``, ``ip`` or ``dns`` (the cluster DNS: kube-dns, port 53)
    kind: str = "service"
    #: the line that named it
    line: str = ""
    source_pod: str = ""
    source_namespace: str = ""
    source_labels: dict[str, str] = Field(default_factory=dict)
    namespace: str | None = None
    service: str | None = None
    service_exists: bool | None = None
    ip: str | None = None
    #: the port the source connects to, and the destination pods' port it maps to
    port: int | None = None
    target_port: int | None = None
    protocol: str = "TCP"
    pods: list[PeerPod] = Field(default_factory=list)
    #: egress: the source pods' policies with Egress; None when none applies (all allowed)
    egress_policies: list[str] = Field(default_factory=list)
    egress_allowed: bool | None = None
    egress_allowed_by: list[str] = Field(default_factory=list)
    #: ingress: the destination namespace's policies selecting its pods
    ingress_policies: list[NetworkPolicySnapshot] = Field(default_factory=list)
    ingress_allowed: bool | None = None
    ingress_allowed_by: list[str] = Field(default_factory=list)
    #: a scrape: the ServiceMonitor whose endpoint scrapes the port, the scheme it speaks
    #: (``http`` unless its endpoint says ``scheme: https``), whether it sets a tlsConfig,
    #: and the scraped Service port's name and appProtocol
    monitor: str | None = None
    scheme: str | None = None
    monitor_tls: bool = False
    port_name: str | None = None
    app_protocol: str | None = None


class ExternalSecretSnapshot(Snapshot):
    """An ExternalSecret (external-secrets.io) that renders a Secret the pods use."""

    name: str
    namespace: str
    target: str
    #: the keys it writes into the Secret (spec.data and spec.template.data); None: not known
    #: from the spec (dataFrom without a template)
    keys: list[str] | None = None
    #: the secret store's keys it reads (spec.data[].remoteRef.key, spec.dataFrom[].extract /
    #: find), at most five: the name to look for in the store when the sync fails
    remote_keys: list[str] = Field(default_factory=list)
    #: its newest Warning event, read when it is not Ready
    last_error: str = ""
    store: str = ""
    refresh_interval: str | None = None
    refresh_time: str | None = None
    #: condition type -> (status, reason, message)
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    #: why it was gathered: the Secret's use (``imagePullSecret of pod x``)
    why: str = ""


class CertificateSnapshot(Snapshot):
    """A cert-manager Certificate whose Secret the pods mount or a webhook's CA comes from."""

    name: str
    namespace: str
    secret_name: str = ""
    issuer_kind: str = "Issuer"
    issuer_name: str = ""
    dns_names: list[str] = Field(default_factory=list)
    not_before: str | None = None
    not_after: str | None = None
    renewal_time: str | None = None
    failed_issuance_attempts: int | None = None
    last_failure_time: str | None = None
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    why: str = ""
    #: False: something names it (a webhook's inject-ca-from) but it does not exist
    exists: bool = True
    #: a controller that copies its Secret into other namespaces, from the annotations of its
    #: secretTemplate (``Reflector``, ``kubernetes-replicator``) -> the namespaces it names
    #: (``*`` or a pattern as written)
    mirrored_by: str = ""
    mirror_annotation: str = ""
    mirrored_to: list[str] = Field(default_factory=list)


class IssuerSnapshot(Snapshot):
    """A cert-manager Issuer or ClusterIssuer of a gathered Certificate."""

    kind: str
    name: str
    namespace: str | None = None
    #: ``ca``, ``acme``, ``vault``, ``selfSigned`` ...
    type: str = ""
    conditions: dict[str, tuple[str, str, str]] = Field(default_factory=dict)
    #: False when it does not exist
    exists: bool = True


class ArgoApplicationSnapshot(Snapshot):
    """The Argo CD Application that manages the alerted workload."""

    name: str
    namespace: str
    project: str = ""
    repo: str = ""
    path: str = ""
    target_revision: str = ""
    sync_status: str = ""
    health_status: str = ""
    revision: str = ""
    operation_phase: str = ""
    operation_message: str = ""
    finished_at: str | None = None
    conditions: list[str] = Field(default_factory=list)
    #: the workload's own sync and health in the Application
    resource_status: str = ""
    resource_health: str = ""


class TLSPeerSnapshot(Snapshot):
    """A server in the cluster whose certificate the pods' TLS handshakes refuse: its Service,
    its pods (and when the oldest started), the Secrets they mount and the cert-manager
    Certificates that issue them (in ``Context.certificates``)."""

    destination: str
    service: str
    namespace: str
    selector: dict[str, str] = Field(default_factory=dict)
    pods: list[str] = Field(default_factory=list)
    #: when the oldest of its pods started: a server loads its key pair at start
    started_at: str | None = None
    secrets: list[str] = Field(default_factory=list)
    certificates: list[str] = Field(default_factory=list)


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


class CredentialRefresherSnapshot(Snapshot):
    """A CronJob that writes a Secret whose credential an outside API refuses."""

    namespace: str
    secret: str
    refresher: SecretRefresher
    #: the line the newest failed Job's pod stopped on, and that pod
    failure: str | None = None
    failure_pod: str | None = None


class BlockingBudget(Snapshot):
    """A PodDisruptionBudget that allows no disruption and selects a pod on a draining node."""

    namespace: str
    name: str
    pod: str
    min_available: str | None = None
    max_unavailable: str | None = None
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0


class DrainSnapshot(Snapshot):
    """A node being drained (cordoned, or tainted by an autoscaler) and what holds it."""

    node: str
    #: ``cordoned (spec.unschedulable)`` or ``taint karpenter.sh/disrupted``
    how: str
    kubelet_version: str = ""
    #: the kubelet versions of the other nodes
    other_versions: list[str] = Field(default_factory=list)
    pods: int = 0
    blocking: list[BlockingBudget] = Field(default_factory=list)


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
    #: the kubelets' serving-certificate CSRs, read after a failing kubelet scrape
    kubelet_csrs: list[KubeletCSRs] = Field(default_factory=list)
    #: ClusterRoleBindings of the role that lets nodes renew their client certificates
    #: (read on client-certificate alerts only; None: not read)
    client_renewal_bindings: list[str] | None = None
    #: Istio's mTLS policies over the pods, read when a sidecar'd pod's probes fail
    peer_authentications: list[PeerAuthenticationSnapshot] = Field(default_factory=list)
    service_accounts: list[str] = Field(default_factory=list)
    metrics: list[MetricSnapshot] = Field(default_factory=list)
    history: list[HistorySnapshot] = Field(default_factory=list)
    #: ConfigMaps and Secrets referenced by the pods that do not exist (names only)
    missing_objects: list[str] = Field(default_factory=list)
    #: keys that env vars take from ConfigMaps that exist but lack them: ``ConfigMap ns/name key``
    missing_keys: list[str] = Field(default_factory=list)
    #: the files of the ConfigMaps the pods mount as volumes: ConfigMap -> key -> text (cut
    #: short); the settings a program that dies at start on a value may be reading
    mounted_config: dict[str, dict[str, str]] = Field(default_factory=dict)
    # leads (gathering/sources/): each read only when the evidence before points there
    quota_consumers: list[QuotaConsumersSnapshot] = Field(default_factory=list)
    node_storage: list[NodeStorageSnapshot] = Field(default_factory=list)
    node_health: list[NodeHealthSnapshot] = Field(default_factory=list)
    scheduling: list[SchedulingSnapshot] = Field(default_factory=list)
    resource_holders: list[ResourceHoldersSnapshot] = Field(default_factory=list)
    #: retention turned off in the config of the pods writing a volume that fills up
    retention_settings: list[RetentionSetting] = Field(default_factory=list)
    dns: DNSSnapshot | None = None
    metrics_api: MetricsAPISnapshot | None = None
    readiness_gates: list[GateSnapshot] = Field(default_factory=list)
    #: CronJobs writing a Secret whose credential an outside API refuses
    credential_refreshers: list[CredentialRefresherSnapshot] = Field(default_factory=list)
    #: nodes being drained and the budgets that block them
    drains: list[DrainSnapshot] = Field(default_factory=list)
    #: nodes cordoned (spec.unschedulable) when the scheduler counted unschedulable nodes
    cordoned_nodes: list[str] = Field(default_factory=list)
    webhooks: list[WebhookSnapshot] = Field(default_factory=list)
    pull_credentials: list[PullCredentialsSnapshot] = Field(default_factory=list)
    #: the labels of the namespaces on either end of a network path
    namespaces: list[NamespaceSnapshot] = Field(default_factory=list)
    network_paths: list[NetworkPathSnapshot] = Field(default_factory=list)
    external_secrets: list[ExternalSecretSnapshot] = Field(default_factory=list)
    certificates: list[CertificateSnapshot] = Field(default_factory=list)
    tls_peers: list[TLSPeerSnapshot] = Field(default_factory=list)
    issuers: list[IssuerSnapshot] = Field(default_factory=list)
    argo_applications: list[ArgoApplicationSnapshot] = Field(default_factory=list)
    missing: list[MissingEvidence] = Field(default_factory=list)
    #: gathered evidence, flattened with stable ids (filled by ``oncallm.gathering.evidence``)
    evidence: list[EvidenceRef] = Field(default_factory=list)

    def evidence_by_id(self) -> dict[str, EvidenceRef]:
        return {e.id: e for e in self.evidence}
