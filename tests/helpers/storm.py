"""An alert storm built from the scenario corpus: three incidents and unrelated alerts among them.

- **a dead node**: ``ledger-node-down`` (its worker-2 stopped reporting), its StatefulSet
  copied ``node_workloads`` times, every copy with pods stuck on the dead node, one
  KubePodNotReady alert per pod;
- **a dependency down**: ``orders-api-db-down`` (orders-db has no endpoints), orders-api scaled
  out, one KubePodCrashLooping alert per pod, each with the template pod's log and events;
- **a bad rollout**: ``frontend-bad-tag`` (the new revision's image tag was never pushed),
  the new ReplicaSet's pod copied, one KubeContainerWaiting alert per pod;
- **unrelated alerts**: ``reports-oom``'s Deployment copied into the three incidents'
  namespaces under other names, each an OOMKilled pod of its own workload and alert.

Every copy is the vetted scenario's object with its names replaced, so the rules see what they
see in the scenario. :func:`build_storm` returns the shifted scenarios (to plant, or to load
into a :class:`~oncallm.gathering.memory.MemoryReader`), the alerts, and which incident each
alert belongs to. The unit tests, the cluster tests and ``bench/run.py --part storm`` share it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from oncallm.gathering.memory import MemoryReader
from oncallm.scenarios.model import Scenario, ShiftedScenario, fingerprint

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
NODE, DEPENDENCY, ROLLOUT = "node", "dependency", "rollout"
INCIDENTS = (NODE, DEPENDENCY, ROLLOUT)

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def suffix(index: int) -> str:
    """Five characters that look random and differ for every index (a bijection mod 27**5)."""
    n = (index * 7919 + 104729) % len(_ALPHABET) ** 5
    out = ""
    for _ in range(5):
        n, digit = divmod(n, len(_ALPHABET))
        out += _ALPHABET[digit]
    return out


@dataclass
class Storm:
    """What :func:`build_storm` made."""

    scenarios: list[ShiftedScenario]
    logs: dict[tuple[str, str, str, bool], str]
    alerts: list[dict[str, Any]]
    #: alert fingerprint -> "node" | "dependency" | "rollout" | "single-<n>"
    expected: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def memory_reader(self) -> MemoryReader:
        """The storm's cluster in memory."""
        objects: list[dict[str, Any]] = []
        for s in self.scenarios:
            objects += s.objects + s.event_objects()
        return MemoryReader(objects, self.logs)

    def groups(self) -> dict[str, list[str]]:
        """Fingerprints by expected incident."""
        out: dict[str, list[str]] = {}
        for fp, incident in self.expected.items():
            out.setdefault(incident, []).append(fp)
        return out


