"""AlertAnalysis events: every one goes to the service's queue, which decides what to run.

One watching handler, no resource-changing ones: kopf writes nothing on the objects (no
progress or diff-base annotations, no finalizer) and a handler call takes microseconds, so a
backlog of thousands at start-up never holds a kopf worker per analysis. What to run, when and
how often is the queue's business (:mod:`oncallm.pipeline.queue`): new analyses, unfinished
ones after a restart, and re-analyses asked for with ``oncallm.io/reanalyze=true``.
"""

from __future__ import annotations

from typing import Any

import kopf

from oncallm.models.analysis import GROUP, PLURAL, VERSION


@kopf.on.event(GROUP, VERSION, PLURAL)
async def track(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.service.accept(type, dict(body))
