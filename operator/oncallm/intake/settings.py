"""Settings of the webhook sidecar, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class IntakeSettings:
    namespace: str = "oncallm"
    """Where AlertAnalyses are stored (ONCALLM_NAMESPACE; in a pod, its own namespace)."""
    token: str | None = None
    """Bearer token Alertmanager must send (ONCALLM_WEBHOOK_TOKEN, or a file named by
    ONCALLM_WEBHOOK_TOKEN_FILE, e.g. a mounted Secret). Unset: no authentication."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest notification accepted (ONCALLM_MAX_BODY_BYTES). Alertmanager's max_alerts is
    unlimited by default; 32 MiB holds ~20,000 typical alerts."""
    concurrency: int = 32
    """AlertAnalyses created at once per notification (ONCALLM_INTAKE_CONCURRENCY); the
    client-side rate limit (ONCALLM_KUBE_QPS) bounds the rate toward the API server."""
    retry_after_seconds: int = 10
    """Retry-After sent with a 503 (ONCALLM_RETRY_AFTER). Alertmanager retries with its own
    backoff whatever the header says; other clients honour it."""
    report_base_url: str = ""
    """Public base URL of the web view, to build report links (ONCALLM_REPORT_BASE_URL)."""
    host: str = "0.0.0.0"
    """Address the sidecar listens on (ONCALLM_HOST)."""
    port: int = 8080
    """Port of the webhook, web view, health and metrics (ONCALLM_PORT)."""
    shards: int = 8
    """Shards the operator replicas divide the analyses into (ONCALLM_SHARDS): the sidecar
    labels each new analysis with its shard. The same number as the operator's (docs/ha.md)."""

    @classmethod
    def from_env(cls) -> IntakeSettings:
        env = os.environ
        token = env.get("ONCALLM_WEBHOOK_TOKEN") or None
        token_file = env.get("ONCALLM_WEBHOOK_TOKEN_FILE")
        if token is None and token_file:
            token = Path(token_file).read_text().strip() or None
        return cls(
            namespace=env.get("ONCALLM_NAMESPACE") or _pod_namespace() or cls.namespace,
            token=token,
            max_body_bytes=int(env.get("ONCALLM_MAX_BODY_BYTES", cls.max_body_bytes)),
            concurrency=int(env.get("ONCALLM_INTAKE_CONCURRENCY", cls.concurrency)),
            retry_after_seconds=int(env.get("ONCALLM_RETRY_AFTER", cls.retry_after_seconds)),
            report_base_url=env.get("ONCALLM_REPORT_BASE_URL", cls.report_base_url),
            host=env.get("ONCALLM_HOST", cls.host),
            port=int(env.get("ONCALLM_PORT", cls.port)),
            shards=max(1, int(env.get("ONCALLM_SHARDS", cls.shards))),
        )


def _pod_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else None
