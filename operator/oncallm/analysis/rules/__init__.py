"""The built-in rule-based diagnosis: one table of rules, one engine that links a causal chain.

Every rule in :data:`RULES` declares its :class:`~oncallm.analysis.rules.base.Scope` and the
mechanism it detects. The engine runs the cause rules (pod, outside, capacity) once and ranks
their findings; the wrapper rules (a failed Job, a stuck rollout, a Deployment short of
replicas, a maxed HPA, a pod not ready, a target down) then see those ranked findings and
describe the link they are in. The root cause is the deepest cause the evidence proves:

1. the best proven cause (score at least ``proven_cause_score``) in the pod or outside it, or
   a wrapper that is itself at fault (a rollout that deadlocks itself), whichever scores more;
2. else a wrapper in its own right (a Job that failed with nothing to explain its pods);
3. else the best weak finding; else ``unknown``.

The chain runs from the alert's symptom through the wrappers to the root cause and what the
rule proved below it; other strong causes of other categories are reported as secondary.
docs/rules.md explains the scores. Plain Python: no I/O, milliseconds per context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    index_evidence,
)
from oncallm.analysis.rules import cluster, network, pods, workloads
from oncallm.analysis.rules.base import (
    Finding,
    Link,
    Rule,
    RuleSettings,
    Scope,
    crashed_container,
    namespace,
    pod_commands,
    target_pod,
    workload_state,
)
from oncallm.gathering.sources.metrics import metric_id
from oncallm.models.analysis import Category, CauseLink, Diagnosis, LinkRole
from oncallm.models.evidence import Context

RULES: tuple[Rule, ...] = (
    # --- wrappers: controllers that report what they manage fails -------------------------------
    Rule(
        "job-backoff-limit",
        Category.JOB_BACKOFF_LIMIT,
        Scope.WRAPPER,
        "A Job is marked Failed (BackoffLimitExceeded, DeadlineExceeded) because its pods kept "
        "failing; the pods' cause is the root cause.",
        wrap=workloads.job_backoff_limit,
    ),
    Rule(
        "rollout-stuck",
        Category.ROLLOUT_STUCK,
        Scope.WRAPPER,
        "A Deployment's rollout exceeded progressDeadlineSeconds; it is the fault itself only "
        "when its strategy cannot place new pods beside its own healthy old ones.",
        wrap=workloads.rollout_stuck,
    ),
    Rule(
        "update-held",
        Category.ROLLOUT_STUCK,
        Scope.WRAPPER,
        "A StatefulSet's rolling update stops at its updateStrategy partition, so the ordinals "
        "below it keep the old revision; with OnDelete (StatefulSet or DaemonSet), pods change "
        "only when deleted.",
        wrap=workloads.partition_held,
    ),
    Rule(
        "statefulset-ordered-ready",
        Category.ROLLOUT_STUCK,
        Scope.WRAPPER,
        "A StatefulSet with podManagementPolicy OrderedReady waits for a pod that is never "
        "Ready before it creates the next ordinals (a quorum readiness deadlocks the set).",
        wrap=workloads.ordered_ready_stalled,
    ),
    Rule(
        "hpa-maxed",
        Category.HPA_MAXED,
        Scope.WRAPPER,
        "An HPA runs at maxReplicas and wants more: demand exceeds the maximum, unless its pods "
        "fail for a cause of their own.",
        wrap=workloads.hpa_maxed,
    ),
    Rule(
        "replicas-mismatch",
        Category.UNKNOWN,
        Scope.WRAPPER,
        "A Deployment, StatefulSet or DaemonSet has fewer ready replicas than desired; a link "
        "only, never a cause.",
        wrap=workloads.replicas_mismatch,
    ),
    Rule(
        "pod-not-ready",
        Category.UNKNOWN,
        Scope.WRAPPER,
        "The alerted pod is not Ready; a link only, never a cause.",
        wrap=workloads.pod_not_ready,
    ),
    Rule(
        "target-down",
        Category.UNKNOWN,
        Scope.WRAPPER,
        "Prometheus cannot scrape a target; a link only, above why its pods do not answer.",
        wrap=workloads.target_down,
    ),
    # --- outside the pod: its namespace, node, storage, neighbours, the scheduler ---------------
    Rule(
        "quota-exceeded",
        Category.QUOTA_EXCEEDED,
        Scope.OUTSIDE,
        "The ReplicaSet/Job controller cannot create pods because a ResourceQuota of the "
        "namespace is used up (FailedCreate 'exceeded quota').",
        check=cluster.quota_exceeded,
    ),
    Rule(
        "pvc-pending",
        Category.PVC_PENDING,
        Scope.OUTSIDE,
        "A pod waits for a PersistentVolumeClaim that is not Bound (no StorageClass, "
        "provisioning failed) or a volume that cannot attach.",
        check=cluster.pvc_pending,
    ),
    Rule(
        "disk-pressure",
        Category.DISK_PRESSURE,
        Scope.OUTSIDE,
        "The kubelet evicts pods because its node's disk or ephemeral storage is short "
        "(DiskPressure=True, eviction events).",
        check=cluster.disk_pressure,
    ),
    Rule(
        "credential-not-refreshed",
        Category.RBAC_FORBIDDEN,
        Scope.OUTSIDE,
        "An outside API refuses the pod's token (401, expired) and the CronJob that rewrites "
        "the Secret holding it is suspended or failing (naming why: a Role that no longer lets "
        "it write the Secret).",
        check=network.credential_not_refreshed,
    ),
    Rule(
        "drain-blocked",
        Category.ROLLOUT_STUCK,
        Scope.OUTSIDE,
        "A node drain (upgrade, consolidation) cannot finish: a PodDisruptionBudget that "
        "selects one of its pods allows no disruption, so the Eviction API refuses that pod.",
        check=cluster.drain_blocked,
    ),
    Rule(
        "store-full",
        Category.DISK_PRESSURE,
        Scope.OUTSIDE,
        "A store refuses the program's writes because its disk is full (no space left on "
        "device, Elasticsearch's flood-stage watermark, Redis MISCONF), naming the fullest claim.",
        check=cluster.store_full,
    ),
    Rule(
        "volume-filling",
        Category.DISK_PRESSURE,
        Scope.OUTSIDE,
        "A claim's volume runs out of space or inodes (KubePersistentVolumeFillingUp): how much "
        "is left, how fast it shrinks, who writes it; a retention or WAL cause outranks it.",
        check=cluster.volume_filling,
    ),
    Rule(
        "node-not-ready",
        Category.NODE_NOT_READY,
        Scope.OUTSIDE,
        "The node under the pods stopped being Ready (kubelet not posting status, memory or "
        "PID pressure), so its pods are lost or Terminating; or nodes that are down, a real "
        "share of the cluster, took the room pods the scheduler cannot place lack.",
        check=cluster.node_not_ready,
    ),
    Rule(
        "unschedulable",
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
        Scope.OUTSIDE,
        "The scheduler finds no node for the pod (FailedScheduling: insufficient resources, "
        "taints, affinity).",
        check=cluster.insufficient_resources_unschedulable,
    ),
    Rule(
        "node-pod-capacity",
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
        Scope.OUTSIDE,
        "A node runs as many pods as it may (allocatable pods, the kubelet's maxPods): the "
        "scheduler places no more there however much CPU and memory is free.",
        check=cluster.node_pod_capacity,
    ),
    Rule(
        "kubelet-serving-cert",
        Category.CERT_EXPIRED,
        Scope.OUTSIDE,
        "A kubelet's scrape fails because its serving certificate expired: its renewal CSRs "
        "(signer kubernetes.io/kubelet-serving, serverTLSBootstrap) stay pending for hours with "
        "no approver.",
        check=cluster.kubelet_serving_cert,
    ),
    Rule(
        "kubelet-client-cert",
        Category.CERT_EXPIRED,
        Scope.OUTSIDE,
        "A client certificate nears expiry because a kubelet's renewal CSRs (signer "
        "kubernetes.io/kube-apiserver-client-kubelet) stay pending: no ClusterRoleBinding "
        "grants the nodes selfnodeclient, so the controller manager approves none.",
        check=cluster.kubelet_client_cert,
    ),
    Rule(
        "metrics-api-down",
        Category.DEPENDENCY_UNREACHABLE,
        Scope.OUTSIDE,
        "An HPA cannot read its metrics because metrics-server, which serves metrics.k8s.io, "
        "is down; the category is why its pods fail (a refused flag: bad_config, an OOM, an "
        "image), else the unreachable API.",
        check=cluster.metrics_api_down,
    ),
    Rule(
        "dependency-unreachable",
        Category.DEPENDENCY_UNREACHABLE,
        Scope.OUTSIDE,
        "A Service the pod depends on has no ready endpoints, and the pod's connections to it "
        "fail.",
        check=network.dependency_unreachable,
    ),
    Rule(
        "admission-webhook",
        Category.DEPENDENCY_UNREACHABLE,
        Scope.OUTSIDE,
        "The API server refuses objects because it cannot call an admission webhook (failed "
        "calling webhook): its Service has no ready endpoints, or its certificate expired "
        "(then the category is cert_expired).",
        check=network.admission_webhook,
    ),
    Rule(
        "network-policy-block",
        Category.NETWORK_POLICY_BLOCK,
        Scope.OUTSIDE,
        "A NetworkPolicy selecting the pod denies the traffic it needs to a healthy "
        "destination, so its connections time out.",
        check=network.network_policy_block,
    ),
    Rule(
        "dns-failure",
        Category.DNS_FAILURE,
        Scope.OUTSIDE,
        "Name resolution fails for the pod (NXDOMAIN, resolver timeouts).",
        check=network.dns_failure,
    ),
    Rule(
        "cert-expired",
        Category.CERT_EXPIRED,
        Scope.OUTSIDE,
        "A TLS handshake fails because a certificate in the path has expired or is not valid yet.",
        check=network.cert_expired,
    ),
    Rule(
        "rbac-forbidden",
        Category.RBAC_FORBIDDEN,
        Scope.OUTSIDE,
        "The pod's ServiceAccount is refused by the API server (forbidden: cannot <verb> "
        "<resource>).",
        check=network.rbac_forbidden,
    ),
    Rule(
        "identity-refused",
        Category.RBAC_FORBIDDEN,
        Scope.OUTSIDE,
        "An authority outside the cluster (Vault's Kubernetes auth, AWS STS, Google IAM, Azure "
        "AD) refuses the ServiceAccount identity the pod logs in with: its role or trust "
        "policy does not allow that ServiceAccount, or it cannot verify the token.",
        check=network.identity_refused,
    ),
    Rule(
        "api-token-rejected",
        Category.RBAC_FORBIDDEN,
        Scope.OUTSIDE,
        "The Kubernetes API answers 401 Unauthorized to the pod's own client: the token it "
        "sends is no longer valid (an expired projected token read once, or a ServiceAccount "
        "recreated since the pod started).",
        check=network.api_token_rejected,
    ),
    Rule(
        "scrape-port-unserved",
        Category.BAD_CONFIG,
        Scope.OUTSIDE,
        "A failing scrape of a Service whose pods run and are ready: the Service maps the "
        "scraped port to a targetPort no container of its pods declares.",
        check=network.scrape_port_unserved,
    ),
    Rule(
        "external-dependency-unreachable",
        Category.DEPENDENCY_UNREACHABLE,
        Scope.OUTSIDE,
        "Connections to a host outside the cluster (a URL in the pods' environment, or an "
        "ExternalName Service's alias of one) time out or are refused while no egress policy "
        "keeps them in.",
        check=network.external_dependency_unreachable,
    ),
    Rule(
        "scrape-scheme-mismatch",
        Category.BAD_CONFIG,
        Scope.OUTSIDE,
        "A failing scrape whose ServiceMonitor speaks plain HTTP (no scheme: https) to a port "
        "that serves TLS: named https/tls, appProtocol https, or a program that logs a secure "
        "listener.",
        check=network.scrape_scheme_mismatch,
    ),
    Rule(
        "scrape-on-loopback",
        Category.BAD_CONFIG,
        Scope.POD,
        "A failing scrape of a target that runs but listens on the loopback address only "
        "(--bind-address=127.0.0.1, a log 'Serving securely on 127.0.0.1:10257'): nothing "
        "answers on the address Prometheus scrapes.",
        check=network.scrape_on_loopback,
    ),
    Rule(
        "loopback-unserved",
        Category.BAD_CONFIG,
        Scope.POD,
        "A program's connection to a sidecar over the pod's loopback is refused while the "
        "sidecar logs that it listens on the other address family (127.0.0.1 against ::1, "
        "localhost resolving to IPv6 first) or on another port: the configured address is "
        "wrong for the listener.",
        check=network.loopback_unserved,
    ),
    Rule(
        "readiness-gate-failing",
        Category.FAILING_PROBE,
        Scope.OUTSIDE,
        "Containers ready but a readiness gate that a load balancer's controller sets from its "
        "own health check stays False (AWS target health, GKE NEG): the load balancer's health "
        "check, configured on the Ingress, fails.",
        check=network.readiness_gate_failing,
    ),
    # --- the pod's own spec, image or code ------------------------------------------------------
    Rule(
        "missing-secret-or-configmap",
        Category.MISSING_SECRET_OR_CONFIGMAP,
        Scope.POD,
        "The kubelet cannot build the container because a Secret, ConfigMap or key it "
        "references does not exist.",
        check=pods.missing_secret_or_configmap,
    ),
    Rule(
        "image-pull-error",
        Category.IMAGE_PULL_ERROR,
        Scope.POD,
        "The kubelet cannot pull the container's image (not found, unauthorized, invalid).",
        check=pods.image_pull_error,
    ),
    Rule(
        "oom-killed",
        Category.OOM_KILLED,
        Scope.POD,
        "The kernel kills the container for exceeding its memory limit (OOMKilled, exit 137 "
        "without liveness kills).",
        check=pods.oom_killed,
    ),
    Rule(
        "bad-config",
        Category.BAD_CONFIG,
        Scope.POD,
        "The program exits at start-up on its own configuration: a parse error, an unknown "
        "flag, an invalid value, a command that does not exist.",
        check=pods.bad_config,
    ),
    Rule(
        "completes-in-a-loop",
        Category.BAD_CONFIG,
        Scope.POD,
        "A container of a Deployment, StatefulSet or DaemonSet exits 0 again and again: its "
        "command is a one-shot task that finishes, restarted until CrashLoopBackOff.",
        check=pods.completes_in_a_loop,
    ),
    Rule(
        "retention-disabled",
        Category.BAD_CONFIG,
        Scope.POD,
        "A volume fills up because a retention or clean-up setting in the ConfigMap its writer "
        "reads is turned off (-1, 0, unlimited).",
        check=pods.retention_disabled,
    ),
    Rule(
        "wal-retained",
        Category.DISK_PRESSURE,
        Scope.POD,
        "A database volume fills with write-ahead log kept for a replication slot nobody reads "
        "(an inactive slot of a stopped CDC connector or a removed replica).",
        check=pods.wal_retained,
    ),
    Rule(
        "failing-probe",
        Category.FAILING_PROBE,
        Scope.POD,
        "The kubelet restarts or unreadies the container because its liveness, startup or "
        "readiness probe fails.",
        check=pods.failing_probe,
    ),
    Rule(
        "app-crash-exception",
        Category.APP_CRASH_EXCEPTION,
        Scope.POD,
        "The program crashes on an unhandled exception or panic in its own code.",
        check=pods.app_crash_exception,
    ),
    # --- capacity: the service works, but not at the load it gets -------------------------------
    Rule(
        "cpu-throttling",
        Category.CPU_THROTTLING,
        Scope.CAPACITY,
        "The kernel's CFS quota throttles the container at its CPU limit.",
        check=workloads.cpu_throttling,
    ),
)
"""Every rule, one table. Within a scope the order breaks ties between equal scores."""

ALERT_HINTS: dict[str, Category] = {
    "KubeJobFailed": Category.JOB_BACKOFF_LIMIT,
    "KubeJobNotCompleted": Category.JOB_BACKOFF_LIMIT,
    "KubeHpaMaxedOut": Category.HPA_MAXED,
    "CPUThrottlingHigh": Category.CPU_THROTTLING,
    "KubeNodeNotReady": Category.NODE_NOT_READY,
    "KubeNodeUnreachable": Category.NODE_NOT_READY,
    "KubeletDown": Category.NODE_NOT_READY,
    "KubeQuotaExceeded": Category.QUOTA_EXCEEDED,
    "KubeQuotaFullyUsed": Category.QUOTA_EXCEEDED,
    "KubePersistentVolumeErrors": Category.PVC_PENDING,
    "KubeDeploymentRolloutStuck": Category.ROLLOUT_STUCK,
    "KubeDeploymentGenerationMismatch": Category.ROLLOUT_STUCK,
    "NodeFilesystemSpaceFillingUp": Category.DISK_PRESSURE,
    "NodeFilesystemAlmostOutOfSpace": Category.DISK_PRESSURE,
    "KubeCPUOvercommit": Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
    "KubeMemoryOvercommit": Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
    "CoreDNSDown": Category.DNS_FAILURE,
    "CoreDNSErrorsHigh": Category.DNS_FAILURE,
    "KubeClientCertificateExpiration": Category.CERT_EXPIRED,
    "CertManagerCertExpirySoon": Category.CERT_EXPIRED,
}
"""Alerts that name their cause; a finding of that category gets a small bonus."""


@dataclass
class Verdict:
    """What the engine decided: the root cause, the links above it, independent causes."""

    primary: Finding
    wrappers: list[Finding] = field(default_factory=list)
    secondary: list[Finding] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _independent(finding: Finding, primary: Finding) -> bool:
    """A second cause is independent when it shares no evidence with the root cause and is
    about no object the root cause's text names: otherwise it is a part of the same chain (the
    scheduling failure a self-blocking rollout causes, the pod a node's OOM names)."""
    cited = set(primary.evidence) | {e for link in primary.because for e in link.evidence}
    own = set(finding.evidence) - {ALERT_ID}
    if own & cited:
        return False
    text = primary.root_cause + " ".join(link.summary for link in primary.because)
    objects = {e.split("/")[1] for e in own if e.startswith(("pod/", "container/"))}
    return not any(name in text for name in objects)


