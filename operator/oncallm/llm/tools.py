"""Read-only tools a ``deep`` analysis may call: logs, describe, events, PromQL.

The operator implements :class:`ToolBackend` against the cluster and Prometheus; this module
declares the tools to the model, checks the model's arguments, runs the calls, and turns each
result into an evidence item (``tool/1``, ``tool/2``, ...) that is redacted, cut to size and
delimited as data exactly like the gathered evidence, so the model may cite it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from oncallm.llm.client import ToolCall
from oncallm.llm.prompt import CUT_MARK, data_block, evidence_line
from oncallm.llm.redaction import Redactor
from oncallm.models.analysis import EvidenceRef, EvidenceSource


class ToolBackend(Protocol):
    """Read-only look-ups the operator provides for deep analyses. Each returns plain text.

    Raise any exception for a look-up that fails; its message (redacted) goes to the model.
    """

    async def pod_logs(
        self, namespace: str, pod: str, container: str | None, previous: bool
    ) -> str:
        """A container's recent log lines (``previous``: the last terminated instance)."""
        ...

    async def describe(self, kind: str, namespace: str | None, name: str) -> str:
        """An object's spec and status as text, like ``kubectl describe``. Never a Secret."""
        ...

    async def namespace_events(self, namespace: str) -> str:
        """Recent events of a namespace, newest last."""
        ...

    async def promql(self, query: str) -> str:
        """An instant PromQL query's result as text."""
        ...


_NAME = {"type": "string", "description": "a Kubernetes object name"}
_NAMESPACE = {"type": "string", "description": "the namespace"}

