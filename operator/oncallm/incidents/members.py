"""What a member of an incident gets: the incident's root cause, its own symptom, a link to the
primary and its evidence. And how the members reach the primary's model call: one evidence item
that lists their symptoms.

Pure: the incident's outcome and the member's own items in, a diagnosis and evidence out.
"""

from __future__ import annotations

from dataclasses import dataclass

from oncallm.incidents.registry import Incident, Outcome, Symptom
from oncallm.models.analysis import (
    CauseLink,
    Diagnosis,
    EvidenceRef,
    EvidenceSource,
    LinkRole,
)
from oncallm.models.evidence import ContainerSnapshot

#: The id of the evidence item that carries the members' symptoms to the primary's model call.
MEMBERS_ID = "incident/members"
#: Members named in that item; the rest are counted.
MEMBERS_IN_PROMPT = 20
ALERT_ID = "alert"


def describe_failure(container: ContainerSnapshot | None, pod_phase: str = "") -> str:
    """``api: waiting CrashLoopBackOff, last terminated Error exit 1, 9 restarts``."""
    if container is None:
        return f"pod {pod_phase}" if pod_phase else ""
    parts = [
        f"{container.name}: {container.state}"
        + (f" {container.reason}" if container.reason else "")
    ]
    if container.exit_code is not None:
        parts[0] += f" exit {container.exit_code}"
    if container.last_state:
        last = f"last {container.last_state}"
        if container.last_reason:
            last += f" {container.last_reason}"
        if container.last_exit_code is not None:
            last += f" exit {container.last_exit_code}"
        parts.append(last)
    if container.restart_count:
        parts.append(f"{container.restart_count} restarts")
    if not container.ready:
        parts.append("not ready")
    return ", ".join(parts)


@dataclass
class MemberResult:
    """A member's diagnosis (the incident's, with its own symptom) and the items it cites."""

    diagnosis: Diagnosis
    evidence: list[EvidenceRef]


def member_result(
    outcome: Outcome,
    symptom: Symptom,
    own_evidence: list[EvidenceRef],
    own_commands: list[str],
) -> MemberResult:
    """The incident's root cause for one member: its own alert and symptom first in the chain
    and the evidence, then the incident's proof; its own commands before the incident's."""
    shared = outcome.diagnosis
    own_ids = [e.id for e in own_evidence]
    link = CauseLink(
        role=LinkRole.SYMPTOM,
        summary=_cut(
            f"{symptom.alert} fires for {symptom.target}"
            + (f" ({symptom.detail})" if symptom.detail else "")
            + ".",
            600,
        ),
        evidence=own_ids[:10],
    )
    chain = [link, *(c for c in shared.chain if c.role is not LinkRole.SYMPTOM)][:12]
    by_id: dict[str, EvidenceRef] = {e.id: e for e in own_evidence}
    for item in outcome.evidence:
        if item.id != ALERT_ID and item.id != MEMBERS_ID:
            by_id.setdefault(item.id, item)
    cited = [*own_ids, *(i for i in shared.evidence if i not in own_ids and i in by_id)]
    commands = _dedupe([*own_commands, *shared.commands])[:16]
    diagnosis = shared.model_copy(
        update={
            "evidence": cited[:20],
            "chain": chain,
            "commands": commands,
        }
    )
    return MemberResult(diagnosis=diagnosis, evidence=[by_id[i] for i in cited[:20]])


def members_item(incident: Incident) -> EvidenceRef | None:
    """The members' symptoms as one evidence item for the primary's model call; None when no
    member has joined."""
    if not incident.member_count:
        return None
    lines = incident.member_lines(MEMBERS_IN_PROMPT)
    more = incident.member_count - len(lines)
    text = (
        f"{incident.member_count} more alert(s) share this cause "
        f"({incident.key.object}): " + "; ".join(lines)
    )
    if more > 0:
        text += f"; and {more} more"
    return EvidenceRef(
        id=MEMBERS_ID,
        source=EvidenceSource.ALERT,
        object=f"incident/{incident.primary}",
        excerpt=_cut(text, 2000),
    )


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
