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
