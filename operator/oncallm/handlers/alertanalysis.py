"""AlertAnalysis handlers: analyse new ones, resume after a restart, re-analyse on request."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from oncallm.models.analysis import GROUP, PLURAL, VERSION, AlertAnalysis
from oncallm.pipeline.service import REANALYZE_ANNOTATION, RetryLater


def parse(body: kopf.Body) -> AlertAnalysis:
    try:
        return AlertAnalysis.model_validate(dict(body))
    except ValidationError as err:
        raise kopf.PermanentError(
            f"AlertAnalysis {body.metadata.namespace}/{body.metadata.name} is malformed: {err}"
        ) from err


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def analyse(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await memo.service.analyse(parse(body), retry)
    except RetryLater as err:
        raise kopf.TemporaryError(str(err), delay=err.delay) from err


@kopf.on.update(GROUP, VERSION, PLURAL, annotations={REANALYZE_ANNOTATION: "true"})
async def reanalyse(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    analysis = parse(body)
    try:
        await memo.service.analyse(analysis, retry, force=True)
    except RetryLater as err:
        raise kopf.TemporaryError(str(err), delay=err.delay) from err
    await memo.service.clear_reanalyze(analysis)
