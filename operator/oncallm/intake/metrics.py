"""Prometheus metrics of the webhook sidecar."""

from prometheus_client import Counter, Histogram

ALERTS_RECEIVED = Counter(
    "oncallm_webhook_alerts_received_total", "Alerts received, by alert status", ["status"]
)
ANALYSES_CREATED = Counter("oncallm_analyses_created_total", "AlertAnalyses created")
ANALYSES_RESOLVED = Counter(
    "oncallm_analyses_resolved_total", "AlertAnalyses marked resolved by a resolved alert"
)
REPEATS_SKIPPED = Counter(
    "oncallm_webhook_repeats_skipped_total", "Alerts already stored, answered without a write"
)
REJECTED = Counter("oncallm_webhook_rejected_total", "Notifications refused, by reason", ["reason"])
REQUEST_SECONDS = Histogram(
    "oncallm_webhook_request_duration_seconds",
    "Time to answer a notification",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