def build_storm(
    prefix: str,
    *,
    per_incident: tuple[int, int, int] = (10, 10, 10),
    unrelated: int = 4,
    node_workloads: int = 3,
    now: datetime | None = None,
) -> Storm:
    """A storm of ``sum(per_incident) + unrelated`` alerts: (dead node, dependency down, bad
    rollout) pods, then the unrelated ones, in namespaces ``<prefix>-ledger``, ``-orders``,
    ``-storefront``. Node names carry the prefix too, so storms can share a cluster."""
    now = now or datetime.now(UTC)
    node_n, dep_n, roll_n = per_incident
    ns = {key: f"{prefix}-{key}" for key in ("ledger", "orders", "storefront")}
    datas: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    expected: dict[str, str] = {}

    # a dead node: copies of the ledger-db StatefulSet, their pods Terminating on worker-2
    ledger = _load("ledger-node-down", prefix, "ledger", ns["ledger"])
    per_workload = [
        node_n // node_workloads + (i < node_n % node_workloads) for i in range(node_workloads)
    ]
    node_data = _without_pods(ledger, keep=set())
    template = _pod(ledger, "ledger-db-1")
    for w, count in enumerate(per_workload):
        name = "ledger-db" if w == 0 else f"ledger-db-{_letters(w)}"
        if w:
            node_data["objects"] += _rename(
                _workload_objects(ledger, "StatefulSet", "ledger-db"), "ledger-db", name
            )
        for i in range(count):
            pod = _rename_pod(
                template, "ledger-db-1", f"ledger-db-{i + 1}", ip=_ip(1, w * 1000 + i)
            )
            events = [
                _rename(e, "ledger-db-1", f"ledger-db-{i + 1}")
                for e in _events_of(ledger, "ledger-db-1")
            ]
            if w:
                pod, events = _rename(pod, "ledger-db", name), _rename(events, "ledger-db", name)
            pod_name = pod["metadata"]["name"]
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = pod_name
            node_data["objects"].append(pod)
            node_data["events"] += events
            alert = _pod_alert("KubePodNotReady", ns["ledger"], pod_name, None, ledger["alert"])
            alerts.append(alert)
            expected[alert["fingerprint"]] = NODE
    datas.append(node_data)

    # a dependency down: orders-api scaled out, every pod crash-looping on orders-db
    orders = _load("orders-api-db-down", prefix, "orders", ns["orders"])
    template_name = orders["alert"]["labels"]["pod"]
    template = _pod(orders, template_name)
    rs = template["metadata"]["ownerReferences"][0]["name"]
    dep_data = _without_pods(orders, keep=set())
    log = next(lg for lg in orders["logs"] if lg["pod"] == template_name)
    dep_data["logs"] = []
    for i in range(dep_n):
        pod_name = f"{rs}-{suffix(i)}"
        dep_data["objects"].append(_rename_pod(template, template_name, pod_name, ip=_ip(2, i)))
        dep_data["logs"].append({**log, "pod": pod_name})
        dep_data["events"] += [
            _rename_pod(e, template_name, pod_name) for e in _events_of(orders, template_name)
        ]
        alert = _pod_alert(
            "KubePodCrashLooping", ns["orders"], pod_name, "api", orders["alert"], pod_name
        )
        alerts.append(alert)
        expected[alert["fingerprint"]] = DEPENDENCY
    _scale(dep_data, "orders-api", dep_n)
    datas.append(dep_data)

    # a bad rollout: the new revision's pods cannot pull their image
    store = _load("frontend-bad-tag", prefix, "storefront", ns["storefront"])
    template_name = store["alert"]["labels"]["pod"]
    template = _pod(store, template_name)
    rs = template["metadata"]["ownerReferences"][0]["name"]
    roll_data = _without_pods(store, keep={p for p in _pod_names(store) if not p.startswith(rs)})
    for i in range(roll_n):
        pod_name = f"{rs}-{suffix(i)}"
        roll_data["objects"].append(_rename_pod(template, template_name, pod_name, ip=_ip(3, i)))
        roll_data["events"] += [
            _rename_pod(e, template_name, pod_name) for e in _events_of(store, template_name)
        ]
        alert = _pod_alert(
            "KubeContainerWaiting", ns["storefront"], pod_name, "web", store["alert"], pod_name
        )
        alerts.append(alert)
        expected[alert["fingerprint"]] = ROLLOUT
    datas.append(roll_data)

    # unrelated: OOMKilled pods of workloads of their own, in the same namespaces
    healthy = {
        ns["ledger"]: f"{prefix}-ledger-node-down-worker-1",
        ns["orders"]: f"{prefix}-orders-api-db-down-worker-1",
        ns["storefront"]: f"{prefix}-frontend-bad-tag-worker-1",
    }
    for i in range(unrelated):
        target_ns = list(ns.values())[i % 3]
        oom = _load("reports-oom", prefix, "reporting", target_ns)
        name = f"batch-{_letters(i)}"
        oom = _rename(oom, "report-builder", name)
        oom["name"] = f"{prefix}-unrelated-{i}"
        oom["objects"] = [o for o in oom["objects"] if o["kind"] != "Node"]
        oom["events"] = [e for e in oom["events"] if e["involvedObject"].get("kind") != "Node"]
        for obj in oom["objects"]:
            if obj["kind"] == "Pod":
                obj["spec"]["nodeName"] = healthy[target_ns]
                obj["status"]["podIP"] = _ip(4, i)
                obj["status"]["podIPs"] = [{"ip": _ip(4, i)}]
        datas.append(oom)
        alert = copy.deepcopy(oom["alert"])
        alert["fingerprint"] = fingerprint(alert["labels"])
        alerts.append(alert)
        expected[alert["fingerprint"]] = f"single-{i}"

    shifted = [Scenario.model_validate(d).shift(now) for d in datas]
    logs: dict[tuple[str, str, str, bool], str] = {}
    for s in shifted:
        for lg in s.scenario.logs:
            namespace = lg.namespace or s.scenario.namespaces()[0]
            logs[(namespace, lg.pod, lg.container, lg.previous)] = lg.text
    for alert in alerts:
        alert["startsAt"] = _iso(now)
        alert.setdefault("status", "firing")
        alert["endsAt"] = "0001-01-01T00:00:00Z"
    return Storm(shifted, logs, alerts, expected, list(ns.values()))


