"""A local OpenAI-compatible server for tests: scripted replies, injected faults, recorded requests.

It speaks enough of the chat-completions API for the real ``openai.AsyncOpenAI`` client:
``POST /v1/chat/completions`` (``response_format`` json_schema and json_object, tool calls,
usage counts) and ``GET /v1/models``. Replies come from a queue (:meth:`FakeOpenAI.script`)
or from a function of the request (:attr:`FakeOpenAI.responder`). Faults: any status with any
headers (500, 503, 429 with ``Retry-After``), latency, malformed content, a reply cut at the
token cap (``finish_reason`` ``length``), refusing forms of structured output with any status
(:meth:`FakeOpenAI.refuse_format`: llama.cpp answers ``json_schema`` with a 500;
:attr:`FakeOpenAI.reject_json_schema` is the 400 of endpoints without schemas), and going down
and up (:meth:`FakeOpenAI.go_down`: new connections are refused, live ones are cut).

Every request is recorded (raw body, parsed JSON, headers, arrival time) in
:attr:`FakeOpenAI.requests` for assertions.

Use the ``openai_server`` fixture: import it into a test module
(``from tests.openai_server import openai_server``) or register this module as a plugin
(``pytest_plugins = ["tests.openai_server"]`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web

#: Token counts are estimated like OnCallM does: characters / 4.
CHARS_PER_TOKEN = 4


@dataclass
class Reply:
    """One scripted answer. ``status`` other than 200 sends ``error`` as an OpenAI error."""

    status: int = 200
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    #: seconds to wait before answering
    delay: float = 0.0
    #: (prompt_tokens, completion_tokens); estimated from the text when None
    usage: tuple[int, int] | None = None
    #: leave ``usage`` out of the response, as some servers do
    omit_usage: bool = False
    #: ``finish_reason`` of the choice; None means ``stop`` (``tool_calls`` with tool calls)
    finish_reason: str | None = None


def json_reply(obj: Any, **kwargs: Any) -> Reply:
    """A 200 whose content is ``obj`` as JSON."""
    return Reply(content=json.dumps(obj), **kwargs)


def text_reply(text: str, **kwargs: Any) -> Reply:
    """A 200 whose content is ``text`` as it is (e.g. not JSON at all)."""
    return Reply(content=text, **kwargs)


def tool_reply(*calls: tuple[str, dict[str, Any]], **kwargs: Any) -> Reply:
    """A 200 asking for tool calls: ``("pod_logs", {"namespace": ..., ...})``."""
    return Reply(tool_calls=list(calls), **kwargs)


def error_reply(status: int, message: str = "", **kwargs: Any) -> Reply:
    """An error status with an OpenAI-style error body."""
    return Reply(status=status, error=message or f"injected HTTP {status}", **kwargs)


def rate_limited(retry_after: str, header: str = "Retry-After") -> Reply:
    """A 429 with a ``Retry-After`` (or ``retry-after-ms``) header."""
    return error_reply(429, "Rate limit reached; slow down", headers={header: retry_after})


@dataclass
class Recorded:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: str
    json: Any
    #: time.monotonic() when it arrived
    at: float
    #: True when it arrived while the server was down (the connection was cut)
    refused: bool = False


Responder = Callable[[dict[str, Any]], Reply]


def output_format(body: dict[str, Any]) -> str:
    """Which form of structured output a request asks for, in OnCallM's names."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    if kind == "json_schema":
        return "json_schema"
    if kind == "json_object":
        return "json_object_schema" if "schema" in response_format else "json_object"
    if "format" in body:
        return "ollama_format"
    if "guided_json" in body:
        return "guided_json"
    return "text"


