"""AnalysisPolicy handlers: keep the operator's view of policies current."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from oncallm.models.analysis import GROUP, VERSION
from oncallm.models.policy import AnalysisPolicy


@kopf.on.event(GROUP, VERSION, "analysispolicies")
def track_policy(
    type: str,
    body: kopf.Body,
    name: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    service = memo.service
    if type == "DELETED":
        service.drop_policy(name)
        return
    try:
        policy = AnalysisPolicy.model_validate(dict(body))
    except ValidationError as err:
        service.drop_policy(name)
        logger.warning("AnalysisPolicy %s is ignored until it is fixed: %s", name, err)
        return
    service.set_policy(policy)
