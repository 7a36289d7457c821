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


MAX_VALUE_CHARS = 256
"""Longer ConfigMap values (whole files) are never resolved as env vars: they are files."""

MAX_FILE_CHARS = 16_000
"""Of a file a ConfigMap volume mounts, what is kept: config files are small, and a setting a
program names when it dies at start sits in the first few hundred lines."""


async def read(scope: Scope) -> None:
    ns = scope.namespace
    names = sorted({c for p in scope.ctx.pods for c in p.config_maps})[:MAX_CONFIG_MAPS]
    data: dict[str, dict[str, str]] = {}
    keys: dict[str, set[str]] = {}
    for name in names:
        async with scope.guard(f"configmap {name}"):
            obj = await scope.get("ConfigMap", ns, name)
            if obj is None:
                scope.ctx.missing_objects.append(f"ConfigMap {ns}/{name}")
            else:
                data[name] = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
                keys[name] = set(data[name]) | {str(k) for k in obj.get("binaryData") or {}}
    resolve_env(scope.ctx, ns or "", data)
    mounted = {
        src.partition(" ")[2]
        for p in scope.ctx.pods
        for src in p.volume_sources.values()
        if src.startswith("ConfigMap ")
    }
    for name in sorted(mounted & set(data)):
        scope.ctx.mounted_config[name] = {k: v[:MAX_FILE_CHARS] for k, v in data[name].items()}
    for pod in scope.ctx.pods:
        for c in pod.containers:
            for key, name in c.config_sub_paths.items():
                missing = f"ConfigMap {ns}/{name} key {key}"
                if name in keys and key not in keys[name] and missing not in scope.ctx.missing_keys:
                    scope.ctx.missing_keys.append(missing)


def resolve_env(ctx: Context, namespace: str, data: dict[str, dict[str, str]]) -> None:
    """The env vars the containers take from ConfigMaps, as the kubelet would set them, and
    the keys they ask for that a ConfigMap lacks (an optional ref then leaves the var unset)."""
    for pod in ctx.pods:
        for c in pod.containers:
            for name in c.config_maps:
                if name not in data or any(r.name == name for r in c.key_refs):
                    continue
                for key, value in data[name].items():  # envFrom: every key
                    if len(value) <= MAX_VALUE_CHARS and "\n" not in value:
                        c.config_env.setdefault(key, value)
                        c.config_env_source.setdefault(key, name)
            for ref in c.key_refs:
                if ref.kind != "ConfigMap" or ref.name not in data:
                    continue
                if ref.key in data[ref.name]:
                    c.config_env[ref.env] = data[ref.name][ref.key]
                    c.config_env_source[ref.env] = ref.name
                else:
                    missing = f"ConfigMap {namespace}/{ref.name} key {ref.key}"
                    if missing not in ctx.missing_keys:
                        ctx.missing_keys.append(missing)


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
