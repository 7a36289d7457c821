"""The open incidents of one operator: which cause, which primary, which members.

An incident opens when an analysis proves a cause no open incident has; that analysis is its
primary and diagnoses the cause once. Later analyses whose cause (or, during a storm, whose
failure signature) matches join it as members. An incident stays open for joining while
alerts keep arriving: ``window`` seconds after the last one joined (a node that dies again
tomorrow is a new incident). The registry is bounded; the least recently joined incidents
go first.

Pure bookkeeping: times are passed in, nothing here waits or reads the cluster.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from oncallm.incidents.keys import CauseKey, Signature
from oncallm.models.analysis import Diagnosis, EvidenceRef

#: Member symptoms an incident keeps for its report and the model's prompt; the count goes on.
MAX_SYMPTOMS = 200


@dataclass(frozen=True)
class Symptom:
    """What one alert of an incident saw: its alert, its target and how it fails."""

    analysis: str
    alert: str
    target: str
    detail: str = ""

    @property
    def line(self) -> str:
        return f"{self.alert} on {self.target}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Outcome:
    """The incident's diagnosis, once its cause is known (after the model, when one is asked)."""

    diagnosis: Diagnosis
    evidence: list[EvidenceRef]
    analyzer: str
    report_config_map: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Incident:
    """One cause and the alerts it explains."""

    key: CauseKey
    namespace: str
    primary: str
    primary_symptom: Symptom
    opened: float
    last_joined: float
    #: the rules' diagnosis of the cause, known when the incident opens
    baseline: Diagnosis
    signatures: set[Signature] = field(default_factory=set)
    #: every member's analysis name
    members: set[str] = field(default_factory=set)
    #: the first members' symptoms, in the order they joined (bounded)
    symptoms: OrderedDict[str, Symptom] = field(default_factory=OrderedDict)
    outcome: Outcome | None = None

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.primary}"

    @property
    def member_count(self) -> int:
        return len(self.members)

    @property
    def known(self) -> bool:
        """The cause is known: members can complete."""
        return self.outcome is not None

    def has(self, name: str) -> bool:
        return name == self.primary or name in self.members

    def member_lines(self, limit: int = 20) -> list[str]:
        return [s.line for s in list(self.symptoms.values())[:limit]]


class IncidentRegistry:
    """Open incidents by cause and by failure signature."""

    def __init__(self, window: float = 1800.0, max_incidents: int = 1000) -> None:
        self.window = window
        self.max_incidents = max(1, max_incidents)
        self._by_key: OrderedDict[CauseKey, Incident] = OrderedDict()
        self._by_signature: dict[Signature, CauseKey] = {}
        self._by_member: dict[str, CauseKey] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def incidents(self) -> list[Incident]:
        return list(self._by_key.values())

    def find(self, key: CauseKey | None, now: float) -> Incident | None:
        """The open incident of this cause."""
        if key is None:
            return None
        incident = self._by_key.get(key)
        if incident is None:
            return None
        if now - incident.last_joined > self.window:
            self._drop(incident)
            return None
        return incident

    def of(self, name: str, now: float) -> Incident | None:
        """The open incident an analysis is the primary or a member of."""
        key = self._by_member.get(name)
        return self.find(key, now) if key is not None else None

    def by_signature(self, sig: Signature | None, now: float) -> Incident | None:
        """The open incident whose alerts fail as ``sig`` does (the node counts only for an
        incident whose cause is a node)."""
        if sig is None:
            return None
        for candidate in (sig, sig.on_node(None)):
            key = self._by_signature.get(candidate)
            incident = self.find(key, now) if key is not None else None
            if incident is not None and (candidate.node is not None) == incident.key.node_scoped:
                return incident
        return None

    def open(
        self,
        key: CauseKey,
        namespace: str,
        primary: Symptom,
        baseline: Diagnosis,
        now: float,
        sig: Signature | None = None,
    ) -> Incident:
        """Open an incident with ``primary`` diagnosing it; the one already open for the same
        cause when there is one (the caller then joins it instead)."""
        existing = self.find(key, now)
        if existing is not None:
            return existing
        incident = Incident(
            key=key,
            namespace=namespace,
            primary=primary.analysis,
            primary_symptom=primary,
            opened=now,
            last_joined=now,
            baseline=baseline,
        )
        self._by_key[key] = incident
        self._by_member[primary.analysis] = key
        self.remember(incident, sig)
        while len(self._by_key) > self.max_incidents:
            self._drop(next(iter(self._by_key.values())))
        return incident

    def remember(self, incident: Incident, sig: Signature | None, node: str | None = None) -> None:
        """Let pods failing as ``sig`` (on ``node``, for a node's incident) join by signature.
        A cause that is a claim or its class is never joined by signature."""
        if sig is None or incident.key.per_volume:
            return
        sig = sig.on_node(node if incident.key.node_scoped else None)
        if incident.key.node_scoped and sig.node is None:
            return
        incident.signatures.add(sig)
        self._by_signature.setdefault(sig, incident.key)

    def join(self, incident: Incident, member: Symptom, now: float) -> bool:
        """Add a member; False when it already is one (or is the primary)."""
        if incident.has(member.analysis):
            return False
        incident.members.add(member.analysis)
        incident.last_joined = now
        if len(incident.symptoms) < MAX_SYMPTOMS:
            incident.symptoms[member.analysis] = member
        self._by_member[member.analysis] = incident.key
        self._by_key.move_to_end(incident.key)
        return True

    def leave(self, name: str) -> None:
        """Forget an analysis (deleted); an incident whose primary goes is closed."""
        key = self._by_member.pop(name, None)
        incident = self._by_key.get(key) if key is not None else None
        if incident is None:
            return
        if incident.primary == name:
            self._drop(incident)
        else:
            incident.members.discard(name)
            incident.symptoms.pop(name, None)

    def expire(self, now: float) -> int:
        """Close incidents nothing joined for ``window`` seconds; how many."""
        stale = [i for i in self._by_key.values() if now - i.last_joined > self.window]
        for incident in stale:
            self._drop(incident)
        return len(stale)

    def _drop(self, incident: Incident) -> None:
        self._by_key.pop(incident.key, None)
        for sig in incident.signatures:
            if self._by_signature.get(sig) == incident.key:
                del self._by_signature[sig]
        for name in [incident.primary, *incident.members]:
            if self._by_member.get(name) == incident.key:
                del self._by_member[name]
