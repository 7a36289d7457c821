"""The AlertAnalysis custom resource (``oncallm.io/v1alpha1``) and the diagnosis it carries.

The CRD in ``crds/alertanalyses.yaml`` and these models are held together by
``tests/unit/test_crd_models.py``: a field added to one must be added to the other.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from oncallm.models.alert import Alert, AlertStatus
from oncallm.models.base import KubeModel

GROUP = "oncallm.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AlertAnalysis"
PLURAL = "alertanalyses"


class Phase(StrEnum):
    PENDING = "Pending"
    GATHERING = "Gathering"
    ANALYZING = "Analyzing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SKIPPED = "Skipped"

    @property
    def finished(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.SKIPPED)


class Category(StrEnum):
    """Root-cause categories: what kind of fault, in the words of the fix."""

    BAD_CONFIG = "bad_config"
    MISSING_SECRET_OR_CONFIGMAP = "missing_secret_or_configmap"
    OOM_KILLED = "oom_killed"
    IMAGE_PULL_ERROR = "image_pull_error"
    FAILING_PROBE = "failing_probe"
    APP_CRASH_EXCEPTION = "app_crash_exception"
    DEPENDENCY_UNREACHABLE = "dependency_unreachable"
    DNS_FAILURE = "dns_failure"
    NODE_NOT_READY = "node_not_ready"
    DISK_PRESSURE = "disk_pressure"
    PVC_PENDING = "pvc_pending"
    INSUFFICIENT_RESOURCES_UNSCHEDULABLE = "insufficient_resources_unschedulable"
    QUOTA_EXCEEDED = "quota_exceeded"
    RBAC_FORBIDDEN = "rbac_forbidden"
    CERT_EXPIRED = "cert_expired"
    JOB_BACKOFF_LIMIT = "job_backoff_limit"
    HPA_MAXED = "hpa_maxed"
    CPU_THROTTLING = "cpu_throttling"
    ROLLOUT_STUCK = "rollout_stuck"
    NETWORK_POLICY_BLOCK = "network_policy_block"
    UNKNOWN = "unknown"


class EvidenceSource(StrEnum):
    """Where a piece of evidence was read."""

    ALERT = "alert"
    EVENT = "event"
    LOG = "log"
    CONTAINER_STATUS = "containerStatus"
    POD_STATUS = "podStatus"
    WORKLOAD = "workload"
    NODE = "node"
    PVC = "pvc"
    SERVICE = "service"
    QUOTA = "quota"
    HPA = "hpa"
    METRIC = "metric"
    HISTORY = "history"
    NETWORK_POLICY = "networkPolicy"


class AlertSpec(KubeModel):
    """The alert as Alertmanager sent it."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str
    ends_at: str | None = None
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str

    @classmethod
    def from_alert(cls, alert: Alert) -> AlertSpec:
        return cls(
            status=alert.status,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=_rfc3339(alert.starts_at),
            ends_at=_rfc3339(alert.ended) if alert.ended else None,
            generator_url=alert.generator_url,
            fingerprint=alert.fingerprint,
        )

    def to_alert(self) -> Alert:
        return Alert.model_validate(
            {
                "status": self.status,
                "labels": self.labels,
                "annotations": self.annotations,
                "startsAt": self.starts_at,
                "endsAt": self.ends_at,
                "generatorURL": self.generator_url,
                "fingerprint": self.fingerprint,
            }
        )


class AlertAnalysisSpec(KubeModel):
    alert: AlertSpec
    receiver: str = ""
    group_key: str = ""
    external_url: str = Field(default="", alias="externalURL")
    received_at: str | None = None
    resolved_at: str | None = None


class TargetRef(KubeModel):
    """The object an alert is about, as resolved from its labels."""

    kind: str
    namespace: str | None = None
    name: str
    container: str | None = None

    @property
    def display(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()}/{ns}{self.name}"


class EvidenceRef(KubeModel):
    """One piece of gathered evidence, quoted where it was found."""

    id: str
    source: EvidenceSource
    object: str
    excerpt: str
    time: str | None = None


class MissingEvidence(KubeModel):
    """A source that could not be read; the analysis goes on without it."""

    source: str
    reason: str


class LinkRole(StrEnum):
    """What a link of the causal chain is."""

    SYMPTOM = "symptom"
    """What the alert saw."""
    WRAPPER = "wrapper"
    """A controller reporting that what it manages fails (a stuck rollout, a failed Job)."""
    CAUSE = "cause"
    """The root cause, or a deeper cause of it."""
    SECONDARY = "secondary"
    """An independent cause found beside the primary one."""


class CauseLink(KubeModel):
    """One link of a causal chain, from the alert's symptom down to the deepest proven cause."""

    role: LinkRole
    summary: str = Field(min_length=1, max_length=600)
    category: Category | None = None
    evidence: list[str] = Field(default_factory=list, max_length=10)
    rule: str | None = None


