"""Prometheus metrics of the operator."""

from prometheus_client import Counter, Gauge, Histogram

ANALYSES = Counter(
    "oncallm_analyses_finished_total",
    "Finished analyses, by outcome and analyser",
    ["outcome", "analyzer"],
)
STAGE_SECONDS = Histogram(
    "oncallm_analysis_stage_seconds",
    "Time spent in each stage of an analysis",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
WAITING = Gauge("oncallm_analyses_waiting", "Analyses waiting for a free slot")
RUNNING = Gauge("oncallm_analyses_running", "Analyses running now")
KNOWN = Gauge("oncallm_analyses_known", "AlertAnalyses the operator has seen in its namespace")
QUEUED = Counter(
    "oncallm_analyses_queued_total", "Analyses queued to run (new, unfinished, re-run)"
)
INCIDENTS = Gauge("oncallm_incidents_open", "Incidents open for new members")
SHARDS_OWNED = Gauge(
    "oncallm_shards_owned", "Shards whose Lease this replica holds and whose analyses it runs"
)
TAKEOVERS = Counter(
    "oncallm_shard_takeovers_total",
    "Shard Leases taken over from a replica that stopped renewing them (died or cut off)",
)
LEASE_RENEW_FAILURES = Counter(
    "oncallm_lease_renew_failures_total",
    "Lease renewals that failed: conflict (another replica holds the Lease now) or error "
    "(the API server did not answer)",
    ["reason"],
)
