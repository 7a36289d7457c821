"""The HorizontalPodAutoscalers that scale the workload (or the alerted one).

Evidence: ``hpa/<name>``: current, desired, min and max replicas, metrics, conditions.
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, conditions, controller_of, meta
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, HPASnapshot
from oncallm.models.policy import Depth


def hpa_id(name: str) -> str:
    """``hpa/<name>``: one HorizontalPodAutoscaler."""
    return f"hpa/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    if not ns:
        return
    wl, target = scope.ctx.workload, scope.target
    for hpa in await scope.reader.list("HorizontalPodAutoscaler", ns):
        s = hpa_snapshot(hpa)
        if (target.kind == "HorizontalPodAutoscaler" and s.name == target.name) or (
            wl and s.target_kind == wl.kind and s.target_name == wl.name
        ):
            scope.ctx.hpas.append(s)


def hpa_snapshot(hpa: Obj) -> HPASnapshot:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    metrics = []
    for m in status.get("currentMetrics") or []:
        res = m.get("resource") or {}
        current = res.get("current") or {}
        if res:
            value = current.get("averageUtilization", current.get("averageValue"))
            metrics.append(f"{res.get('name')} current {value}")
    for m in spec.get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if res:
            value = target.get("averageUtilization", target.get("averageValue"))
            metrics.append(f"{res.get('name')} target {value}")
    owner = controller_of(hpa)
    return HPASnapshot(
        name=str(meta(hpa).get("name", "")),
        namespace=str(meta(hpa).get("namespace", "")),
        target_kind=str(ref.get("kind", "")),
        target_name=str(ref.get("name", "")),
        min_replicas=spec.get("minReplicas"),
        max_replicas=int(spec.get("maxReplicas", 0) or 0),
        current_replicas=int(status.get("currentReplicas", 0) or 0),
        desired_replicas=int(status.get("desiredReplicas", 0) or 0),
        conditions=conditions(hpa),
        metrics=metrics,
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
    )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for hpa in ctx.hpas:
        conds = "; ".join(f"{c}={s} {r}: {m}".strip() for c, (s, r, m) in hpa.conditions.items())
        text = (
            f"{hpa.target_kind}/{hpa.target_name}: {hpa.current_replicas} current, "
            f"{hpa.desired_replicas} desired, min {hpa.min_replicas or 1}, max "
            f"{hpa.max_replicas}; metrics {', '.join(hpa.metrics) or '-'}; {conds}"
            + (f"; owned by {hpa.owner_kind} {hpa.owner_name}" if hpa.owner_kind else "")
        )
        limited = hpa.conditions.get("ScalingLimited", ("", "", ""))[0] == "True"
        at_max = hpa.max_replicas > 0 and hpa.current_replicas >= hpa.max_replicas
        out.add(
            Tier.OBJECT_BAD if limited or at_max else Tier.BACKGROUND,
            hpa_id(hpa.name),
            EvidenceSource.HPA,
            f"horizontalpodautoscaler/{hpa.namespace}/{hpa.name}",
            text,
        )


SOURCE = Source(
    "hpas",
    Stage.AROUND,
    read,
    evidence,
    depth=Depth.QUICK,
    resources=("horizontalpodautoscalers.autoscaling",),
)
