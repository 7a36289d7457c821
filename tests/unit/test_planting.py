"""The planter's pure parts: CRDs it generates, the planting order, Node routing."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from oncallm.scenarios.admissible import admissible, implied_prerequisites
from oncallm.scenarios.plant import generated_crd, merge_node_status, planting_order, plural_of


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("ExternalSecret", "externalsecrets"),
        ("Certificate", "certificates"),
        ("ClusterPolicy", "clusterpolicies"),
        ("Gateway", "gateways"),
        ("Prometheus", "prometheuses"),
        ("Ingress", "ingresses"),
        ("Match", "matches"),
    ],
)
def test_plurals_follow_kubernetes_rule(kind: str, plural: str) -> None:
    assert plural_of(kind) == plural


def test_a_generated_crd_takes_any_object_and_has_a_status_subresource() -> None:
    crd = generated_crd("cert-manager.io", "v1", "Certificate", "certificates", "Namespaced")
    assert crd["metadata"]["name"] == "certificates.cert-manager.io"
    assert "api-approved.kubernetes.io" not in crd["metadata"]["annotations"]
    (version,) = crd["spec"]["versions"]
    assert version["schema"]["openAPIV3Schema"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert version["subresources"] == {"status": {}}
    assert version["served"] and version["storage"]
    # A protected group (Gateway API) needs the approval annotation, or the server refuses it.
    gateway = generated_crd("gateway.networking.k8s.io", "v1", "Gateway", "gateways", "Namespaced")
    assert "api-approved.kubernetes.io" in gateway["metadata"]["annotations"]


def obj(kind: str, name: str, **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", **meta}}


def test_admission_prerequisites_first_owners_before_owned_quotas_last() -> None:
    objects = [
        obj("ResourceQuota", "compute"),
        obj("Pod", "api-1", ownerReferences=[{"kind": "ReplicaSet", "name": "api"}]),
        obj("ReplicaSet", "api", ownerReferences=[{"kind": "Deployment", "name": "api"}]),
        obj("Deployment", "api"),
        obj("ServiceAccount", "api"),
        {"kind": "PriorityClass", "metadata": {"name": "critical"}},
    ]
    order = [(o["kind"], o["metadata"]["name"]) for o in planting_order(objects)]
    assert order == [
        ("ServiceAccount", "api"),
        ("PriorityClass", "critical"),
        ("Deployment", "api"),
        ("ReplicaSet", "api"),
        ("Pod", "api-1"),
        ("ResourceQuota", "compute"),
    ]


def test_a_planted_node_keeps_its_own_addresses() -> None:
    routing = {
        "addresses": [{"type": "OnCallMKubeletLogs", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }
    status = {
        "addresses": [
            {"type": "InternalIP", "address": "10.0.161.12"},
            {"type": "Hostname", "address": "ip-10-0-161-12"},
        ],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    merged = merge_node_status(status, routing)
    assert merged["addresses"] == [*status["addresses"], *routing["addresses"]]
    assert merged["conditions"] == status["conditions"]
    assert merged["daemonEndpoints"] == routing["daemonEndpoints"]
    # A control plane that routes by InternalIP replaces only the InternalIP.
    old = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
    assert merge_node_status(status, old)["addresses"] == [
        {"type": "Hostname", "address": "ip-10-0-161-12"},
        {"type": "InternalIP", "address": "127.0.0.1"},
    ]


def test_a_job_copied_from_a_cluster_keeps_its_selector() -> None:
    uid = {"batch.kubernetes.io/controller-uid": "8767a292", "controller-uid": "8767a292"}
    template = {"metadata": {"labels": {**uid, "job-name": "send"}}}
    with_selector = admissible(
        {"kind": "Job", "spec": {"selector": {"matchLabels": uid}, "template": template}}
    )
    assert with_selector["spec"]["manualSelector"] is True
    assert with_selector["spec"]["selector"] == {"matchLabels": uid}
    without = admissible({"kind": "Job", "spec": {"template": template}})
    assert without["spec"]["selector"] == {"matchLabels": uid}
    plain = admissible({"kind": "Job", "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}})
    assert "manualSelector" not in plain["spec"]  # the server generates its selector


def test_a_typed_secret_gets_the_keys_its_type_requires() -> None:
    tls = admissible({"kind": "Secret", "type": "kubernetes.io/tls", "data": {"ca.crt": "Y2E="}})
    assert tls["data"] == {"ca.crt": "Y2E=", "tls.crt": "", "tls.key": ""}
    given = admissible(
        {
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{}"},
        }
    )
    assert "data" not in given
    opaque = admissible({"kind": "Secret", "type": "Opaque"})
    assert "data" not in opaque


def test_what_admission_needs_of_a_pod_is_implied_when_left_out() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "api-1", "namespace": "ns"},
        "spec": {"serviceAccountName": "api", "priorityClassName": "high", "priority": 1000},
    }
    second = {**pod, "metadata": {"name": "api-2", "namespace": "ns"}}
    implied = implied_prerequisites([pod, second])  # each named once
    assert [(r.kind, ns, b["metadata"]["name"]) for r, ns, b in implied] == [
        ("ServiceAccount", "ns", "api"),
        ("PriorityClass", None, "high"),
    ]
    assert implied[1][2]["value"] == 1000
    given = [
        pod,
        obj("ServiceAccount", "api"),
        {"kind": "PriorityClass", "metadata": {"name": "high"}},
    ]
    assert implied_prerequisites(given) == []
    builtin = {
        **pod,
        "spec": {"serviceAccountName": "default", "priorityClassName": "system-node-critical"},
    }
    assert implied_prerequisites([builtin]) == []


def test_a_finished_jobs_status_gets_what_validation_requires() -> None:
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
              "lastTransitionTime": "2025-05-14T09:40:00Z"}  # fmt: skip
    job = admissible({"kind": "Job", "spec": {}, "status": {"active": 1, "conditions": [failed]}})
    assert [c["type"] for c in job["status"]["conditions"]] == ["FailureTarget", "Failed"]
    assert job["status"]["conditions"][0]["reason"] == "BackoffLimitExceeded"
    assert job["status"]["startTime"] == "2025-05-14T09:40:00Z"
    assert job["status"]["active"] == 0 and "completionTime" not in job["status"]
    done = {"type": "Complete", "status": "True", "lastTransitionTime": "2025-05-14T09:40:00Z"}
    met = {**done, "type": "SuccessCriteriaMet"}
    job = admissible(
        {"kind": "Job", "status": {"startTime": "2025-05-14T09:00:00Z", "conditions": [met, done]}}
    )
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["startTime"] == "2025-05-14T09:00:00Z"
    assert job["status"]["completionTime"] == "2025-05-14T09:40:00Z"


def test_empty_pod_ips_are_left_out() -> None:
    pod = admissible(
        {"kind": "Pod", "status": {"podIP": "", "podIPs": [{"ip": ""}], "hostIP": "10.0.0.1"}}
    )
    assert pod["status"] == {"hostIP": "10.0.0.1"}
    kept = admissible(
        {"kind": "Pod", "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}}
    )
    assert kept["status"]["podIPs"] == [{"ip": "10.1.0.5"}]


def test_placeholders_in_byte_fields_are_planted_as_their_base64() -> None:
    hooks = admissible(
        {
            "kind": "ValidatingWebhookConfiguration",
            "webhooks": [
                {"clientConfig": {"caBundle": "LS0tLS1CRUdJTi...(truncated)"}},
                {"clientConfig": {"caBundle": "TFMwdExTMUNSVWRK\nTGk0dQ=="}},
            ],
        }
    )
    first, second = (h["clientConfig"]["caBundle"] for h in hooks["webhooks"])
    assert base64.b64decode(first).decode() == "LS0tLS1CRUdJTi...(truncated)"
    assert second == "TFMwdExTMUNSVWRK\nTGk0dQ=="  # base64 with a line break, as Go reads it
    secret = admissible({"kind": "Secret", "data": {"password": "<redacted>", "user": "YWRtaW4="}})
    assert secret["data"]["user"] == "YWRtaW4="
    assert base64.b64decode(secret["data"]["password"]) == b"<redacted>"