def refire(alert: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The same alert firing again (a new ``startsAt``: a new AlertAnalysis)."""
    again = copy.deepcopy(alert)
    again["startsAt"] = _iso(when)
    return again


# -- helpers ---------------------------------------------------------------------------------


def _load(name: str, prefix: str, old_ns: str, new_ns: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    data = _renamespace(data, old_ns, new_ns)
    text = json.dumps(data).replace(f"{name}-worker", f"{prefix}-{name}-worker")
    data = json.loads(text)
    data["name"] = f"{prefix}-{name}"
    for obj in data["objects"]:
        if obj["kind"] == "Service":
            obj["spec"].pop("clusterIP", None)
            obj["spec"].pop("clusterIPs", None)
    return data


def _renamespace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (new if k == "namespace" and v == old else _renamespace(v, old, new))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamespace(v, old, new) for v in value]
    if isinstance(value, str):
        return (
            value.replace(f" {old}/", f" {new}/")
            .replace(f"namespace {old} ", f"namespace {new} ")
            .replace(f".{old}.svc", f".{new}.svc")
        )
    return value


def _rename(value: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(value).replace(old, new))


def _rename_pod(
    obj: dict[str, Any], old: str, new: str, *, ip: str | None = None
) -> dict[str, Any]:
    out = _rename(obj, old, new)
    if ip and out.get("kind") == "Pod":
        out["status"]["podIP"] = ip
        out["status"]["podIPs"] = [{"ip": ip}]
    return out


def _pod(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in data["objects"] if o["kind"] == "Pod" and o["metadata"]["name"] == name)


def _pod_names(data: dict[str, Any]) -> list[str]:
    return [o["metadata"]["name"] for o in data["objects"] if o["kind"] == "Pod"]


def _without_pods(data: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    gone = {p for p in _pod_names(data) if p not in keep}
    out["objects"] = [
        o for o in out["objects"] if not (o["kind"] == "Pod" and o["metadata"]["name"] in gone)
    ]
    out["events"] = [e for e in out["events"] if e["involvedObject"].get("name") not in gone]
    out["logs"] = [lg for lg in out.get("logs", []) if lg["pod"] not in gone]
    return out


def _workload_objects(data: dict[str, Any], kind: str, name: str) -> list[dict[str, Any]]:
    """The workload, its Service and anything else of its name that is not a pod; the
    original's own copy stays in the data."""
    return [
        copy.deepcopy(o)
        for o in data["objects"]
        if o["kind"] not in ("Pod", "Node") and o["metadata"]["name"] == name and o["kind"] == kind
    ]


def _events_of(data: dict[str, Any], pod: str) -> list[dict[str, Any]]:
    return [e for e in data["events"] if e["involvedObject"].get("name") == pod]


def _scale(data: dict[str, Any], workload: str, replicas: int) -> None:
    for obj in data["objects"]:
        if obj["kind"] in ("Deployment", "ReplicaSet") and obj["metadata"]["name"].startswith(
            workload
        ):
            obj["spec"]["replicas"] = replicas
            status = obj.setdefault("status", {})
            for key in (
                "replicas",
                "updatedReplicas",
                "fullyLabeledReplicas",
                "unavailableReplicas",
            ):
                if key in status:
                    status[key] = replicas


def _pod_alert(
    name: str,
    namespace: str,
    pod: str,
    container: str | None,
    template: dict[str, Any],
    old_pod: str | None = None,
) -> dict[str, Any]:
    labels = {
        k: v
        for k, v in template["labels"].items()
        if k in ("job", "endpoint", "service", "instance", "prometheus", "severity")
    }
    labels.update({"alertname": name, "namespace": namespace, "pod": pod})
    if container:
        labels["container"] = container
    description = f"Pod {namespace}/{pod} has been in a non-ready state for longer than 15 minutes."
    if old_pod:
        description = template["annotations"]["description"].replace(old_pod, pod)
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"description": description, "summary": f"{name} fires."},
        "fingerprint": fingerprint(labels),
    }


def _letters(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i % 26] + ("" if i < 26 else str(i // 26))


def _ip(block: int, i: int) -> str:
    return f"10.{40 + block}.{i // 250}.{1 + i % 250}"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
