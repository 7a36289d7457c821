"""A cluster in memory: a :class:`~oncallm.gathering.reader.KubeReader` over planted objects.

For unit tests of gathering and for evaluating scenarios offline (``oncallm eval --offline``),
where the same gathering code runs without an API server. Label selectors (equality terms)
and the field selectors gathering uses (``involvedObject.*``, ``spec.nodeName``,
``metadata.name``) behave as the API server's. Any kind can be read; with ``api_version``,
only objects whose ``apiVersion`` is of that group (and version, when given) match, and an
object written without ``apiVersion`` matches any.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from oncallm.gathering.fields import fields_match
from oncallm.gathering.reader import SourceError, split_api_version

Obj = dict[str, Any]


class MemoryReader:
    def __init__(
        self,
        objects: Iterable[Obj] = (),
        logs: dict[tuple[str, str, str, bool], str] | None = None,
        forbidden: set[str] | None = None,
    ) -> None:
        self.objects: list[Obj] = [copy.deepcopy(o) for o in objects]
        self._logs = dict(logs or {})
        #: kinds whose reads fail as forbidden, to test missing evidence
        self.forbidden = set(forbidden or ())

    def add(self, obj: Obj) -> None:
        self.objects.append(copy.deepcopy(obj))

    def add_log(
        self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False
    ) -> None:
        self._logs[(namespace, pod, container, previous)] = text

    def _check(self, kind: str) -> None:
        if kind in self.forbidden:
            raise SourceError(kind, f"forbidden: cannot list {kind} (test)")

    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> Obj | None:
        self._check(kind)
        for obj in self.objects:
            meta = obj.get("metadata") or {}
            if (
                _kind_matches(obj, kind, api_version)
                and meta.get("name") == name
                and (namespace is None or meta.get("namespace") in (namespace, None))
            ):
                return copy.deepcopy(obj)
        return None

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        api_version: str | None = None,
    ) -> list[Obj]:
        self._check(kind)
        out = []
        for obj in self.objects:
            meta = obj.get("metadata") or {}
            if not _kind_matches(obj, kind, api_version):
                continue
            if namespace is not None and meta.get("namespace") != namespace:
                continue
            if label_selector and not _labels_match(label_selector, meta.get("labels") or {}):
                continue
            if field_selector and not fields_match(field_selector, obj):
                continue
            out.append(copy.deepcopy(obj))
        # in the API server's order (etcd's keys: namespace, then name), so that what comes
        # first offline comes first on a cluster too
        out.sort(key=_storage_key)
        return out

    async def logs(
        self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int
    ) -> str:
        self._check("Pod/log")
        text = self._logs.get((namespace, pod, container, previous))
        if text is None:
            what = "previous terminated container" if previous else "container"
            raise SourceError(
                f"{'previous log' if previous else 'log'} {pod}/{container}",
                f'{what} "{container}" in pod "{pod}" not found',
            )
        lines = text.splitlines()
        return "\n".join(lines[-tail_lines:]) if tail_lines > 0 else ""


def _storage_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _kind_matches(obj: Obj, kind: str, api_version: str | None) -> bool:
    if obj.get("kind") != kind:
        return False
    if api_version is None or not obj.get("apiVersion"):
        return True
    group, version = split_api_version(api_version)
    have_group, have_version = split_api_version(str(obj["apiVersion"]))
    return group == have_group and version in (None, have_version)


def _labels_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True
