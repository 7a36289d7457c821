"""Install OnCallM's manifests on the local control plane and act as its ServiceAccount.

Everything here goes through what a user runs (``kubectl apply -k manifests/``) and what a
pod gets (a ServiceAccount token from the TokenRequest API), so the tests prove the
manifests themselves, not a test-only copy of them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import KubeAPI

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
#: Where the manifests install OnCallM, and the ServiceAccount its pod runs as.
NAMESPACE = "oncallm"
SERVICE_ACCOUNT = "oncallm"
#: The user name the API server gives that ServiceAccount's tokens.
SA_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
#: How long a namespace left by an earlier run may take to finish terminating.
NAMESPACE_GONE_TIMEOUT = 90.0


def render(plane: LocalControlPlane, folder: Path = MANIFESTS) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize folder`` produces."""
    text = plane.kubectl_run("kustomize", str(folder))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def apply(plane: LocalControlPlane, folder: Path = MANIFESTS) -> str:
    """``kubectl apply -k folder`` with server-side apply and strict field validation."""
    return plane.kubectl_run("apply", "-k", str(folder), "--server-side", "--validate=strict")


def install(plane: LocalControlPlane) -> None:
    """Apply the base, wait for its CRDs, then apply the starting policies (two steps, as
    docs/install.md tells users)."""
    wait_namespace_gone(plane, NAMESPACE)
    apply(plane)
    plane.kubectl_run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/alertanalyses.oncallm.io",
        "crd/analysispolicies.oncallm.io",
    )
    apply(plane, MANIFESTS / "policies")


def uninstall(plane: LocalControlPlane) -> None:
    """Delete what :func:`install` created, except the CRDs: other suites of the same run
    share them (and deleting a CRD deletes every analysis of every test)."""
    objects = [
        o
        for o in render(plane) + render(plane, MANIFESTS / "policies")
        if o["kind"] != "CustomResourceDefinition"
    ]
    # Policies and analyses first, while their namespace still exists.
    objects.sort(key=lambda o: o["kind"] != "AnalysisPolicy")
    plane.kubectl_run(
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(objects),
    )
    wait_namespace_gone(plane, NAMESPACE)


def wait_namespace_gone(plane: LocalControlPlane, name: str) -> None:
    """Wait until a terminating namespace is gone; return at once if it is not terminating."""
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT
    while True:
        phase = plane.kubectl_run(
            "get", "namespace", name, "--ignore-not-found", "-o", "jsonpath={.status.phase}"
        ).strip()
        if phase != "Terminating":
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"namespace {name} still terminating after {NAMESPACE_GONE_TIMEOUT:.0f} s: "
                f"look for finalizers with `kubectl get all,alertanalyses -n {name}`"
            )
        time.sleep(0.5)


async def service_account_token(admin: KubeAPI, seconds: int = 3600) -> str:
    """A token for OnCallM's ServiceAccount from the TokenRequest API, as a pod gets one."""
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token"
    result = await admin.request(
        "POST",
        path,
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )
    return str(result["status"]["token"])


def write_kubeconfig(plane: LocalControlPlane, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with ``token`` only (no admin fallback)."""
    ca = (plane.folder / "pki" / "ca.crt").read_bytes()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": SERVICE_ACCOUNT,
                "context": {"cluster": "local", "user": SERVICE_ACCOUNT, "namespace": NAMESPACE},
            }
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def can_i(
    plane: LocalControlPlane,
    verb: str,
    what: str,
    namespace: str | None = None,
    *,
    user: str = SA_USER,
) -> bool:
    """May USER (OnCallM's ServiceAccount unless told) do VERB on WHAT, as the API server's
    authorizer answers a SubjectAccessReview; ``namespace=None`` asks about every namespace at
    once. ``WHAT`` is ``resource[.group][/subresource]``.

    A SubjectAccessReview, not ``kubectl auth can-i``: kubectl resolves WHAT through discovery
    first, and for a custom resource whose CRD is not installed it asks about a resource named
    ``externalsecrets.external-secrets.io`` in the core group, which RBAC always refuses."""
    head, _, sub = what.partition("/")
    res, _, group = head.partition(".")
    attributes = {"verb": verb, "resource": res, "group": group, "subresource": sub}
    if namespace:
        attributes["namespace"] = namespace
    groups = ["system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        # what the API server gives a ServiceAccount's token besides its user name
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}"]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    args = [str(plane.kubectl), f"--kubeconfig={plane.kubeconfig}", "create", "-f", "-"]
    result = subprocess.run(
        [*args, "-o", "json"], input=json.dumps(review), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise AssertionError(f"SubjectAccessReview for {verb} {what} failed: {result.stderr}")
    return bool(json.loads(result.stdout).get("status", {}).get("allowed"))
