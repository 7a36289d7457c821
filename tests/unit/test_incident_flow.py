"""The operator's service over an alert storm, in memory: the real queue, incident flow,
gathering and rules, with an API that records every write.

Proves what the pipeline promises: members share their primary's root cause and complete with
one write each; unrelated alerts stay alone; one model call per incident, its prompt carrying
the members' symptoms; a late alert joins at once; after a restart the incidents are rebuilt
and a service killed mid-incident leaves every member completed exactly once.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from oncallm.gathering.memory import MemoryReader
from oncallm.intake.naming import analysis_labels, analysis_name
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.llm.analyse import ModelOutcome
from oncallm.llm.client import ModelClient
from oncallm.models.alert import Alert
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertSpec,
    Diagnosis,
    EvidenceRef,
)
from oncallm.models.evidence import Context
from oncallm.models.policy import AnalysisPolicy
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.service import AnalysisService
from oncallm.pipeline.settings import IncidentSettings, OperatorSettings
from tests.helpers.storm import DEPENDENCY, NODE, ROLLOUT, Storm, build_storm, refire

NAMESPACE = "oncallm"


class StoreAPI:
    """An API server in memory: AlertAnalyses whose status patches merge, everything else
    recorded. ``hold`` makes status writes of the named analyses wait until released."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, Any]] = []
        self.completed: Counter[str] = Counter()
        self.hold: set[str] = set()
        self.released = asyncio.Event()

    def add(self, body: dict[str, Any]) -> None:
        self.objects[body["metadata"]["name"]] = copy.deepcopy(body)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        self.writes.append((method, path, body))
        parts = path.strip("/").split("/")
        if "alertanalyses" in parts and path.endswith("/status") and method == "PATCH":
            name = parts[-2]
            if name in self.hold:
                await self.released.wait()
            obj = self.objects[name]
            status = obj.setdefault("status", {})
            status.update(body["status"])
            if body["status"].get("phase") == "Completed":
                self.completed[name] += 1
            return obj
        if "alertanalyses" in parts and method == "PATCH" and parts[-1] in self.objects:
            meta = self.objects[parts[-1]].setdefault("metadata", {})
            for key, value in (body.get("metadata") or {}).items():
                merged = {**(meta.get(key) or {}), **value}
                meta[key] = {k: v for k, v in merged.items() if v is not None}
            return self.objects[parts[-1]]
        if method == "GET" and parts[-1] == "alertanalyses":
            selector = (kwargs.get("query") or {}).get("labelSelector") or ""
            key, _, value = selector.partition("=")
            items = [
                copy.deepcopy(o)
                for o in self.objects.values()
                if not key or (o["metadata"].get("labels") or {}).get(key) == value
            ]
            return {"items": items, "metadata": {}}
        return {}


def _body(alert: dict[str, Any], group: str = "") -> dict[str, Any]:
    parsed = Alert.model_validate(alert)
    body = AlertAnalysis(
        metadata={
            "name": analysis_name(parsed),
            "namespace": NAMESPACE,
            "labels": analysis_labels(parsed),
            "uid": f"uid-{analysis_name(parsed)}",
        },
        spec=AlertAnalysisSpec(alert=AlertSpec.from_alert(parsed), group_key=group),
    ).to_kube()
    body.pop("status", None)
    return body


class CountingPipeline(Pipeline):
    """A pipeline with a 'model' that agrees with the rules and remembers each prompt."""

    prompts: list[list[EvidenceRef]]

    async def _model(
        self, ctx: Context, evidence: list[EvidenceRef], baseline: Diagnosis, policy: AnalysisPolicy
    ) -> ModelOutcome:
        if self.model is None:
            return ModelOutcome(diagnosis=baseline)
        self.prompts.append(list(evidence))
        await asyncio.sleep(0.05)
        return ModelOutcome(diagnosis=baseline)


def _service(
    api: StoreAPI, reader: MemoryReader, *, model: bool = False, settle: float = 0.0
) -> tuple[AnalysisService, CountingPipeline]:
    pipeline = CountingPipeline(
        api=cast(KubeAPI, api),
        reader=reader,
        namespace=NAMESPACE,
        model=cast(ModelClient, object()) if model else None,
    )
    pipeline.prompts = []
    service = AnalysisService(
        cast(KubeAPI, api),
        pipeline,
        OperatorSettings(namespace=NAMESPACE, concurrency=4),
        IncidentSettings(settle_seconds=settle, refresh_seconds=0.05),
    )
    return service, pipeline


async def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _storm() -> Storm:
    return build_storm("flow", per_incident=(6, 6, 6), unrelated=3, node_workloads=2)


