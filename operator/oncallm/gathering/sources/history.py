"""Earlier analyses of the same alert (same fingerprint), newest first, at most ten.

Reads only when the pipeline gives a history and the policy has ``sources.history``.

Evidence: ``history/<analysis>``: its phase, category and root cause.
"""

from __future__ import annotations

from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context
from oncallm.models.policy import Depth

#: Earlier analyses kept.
MAX_HISTORY = 10


def history_id(analysis: str) -> str:
    """``history/<analysis>``: an earlier analysis of the same alert."""
    return f"history/{analysis}"


async def read(scope: Scope) -> None:
    if scope.history is None or not scope.policy.spec.sources.history:
        return
    earlier = await scope.history.earlier(scope.alert, scope.exclude_analysis)
    scope.ctx.history = earlier[:MAX_HISTORY]


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for past in ctx.history:
        out.add(
            Tier.HISTORY,
            history_id(past.analysis),
            EvidenceSource.HISTORY,
            f"alertanalysis/{past.analysis}",
            f"{past.phase or '?'} {past.category or '?'}: {past.root_cause or 'no root cause'}",
            time=past.starts_at,
        )


SOURCE = Source("history", Stage.FOLLOW, read, evidence, depth=Depth.QUICK)
