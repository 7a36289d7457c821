"""The scenario file format, and turning a scenario into objects shifted to the present."""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from oncallm.gathering.memory import MemoryReader
from oncallm.models.alert import Alert
from oncallm.models.analysis import Category

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class ScenarioLog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pod: str
    container: str
    namespace: str | None = None
    previous: bool = False
    text: str


class ScenarioMetric(BaseModel):
    """One time series as Prometheus stores it: a series selector with its labels (a
    recording rule's name is one), never a PromQL expression, and one value per minute."""

    model_config = ConfigDict(extra="forbid")
    series: str = Field(
        pattern=r'^\s*[a-zA-Z_:][a-zA-Z0-9_:]*(\{\s*([a-zA-Z_]\w*\s*=\s*"[^"]*"\s*,?\s*)*\})?\s*$'
    )
    values: str = Field(pattern=r"^\s*[-+0-9.eE]+(\s+[-+0-9.eE]+)*\s*$")


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Category
    mention: list[str] = Field(default_factory=list)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    description: str = ""
    now: datetime
    alert: dict[str, Any]
    objects: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    logs: list[ScenarioLog] = Field(default_factory=list)
    metrics: list[ScenarioMetric] = Field(default_factory=list)
    expect: Expectation
    path: str | None = None

    def shift(self, now: datetime | None = None) -> ShiftedScenario:
        """The scenario with every timestamp moved so that its ``now`` is ``now``."""
        now = now or datetime.now(UTC)
        delta = now - self.now
        return ShiftedScenario(
            scenario=self,
            now=now,
            alert=self.alert_model(delta),
            objects=[_shift(o, delta) for o in self.objects],
            events=[_shift(e, delta) for e in self.events],
        )

    def alert_model(self, delta: timedelta = timedelta(0)) -> Alert:
        raw = _shift(self.alert, delta)
        raw.setdefault("status", "firing")
        raw.setdefault("annotations", {})
        raw.setdefault("startsAt", (self.now + delta).isoformat())
        raw.setdefault("fingerprint", fingerprint(raw.get("labels") or {}))
        return Alert.model_validate(raw)

    def namespaces(self) -> list[str]:
        found = []
        for obj in self.objects:
            ns = (obj.get("metadata") or {}).get("namespace")
            if ns and ns not in found:
                found.append(ns)
        return found


class ShiftedScenario(BaseModel):
    scenario: Scenario
    now: datetime
    alert: Alert
    objects: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def event_objects(self) -> list[dict[str, Any]]:
        """The events as core/v1 Event objects, with names and namespaces filled in."""
        out = []
        for i, event in enumerate(self.events):
            ev = copy.deepcopy(event)
            involved = ev.setdefault("involvedObject", {})
            ns = involved.get("namespace") or ev.get("metadata", {}).get("namespace") or "default"
            if involved.get("kind") == "Node":
                ns = ev.get("metadata", {}).get("namespace") or "default"
            meta = ev.setdefault("metadata", {})
            meta.setdefault("namespace", ns)
            meta.setdefault("name", f"{involved.get('name', 'object')}.{self.scenario.name}-{i}")
            ev.setdefault("apiVersion", "v1")
            ev["kind"] = "Event"
            ev.setdefault("type", "Normal")
            ev.setdefault("count", 1)
            ev.setdefault("firstTimestamp", ev.get("lastTimestamp") or _iso(self.now))
            ev.setdefault("lastTimestamp", ev.get("firstTimestamp"))
            ev.setdefault("source", {"component": "kubelet"})
            out.append(ev)
        return out

    def memory_reader(self) -> MemoryReader:
        """The scenario's cluster in memory, for offline gathering."""
        objects = [copy.deepcopy(o) for o in self.objects]
        uids = {}
        for i, obj in enumerate(objects):
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", f"uid-{i}")
            meta.setdefault("creationTimestamp", _iso(self.now - timedelta(hours=1)))
            uids[(obj.get("kind"), meta.get("namespace"), meta.get("name"))] = meta["uid"]
        for obj in objects:
            meta = obj["metadata"]
            for ref in meta.get("ownerReferences") or []:
                ref.setdefault(
                    "uid",
                    uids.get((ref.get("kind"), meta.get("namespace"), ref.get("name")), "uid"),
                )
        reader = MemoryReader(objects + self.event_objects())
        for lg in self.scenario.logs:
            ns = lg.namespace or _pod_namespace(objects, lg.pod)
            reader.add_log(ns, lg.pod, lg.container, lg.text, previous=lg.previous)
        return reader


def _pod_namespace(objects: list[dict[str, Any]], pod: str) -> str:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Pod" and meta.get("name") == pod:
            return str(meta.get("namespace", "default"))
    return "default"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    if isinstance(value, datetime):
        return _iso(value + delta)
    if isinstance(value, str) and _RFC3339.match(value):
        if value.startswith("0001-01-01"):
            return value  # Go's zero time: "not set" (an alert's endsAt while it fires)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if "." in value:
            # A MicroTime (a Lease's renewTime, an Event's eventTime): the API server parses
            # it only with its six fractional digits, so the shifted value keeps them.
            return (when + delta).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return _iso(when + delta)
    return value


def fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint of a label set, 16 hex digits like Alertmanager's."""
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: libyaml's loader when PyYAML has it: seven times faster on the scenario files.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_scenario(path: Path) -> Scenario:
    data = yaml.load(path.read_text(), Loader=_LOADER)  # a safe loader, C or Python
    data["path"] = str(path)
    return Scenario.model_validate(data)


def load_scenarios(folder: Path, *, recursive: bool = False) -> list[Scenario]:
    """The scenario files of ``folder`` (and of its subfolders, when ``recursive``), by path."""
    glob = folder.rglob if recursive else folder.glob
    files = sorted([*glob("*.yaml"), *glob("*.yml")])
    return [load_scenario(p) for p in files]
