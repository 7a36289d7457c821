"""Incidents: alerts grouped by the cause the rules prove, over a storm gathered in memory.

The storm (``tests/helpers/storm.py``) is three incidents built from the scenario corpus — a
dead node, a database without endpoints, a rollout whose image tag does not exist — with
unrelated OOMKilled workloads in the same namespaces. Every alert is gathered and diagnosed by
the real code; the correlation only sees what the rules prove.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass

import pytest

from oncallm.analysis.baseline import build_baseline
from oncallm.analysis.evidence import ALERT_ID
from oncallm.gathering.gather import gather
from oncallm.gathering.memory import MemoryReader
from oncallm.incidents import (
    MEMBERS_ID,
    CauseKey,
    IncidentRegistry,
    Outcome,
    Symptom,
    cause_key,
    describe_failure,
    member_result,
    members_item,
    signature,
)
from oncallm.models.alert import Alert
from oncallm.models.analysis import Category, Diagnosis, EvidenceRef, LinkRole
from oncallm.models.evidence import Context, PodSnapshot
from oncallm.models.policy import DEFAULT_POLICY
from tests.helpers.storm import DEPENDENCY, NODE, ROLLOUT, Storm, build_storm


@dataclass
class Seen:
    """One storm alert as the pipeline sees it after gathering and the rules."""

    alert: Alert
    expected: str
    ctx: Context
    diagnosis: Diagnosis
    evidence: list[EvidenceRef]
    key: CauseKey | None

    @property
    def pod(self) -> PodSnapshot:
        return next(p for p in self.ctx.pods if p.name == self.ctx.target.name)

    def symptom(self) -> Symptom:
        container = next(
            (c for c in self.pod.containers if c.name == self.ctx.target.container), None
        )
        return Symptom(
            analysis=f"aa-{self.alert.fingerprint}",
            alert=self.alert.name,
            target=self.ctx.target.display,
            detail=describe_failure(container, self.pod.phase),
        )

    def own_evidence(self) -> list[EvidenceRef]:
        pod = self.pod.name
        return [
            e
            for e in self.evidence
            if e.id == ALERT_ID or e.id.startswith((f"container/{pod}/", f"pod/{pod}"))
        ]


async def _see(reader: MemoryReader, raw: dict[str, object], expected: str) -> Seen:
    alert = Alert.model_validate(raw)
    ctx = await gather(alert, reader, DEFAULT_POLICY)
    rules = build_baseline(ctx)
    return Seen(
        alert, expected, ctx, rules.diagnosis, rules.evidence.items, cause_key(rules.diagnosis, ctx)
    )


@pytest.fixture(scope="module")
def storm() -> Storm:
    return build_storm("unit", per_incident=(4, 3, 3), unrelated=3, node_workloads=2)


@pytest.fixture(scope="module")
def seen(storm: Storm) -> list[Seen]:
    reader = storm.memory_reader()

    async def all_of() -> list[Seen]:
        return [await _see(reader, a, storm.expected[str(a["fingerprint"])]) for a in storm.alerts]

    return asyncio.run(all_of())


def _correlate(seen: list[Seen], registry: IncidentRegistry, now: float = 0.0) -> dict[str, str]:
    """What the pipeline does with each decided alert: join the open incident of its cause,
    or open one. Returns analysis name -> the primary it belongs to."""
    placed: dict[str, str] = {}
    for s in seen:
        symptom = s.symptom()
        incident = registry.find(s.key, now)
        if incident is None and s.key is not None:
            incident = registry.open(s.key, "oncallm", symptom, s.diagnosis, now)
        elif incident is not None:
            registry.join(incident, symptom, now)
        placed[symptom.analysis] = incident.primary if incident else symptom.analysis
    return placed


def test_the_rules_prove_one_cause_per_incident(seen: list[Seen]) -> None:
    keys: dict[str, set[CauseKey | None]] = {}
    for s in seen:
        keys.setdefault(s.expected, set()).add(s.key)
    assert all(len(k) == 1 for k in keys.values()), keys
    node, dependency, rollout = (next(iter(keys[i])) for i in (NODE, DEPENDENCY, ROLLOUT))
    assert node and node.category is Category.NODE_NOT_READY
    assert node.object == "node/unit-ledger-node-down-worker-2"
    assert dependency and dependency.object == "service/unit-orders/orders-db"
    assert rollout and rollout.category is Category.IMAGE_PULL_ERROR
    assert rollout.object == "revision/unit-storefront/storefront-web-5p5sckhkt"
    # the dead node's pods belong to two StatefulSets: one cause all the same
    assert len({s.pod.owner_name for s in seen if s.expected == NODE}) == 2


def test_members_of_one_incident_share_its_root_cause(seen: list[Seen]) -> None:
    registry = IncidentRegistry()
    placed = _correlate(seen, registry)
    by_primary: dict[str, set[str]] = {}
    for s in seen:
        by_primary.setdefault(placed[f"aa-{s.alert.fingerprint}"], set()).add(s.expected)
    assert sorted(len(v) for v in by_primary.values()) == [1] * len(by_primary)
    assert len(registry) == 3 + 3  # three incidents, three unrelated alerts on their own

    for incident in registry.incidents():
        primary = next(s for s in seen if f"aa-{s.alert.fingerprint}" == incident.primary)
        outcome = Outcome(primary.diagnosis, primary.evidence, "rules")
        for s in seen:
            if f"aa-{s.alert.fingerprint}" not in incident.members:
                continue
            own = s.own_evidence()
            result = member_result(
                outcome, s.symptom(), own, [f"kubectl describe pod {s.pod.name}"]
            )
            d = result.diagnosis
            assert d.root_cause == primary.diagnosis.root_cause
            assert d.category is primary.diagnosis.category
            # its own symptom opens the chain; the incident's proof follows
            assert d.chain[0].role is LinkRole.SYMPTOM and s.pod.name in d.chain[0].summary
            assert [c.summary for c in d.chain[1:]] == [
                c.summary for c in primary.diagnosis.chain if c.role is not LinkRole.SYMPTOM
            ]
            ids = [e.id for e in result.evidence]
            assert ids == d.evidence and len(set(ids)) == len(ids)
            assert ids[: len(own)] == [e.id for e in own]
            assert [e for e in result.evidence if e.id == ALERT_ID] == [
                e for e in own if e.id == ALERT_ID
            ]
            assert set(primary.diagnosis.evidence) - {ALERT_ID} <= set(ids)
            assert d.commands[0] == f"kubectl describe pod {s.pod.name}"


def test_an_unrelated_alert_is_never_merged(seen: list[Seen], storm: Storm) -> None:
    registry = IncidentRegistry()
    placed = _correlate(seen, registry)
    singles = [s for s in seen if s.expected.startswith("single-")]
    incidents = {s.key for s in seen if not s.expected.startswith("single-")}
    for s in singles:
        assert s.key not in incidents
        assert placed[f"aa-{s.alert.fingerprint}"] == f"aa-{s.alert.fingerprint}"
        # the same namespace as an incident, never its signature
        assert s.ctx.target.namespace in storm.namespaces
        assert registry.by_signature(signature(s.pod), 0.0) is None
    assert len({s.key for s in singles}) == len(singles)


async def test_a_pod_of_the_incidents_workload_failing_otherwise_stays_alone(
    storm: Storm, seen: list[Seen]
) -> None:
    """An orders-api pod that is OOMKilled (its logs still complain about orders-db) is the
    same workload and namespace as the dependency incident, but not its cause."""
    reader = storm.memory_reader()
    dependency = next(s for s in seen if s.expected == DEPENDENCY)
    pod = copy.deepcopy(
        await reader.get("Pod", dependency.ctx.target.namespace, dependency.pod.name)
    )
    assert pod is not None
    pod["metadata"]["name"] = name = dependency.pod.name[:-5] + "zzzzz"
    status = pod["status"]["containerStatuses"][0]
    status["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    reader.add(pod)
    raw = {**dependency.alert.model_dump(mode="json", by_alias=True)}
    raw["labels"] = {**raw["labels"], "pod": name}
    raw["fingerprint"] = "0ddba11c0ffee000"
    other = await _see(reader, raw, "oom")

    registry = IncidentRegistry()
    _correlate(seen, registry)
    incident = registry.find(dependency.key, 0.0)
    assert incident is not None
    registry.remember(incident, signature(dependency.pod, "api"))
    assert other.key != dependency.key
    assert other.key is not None and other.key.category is Category.OOM_KILLED
    assert registry.find(other.key, 0.0) is None
    assert registry.by_signature(signature(other.pod, "api"), 0.0) is None
    # ... while a replica failing like the primary does join by signature
    sibling = next(s for s in seen if s.expected == DEPENDENCY and s is not dependency)
    assert registry.by_signature(signature(sibling.pod, "api"), 0.0) is incident


def test_a_late_member_joins(seen: list[Seen]) -> None:
    registry = IncidentRegistry(window=600)
    rollout = [s for s in seen if s.expected == ROLLOUT]
    first, late = rollout[0], rollout[-1]
    assert first.key is not None
    incident = registry.open(first.key, "oncallm", first.symptom(), first.diagnosis, now=0.0)
    incident.outcome = Outcome(first.diagnosis, first.evidence, "rules")

    # minutes after the primary completed, another pod of the rollout alerts
    found = registry.find(late.key, now=300.0)
    assert found is incident and found.known
    assert registry.join(found, late.symptom(), now=300.0)
    assert not registry.join(found, late.symptom(), now=301.0)  # once only
    result = member_result(incident.outcome, late.symptom(), late.own_evidence(), [])
    assert result.diagnosis.root_cause == first.diagnosis.root_cause
    assert registry.of(late.symptom().analysis, 302.0) is incident

    # the window runs from the last member: still open 10 minutes after it, not after that
    assert registry.find(first.key, now=300.0 + 599) is incident
    assert registry.find(first.key, now=300.0 + 601) is None
    assert registry.of(late.symptom().analysis, 302.0) is None


def test_signatures_match_a_node_only_for_a_node_incident(seen: list[Seen]) -> None:
    registry = IncidentRegistry()
    node = next(s for s in seen if s.expected == NODE)
    dependency = next(s for s in seen if s.expected == DEPENDENCY)
    assert node.key and dependency.key
    at_node = registry.open(node.key, "oncallm", node.symptom(), node.diagnosis, 0.0)
    registry.remember(at_node, signature(node.pod), node.pod.node_name)
    dep = registry.open(dependency.key, "oncallm", dependency.symptom(), dependency.diagnosis, 0.0)
    registry.remember(dep, signature(dependency.pod, "api"), dependency.pod.node_name)

    same = signature(node.pod)
    assert same is not None
    assert registry.by_signature(same.on_node(node.pod.node_name), 0.0) is at_node
    assert registry.by_signature(same.on_node("another-node"), 0.0) is None
    assert registry.by_signature(same, 0.0) is None  # a node's incident needs the node
    dep_sig = signature(dependency.pod, "api")
    assert dep_sig is not None
    assert registry.by_signature(dep_sig.on_node("any-node"), 0.0) is dep


def test_claims_are_never_joined_by_signature(seen: list[Seen]) -> None:
    registry = IncidentRegistry()
    s = seen[0]
    key = CauseKey(Category.PVC_PENDING, "storageclass/fast-ssd")
    incident = registry.open(key, "oncallm", s.symptom(), s.diagnosis, 0.0)
    registry.remember(incident, signature(s.pod), s.pod.node_name)
    assert incident.signatures == set()


def test_unknown_has_no_key_and_a_group_stands_in_for_no_object(seen: list[Seen]) -> None:
    s = next(s for s in seen if s.expected == DEPENDENCY)
    unknown = s.diagnosis.model_copy(update={"category": Category.UNKNOWN})
    assert cause_key(unknown, s.ctx, group_key='{}:{alertname="X"}') is None
    bare = s.ctx.model_copy(update={"pods": [], "workload": None})
    cpu = s.diagnosis.model_copy(update={"category": Category.CPU_THROTTLING, "evidence": []})
    assert cause_key(cpu, bare) is None
    grouped = cause_key(cpu, bare, group_key='{}:{alertname="X"}')
    assert grouped == CauseKey(Category.CPU_THROTTLING, 'group/{}:{alertname="X"}')


def test_a_pending_claim_is_its_classs_cause() -> None:
    from oncallm.models.analysis import TargetRef
    from oncallm.models.evidence import PVCSnapshot

    alert = Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodNotReady"},
            "startsAt": "2025-05-14T09:41:30Z",
            "fingerprint": "0123456789abcdef",
        }
    )
    ctx = Context(
        alert=alert,
        target=TargetRef(kind="Pod", namespace="data", name="db-0"),
        pvcs=[
            PVCSnapshot(name="data-db-0", namespace="data", phase="Pending", storage_class="fast"),
            PVCSnapshot(name="logs-db-0", namespace="data", phase="Bound", storage_class="fast"),
        ],
    )
    base = dict(summary="s", root_cause="r", confidence=0.9)
    pending = Diagnosis(category=Category.PVC_PENDING, evidence=["pvc/data-db-0"], **base)
    bound = Diagnosis(category=Category.PVC_PENDING, evidence=["pvc/logs-db-0"], **base)
    assert cause_key(pending, ctx) == CauseKey(Category.PVC_PENDING, "storageclass/fast")
    assert cause_key(bound, ctx) == CauseKey(Category.PVC_PENDING, "pvc/data/logs-db-0")


def test_the_members_reach_the_model_as_one_item(seen: list[Seen]) -> None:
    registry = IncidentRegistry()
    dependency = [s for s in seen if s.expected == DEPENDENCY]
    first = dependency[0]
    assert first.key is not None
    incident = registry.open(first.key, "oncallm", first.symptom(), first.diagnosis, 0.0)
    assert members_item(incident) is None
    for s in dependency[1:]:
        registry.join(incident, s.symptom(), 1.0)
    item = members_item(incident)
    assert item is not None and item.id == MEMBERS_ID
    assert item.excerpt.startswith(f"{len(dependency) - 1} more alert(s) share this cause")
    for s in dependency[1:]:
        assert s.pod.name in item.excerpt
    assert "CrashLoopBackOff" in item.excerpt


def test_the_registry_is_bounded_and_forgets_deleted_analyses(seen: list[Seen]) -> None:
    registry = IncidentRegistry(max_incidents=2)
    keyed = [s for s in seen if s.key is not None]
    distinct = list({s.key: s for s in keyed}.values())
    for i, s in enumerate(distinct[:3]):
        assert s.key is not None
        registry.open(s.key, "oncallm", s.symptom(), s.diagnosis, float(i))
    assert len(registry) == 2
    assert registry.find(distinct[0].key, 3.0) is None  # the least recently joined went first
    last = distinct[2]
    assert last.key is not None
    incident = registry.find(last.key, 3.0)
    assert incident is not None
    member = Symptom("aa-member", "KubePodNotReady", "pod/x/y")
    registry.join(incident, member, 3.0)
    registry.leave("aa-member")
    assert incident.member_count == 0
    registry.leave(incident.primary)
    assert registry.find(last.key, 3.0) is None
    assert registry.expire(10_000.0) == 1
