"""Gather the evidence for one alert: every registered source, stage by stage, each bounded.

The sources (``gathering/sources/``, registered in ``SOURCES``) of one stage run at once; a
stage starts when the one before it is done, so a source reads what earlier stages found. A
source that fails (forbidden, timed out, absent) becomes a ``missing`` entry of the
:class:`~oncallm.models.evidence.Context` and never fails the analysis.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from itertools import groupby

from oncallm.gathering.reader import KubeReader
from oncallm.gathering.scope import HistorySource, MetricsSource, Scope
from oncallm.gathering.settings import GatherSettings
from oncallm.gathering.sources import SOURCES, Source
from oncallm.gathering.sources.metrics import alert_expression, standard_queries
from oncallm.gathering.target import refine_target, resolve_target
from oncallm.models.alert import Alert
from oncallm.models.evidence import Context
from oncallm.models.policy import AnalysisPolicy

__all__ = [
    "GatherSettings",
    "HistorySource",
    "MetricsSource",
    "alert_expression",
    "gather",
    "standard_queries",
]


async def gather(
    alert: Alert,
    reader: KubeReader,
    policy: AnalysisPolicy,
    *,
    settings: GatherSettings | None = None,
    metrics: MetricsSource | None = None,
    history: HistorySource | None = None,
    exclude_analysis: str | None = None,
    now: datetime | None = None,
    sources: tuple[Source, ...] = SOURCES,
) -> Context:
    """Everything an engineer would look at for ``alert``, as a Context."""
    settings = settings or GatherSettings()
    target = resolve_target(alert)
    try:
        # A node given by IP (a node exporter's instance) becomes the Node that has it; an
        # application alert's namespace, the workload a label value names.
        async with asyncio.timeout(settings.source_timeout):
            target = await refine_target(target, reader, alert.labels)
    except TimeoutError:
        pass  # the address stays the name; the nodes source reports the node as missing
    scope = Scope(
        alert=alert,
        reader=reader,
        policy=policy,
        settings=settings,
        now=now or datetime.now(UTC),
        target=target,
        ctx=Context(alert=alert, target=target),
        metrics=metrics,
        history=history,
        exclude_analysis=exclude_analysis,
    )
    depth = policy.spec.depth
    due = sorted((s for s in sources if s.reads_at(depth)), key=lambda s: s.stage)
    for _, stage in groupby(due, key=lambda s: s.stage):
        await asyncio.gather(*(_read(scope, source) for source in stage))
    return scope.ctx


async def _read(scope: Scope, source: Source) -> None:
    assert source.read is not None  # reads_at() checked
    async with scope.guard(source.label_in(scope)):
        await source.read(scope)
