"""manifests/ and examples/ as the API server and OnCallM's own code understand them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.cache import CACHED_KINDS
from oncallm.kube.resources import RESOURCES
from oncallm.models.policy import AnalysisPolicy
from tests.rbac.install import MANIFESTS, NAMESPACE, REPO, apply, render

pytestmark = pytest.mark.cluster

SOURCE = REPO / "operator" / "oncallm"
EXAMPLES = REPO / "examples"
#: Which Secret keys each container may see: the operator talks to the model, the webhook
#: checks Alertmanager's and readers' tokens. Neither needs the other's.
SECRET_KEYS = {"operator": {"llm-api-key"}, "webhook": {"webhook-token", "web-token"}}


def source_text() -> str:
    return "\n".join(p.read_text() for p in SOURCE.rglob("*.py"))


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def base(control_plane: LocalControlPlane) -> list[dict[str, Any]]:
    return render(control_plane)


def test_base_applies_with_strict_server_side_validation(installed: LocalControlPlane) -> None:
    """Re-applying is a no-op that the API server still validates field by field."""
    out = apply(installed)
    assert "deployment.apps/oncallm serverside-applied" in out
    assert "clusterrole.rbac.authorization.k8s.io/oncallm-reader serverside-applied" in out


def test_base_needs_no_prometheus_operator(
    base: list[dict[str, Any]], control_plane: LocalControlPlane
) -> None:
    assert not [o for o in base if o["apiVersion"].startswith("monitoring.coreos.com/")]
    extra = [o for o in render(control_plane, MANIFESTS / "monitoring") if o not in base]
    assert sorted(o["kind"] for o in extra) == ["PrometheusRule", "ServiceMonitor"]


def test_crds_come_from_the_repository_folder(base: list[dict[str, Any]]) -> None:
    """The CRDs in the base are crds/*.yaml, not copies that could drift."""
    crds = {o["metadata"]["name"]: o for o in base if o["kind"] == "CustomResourceDefinition"}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        original = yaml.safe_load(path.read_text())
        rendered = crds.pop(original["metadata"]["name"])
        assert rendered["spec"] == original["spec"], path
    assert not crds


def test_pod_meets_the_restricted_pod_security_standard(
    installed: LocalControlPlane, base: list[dict[str, Any]]
) -> None:
    """The namespace enforces `restricted`; a pod from the Deployment's template is admitted
    (server-side dry run) while a privileged one is refused, so the check is live."""
    template = only(base, "Deployment", "oncallm")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "oncallm-admission-check", "namespace": NAMESPACE},
        "spec": template["spec"],
    }
    result = subprocess.run(
        [str(installed.kubectl), f"--kubeconfig={installed.kubeconfig}", "create",
         "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump(pod), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    with pytest.raises(subprocess.CalledProcessError) as refused:
        installed.kubectl_run(
            "run", "privileged-check", "--image=busybox", "--privileged",
            "--dry-run=server", "-n", NAMESPACE,
        )  # fmt: skip
    assert 'violates PodSecurity "restricted' in refused.value.stderr


def test_containers_are_hardened_and_bounded(base: list[dict[str, Any]]) -> None:
    deployment = only(base, "Deployment", "oncallm")
    spec = deployment["spec"]["template"]["spec"]
    # several replicas (docs/ha.md): rolled one at a time, spread over nodes, a PDB
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = spec["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    pdb = only(base, "PodDisruptionBudget", "oncallm")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spread["labelSelector"]["matchLabels"]
    assert spec["serviceAccountName"] == "oncallm"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = {c["name"]: c for c in spec["containers"]}
    assert {n: c["args"] for n, c in containers.items()} == {
        "operator": ["operator"],
        "webhook": ["webhook"],
    }
    images = {c["image"] for c in containers.values()}
    assert len(images) == 1 and not images.pop().endswith(":latest")
    tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for c in containers.values():
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        for bound in ("requests", "limits"):
            assert set(c["resources"][bound]) == {"cpu", "memory"}, c["name"]
        assert any(m["mountPath"] == "/tmp" and m["name"] in tmp for m in c["volumeMounts"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert containers["webhook"]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in containers["webhook"]["ports"]}
    assert ports == {"http": 8080}
    service = only(base, "Service", "oncallm")
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_every_setting_is_one_oncallm_reads(base: list[dict[str, Any]]) -> None:
    """A misspelt variable would be ignored silently; each must appear in the code."""
    code = source_text()
    config = only(base, "ConfigMap")
    names = set(config["data"])
    deployment = only(base, "Deployment", "oncallm")
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        assert c["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        names |= {e["name"] for e in c.get("env", [])}
    assert names, "no settings found"
    for name in sorted(names):
        assert f'"{name}"' in code, f"{name} is not read anywhere in operator/oncallm"


def test_secrets_are_optional_references_each_container_only_its_own(
    base: list[dict[str, Any]],
) -> None:
    assert not [o for o in base if o["kind"] == "Secret"]
    example = yaml.safe_load((MANIFESTS / "secret.example.yaml").read_text())
    assert example["metadata"] == {"name": "oncallm", "namespace": NAMESPACE}
    deployment = only(base, "Deployment", "oncallm")
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        refs = [
            e["valueFrom"]["secretKeyRef"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert all(r["name"] == "oncallm" and r["optional"] is True for r in refs)
        assert {r["key"] for r in refs} == SECRET_KEYS[c["name"]]
        assert {r["key"] for r in refs} <= set(example["stringData"])


def test_no_role_mentions_secrets_or_wildcards(base: list[dict[str, Any]]) -> None:
    roles = [o for o in base if o["kind"] in ("Role", "ClusterRole")]
    assert {r["metadata"]["name"] for r in roles} == {
        "oncallm", "oncallm-reader", "oncallm-configmap-checker",
        "oncallm-viewer", "oncallm-editor",
    }  # fmt: skip
    for role in roles:
        for rule in role["rules"]:
            words = rule.get("resources", []) + rule["verbs"] + rule.get("apiGroups", [])
            assert "*" not in words, role["metadata"]["name"]
            assert "secrets" not in rule.get("resources", []), role["metadata"]["name"]
    reader = only(base, "ClusterRole", "oncallm-reader")
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in reader["rules"])
    # watch only where the operator's caches keep lists (operator/oncallm/kube/cache.py)
    watched = {
        f"{res}.{group}" if group else res
        for r in reader["rules"]
        if "watch" in r["verbs"]
        for group in r.get("apiGroups", [])
        for res in r["resources"]
    }
    assert watched == {
        f"{RESOURCES[kind].plural}.{RESOURCES[kind].group}".rstrip(".") for kind in CACHED_KINDS
    }


def test_monitoring_matches_the_service_and_the_metrics(
    control_plane: LocalControlPlane, base: list[dict[str, Any]]
) -> None:
    objects = render(control_plane, MANIFESTS / "monitoring")
    service = only(base, "Service", "oncallm")
    monitor = only(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    code = source_text()
    rules = [r for g in only(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert len(rules) >= 4
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0m")), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        for metric in re.findall(r"\boncallm_\w+", rule["expr"]):
            family = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert f'"{family}"' in code, f"{rule['alert']}: no metric {family} in the code"


def test_example_policies_are_valid_for_the_api_server_and_the_model(
    installed: LocalControlPlane,
) -> None:
    files = sorted((EXAMPLES / "policies").glob("*.yaml")) + sorted(
        (MANIFESTS / "policies").glob("[!k]*.yaml")
    )
    assert len(files) >= 5
    for path in files:
        doc = yaml.safe_load(path.read_text())
        AnalysisPolicy.model_validate(doc)
        out = installed.kubectl_run(
            "apply", "--dry-run=server", "--validate=strict", "-n", NAMESPACE, "-f", str(path)
        )
        assert "(server dry run)" in out, path


def test_alertmanager_example_reaches_the_service_with_a_token(
    base: list[dict[str, Any]],
) -> None:
    service = only(base, "Service", "oncallm")
    url = (
        f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
        f"{service['spec']['ports'][0]['port']}/webhook"
    )
    config = yaml.safe_load((EXAMPLES / "alertmanager" / "alertmanager.yaml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    hook = receivers["oncallm"]["webhook_configs"][0]
    assert hook["url"] == url
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] > 0
    assert hook["http_config"]["authorization"]["credentials_file"].endswith("webhook-token")
    routes = config["route"]["routes"]
    assert routes[0]["receiver"] == "oncallm" and routes[0]["continue"] is True
    used = {config["route"]["receiver"], *(r["receiver"] for r in routes)}
    assert used <= set(receivers)
    crd = yaml.safe_load((EXAMPLES / "alertmanager" / "alertmanagerconfig.yaml").read_text())
    hook = crd["spec"]["receivers"][0]["webhookConfigs"][0]
    assert hook["url"] == url and hook["sendResolved"] is True
    assert hook["httpConfig"]["authorization"]["credentials"]["key"] == "webhook-token"


def test_dockerfile_builds_one_non_root_image_without_go() -> None:
    text = (REPO / "Dockerfile").read_text()
    for arg, default in re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE):
        text = text.replace("${" + arg + "}", default)
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2 and stages[-1].startswith("python:3.11-slim")
    assert re.search(r"^USER 65532:65532$", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["oncallm"]' in text
    assert not re.search(r"\bgolang\b|\bgo build\b", text)
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln[:1] not in "#"]
    assert lines[0] == "*", "the build context is an allowlist"
    sent = {ln[1:].strip("/") for ln in lines if ln.startswith("!")}
    assert sent == {"pyproject.toml", "README.md", "operator"}
    for path in sent:
        assert (REPO / path).exists(), path


def test_install_docs_name_every_manifest_folder() -> None:
    text = (REPO / "docs" / "install.md").read_text()
    for command in (
        "kubectl apply -k manifests/",
        "kubectl apply -k manifests/policies/",
        "kubectl apply -k manifests/monitoring/",
        "pytest -q tests/e2e",
    ):
        assert command in text, command
    assert Path(MANIFESTS / "secret.example.yaml").name in text
