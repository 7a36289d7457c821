"""Prometheus metrics of the model path (registered in the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "oncallm_llm_calls_total",
    "Analyses that tried the model, by outcome (accepted, rejected, invalid, runaway, "
    "unavailable, breaker_open, budget_spent, error).",
    ["outcome"],
)

TOKENS = Counter(
    "oncallm_llm_tokens_total",
    "Tokens spent on the model, by kind (prompt, completion).",
    ["kind"],
)

LATENCY = Histogram(
    "oncallm_llm_latency_seconds",
    "Time one analysis spent waiting for the model, retries and tool rounds included.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)

DISAGREEMENTS = Counter(
    "oncallm_llm_disagreements_total",
    "Analyses where the model named another category than the rules, by whose diagnosis was "
    "kept (rules: the evidence did not support the model or the rules were confident; model).",
    ["kept"],
)
