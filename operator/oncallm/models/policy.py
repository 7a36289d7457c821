"""The AnalysisPolicy custom resource: how deep to analyse which alerts.

Policies select alerts by their labels with a Kubernetes label selector; among the
policies that match, the highest ``priority`` wins (ties: the older policy, then name).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from oncallm.models.base import KubeModel


class Depth(StrEnum):
    QUICK = "quick"
    STANDARD = "standard"
    DEEP = "deep"


class LabelSelectorRequirement(KubeModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(KubeModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        """True when ``labels`` satisfy every term (an empty selector matches everything)."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class SourcesSpec(KubeModel):
    """Which context to gather, and how much of it."""

    log_lines: int = Field(default=200, ge=0, le=5000)
    event_window_minutes: int = Field(default=60, ge=1, le=1440)
    previous_logs: bool = True
    metrics: bool = True
    history: bool = True


class LLMSpec(KubeModel):
    enabled: bool = True
    model: str | None = None
    daily_token_budget: int = Field(default=200_000, ge=0)
    max_tool_rounds: int = Field(default=3, ge=0, le=10)


class AnalysisPolicySpec(KubeModel):
    selector: LabelSelector = Field(default_factory=LabelSelector)
    priority: int = Field(default=0, ge=0, le=1000)
    depth: Depth = Depth.STANDARD
    analyze: bool = True
    llm: LLMSpec = Field(default_factory=LLMSpec)
    sources: SourcesSpec = Field(default_factory=SourcesSpec)
    retention_hours: int = Field(default=168, ge=1, le=8760)


class AnalysisPolicy(KubeModel):
    api_version: Literal["oncallm.io/v1alpha1"] = "oncallm.io/v1alpha1"
    kind: Literal["AnalysisPolicy"] = "AnalysisPolicy"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AnalysisPolicySpec = Field(default_factory=AnalysisPolicySpec)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))


#: What applies when no policy matches: standard depth, rules plus the model if configured.
DEFAULT_POLICY = AnalysisPolicy(metadata={"name": "(built-in default)"})


def select_policy(policies: list[AnalysisPolicy], labels: dict[str, str]) -> AnalysisPolicy:
    """The matching policy with the highest priority; the built-in default when none match."""
    matching = [p for p in policies if p.spec.selector.matches(labels)]
    if not matching:
        return DEFAULT_POLICY
    matching.sort(
        key=lambda p: (
            -p.spec.priority,
            str(p.metadata.get("creationTimestamp", "")),
            p.name,
        )
    )
    return matching[0]
