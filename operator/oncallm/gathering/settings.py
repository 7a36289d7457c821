"""Bounds on gathering, read from the environment at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class GatherSettings:
    """Bounds on gathering, so one analysis never stalls or floods anything."""

    source_timeout: float = 10.0
    """Seconds one source may take before it is recorded as missing (ONCALLM_SOURCE_TIMEOUT)."""
    max_pods: int = 20
    """Pods of a workload snapshotted; the unhealthiest first (ONCALLM_MAX_PODS)."""
    max_log_pods: int = 3
    """Failing pods whose logs are read (ONCALLM_MAX_LOG_PODS): the worst few tell the story."""
    max_events: int = 60
    """Events kept, Warning and newest first (ONCALLM_MAX_EVENTS)."""
    max_line_chars: int = 2000
    """A log line longer than this is cut: one minified JSON line must not fill the report."""

    @classmethod
    def from_env(cls) -> GatherSettings:
        return cls(
            source_timeout=float(os.environ.get("ONCALLM_SOURCE_TIMEOUT", cls.source_timeout)),
            max_pods=int(os.environ.get("ONCALLM_MAX_PODS", cls.max_pods)),
            max_log_pods=int(os.environ.get("ONCALLM_MAX_LOG_PODS", cls.max_log_pods)),
            max_events=int(os.environ.get("ONCALLM_MAX_EVENTS", cls.max_events)),
        )