class FakeOpenAI:
    """The server. ``await start()``, use :attr:`base_url`, ``await stop()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.replies: deque[Reply] = deque()
        #: answers when the queue is empty
        self.responder: Responder | None = None
        self.requests: list[Recorded] = []
        #: forms of structured output (see :func:`output_format`) answered with an error
        self.refused_formats: dict[str, Reply] = {}
        #: added to every reply's delay
        self.latency = 0.0
        self.models = ["gpt-4o-mini", "llama3.1:8b"]
        self.down = False
        self._ids = itertools.count(1)
        self._app = web.Application()
        self._app.router.add_post("/v1/chat/completions", self._chat)
        self._app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(self._app, access_log=None)
        self._site: web.TCPSite | None = None
        self._changed = asyncio.Condition()

    @property
    def reject_json_schema(self) -> bool:
        """Answer ``json_schema`` with a 400, like endpoints without schemas."""
        return "json_schema" in self.refused_formats

    @reject_json_schema.setter
    def reject_json_schema(self, value: bool) -> None:
        if value:
            self.refuse_format(
                "json_schema",
                400,
                "response_format type 'json_schema' is not supported by this server",
            )
        else:
            self.refused_formats.pop("json_schema", None)

    def refuse_format(self, form: str, status: int = 500, message: str = "") -> None:
        """Answer requests asking for ``form`` (see :func:`output_format`) with ``status``."""
        self.refused_formats[form] = error_reply(
            status, message or f"test server: {form} is not supported"
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Listen on a free port."""
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, 0)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def go_down(self) -> None:
        """Refuse new connections and cut requests on kept-alive ones."""
        self.down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def go_up(self) -> None:
        """Listen again on the same port."""
        self.down = False
        if self._site is None:
            self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await self._site.start()

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        self.replies.extend(replies)

    @property
    def chat_requests(self) -> list[Recorded]:
        """Chat-completion requests that were answered (not cut while down)."""
        return [r for r in self.requests if r.path.endswith("/chat/completions") and not r.refused]

    def raw_bodies(self) -> str:
        """Every request body received, concatenated: what left the cluster."""
        return "\n".join(r.raw for r in self.requests)

    async def wait_for_requests(self, count: int, within: float = 2.0) -> list[Recorded]:
        """Wait until ``count`` requests have arrived (TimeoutError after ``within`` s)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)
        return self.requests

    async def _record(self, request: web.Request, refused: bool = False) -> Recorded:
        raw = await request.text()
        try:
            parsed = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            parsed = None
        rec = Recorded(
            request.method, request.path, dict(request.headers), raw, parsed, time.monotonic()
        )
        rec.refused = refused
        async with self._changed:
            self.requests.append(rec)
            self._changed.notify_all()
        return rec

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "test"}
                    for m in self.models
                ],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            await self._record(request, refused=True)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=503)
        rec = await self._record(request)
        body = rec.json if isinstance(rec.json, dict) else {}
        refusal = self.refused_formats.get(output_format(body))
        if refusal is not None:
            return _error(
                refusal.status,
                refusal.error,
                param="response_format" if refusal.status == 400 else None,
            )
        if self.replies:
            reply = self.replies.popleft()
        elif self.responder is not None:
            reply = self.responder(body)
        else:
            return _error(418, "test server: no scripted reply left for this request")
        delay = reply.delay + self.latency
        if delay:
            await asyncio.sleep(delay)
        if reply.status != 200:
            return _error(reply.status, reply.error, headers=reply.headers)
        return web.json_response(self._completion(body, reply), headers=reply.headers)

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        finish = reply.finish_reason or "stop"
        if reply.tool_calls:
            finish = "tool_calls"
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        if reply.usage is not None:
            prompt_tokens, completion_tokens = reply.usage
        else:
            prompt_tokens = len(json.dumps(body.get("messages", []))) // CHARS_PER_TOKEN
            completion_tokens = len(json.dumps(message)) // CHARS_PER_TOKEN
        out: dict[str, Any] = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if not reply.omit_usage:
            out["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return out


def _error(
    status: int, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": None}},
        status=status,
        headers=headers,
    )


@pytest_asyncio.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    """A running :class:`FakeOpenAI` on a free local port, stopped after the test."""
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
