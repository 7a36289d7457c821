"""Settings of the operator, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class OperatorSettings:
    namespace: str = "oncallm"
    """Namespace of AlertAnalyses, AnalysisPolicies and reports (ONCALLM_NAMESPACE)."""
    concurrency: int = 8
    """Analyses run at once (ONCALLM_CONCURRENCY). Each makes ~20 reads; 8 keeps the operator
    inside its API rate limit while a storm of alerts queues, critical first."""
    prometheus_url: str | None = None
    """Prometheus to query for metrics evidence (ONCALLM_PROMETHEUS_URL); unset: no metrics."""
    report_base_url: str = ""
    """Public base URL of the web view, for report links (ONCALLM_REPORT_BASE_URL)."""
    max_attempts: int = 5
    """Tries of an analysis whose API reads keep failing before it is marked Failed
    (ONCALLM_MAX_ATTEMPTS)."""
    retry_delay: float = 10.0
    """Seconds between those tries (ONCALLM_RETRY_DELAY)."""
    retention_sweep_seconds: float = 300.0
    """How often finished analyses past their policy's retention are deleted
    (ONCALLM_RETENTION_SWEEP_SECONDS)."""
    upgrade_sweep_seconds: float = 60.0
    """How often analyses completed by the rules while the model was down are retried with
    the model (ONCALLM_UPGRADE_SWEEP_SECONDS)."""

    metrics_port: int = 8082
    """Port of the operator's /metrics (ONCALLM_OPERATOR_METRICS_PORT); 0 turns it off. The
    sidecar serves the webhook's metrics on its own port."""

    @classmethod
    def from_env(cls) -> OperatorSettings:
        env = os.environ
        return cls(
            namespace=env.get("ONCALLM_NAMESPACE", cls.namespace),
            concurrency=int(env.get("ONCALLM_CONCURRENCY", cls.concurrency)),
            prometheus_url=env.get("ONCALLM_PROMETHEUS_URL") or None,
            report_base_url=env.get("ONCALLM_REPORT_BASE_URL", cls.report_base_url),
            max_attempts=int(env.get("ONCALLM_MAX_ATTEMPTS", cls.max_attempts)),
            retry_delay=float(env.get("ONCALLM_RETRY_DELAY", cls.retry_delay)),
            retention_sweep_seconds=float(
                env.get("ONCALLM_RETENTION_SWEEP_SECONDS", cls.retention_sweep_seconds)
            ),
            metrics_port=int(env.get("ONCALLM_OPERATOR_METRICS_PORT", cls.metrics_port)),
            upgrade_sweep_seconds=float(
                env.get("ONCALLM_UPGRADE_SWEEP_SECONDS", cls.upgrade_sweep_seconds)
            ),
        )


@dataclass
class IncidentSettings:
    """How alerts are grouped into incidents (docs/incidents.md)."""

    enabled: bool = True
    """Group alerts by the cause they share (ONCALLM_INCIDENTS); false analyses every alert on
    its own."""
    window_seconds: float = 1800.0
    """An incident takes new members until nothing joined it for this long
    (ONCALLM_INCIDENT_WINDOW_SECONDS): the same node dying again tomorrow is a new incident."""
    settle_seconds: float = 3.0
    """With a model, how long a primary waits for members to arrive before the one model call,
    so the prompt carries their symptoms (ONCALLM_INCIDENT_SETTLE_SECONDS); cut short when no
    other alert is waiting or the prompt's 20 member symptoms are there. Without a model
    nothing waits."""
    member_wait_seconds: float = 300.0
    """Longest a member waits for its primary's diagnosis before it completes with the rules'
    diagnosis of the incident (ONCALLM_INCIDENT_MEMBER_WAIT_SECONDS)."""
    refresh_seconds: float = 5.0
    """How often a completed primary's member count and report are brought up to date while
    members join (ONCALLM_INCIDENT_REFRESH_SECONDS): one write per interval, not per member."""
    max_incidents: int = 1000
    """Open incidents kept in memory (ONCALLM_INCIDENT_MAX); the least recently joined go
    first."""

    @classmethod
    def from_env(cls) -> IncidentSettings:
        env = os.environ
        return cls(
            enabled=env.get("ONCALLM_INCIDENTS", "true").strip().lower()
            not in ("false", "0", "no", "off"),
            window_seconds=float(env.get("ONCALLM_INCIDENT_WINDOW_SECONDS", cls.window_seconds)),
            settle_seconds=float(env.get("ONCALLM_INCIDENT_SETTLE_SECONDS", cls.settle_seconds)),
            member_wait_seconds=float(
                env.get("ONCALLM_INCIDENT_MEMBER_WAIT_SECONDS", cls.member_wait_seconds)
            ),
            refresh_seconds=float(env.get("ONCALLM_INCIDENT_REFRESH_SECONDS", cls.refresh_seconds)),
            max_incidents=int(env.get("ONCALLM_INCIDENT_MAX", cls.max_incidents)),
        )
