"""Read-only look-ups the model may make at depth ``deep`` (:class:`oncallm.llm.tools.ToolBackend`).

Everything goes through the same :class:`~oncallm.gathering.reader.KubeReader` as gathering,
so the model can read no more than OnCallM's RBAC allows; Secrets are refused here as well.
Every result is redacted and delimited as data by :mod:`oncallm.llm` before it is sent.
"""

from __future__ import annotations

import yaml

from oncallm.gathering.gather import MetricsSource
from oncallm.gathering.reader import KubeReader
from oncallm.kube.resources import RESOURCES

#: Lines of a log a tool call returns: a screenful, enough to see an error and its context.
TOOL_LOG_LINES = 100
#: Characters of any tool result; the prompt budget is the real bound, this keeps one call sane.
TOOL_RESULT_CHARS = 12_000
#: Events of a namespace a tool call returns, newest last.
TOOL_EVENTS = 50

_NOISY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


class KubeToolBackend:
    def __init__(self, reader: KubeReader, metrics: MetricsSource | None) -> None:
        self.reader = reader
        self.metrics = metrics

    async def pod_logs(
        self, namespace: str, pod: str, container: str | None, previous: bool
    ) -> str:
        if not container:
            obj = await self.reader.get("Pod", namespace, pod)
            if obj is None:
                raise LookupError(f"pod {namespace}/{pod} does not exist")
            container = obj["spec"]["containers"][0]["name"]
        text = await self.reader.logs(
            namespace, pod, container, previous=previous, tail_lines=TOOL_LOG_LINES
        )
        return text[-TOOL_RESULT_CHARS:] or "(empty log)"

    async def describe(self, kind: str, namespace: str | None, name: str) -> str:
        canonical = _kind(kind)
        if canonical == "Secret":
            raise PermissionError("OnCallM never reads Secrets")
        obj = await self.reader.get(canonical, namespace, name)
        if obj is None:
            where = f"{namespace}/" if namespace else ""
            raise LookupError(f"{canonical} {where}{name} does not exist")
        meta = obj.get("metadata") or {}
        meta.pop("managedFields", None)
        for key in _NOISY_ANNOTATIONS:
            (meta.get("annotations") or {}).pop(key, None)
        return yaml.safe_dump(obj, sort_keys=False)[:TOOL_RESULT_CHARS]

    async def namespace_events(self, namespace: str) -> str:
        events = await self.reader.list("Event", namespace)
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        lines = []
        for e in events[-TOOL_EVENTS:]:
            obj = e.get("involvedObject") or {}
            lines.append(
                f"{e.get('lastTimestamp') or e.get('eventTime')} {e.get('type')} {e.get('reason')} "
                f"{obj.get('kind')}/{obj.get('name')} x{e.get('count') or 1}: {e.get('message')}"
            )
        return "\n".join(lines)[-TOOL_RESULT_CHARS:] or "(no events)"

    async def promql(self, query: str) -> str:
        if self.metrics is None:
            raise LookupError("Prometheus is not configured (ONCALLM_PROMETHEUS_URL)")
        values = await self.metrics.query(query)
        if not values:
            return "(no series)"
        return "\n".join(f"{k} {v}" for k, v in values.items())[:TOOL_RESULT_CHARS]


def _kind(kind: str) -> str:
    wanted = kind.strip().lower().rstrip("s")
    for name, res in RESOURCES.items():
        if wanted in (name.lower(), res.plural.rstrip("s")):
            return name
    raise LookupError(f"OnCallM cannot look up objects of kind {kind!r}")