def _feed(service: AnalysisService, api: StoreAPI, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        api.add(body)
        service.accept("ADDED", copy.deepcopy(body))


def _status(api: StoreAPI, body: dict[str, Any]) -> dict[str, Any]:
    return api.objects[body["metadata"]["name"]].get("status") or {}


def _by_expected(storm: Storm, bodies: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        out.setdefault(storm.expected[body["spec"]["alert"]["fingerprint"]], []).append(body)
    return out


async def test_a_storm_becomes_one_analysis_per_cause() -> None:
    storm = _storm()
    api = StoreAPI()
    service, _ = _service(api, storm.memory_reader())
    bodies = [_body(a, group='{}:{alertname=~".*"}') for a in storm.alerts]
    service.start()
    try:
        _feed(service, api, bodies)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
        # the primaries' member counts are brought up to date shortly after
        await _until(
            lambda: (
                sorted(
                    _status(api, b)["incident"]["members"]
                    for b in bodies
                    if _status(api, b)["incident"]["role"] == "primary"
                )
                == [0, 0, 0, 5, 5, 5]
            )
        )
    finally:
        await service.stop()

    groups = _by_expected(storm, bodies)
    for expected, members in groups.items():
        statuses = [_status(api, b) for b in members]
        refs = [s["incident"] for s in statuses]
        primaries = {r["primary"] for r in refs}
        assert len(primaries) == 1, (expected, refs)
        (primary,) = primaries
        roles = Counter(r["role"] for r in refs)
        assert roles["primary"] == 1 and roles["member"] == len(members) - 1, (expected, roles)
        root = api.objects[primary]["status"]["rootCause"]
        assert all(s["rootCause"] == root for s in statuses)
        for body, status in zip(members, statuses, strict=True):
            if status["incident"]["role"] == "member":
                pod = body["spec"]["alert"]["labels"]["pod"]
                assert pod in status["chain"][0]["summary"]  # its own symptom
                assert status["evidence"][0]["id"] == "alert"
                assert status["incident"]["reason"]
                assert status["reportConfigMap"] == f"{primary}-report"
    # unrelated alerts in the same namespaces are incidents of one
    singles = [k for k in groups if k.startswith("single-")]
    assert len(singles) == 3
    assert all(len(groups[k]) == 1 for k in singles)
    # every analysis completed exactly once; members with one write and no report or Event
    assert set(api.completed.values()) == {1} and len(api.completed) == len(bodies)
    members = [b for b in bodies if _status(api, b)["incident"]["role"] == "member"]
    member_names = {b["metadata"]["name"] for b in members}
    member_writes = Counter(
        path.rsplit("/", 2)[-2]
        for method, path, _ in api.writes
        if path.endswith("/status") and path.rsplit("/", 2)[-2] in member_names
    )
    assert set(member_writes.values()) == {1}
    reports = {body["metadata"]["name"] for m, p, body in api.writes if p.endswith("/configmaps")}
    primaries_of = {_status(api, b)["incident"]["primary"] for b in bodies}
    assert len(primaries_of) == 6  # 3 incidents, 3 unrelated alerts on their own
    assert reports == {f"{name}-report" for name in primaries_of}
    events = [body for m, p, body in api.writes if p.endswith("/events")]
    assert {e["involvedObject"]["name"] for e in events} <= {
        r["primary"] for r in (_status(api, b)["incident"] for b in bodies)
    }
    # the primaries' member counts are brought up to date
    primaries = {
        k: _status(api, b)
        for k in (NODE, DEPENDENCY, ROLLOUT)
        for b in groups[k]
        if _status(api, b)["incident"]["role"] == "primary"
    }
    assert {k: s["incident"]["members"] for k, s in primaries.items()} == {
        NODE: 5,
        DEPENDENCY: 5,
        ROLLOUT: 5,
    }


async def test_one_model_call_per_incident_with_the_members_in_its_prompt() -> None:
    storm = _storm()
    api = StoreAPI()
    service, pipeline = _service(api, storm.memory_reader(), model=True, settle=2.0)
    bodies = [_body(a) for a in storm.alerts]
    service.start()
    try:
        _feed(service, api, bodies)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
    finally:
        await service.stop()
    assert len(pipeline.prompts) == 3 + 3
    listed = [
        item for prompt in pipeline.prompts for item in prompt if item.id == "incident/members"
    ]
    assert len(listed) == 3  # the singles have no members to list
    for item in listed:
        assert item.excerpt.startswith("5 more alert(s) share this cause")
    # the item sits right after the alert, where the prompt builder never cuts
    for prompt in pipeline.prompts:
        ids = [e.id for e in prompt]
        if "incident/members" in ids:
            assert ids.index("incident/members") == 1


async def test_a_late_alert_joins_the_incident_at_once() -> None:
    storm = _storm()
    api = StoreAPI()
    service, _ = _service(api, storm.memory_reader())
    bodies = [_body(a) for a in storm.alerts]
    service.start()
    try:
        _feed(service, api, bodies)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
        rollout = next(a for a in storm.alerts if storm.expected[a["fingerprint"]] == ROLLOUT)
        late = _body(refire(rollout, datetime.now(UTC) + timedelta(minutes=3)))
        writes = len(api.writes)
        started = time.perf_counter()
        _feed(service, api, [late])
        await _until(lambda: _status(api, late).get("phase") == "Completed")
        took = time.perf_counter() - started
    finally:
        await service.stop()
    status = _status(api, late)
    assert status["incident"]["role"] == "member"
    primary = status["incident"]["primary"]
    assert api.objects[primary]["status"]["incident"]["role"] == "primary"
    assert status["rootCause"] == api.objects[primary]["status"]["rootCause"]
    late_writes = [w for w in api.writes[writes:] if late["metadata"]["name"] in w[1]]
    assert len(late_writes) == 1  # one status write, nothing read or written beside it
    assert took < 5


async def test_after_a_restart_the_incidents_are_rebuilt_from_the_watch() -> None:
    storm = _storm()
    api = StoreAPI()
    reader = storm.memory_reader()
    first, _ = _service(api, reader)
    bodies = [_body(a) for a in storm.alerts]
    first.start()
    try:
        _feed(first, api, bodies)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
    finally:
        await first.stop()

    # while the operator was away, new firings of every incident's alerts arrived
    late = [
        _body(
            refire(
                next(a for a in storm.alerts if storm.expected[a["fingerprint"]] == kind),
                datetime.now(UTC) + timedelta(minutes=1),
            )
        )
        for kind in (NODE, DEPENDENCY, ROLLOUT)
    ]
    for body in late:
        api.add(body)
    second, _ = _service(api, reader)
    assert await second.load_incidents() == 6  # the labelled primaries, read first
    assert len(second.incidents.registry) == 6  # rebuilt before anything runs
    second.start()
    try:
        # kopf lists by name: new alerts may come before their incident's primary
        for body in [*late, *(o for o in api.objects.values() if o not in late)]:
            second.accept(None, copy.deepcopy(body))
        assert second.queue.waiting + second.queue.running <= len(late)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in late))
    finally:
        await second.stop()
    for body in late:
        ref = _status(api, body)["incident"]
        assert ref["role"] == "member"
        assert api.objects[ref["primary"]]["status"]["incident"]["role"] == "primary"


