"""One analysis' gathering as the sources see it: what it is about, what they may read, what
the sources before them found, and the guard that turns a failed read into missing evidence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from oncallm.gathering.objects import Obj
from oncallm.gathering.reader import KubeReader, SourceError
from oncallm.gathering.settings import GatherSettings
from oncallm.models.alert import Alert
from oncallm.models.analysis import MissingEvidence, TargetRef
from oncallm.models.evidence import Context, HistorySnapshot
from oncallm.models.policy import AnalysisPolicy, Depth


class MetricsSource(Protocol):
    """Prometheus, or anything that answers instant PromQL queries."""

    async def query(self, promql: str) -> dict[str, float]:
        """Latest value of each series, keyed by its labels as text."""
        ...


class HistorySource(Protocol):
    """Earlier analyses of the same alert."""

    async def earlier(self, alert: Alert, exclude: str | None) -> list[HistorySnapshot]: ...


#: Nodes looked at per analysis: the pods' nodes (a workload rarely spans more that matter).
MAX_NODES = 3


@dataclass
class Scope:
    """The state one analysis' sources share. Each source reads through ``reader`` and writes
    its snapshots into ``ctx``; later stages read what earlier ones wrote."""

    alert: Alert
    reader: KubeReader
    policy: AnalysisPolicy
    settings: GatherSettings
    now: datetime
    target: TargetRef
    ctx: Context
    metrics: MetricsSource | None = None
    history: HistorySource | None = None
    exclude_analysis: str | None = None
    #: the target's pods as read, before the pods source snapshots and orders them
    raw_pods: list[Obj] = field(default_factory=list)

    @property
    def namespace(self) -> str | None:
        return self.target.namespace

    @property
    def standard(self) -> bool:
        """Whether the policy asks for more than a quick look."""
        return self.policy.spec.depth != Depth.QUICK

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Bound what runs inside in time; a failed read or a timeout becomes missing evidence."""
        try:
            async with asyncio.timeout(self.settings.source_timeout):
                yield
        except SourceError as err:
            self.ctx.missing.append(MissingEvidence(source=err.source, reason=err.reason))
        except TimeoutError:
            self.missing(
                name,
                f"timed out after {self.settings.source_timeout:.0f} s "
                "(raise ONCALLM_SOURCE_TIMEOUT if the API server is slow)",
            )

    def missing(self, source: str, reason: str) -> None:
        self.ctx.missing.append(MissingEvidence(source=source, reason=reason))

    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> Obj | None:
        """One object, its ``kind`` filled in (the API server leaves it out of some answers);
        ``api_version`` for a kind outside the reader's table (see ``KubeReader``)."""
        obj = await self.reader.get(kind, namespace, name, api_version=api_version)
        if obj is not None:
            obj.setdefault("kind", kind)
        return obj

    def node_names(self) -> list[str]:
        """The nodes that matter: the pods' nodes and an alerted node, at most MAX_NODES."""
        # The nodes of troubled pods first (a Terminating or unready pod points at its node),
        # then the others by name: a DaemonSet's pods span more nodes than are read.
        troubled = sorted(
            {
                p.node_name
                for p in self.ctx.pods
                if p.node_name and (p.deleting or p.conditions.get("Ready", ("True",))[0] != "True")
            }
        )
        rest = sorted({p.node_name for p in self.ctx.pods if p.node_name} - set(troubled))
        names = ([self.target.name] if self.target.kind == "Node" else []) + troubled + rest
        return list(dict.fromkeys(names))[:MAX_NODES]
