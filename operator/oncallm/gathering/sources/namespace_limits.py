"""The namespace's ResourceQuotas and LimitRanges.

Evidence: ``quota/<name>`` (used/hard per resource, which are at the limit) and
``limitrange/<name>`` (its limits).
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, LimitRangeSnapshot, QuotaSnapshot
from oncallm.models.quantity import parse_quantity


def quota_id(name: str) -> str:
    """``quota/<name>``: one ResourceQuota."""
    return f"quota/{name}"


def limit_range_id(name: str) -> str:
    """``limitrange/<name>``: one LimitRange."""
    return f"limitrange/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    if not ns:
        return
    async with scope.guard("resourcequotas"):
        scope.ctx.quotas = [quota_snapshot(q) for q in await scope.reader.list("ResourceQuota", ns)]
    async with scope.guard("limitranges"):
        scope.ctx.limit_ranges = [
            limit_range_snapshot(lr) for lr in await scope.reader.list("LimitRange", ns)
        ]


def quota_snapshot(quota: Obj) -> QuotaSnapshot:
    status = quota.get("status") or {}
    hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
    return QuotaSnapshot(
        name=str(meta(quota).get("name", "")),
        namespace=str(meta(quota).get("namespace", "")),
        hard={k: str(v) for k, v in hard.items()},
        used={k: str(v) for k, v in (status.get("used") or {}).items()},
    )


def limit_range_snapshot(lr: Obj) -> LimitRangeSnapshot:
    limits = []
    for item in (lr.get("spec") or {}).get("limits") or []:
        parts = [str(item.get("type", ""))]
        for key in ("max", "min", "default", "defaultRequest"):
            if item.get(key):
                parts.append(f"{key} " + ",".join(f"{k}={v}" for k, v in item[key].items()))
        limits.append(" ".join(parts))
    return LimitRangeSnapshot(
        name=str(meta(lr).get("name", "")),
        namespace=str(meta(lr).get("namespace", "")),
        limits=limits,
    )


def quota_full_resources(quota: QuotaSnapshot) -> list[str]:
    """Resources whose use has reached the hard limit."""
    full = []
    for res, hard in quota.hard.items():
        used = quota.used.get(res)
        if used is None:
            continue
        h, u = parse_quantity(hard), parse_quantity(used)
        if h is not None and u is not None and u >= h:
            full.append(res)
    return sorted(full)


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for quota in ctx.quotas:
        full = quota_full_resources(quota)
        usage = ", ".join(
            f"{r} {quota.used.get(r, '0')}/{hard}" for r, hard in sorted(quota.hard.items())
        )
        text = f"used/hard: {usage}" + (f"; at the limit: {', '.join(full)}" if full else "")
        out.add(
            Tier.OBJECT_BAD if full else Tier.BACKGROUND,
            quota_id(quota.name),
            EvidenceSource.QUOTA,
            f"resourcequota/{quota.namespace}/{quota.name}",
            text,
        )
    for lr in ctx.limit_ranges:
        out.add(
            Tier.BACKGROUND,
            limit_range_id(lr.name),
            EvidenceSource.QUOTA,
            f"limitrange/{lr.namespace}/{lr.name}",
            "; ".join(lr.limits) or "no limits",
        )


SOURCE = Source(
    "namespace_limits", Stage.AROUND, read, evidence, resources=("resourcequotas", "limitranges")
)