async def test_a_primary_whose_status_outgrew_a_diagnosis_is_still_restored() -> None:
    """A status may hold more than a diagnosis allows (a model's long words, the rules' notes
    added): a restart cuts it to the bounds instead of leaving the incident closed."""
    storm = _storm()
    api = StoreAPI()
    reader = storm.memory_reader()
    first, _ = _service(api, reader)
    bodies = [_body(a) for a in storm.alerts]
    first.start()
    try:
        _feed(first, api, bodies)
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
    finally:
        await first.stop()
    for obj in api.objects.values():
        if obj["status"]["incident"]["role"] == "primary":
            obj["status"].update(summary="s" * 900, commands=["kubectl get pods"] * 30)
    second, _ = _service(api, reader)
    assert await second.load_incidents() == 6
    assert len(second.incidents.registry) == 6


async def test_a_failed_list_of_primaries_does_not_stop_the_start() -> None:
    class Refusing(StoreAPI):
        async def request(self, method: str, path: str, **kwargs: Any) -> Any:
            if method == "GET" and path.endswith("/alertanalyses"):
                raise ApiError(503, "the API server is busy")
            return await super().request(method, path, **kwargs)

    service, _ = _service(Refusing(), _storm().memory_reader())
    assert await service.load_incidents() == 0


async def test_killing_the_operator_mid_incident_completes_every_member_exactly_once() -> None:
    storm = _storm()
    api = StoreAPI()
    reader = storm.memory_reader()
    first, _ = _service(api, reader)
    bodies = [_body(a) for a in storm.alerts]
    dependency = _by_expected(storm, bodies)[DEPENDENCY]
    # two of the dependency's members hang in their status write when the operator dies
    api.hold = {b["metadata"]["name"] for b in dependency[-2:]}
    first.start()
    _feed(first, api, bodies)
    await _until(
        lambda: (
            sum(1 for b in bodies if _status(api, b).get("phase") == "Completed") >= len(bodies) - 2
        )
    )
    await first.stop()  # the operator is gone: the held writes never happen
    assert not any(_status(api, b).get("phase") == "Completed" for b in dependency[-2:])
    api.hold = set()
    api.released.set()

    second, _ = _service(api, reader)
    for obj in list(api.objects.values()):
        second.accept(None, copy.deepcopy(obj))
    assert second.queue.waiting == 2  # only the unfinished are run again
    second.start()
    try:
        await _until(lambda: all(_status(api, b).get("phase") == "Completed" for b in bodies))
    finally:
        await second.stop()
    assert set(api.completed.values()) == {1}
    assert len(api.completed) == len(bodies)
    primary = {_status(api, b)["incident"]["primary"] for b in dependency}
    assert len(primary) == 1
    assert all(_status(api, b)["rootCause"] for b in dependency)