class Diagnosis(KubeModel):
    """The result of an analysis, whoever made it: the rules or a model.

    ``evidence`` holds the ids of the gathered evidence items that prove the root cause.
    ``chain`` links the alert's symptom to the root cause, outermost first; ``secondary``
    lists independent causes found beside it. A model's reply carries neither (its schema
    leaves them out); the pipeline keeps the rules' chain when the model agrees.
    """

    category: Category
    summary: str = Field(min_length=1, max_length=600)
    root_cause: str = Field(min_length=1, max_length=1200)
    confidence: float = Field(ge=0, le=1)
    impact: str = Field(default="", max_length=1200)
    immediate_actions: list[str] = Field(default_factory=list, max_length=12)
    recommendations: list[str] = Field(default_factory=list, max_length=12)
    evidence: list[str] = Field(default_factory=list, max_length=20)
    commands: list[str] = Field(default_factory=list, max_length=16)
    chain: list[CauseLink] = Field(default_factory=list, max_length=12)
    secondary: list[CauseLink] = Field(default_factory=list, max_length=4)


class IncidentRole(StrEnum):
    """An analysis' part in its incident."""

    PRIMARY = "primary"
    """Diagnoses the incident's cause once (the model is asked here only)."""
    MEMBER = "member"
    """Shares the primary's root cause; completes as soon as it is known."""


class IncidentRef(KubeModel):
    """The incident an analysis belongs to: alerts grouped by the cause they share."""

    cause: str = Field(min_length=1, max_length=300)
    """The object the cause is about, ``service/orders/orders-db``, ``node/worker-2``,
    ``revision/shop/checkout-7d9f8c6b5`` (docs/incidents.md)."""
    role: IncidentRole
    primary: str
    """The analysis that diagnosed the cause (this one, on the primary)."""
    members: int = Field(default=0, ge=0)
    """Members besides the primary: kept current on the primary, as of joining on a member."""
    reason: str = Field(default="", max_length=600)
    """Why a member joined: the same cause proven, or the same revision failing the same way."""


class TokenUsage(KubeModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


#: The key of the model transcript inside its ConfigMap (``status.modelTranscript``).
TRANSCRIPT_KEY = "transcript.json"


class ModelCall(KubeModel):
    """One call to the model, recorded whether or not its answer was used."""

    model: str
    format: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None
    attempts: int = 1


class StageTimings(KubeModel):
    """Seconds spent in each stage of the analysis; ``model`` is the part of ``analyzing``
    spent waiting for the model (queue, retries and tool rounds included)."""

    gathering: float | None = None
    analyzing: float | None = None
    model: float | None = None
    reporting: float | None = None
    total: float | None = None


class Condition(KubeModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None


class AlertAnalysisStatus(KubeModel):
    phase: Phase | None = None
    reason: str | None = None
    target: TargetRef | None = None
    target_display: str | None = None
    severity: str | None = None
    summary: str | None = None
    root_cause: str | None = None
    short_root_cause: str | None = None
    category: Category | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    impact: str | None = None
    immediate_actions: list[str] | None = None
    recommendations: list[str] | None = None
    evidence: list[EvidenceRef] | None = None
    chain: list[CauseLink] | None = None
    secondary_causes: list[CauseLink] | None = None
    incident: IncidentRef | None = None
    missing_evidence: list[MissingEvidence] | None = None
    commands: list[str] | None = None
    analyzer: str | None = None
    policy: str | None = None
    model: str | None = None
    model_outcome: str | None = None
    token_usage: TokenUsage | None = None
    model_calls: list[ModelCall] | None = None
    model_transcript: str | None = None
    timings: StageTimings | None = None
    notes: list[str] | None = None
    report_config_map: str | None = None
    report_url: str | None = Field(default=None, alias="reportURL")
    started_at: str | None = None
    completed_at: str | None = None
    attempts: int | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None


class AlertAnalysis(KubeModel):
    api_version: Literal["oncallm.io/v1alpha1"] = "oncallm.io/v1alpha1"
    kind: Literal["AlertAnalysis"] = "AlertAnalysis"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AlertAnalysisSpec
    status: AlertAnalysisStatus = Field(default_factory=AlertAnalysisStatus)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def rfc3339(value: datetime) -> str:
    """A timestamp as Kubernetes writes it: UTC, ``Z`` suffix."""
    text = _rfc3339(value)
    assert text is not None
    return text


def parse_rfc3339(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``2025-05-14T09:48:00Z``); None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


STALE_TERMINATION = timedelta(hours=1)
"""A container that runs and is ready again, whose last termination ended this long before
the alert started, is healthy now: that old termination does not explain the alert. Alerts on
restarts look back 10 to 15 minutes and wait 15 (kube-prometheus' KubePodCrashLooping), so a
termination that explains the alert ends well inside the hour. The rules and the model's
judge (``llm/judge.py``) both hold to it."""


#: A line the program itself logged at info level: logfmt ``level=info``, JSON ``"level":
#: "info"`` (ECS ``"log.level"``), ``INFO`` between a timestamp and a logger, ``[INFO]``, and
#: klog's ``I1202`` prefix.
INFO_LEVEL = re.compile(
    r"""
    \blevel=["']?info\b
    | "(?:log\.)?level"\s*:\s*"info"
    | ^\S*\s?\S*\s+INFO\b
    | \[INFO\]
    | ^I\d{4}\s
    """,
    re.IGNORECASE | re.VERBOSE,
)


def logged_as_info(line: str) -> bool:
    """The program logged the line at info level: what it says is missing, it copes with
    (it says what it does instead and goes on), so the line is not why it fails. The rules and
    the model's judge (``llm/judge.py``) both hold to it."""
    return bool(INFO_LEVEL.search(line.strip()))
