"""OnCallM's ServiceAccount can do what it needs and nothing more (asked of the API server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ApiError, ClientSettings, KubeAPI
from tests.rbac.install import NAMESPACE, can_i

pytestmark = pytest.mark.cluster

#: An application namespace OnCallM analyses alerts from (it needs no object in it).
APP = "orders"

#: Everything the ServiceAccount may write, as (API group, resource, namespace or None for
#: anywhere). Each entry is needed by code named in manifests/rbac/role.yaml.
ALLOWED_WRITES = {
    ("oncallm.io", "alertanalyses", NAMESPACE),
    ("oncallm.io", "alertanalyses/status", NAMESPACE),
    ("oncallm.io", "alertanalyses/finalizers", NAMESPACE),
    ("", "configmaps", NAMESPACE),
    ("", "events", NAMESPACE),
    ("coordination.k8s.io", "leases", NAMESPACE),
}
#: Verbs that change something or widen someone's rights.
WRITE_VERBS = {
    "create", "update", "patch", "delete", "deletecollection",
    "escalate", "bind", "impersonate", "approve", "sign", "*",
}  # fmt: skip


@pytest.fixture(scope="module")
async def as_oncallm(sa_kubeconfig: Path) -> AsyncIterator[KubeAPI]:
    """A client that holds only the ServiceAccount's token."""
    api = await KubeAPI.connect(ClientSettings(kubeconfig=str(sa_kubeconfig), qps=0))
    yield api
    await api.close()


@pytest.mark.parametrize("verb", ["get", "list", "watch"])
@pytest.mark.parametrize("namespace", [None, NAMESPACE, APP, "kube-system"])
def test_no_access_to_secrets(
    installed: LocalControlPlane, verb: str, namespace: str | None
) -> None:
    assert not can_i(installed, verb, "secrets", namespace)


async def test_secrets_are_refused_to_its_own_token(as_oncallm: KubeAPI) -> None:
    for path in ("/api/v1/secrets", f"/api/v1/namespaces/{NAMESPACE}/secrets"):
        with pytest.raises(ApiError) as err:
            await as_oncallm.request("GET", path)
        assert err.value.status == 403, path
    with pytest.raises(ApiError) as err:
        await as_oncallm.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/oncallm")
    assert err.value.status == 403