def evaluate(
    ctx: Context, settings: RuleSettings | None = None, ev: EvidenceIndex | None = None
) -> list[Finding]:
    """Every finding of every rule, causes ranked best first, then the wrappers."""
    settings = settings or RuleSettings()
    ev = ev or index_evidence(ctx)
    causes = _causes(ctx, ev, settings)
    return causes + _wrappers(ctx, ev, settings, causes)


def _causes(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> list[Finding]:
    hinted = ALERT_HINTS.get(ctx.alert.name)
    found: list[tuple[float, int, Finding]] = []
    for order, rule in enumerate(RULES):
        if rule.check is None:
            continue
        finding = rule.check(ctx, ev, settings)
        if finding is None:
            continue
        finding.rule, finding.scope = rule.name, rule.scope
        if finding.category == hinted:
            finding.score = min(0.99, finding.score + settings.alert_hint_bonus)
        found.append((-finding.score, order, finding))
    found.sort(key=lambda t: (t[0], t[1]))
    return [f for _, _, f in found]


def _wrappers(
    ctx: Context, ev: EvidenceIndex, settings: RuleSettings, causes: list[Finding]
) -> list[Finding]:
    out: list[Finding] = []
    for rule in RULES:
        if rule.wrap is None:
            continue
        finding = rule.wrap(ctx, ev, settings, causes)
        if finding is None:
            continue
        finding.rule, finding.scope = rule.name, rule.scope
        if finding.category == ALERT_HINTS.get(ctx.alert.name):
            finding.score = min(0.99, finding.score + settings.alert_hint_bonus)
        out.append(finding)
    return out


def decide(
    ctx: Context, settings: RuleSettings | None = None, ev: EvidenceIndex | None = None
) -> Verdict:
    """The root cause, the wrappers that describe the chain above it, and secondary causes."""
    settings = settings or RuleSettings()
    ev = ev or index_evidence(ctx)
    causes = _causes(ctx, ev, settings)
    wrapped = _wrappers(ctx, ev, settings, causes)
    proven = [
        f
        for f in causes
        if f.scope in (Scope.POD, Scope.OUTSIDE) and f.score >= settings.proven_cause_score
    ]
    contenders = sorted([*proven, *(w for w in wrapped if w.at_fault)], key=lambda f: -f.score)
    own = [w for w in wrapped if w.category is not Category.UNKNOWN]
    if contenders:
        primary = contenders[0]
    elif own:
        primary = max(own, key=lambda f: f.score)
    elif causes:
        primary = causes[0]
    else:
        primary = unknown(ctx, ev, settings)
    secondary = [
        f
        for f in causes
        if f is not primary
        and f.category is not primary.category
        and f.score >= settings.secondary_cause_score
        and _independent(f, primary)
    ][:3]
    return Verdict(
        primary=primary,
        wrappers=[w for w in wrapped if w is not primary],
        secondary=secondary,
        findings=causes + wrapped,
    )


def diagnose(
    ctx: Context, settings: RuleSettings | None = None, ev: EvidenceIndex | None = None
) -> Diagnosis:
    """The rule-based diagnosis of one gathered context.

    ``ev`` is the analysis' evidence, built once (with the operator's evidence settings) and
    shared with the model path; without it the evidence is built here with the defaults.
    ``evidence`` holds only ids of items in ``ev``; ``commands`` name the real objects.
    """
    ev = ev or index_evidence(ctx)
    return to_diagnosis(decide(ctx, settings, ev), ctx, ev)


def to_diagnosis(verdict: Verdict | Finding, ctx: Context, ev: EvidenceIndex) -> Diagnosis:
    """A verdict as a :class:`Diagnosis`: ids checked, lists bounded, text within limits.

    The root cause text is the primary finding's, followed by what the wrappers say about it
    (which revision to roll back, which Job to re-run); their commands and first action come
    after the primary's."""
    if isinstance(verdict, Finding):
        verdict = Verdict(primary=verdict)
    finding = verdict.primary
    evidence = ev.cite(*finding.evidence)
    if not evidence and ev.has(ALERT_ID):
        evidence = [ALERT_ID]
    root_cause = finding.root_cause
    around = [w.summary for w in verdict.wrappers if w.category is not Category.UNKNOWN]
    if around:
        root_cause += " Above it: " + " ".join(around)
    commands = finding.commands + [c for w in verdict.wrappers for c in w.commands]
    actions = finding.immediate_actions + [
        a
        for w in verdict.wrappers
        if w.category is not Category.UNKNOWN
        for a in w.immediate_actions[:1]
    ]
    return Diagnosis(
        category=finding.category,
        summary=_cut(finding.summary, 600),
        root_cause=_cut(root_cause, 1200),
        confidence=round(max(0.0, min(1.0, finding.score)), 2),
        impact=_cut(finding.impact, 1200),
        immediate_actions=[_cut(a, 600) for a in _dedupe(actions)[:12]],
        recommendations=[_cut(r, 600) for r in _dedupe(finding.recommendations)[:12]],
        evidence=evidence[:20],
        commands=_dedupe(commands + _generic_commands(ctx))[:16],
        chain=_chain(verdict, ctx, ev),
        secondary=[_link(LinkRole.SECONDARY, f, ev) for f in verdict.secondary],
    )


def _chain(verdict: Verdict, ctx: Context, ev: EvidenceIndex) -> list[CauseLink]:
    """Symptom -> wrappers (outermost first) -> root cause -> what the rule proved below it."""
    symptom = CauseLink(
        role=LinkRole.SYMPTOM,
        summary=_cut(f"{ctx.alert.name} fires for {ctx.target.display}.", 600),
        evidence=ev.cite(ALERT_ID),
    )
    links = [symptom]
    links += [_link(LinkRole.WRAPPER, w, ev) for w in verdict.wrappers]
    links.append(_link(LinkRole.CAUSE, verdict.primary, ev))
    links += [
        CauseLink(
            role=LinkRole.CAUSE,
            summary=_cut(deeper.summary, 600),
            category=deeper.category,
            evidence=ev.cite(*deeper.evidence)[:10],
            rule=verdict.primary.rule or None,
        )
        for deeper in verdict.primary.because
    ]
    return links[:12]


def _link(role: LinkRole, finding: Finding, ev: EvidenceIndex) -> CauseLink:
    return CauseLink(
        role=role,
        summary=_cut(finding.summary, 600),
        category=None
        if finding.category is Category.UNKNOWN and role is LinkRole.WRAPPER
        else finding.category,
        evidence=ev.cite(*finding.evidence)[:10],
        rule=finding.rule or None,
    )


#: One label of a series key as the metrics source writes it (``pod="x",instance="y"``).
_SERIES_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _targets_down(ctx: Context) -> tuple[str | None, str]:
    """Which scrape targets are down (the ``targets_down`` query), each as its pod and node
    where the series or the gathered pods name them: the place a person looks next."""
    metric = next((m for m in ctx.metrics if m.name == "targets_down" and m.values), None)
    if metric is None:
        return None, ""
    node_of = {p.name: p.node_name for p in ctx.pods if p.node_name}
    named = []
    for key in list(metric.values)[:5]:
        labels = dict(_SERIES_LABEL.findall(key))
        pod, instance = labels.get("pod"), labels.get("instance")
        node = labels.get("node") or node_of.get(pod or "")
        where = " ".join(([f"pod {pod}"] if pod else []) + ([f"on node {node}"] if node else []))
        named.append(f"{instance} ({where})" if instance and where else instance or where)
    listed = ", ".join(n for n in named if n)
    return metric_id(metric.name), f"; the targets down now: {listed}"


def unknown(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> Finding:
    """The fallback when no rule fires: say what was looked at and where to look next."""
    down_id, down = _targets_down(ctx)
    notable = [item for item in ev.items if item.id not in (ALERT_ID, down_id)][:3]
    seen = "; ".join(f"{item.id}: {item.excerpt[:120]}" for item in notable)
    return Finding(
        Category.UNKNOWN,
        settings.unknown_confidence,
        summary=(
            f"No known failure pattern explains {ctx.alert.name} on {ctx.target.display}; "
            "a human should look."
        ),
        root_cause=(
            f"None of the {len(RULES)} rules matched the gathered evidence for "
            f"{ctx.alert.name} on {ctx.target.display}"
            + down
            + (f"; the most notable items: {seen}" if seen else "; little evidence was gathered")
            + "."
        ),
        evidence=[ALERT_ID, *([down_id] if down_id else []), *(item.id for item in notable)],
        impact=f"{workload_state(ctx)}.",
        immediate_actions=[
            "Check the alert's expression in Prometheus and the service's dashboards: the "
            "cluster shows no failing pods, nodes or dependencies.",
            "Read the full logs and recent changes (deploys, config) of the alerted workload.",
        ],
        recommendations=[
            "If this alert keeps firing without a cluster-side cause, tune its threshold or add "
            "a runbook link to its annotations.",
        ],
        commands=[],
    )


def _generic_commands(ctx: Context) -> list[str]:
    ns = namespace(ctx)
    crashed = crashed_container(ctx)
    pod, c = crashed if crashed else (target_pod(ctx), None)
    cmds = pod_commands(ctx, pod, c) if pod is not None else []
    if ctx.workload is not None:
        cmds.append(kc.describe(ctx.workload.kind, ctx.workload.namespace, ctx.workload.name))
    if ctx.target.namespace or ctx.pods or ctx.workload is not None:
        cmds.append(kc.warning_events(ns))
    else:  # a cluster-scoped alert: no namespace to narrow to
        cmds.append("kubectl get events -A --field-selector type=Warning --sort-by=.lastTimestamp")
    return cmds


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def _cut(text: str, limit: int) -> str:
    text = text.strip() or "-"
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "ALERT_HINTS",
    "RULES",
    "Finding",
    "Link",
    "Rule",
    "RuleSettings",
    "Scope",
    "Verdict",
    "decide",
    "diagnose",
    "evaluate",
    "to_diagnosis",
    "unknown",
]
