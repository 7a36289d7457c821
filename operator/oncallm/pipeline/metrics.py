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
