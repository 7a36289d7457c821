"""Objects the pods reference that do not exist.

Reads each ConfigMap the pods mount or read by name (``get`` only; Secrets are never read:
a missing one shows in the pod's events and container status instead). The ``pvcs`` source
adds claims that do not exist to the same list.

Evidence: ``missing/<Kind ns/name>`` for each.
"""

from __future__ import annotations

from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context

#: ConfigMaps looked up per analysis.
MAX_CONFIG_MAPS = 10


def missing_id(name: str) -> str:
    """``missing/<name>``: a ConfigMap or Secret a pod references that does not exist."""
    return f"missing/{name}"


async def read(scope: Scope) -> None:
    ns = scope.namespace
    names = sorted({c for p in scope.ctx.pods for c in p.config_maps})[:MAX_CONFIG_MAPS]
    for name in names:
        async with scope.guard(f"configmap {name}"):
            if await scope.get("ConfigMap", ns, name) is None:
                scope.ctx.missing_objects.append(f"ConfigMap {ns}/{name}")


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for name in ctx.missing_objects:
        out.add(
            Tier.MISSING,
            missing_id(name),
            EvidenceSource.POD_STATUS,
            name,
            f"{name} is referenced by the pod but does not exist",
        )


SOURCE = Source("config_refs", Stage.AROUND, read, evidence, resources=("configmaps",))
