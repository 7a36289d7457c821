"""A volume that fills up (KubePersistentVolumeFillingUp): retention settings of its writers.

Data stores delete old data by a retention or clean-up setting (Kafka's ``log.retention.ms``,
Prometheus' ``retention``, Loki's ``retention_period``, Elasticsearch's ILM ``delete``,
logrotate's ``rotate``). A volume that only grows often has that setting turned off (``-1``,
``0``, ``unlimited``) in a ConfigMap the writer reads. Reads nothing unless the alert is about
a filling volume: then each ConfigMap of the pods that mount it (at most five).

Evidence: ``config/<configmap>/<key>`` for each setting that disables retention.
"""

from __future__ import annotations

import re

from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, RetentionSetting

FILLING_ALERTS = frozenset({"KubePersistentVolumeFillingUp", "KubePersistentVolumeInodesFillingUp"})
"""kube-prometheus-stack's alerts on a volume that will be full."""

MAX_CONFIG_MAPS = 5
"""ConfigMaps read per analysis: one GET each."""

_DISABLED = re.compile(
    r"^\s*(?P<key>[\w.\-]*(?:retention|retain|ttl|max[._-]?age|cleanup|clean[._-]?up|rotate|"
    r"delete[._-]?after|expire|prune)[\w.\-]*)\s*[=:]\s*['\"]?(?P<value>-1|0|unlimited|infinite|"
    r"infinity|never|none|false|off|disabled)['\"]?\s*(?:#.*)?$",
    re.IGNORECASE | re.MULTILINE,
)
"""``key = value`` or ``key: value`` turning retention off."""


def config_id(config_map: str, key: str) -> str:
    """``config/<configmap>/<key>``: a setting in a ConfigMap the pods read."""
    return f"config/{config_map}/{key}"


def disabled_settings(namespace: str, name: str, data: dict[str, str]) -> list[RetentionSetting]:
    found = []
    for file, text in sorted(data.items()):
        for m in _DISABLED.finditer(str(text)):
            line = str(text).count("\n", 0, m.start()) + 1
            found.append(
                RetentionSetting(
                    config_map=name,
                    namespace=namespace,
                    file=file,
                    key=m.group("key"),
                    value=m.group("value"),
                    line=line,
                )
            )
    return found


async def read(scope: Scope) -> None:
    if scope.alert.name not in FILLING_ALERTS:
        return
    seen: set[tuple[str, str]] = set()
    for pod in scope.ctx.pods:
        for name in pod.config_maps:
            if (pod.namespace, name) in seen or len(seen) >= MAX_CONFIG_MAPS:
                continue
            seen.add((pod.namespace, name))
            async with scope.guard(f"configmap {pod.namespace}/{name}"):
                cm = await scope.get("ConfigMap", pod.namespace, name)
                data = (cm or {}).get("data") or {}
                scope.ctx.retention_settings.extend(disabled_settings(pod.namespace, name, data))


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for s in ctx.retention_settings:
        out.add(
            Tier.OBJECT_BAD,
            config_id(s.config_map, s.key),
            EvidenceSource.WORKLOAD,
            f"configmap/{s.namespace}/{s.config_map}",
            f"{s.file} line {s.line}: {s.key}={s.value} (retention off: old data is never deleted)",
        )


SOURCE = Source("retention", Stage.LEADS, read, evidence, resources=("configmaps",))
