from __future__ import annotations

from oncallm.intake.naming import analysis_labels, analysis_name, label_value
from oncallm.models.alert import Alert


def _alert(**overrides: object) -> Alert:
    data = {
        "status": "firing",
        "labels": {
            "alertname": "KubePodCrashLooping",
            "namespace": "orders",
            "pod": "api-7d9f8c6b5-x2kqp",
            "severity": "warning",
        },
        "startsAt": "2025-05-14T09:41:30.123Z",
        "fingerprint": "5f3a9c1e2b7d4a60",
    }
    data.update(overrides)
    return Alert.model_validate(data)


def test_same_firing_same_name_new_firing_new_name() -> None:
    first = analysis_name(_alert())
    assert first == analysis_name(_alert())
    assert first != analysis_name(_alert(startsAt="2025-05-14T11:02:00Z"))
    assert first.startswith("kube-pod-crash-looping-")
    assert len(first) <= 63


def test_names_are_valid_for_odd_alertnames() -> None:
    name = analysis_name(_alert(labels={"alertname": "HTTP 5xx rate > 5% (EU)!" * 5}))
    assert len(name) <= 63
    assert name.replace("-", "").isalnum() and name == name.lower()


def test_labels_are_valid_label_values() -> None:
    labels = analysis_labels(_alert())
    assert labels == {
        "oncallm.io/alertname": "KubePodCrashLooping",
        "oncallm.io/severity": "warning",
        "oncallm.io/fingerprint": "5f3a9c1e2b7d4a60",
        "oncallm.io/alert-namespace": "orders",
    }
    assert label_value("-weird value/with:colons-") == "weird_value_with_colons"
    assert len(label_value("x" * 100)) == 63
