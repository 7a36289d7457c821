"""Alertmanager's webhook payload, version 4, exactly as Alertmanager sends it.

Reference: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
Unknown fields are kept (``extra="allow"``) so a newer Alertmanager never gets a 422.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Alertmanager sends Go's zero time for an alert that has not ended.
GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Alert(_Camel):
    """One alert of a notification."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("every alert needs the label 'alertname'")
        return labels

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "none")

    @property
    def ended(self) -> datetime | None:
        """When the alert ended, or None while it fires (Go's zero time means none)."""
        if self.ends_at is None or self.ends_at <= GO_ZERO_TIME:
            return None
        return self.ends_at


class WebhookPayload(_Camel):
    """A notification: one group of alerts sent to one receiver."""

    version: str = "4"
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]