#: The tools as declared to the model (OpenAI function tools).
TOOL_DEFINITIONS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "pod_logs",
            "description": "Recent log lines of a pod's container.",
            "parameters": {
                "type": "object",
                "properties": {
                    "namespace": _NAMESPACE,
                    "pod": _NAME,
                    "container": {"type": "string", "description": "container name, or ''"},
                    "previous": {
                        "type": "boolean",
                        "description": "true for the last terminated instance (after a crash)",
                    },
                },
                "required": ["namespace", "pod", "container", "previous"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "describe",
            "description": "An object's spec and status, like kubectl describe (not Secrets).",
            "parameters": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "description": "e.g. Pod, Deployment, Node"},
                    "namespace": {
                        "type": "string",
                        "description": "the namespace, or '' for cluster-scoped kinds",
                    },
                    "name": _NAME,
                },
                "required": ["kind", "namespace", "name"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "namespace_events",
            "description": "Recent events of a namespace.",
            "parameters": {
                "type": "object",
                "properties": {"namespace": _NAMESPACE},
                "required": ["namespace"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "promql",
            "description": "An instant Prometheus query, e.g. "
            'rate(container_cpu_cfs_throttled_periods_total{namespace="shop"}[5m]).',
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    },
]

# RFC 1123 names; kinds are CamelCase words. Anything else is refused before the backend.
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
_SECRET_KINDS = {"secret", "secrets"}
_MAX_QUERY_CHARS = 2000

_KIND_SOURCE = {
    "pod": EvidenceSource.POD_STATUS,
    "node": EvidenceSource.NODE,
    "persistentvolumeclaim": EvidenceSource.PVC,
    "pvc": EvidenceSource.PVC,
    "service": EvidenceSource.SERVICE,
    "resourcequota": EvidenceSource.QUOTA,
    "horizontalpodautoscaler": EvidenceSource.HPA,
    "hpa": EvidenceSource.HPA,
    "networkpolicy": EvidenceSource.NETWORK_POLICY,
}


class ToolArgumentError(ValueError):
    """The model called a tool with arguments that cannot be used."""


@dataclass
class ToolResult:
    """One executed tool call: the message for the model and, if it worked, the evidence."""

    call: ToolCall
    content: str
    evidence: EvidenceRef | None
    redactions: int = 0
    error: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The ``tool`` message answering the call."""
        return {"role": "tool", "tool_call_id": self.call.id, "content": self.content}


class ToolRunner:
    """Runs the model's tool calls against a backend; numbers results ``tool/1``, ..."""

    def __init__(
        self, backend: ToolBackend, redactor: Redactor, nonce: str, *, max_chars: int
    ) -> None:
        self.backend = backend
        self.redactor = redactor
        self.nonce = nonce
        self.max_chars = max_chars
        self.calls = 0
        self._next_id = 1

    def refuse(self, call: ToolCall, reason: str) -> ToolResult:
        """Answer a call without running it."""
        return ToolResult(call, f"Not run: {reason}", None, error=reason)

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call; failures become an error message for the model, never an exception."""
        self.calls += 1
        try:
            args = _arguments(call)
            text, source, obj = await self._dispatch(call.name, args)
        except ToolArgumentError as exc:
            return self.refuse(call, str(exc))
        except Exception as exc:  # the backend's failure is the model's information
            red = self.redactor.redact(f"{type(exc).__name__}: {exc}")
            return ToolResult(
                call, f"The look-up failed: {red.text[:500]}", None, red.count, error=red.text
            )
        red = self.redactor.redact(text)
        excerpt = red.text
        if len(excerpt) > self.max_chars:
            # Keep the end: the newest log lines and the last events matter most.
            excerpt = CUT_MARK.strip() + " " + excerpt[-self.max_chars :]
        ref = EvidenceRef(
            id=f"tool/{self._next_id}",
            source=source,
            object=self.redactor.redact(obj).text,
            excerpt=excerpt,
        )
        self._next_id += 1
        content = (
            f"Result of {call.name}, evidence id {json.dumps(ref.id)} (data):\n"
            f"{data_block(self.nonce, [evidence_line(ref)])}"
        )
        return ToolResult(call, content, ref, red.count)

    async def _dispatch(self, name: str, args: dict[str, Any]) -> tuple[str, EvidenceSource, str]:
        if name == "pod_logs":
            namespace = _name(args, "namespace")
            pod = _name(args, "pod")
            container = str(args.get("container") or "") or None
            if container is not None and not _DNS_NAME.match(container):
                raise ToolArgumentError(f"container {container!r} is not a container name")
            previous = bool(args.get("previous", False))
            text = await self.backend.pod_logs(namespace, pod, container, previous)
            suffix = f" ({container})" if container else ""
            return text, EvidenceSource.LOG, f"pod/{namespace}/{pod}{suffix}"
        if name == "describe":
            kind = str(args.get("kind") or "")
            if not _KIND.match(kind):
                raise ToolArgumentError(f"kind {kind!r} is not a Kubernetes kind")
            if kind.lower() in _SECRET_KINDS:
                raise ToolArgumentError("Secrets are never described; their names are enough")
            namespace_arg = str(args.get("namespace") or "")
            ns = _name({"namespace": namespace_arg}, "namespace") if namespace_arg else None
            obj_name = _name(args, "name")
            text = await self.backend.describe(kind, ns, obj_name)
            source = _KIND_SOURCE.get(kind.lower(), EvidenceSource.WORKLOAD)
            where = f"{ns}/" if ns else ""
            return text, source, f"{kind.lower()}/{where}{obj_name}"
        if name == "namespace_events":
            namespace = _name(args, "namespace")
            text = await self.backend.namespace_events(namespace)
            return text, EvidenceSource.EVENT, f"namespace/{namespace}"
        if name == "promql":
            query = str(args.get("query") or "").strip()
            if not query or len(query) > _MAX_QUERY_CHARS:
                raise ToolArgumentError(f"query must be 1 to {_MAX_QUERY_CHARS} characters")
            text = await self.backend.promql(query)
            return text, EvidenceSource.METRIC, f"promql/{query[:200]}"
        raise ToolArgumentError(
            f"there is no tool {name!r}; the tools are "
            + ", ".join(t["function"]["name"] for t in TOOL_DEFINITIONS)
        )


def _arguments(call: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"the arguments are not JSON ({exc.msg})") from None
    if not isinstance(args, dict):
        raise ToolArgumentError("the arguments must be a JSON object")
    return args


def _name(args: dict[str, Any], key: str) -> str:
    value = str(args.get(key) or "")
    if not _DNS_NAME.match(value):
        raise ToolArgumentError(f"{key} {value!r} is not a Kubernetes name")
    return value
