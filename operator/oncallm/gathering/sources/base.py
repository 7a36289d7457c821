"""What a context source is: how it reads, when, and how its snapshots become evidence.

A source is one module of this package with a :class:`Source` record in ``SOURCES``
(``sources/__init__.py``). Its ``read`` runs during gathering, through the
:class:`~oncallm.gathering.scope.Scope`; its ``evidence`` is pure (the context in, items out)
and runs in analysis, which gives it an :class:`EvidenceOut` to add items to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from oncallm.gathering.scope import Scope
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, EventSnapshot, LogSnapshot
from oncallm.models.policy import Depth


class Stage(IntEnum):
    """When a source reads. The sources of one stage run at once; a stage starts when the
    one before it has finished, so a source may read what earlier stages found."""

    TARGET = 0
    """The alerted object, its workload and its pods, from the alert's labels alone."""
    PODS = 1
    """The pods' snapshots, from what TARGET read (no reads)."""
    AROUND = 2
    """What the pods point at: their logs, nodes, claims, namespace, autoscalers."""
    FOLLOW = 3
    """What the stage before found: events of the pods' nodes, Services named in logs."""
    LEADS = 4
    """Leads the evidence so far opens: a full quota's consumers, a failing webhook, CoreDNS
    after name-resolution errors. Each source here reads nothing unless its lead is there."""
    DEEPER = 5
    """What the leads point at: the custom resources behind a pull Secret, a mounted Secret or
    a webhook's certificate."""


class Tier(IntEnum):
    """Where an item sorts in the evidence, lower first. The tiers follow how an engineer reads
    a crash: how the container died, what the cluster said about it, what the process said,
    then the node and dependencies. The prompt builder cuts from the end."""

    ALERT = 0
    CONTAINER_BAD = 10
    MISSING = 12
    POD_BAD = 15
    EVENT_WARNING = 20
    LOG_ERROR_PREVIOUS = 30
    LOG_ERROR_CURRENT = 32
    NODE_BAD = 40
    OBJECT_BAD = 45
    METRIC = 50
    LOG_TAIL_PREVIOUS = 60
    LOG_TAIL_CURRENT = 62
    BACKGROUND = 70
    HISTORY = 80


class EvidenceOut(Protocol):
    """Where a source's ``evidence`` puts its items (analysis' builder implements it)."""

    def add(
        self,
        tier: Tier,
        base_id: str,
        source: EvidenceSource,
        obj: str,
        excerpt: str,
        time: str | None = None,
    ) -> str:
        """Add one item; returns its id (``base_id``, or ``base_id~2`` for a second one)."""
        ...

    def index_event(self, event: EventSnapshot, evidence_id: str) -> None:
        """Remember which item an event became, for ``EvidenceIndex.event``."""
        ...

    def index_line(self, log: LogSnapshot, lineno: int, evidence_id: str) -> None:
        """Remember which item a log line became, for ``EvidenceIndex.line``."""
        ...

    def kept_lines(self, log: LogSnapshot) -> tuple[list[int], list[int]]:
        """Which 1-based lines of a log to keep: (error lines, last lines), per the evidence
        settings and analysis' line filter."""
        ...


Reader = Callable[[Scope], Awaitable[None]]
Flattener = Callable[[Context, EvidenceOut], None]


@dataclass(frozen=True)
class Source:
    """One entry of ``SOURCES``."""

    name: str
    """Names the source in missing evidence (``timed out``) and in the docs."""
    stage: Stage
    read: Reader | None
    """Fills the source's part of the Context; None for a source of evidence only."""
    evidence: Flattener | None
    """The source's snapshots as evidence items; None when another source flattens them."""
    depth: Depth = Depth.STANDARD
    """The shallowest policy depth that reads this source."""
    resources: tuple[str, ...] = ()
    """What ``read`` reads through the KubeReader, as RBAC names it (``pods``, ``pods/log``,
    ``deployments.apps``); the operator's ClusterRoles must grant each (test_docs checks)."""
    label: Callable[[Scope], str] | None = None
    """What a timeout of ``read`` is recorded as; the source's name when None."""

    def label_in(self, scope: Scope) -> str:
        return self.label(scope) if self.label is not None else self.name

    def reads_at(self, depth: Depth) -> bool:
        order = (Depth.QUICK, Depth.STANDARD, Depth.DEEP)
        return self.read is not None and order.index(depth) >= order.index(self.depth)


def kv(values: dict[str, Any]) -> str:
    """``a=1,b=2``: a mapping as evidence text writes it."""
    return ",".join(f"{k}={v}" for k, v in values.items())