@pytest.mark.parametrize(
    ("verb", "what", "namespace"),
    [
        ("get", "pods", APP),
        ("list", "pods", None),
        ("get", "pods/log", APP),
        ("list", "events", None),
        ("get", "nodes", None),
        ("list", "replicasets.apps", APP),
        ("get", "controllerrevisions.apps", APP),
        ("list", "cronjobs.batch", APP),
        ("get", "persistentvolumes", None),
        ("get", "storageclasses.storage.k8s.io", None),
        ("list", "endpointslices.discovery.k8s.io", APP),
        ("list", "networkpolicies.networking.k8s.io", APP),
        ("list", "horizontalpodautoscalers.autoscaling", APP),
        ("list", "resourcequotas", APP),
        ("get", "configmaps", APP),
        ("get", "namespaces", None),
        ("list", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
        ("list", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None),
        ("list", "externalsecrets.external-secrets.io", APP),
        ("get", "certificates.cert-manager.io", APP),
        ("get", "clusterissuers.cert-manager.io", None),
        ("list", "applications.argoproj.io", None),
        ("create", "alertanalyses.oncallm.io", NAMESPACE),
        ("patch", "alertanalyses.oncallm.io", NAMESPACE),
        ("delete", "alertanalyses.oncallm.io", NAMESPACE),
        ("patch", "alertanalyses.oncallm.io/status", NAMESPACE),
        ("watch", "analysispolicies.oncallm.io", NAMESPACE),
        ("create", "configmaps", NAMESPACE),
        ("update", "configmaps", NAMESPACE),
        ("create", "events", NAMESPACE),
    ],
)
def test_can_do_what_it_needs(
    installed: LocalControlPlane, verb: str, what: str, namespace: str | None
) -> None:
    assert can_i(installed, verb, what, namespace)


@pytest.mark.parametrize(
    ("verb", "what", "namespace"),
    [
        ("delete", "pods", APP),
        ("create", "pods", NAMESPACE),
        ("create", "pods/exec", APP),
        ("get", "pods/exec", APP),
        ("get", "nodes/proxy", None),
        ("create", "pods/portforward", APP),
        ("create", "pods/eviction", APP),
        ("create", "deployments.apps", APP),
        ("patch", "deployments.apps", APP),
        ("update", "nodes", None),
        ("patch", "nodes", None),
        ("create", "configmaps", "kube-system"),
        ("update", "configmaps", APP),
        ("delete", "configmaps", NAMESPACE),
        ("list", "configmaps", APP),
        ("create", "events", APP),
        ("create", "alertanalyses.oncallm.io", APP),
        ("update", "analysispolicies.oncallm.io", NAMESPACE),
        ("create", "analysispolicies.oncallm.io", NAMESPACE),
        ("create", "serviceaccounts/token", NAMESPACE),
        ("create", "rolebindings.rbac.authorization.k8s.io", NAMESPACE),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
        ("impersonate", "serviceaccounts", NAMESPACE),
        ("delete", "namespaces", None),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
    ],
)
def test_cannot_do_anything_else(
    installed: LocalControlPlane, verb: str, what: str, namespace: str | None
) -> None:
    assert not can_i(installed, verb, what, namespace)


@pytest.mark.parametrize("namespace", [NAMESPACE, APP, "kube-system"])
async def test_every_write_it_holds_is_on_the_allowed_list(
    as_oncallm: KubeAPI, namespace: str
) -> None:
    """The API server's own account of the token's rights (SelfSubjectRulesReview)."""
    review = await as_oncallm.request(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
    )
    status: dict[str, Any] = review["status"]
    assert not status.get("incomplete"), status.get("evaluationError")
    writes = set()
    for rule in status["resourceRules"]:
        if WRITE_VERBS & set(rule["verbs"]):
            for group in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    writes.add((group, res))
    # What any authenticated user may do (system:basic-user): ask about its own rights.
    writes -= {
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
    }
    allowed = {(g, r) for g, r, ns in ALLOWED_WRITES if ns in (None, namespace)}
    assert writes == allowed
    assert all("*" not in rule["verbs"] for rule in status["resourceRules"])
    assert not [r for r in status["resourceRules"] if "secrets" in r.get("resources", [])]


def test_people_roles(installed: LocalControlPlane) -> None:
    """oncallm-viewer reads, oncallm-editor also changes policies; both aggregate into the
    built-in view and edit roles (whose selectors the API server itself reports)."""
    plane = installed
    plane.kubectl_run(
        "create", "rolebinding", "jane-views", "--clusterrole=oncallm-viewer",
        "--user=jane@example.com", "-n", NAMESPACE,
    )  # fmt: skip
    plane.kubectl_run(
        "create", "rolebinding", "omar-edits", "--clusterrole=oncallm-editor",
        "--user=omar@example.com", "-n", NAMESPACE,
    )  # fmt: skip
    jane, omar = "jane@example.com", "omar@example.com"
    try:
        assert can_i(plane, "list", "alertanalyses.oncallm.io", NAMESPACE, user=jane)
        assert can_i(plane, "watch", "analysispolicies.oncallm.io", NAMESPACE, user=jane)
        assert not can_i(plane, "patch", "analysispolicies.oncallm.io", NAMESPACE, user=jane)
        assert not can_i(plane, "patch", "alertanalyses.oncallm.io", NAMESPACE, user=jane)
        assert can_i(plane, "create", "analysispolicies.oncallm.io", NAMESPACE, user=omar)
        assert can_i(plane, "patch", "alertanalyses.oncallm.io", NAMESPACE, user=omar)
        assert not can_i(plane, "create", "alertanalyses.oncallm.io", NAMESPACE, user=omar)
        assert not can_i(plane, "get", "secrets", NAMESPACE, user=omar)
    finally:
        plane.kubectl_run(
            "delete", "rolebinding", "jane-views", "omar-edits", "-n", NAMESPACE,
            "--ignore-not-found",
        )  # fmt: skip
    for builtin, ours in (("view", "oncallm-viewer"), ("edit", "oncallm-editor")):
        selectors = plane.kubectl_run(
            "get", "clusterrole", builtin,
            "-o", "jsonpath={.aggregationRule.clusterRoleSelectors[*].matchLabels}",
        )  # fmt: skip
        labels = plane.kubectl_run("get", "clusterrole", ours, "-o", "jsonpath={.metadata.labels}")
        key = f"rbac.authorization.k8s.io/aggregate-to-{builtin}"
        assert f'"{key}":"true"' in selectors and f'"{key}":"true"' in labels
