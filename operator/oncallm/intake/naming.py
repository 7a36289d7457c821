"""Names and labels of an alert's AlertAnalysis: deterministic, valid, readable."""

from __future__ import annotations

import hashlib
import re

from oncallm.models.alert import Alert

LABEL_ALERTNAME = "oncallm.io/alertname"
LABEL_SEVERITY = "oncallm.io/severity"
LABEL_NAMESPACE = "oncallm.io/alert-namespace"
LABEL_FINGERPRINT = "oncallm.io/fingerprint"


def analysis_name(alert: Alert) -> str:
    """``<alertname>-<hash of fingerprint and startsAt>``: the same firing always maps to
    the same name, a new firing (a later startsAt) to a new one."""
    starts = alert.starts_at.isoformat()
    digest = hashlib.sha256(f"{alert.fingerprint}|{starts}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", _kebab(alert.name)).strip("-")[:48].strip("-") or "alert"
    return f"{slug}-{digest}"


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def label_value(value: str) -> str:
    """A Kubernetes label value: 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def analysis_labels(alert: Alert) -> dict[str, str]:
    labels = {
        LABEL_ALERTNAME: label_value(alert.name),
        LABEL_SEVERITY: label_value(alert.severity),
        LABEL_FINGERPRINT: label_value(alert.fingerprint),
    }
    namespace = alert.labels.get("namespace") or alert.labels.get("exported_namespace")
    if namespace:
        labels[LABEL_NAMESPACE] = label_value(namespace)
    return {k: v for k, v in labels.items() if v}
