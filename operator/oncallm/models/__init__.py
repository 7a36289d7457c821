"""pydantic v2 models for everything OnCallM reads or writes.

- ``alert``: Alertmanager's webhook payload (version 4).
- ``analysis``: the AlertAnalysis custom resource and the diagnosis it carries.
- ``policy``: the AnalysisPolicy custom resource.
- ``evidence``: what gathering collects about an alert's target, as snapshots.
"""

from oncallm.models.alert import Alert, AlertStatus, WebhookPayload
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    AlertSpec,
    Category,
    Diagnosis,
    EvidenceRef,
    Phase,
    TargetRef,
)
from oncallm.models.policy import AnalysisPolicy, AnalysisPolicySpec, Depth

__all__ = [
    "Alert",
    "AlertAnalysis",
    "AlertAnalysisSpec",
    "AlertAnalysisStatus",
    "AlertSpec",
    "AlertStatus",
    "AnalysisPolicy",
    "AnalysisPolicySpec",
    "Category",
    "Depth",
    "Diagnosis",
    "EvidenceRef",
    "Phase",
    "TargetRef",
    "WebhookPayload",
]
