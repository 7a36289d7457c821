"""The built-in rule-based diagnosis: a table of small rules, each scoring one kind of fault.

:func:`diagnose` runs every rule in :data:`RULES` against the gathered context; each returns a
:class:`Finding` with a score or None. The highest score wins (ties: the earlier rule in the
table), and its score becomes the confidence. Rules for causes *outside* the failing pod (a
Service without endpoints, a node, a quota) score above rules that read the pod's own symptoms
(a traceback), so the diagnosis follows the cause past the symptom. docs/rules.md explains the
scores. Plain Python: no I/O, milliseconds per context.
"""

from __future__ import annotations

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    index_evidence,
)
from oncallm.analysis.rules import cluster, network, pods, workloads
from oncallm.analysis.rules.base import (
    Finding,
    Rule,
    RuleSettings,
    crashed_container,
    namespace,
    pod_commands,
    target_pod,
    workload_state,
)
from oncallm.models.analysis import Category, Diagnosis
from oncallm.models.evidence import Context

RULES: tuple[Rule, ...] = (
    # The workload gave up: wraps the pod-level causes and names them.
    Rule("job-backoff-limit", Category.JOB_BACKOFF_LIMIT, workloads.job_backoff_limit, True),
    Rule("rollout-stuck", Category.ROLLOUT_STUCK, workloads.rollout_stuck, True),
    # Causes outside the pod: its namespace, its node, its storage, its neighbours.
    Rule("quota-exceeded", Category.QUOTA_EXCEEDED, cluster.quota_exceeded),
    Rule("pvc-pending", Category.PVC_PENDING, cluster.pvc_pending),
    Rule("disk-pressure", Category.DISK_PRESSURE, cluster.disk_pressure),
    Rule("node-not-ready", Category.NODE_NOT_READY, cluster.node_not_ready),
    Rule(
        "unschedulable",
        Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE,
        cluster.insufficient_resources_unschedulable,
    ),
    Rule("dependency-unreachable", Category.DEPENDENCY_UNREACHABLE, network.dependency_unreachable),
    Rule("network-policy-block", Category.NETWORK_POLICY_BLOCK, network.network_policy_block),
    Rule("dns-failure", Category.DNS_FAILURE, network.dns_failure),
    Rule("cert-expired", Category.CERT_EXPIRED, network.cert_expired),
    Rule("rbac-forbidden", Category.RBAC_FORBIDDEN, network.rbac_forbidden),
    # The pod's own spec or image.
    Rule(
        "missing-secret-or-configmap",
        Category.MISSING_SECRET_OR_CONFIGMAP,
        pods.missing_secret_or_configmap,
    ),
    Rule("image-pull-error", Category.IMAGE_PULL_ERROR, pods.image_pull_error),
    Rule("oom-killed", Category.OOM_KILLED, pods.oom_killed),
    Rule("bad-config", Category.BAD_CONFIG, pods.bad_config),
    # Capacity: the service runs, but not fast enough.
    Rule("hpa-maxed", Category.HPA_MAXED, workloads.hpa_maxed),
    Rule("cpu-throttling", Category.CPU_THROTTLING, workloads.cpu_throttling),
    # Symptoms that are causes only when nothing deeper was found.
    Rule("failing-probe", Category.FAILING_PROBE, pods.failing_probe),
    Rule("app-crash-exception", Category.APP_CRASH_EXCEPTION, pods.app_crash_exception),
)
"""Every rule, roughly deepest cause first (the order breaks ties between equal scores)."""

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


def evaluate(
    ctx: Context, settings: RuleSettings | None = None, ev: EvidenceIndex | None = None
) -> list[Finding]:
    """Every finding of every rule, best first. The language model gets these as hints."""
    settings = settings or RuleSettings()
    ev = ev or index_evidence(ctx)
    hinted = ALERT_HINTS.get(ctx.alert.name)
    found: list[tuple[float, int, Finding]] = []
    for order, rule in enumerate(RULES):
        finding = rule.check(ctx, ev, settings)
        if finding is None:
            continue
        finding.rule = rule.name
        if finding.category == hinted:
            finding.score = min(0.99, finding.score + settings.alert_hint_bonus)
        found.append((-finding.score, order, finding))
    found.sort(key=lambda t: (t[0], t[1]))
    return [f for _, _, f in found]


def diagnose(
    ctx: Context, settings: RuleSettings | None = None, ev: EvidenceIndex | None = None
) -> Diagnosis:
    """The rule-based diagnosis of one gathered context.

    ``ev`` is the analysis' evidence, built once (with the operator's evidence settings) and
    shared with the model path; without it the evidence is built here with the defaults.
    ``evidence`` holds only ids of items in ``ev``; ``commands`` name the real objects.
    """
    settings = settings or RuleSettings()
    ev = ev or index_evidence(ctx)
    findings = evaluate(ctx, settings, ev)
    best = findings[0] if findings else unknown(ctx, ev, settings)
    return to_diagnosis(best, ctx, ev)


def to_diagnosis(finding: Finding, ctx: Context, ev: EvidenceIndex) -> Diagnosis:
    """A finding as a :class:`Diagnosis`: ids checked, lists bounded, text within limits."""
    evidence = ev.cite(*finding.evidence)
    if not evidence and ev.has(ALERT_ID):
        evidence = [ALERT_ID]
    commands = _dedupe(finding.commands + _generic_commands(ctx))
    return Diagnosis(
        category=finding.category,
        summary=_cut(finding.summary, 600),
        root_cause=_cut(finding.root_cause, 1200),
        confidence=round(max(0.0, min(1.0, finding.score)), 2),
        impact=_cut(finding.impact, 1200),
        immediate_actions=[_cut(a, 600) for a in _dedupe(finding.immediate_actions)[:12]],
        recommendations=[_cut(r, 600) for r in _dedupe(finding.recommendations)[:12]],
        evidence=evidence[:20],
        commands=commands[:16],
    )


def unknown(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> Finding:
    """The fallback when no rule fires: say what was looked at and where to look next."""
    notable = [item for item in ev.items if item.id != ALERT_ID][:3]
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
            + (f"; the most notable items: {seen}" if seen else "; little evidence was gathered")
            + "."
        ),
        evidence=[ALERT_ID, *(item.id for item in notable)],
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
    "Rule",
    "RuleSettings",
    "diagnose",
    "evaluate",
    "to_diagnosis",
    "unknown",
]
