"""The model client: OpenAI's own ``AsyncOpenAI``, with OnCallM's retries and breaker.

The openai client's built-in retries are off (``max_retries=0``); this module retries itself
so that every attempt is counted, bounded and visible: exponential backoff with jitter on 429,
5xx, timeouts and refused connections, honouring ``Retry-After`` (and OpenAI's
``retry-after-ms``) up to ``max_retry_after_seconds``. A call whose retries are exhausted
counts as one failure of the :class:`~oncallm.llm.breaker.CircuitBreaker`.

Structured output is negotiated per model (``auto``, the default): the first request tries
``json_schema``; an endpoint that refuses it (any 4xx or 5xx whose body names the response
format, the schema or the grammar: llama.cpp answers 500) is asked again at once with the next
form in :data:`NEGOTIATION_ORDER`, down to plain text from which the JSON object is taken. A
refusal is an answer, not an outage: it costs no retry and never counts against the breaker.
The form that worked is remembered per model, so the probe happens once.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import openai

from oncallm.llm import metrics
from oncallm.llm.breaker import CircuitBreaker
from oncallm.llm.budget import TokenLedger
from oncallm.llm.prompt import citing_at_least_one, diagnosis_json_schema, estimate_tokens
from oncallm.llm.redaction import Redactor
from oncallm.llm.settings import NO_KEY, LLMSettings

log = logging.getLogger(__name__)

FormatMode = Literal[
    "json_schema", "json_object_schema", "ollama_format", "guided_json", "json_object", "text"
]

#: What ``auto`` tries, in order: the most portable constraint first, no constraint last.
NEGOTIATION_ORDER: tuple[FormatMode, ...] = (
    "json_schema",
    "json_object_schema",
    "ollama_format",
    "guided_json",
    "text",
)

#: Words in an error body that make it a refusal of the response format rather than an
#: outage: a server that cannot build the grammar is up, and will answer a simpler request.
_FORMAT_REFUSAL = re.compile(
    r"response_format|json_schema|schema|grammar|guided|structured output|\bformat\b",
    re.IGNORECASE,
)


class ModelUnavailable(Exception):
    """The endpoint could not be reached or kept failing; a later upgrade makes sense."""


class ModelRequestError(Exception):
    """The endpoint refused the request (400, 401, 403, 404, ...); retrying will not help."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    """One answered chat completion."""

    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int
    completion_tokens: int
    latency_seconds: float
    response_format: FormatMode
    attempts: int
    finish_reason: str | None = None
    #: the assistant message as it goes back into the conversation
    message: dict[str, Any] = field(default_factory=dict)


class ModelClient:
    """An OpenAI-compatible endpoint with retries, a breaker and a token ledger."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        openai_client: openai.AsyncOpenAI | None = None,
        breaker: CircuitBreaker | None = None,
        ledger: TokenLedger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """Prefer :meth:`from_settings`; the keyword arguments are for tests."""
        self.settings = settings
        self.openai = openai_client or openai.AsyncOpenAI(
            api_key=settings.api_key or NO_KEY,
            base_url=settings.endpoint,
            timeout=settings.timeout_seconds,
            # Retries are ours: counted, bounded and visible in the breaker and metrics.
            max_retries=0,
            default_headers=dict(settings.extra_headers) or None,
        )
        self.breaker = breaker or CircuitBreaker(
            settings.breaker_failure_threshold, settings.breaker_cooldown_seconds, clock=clock
        )
        self.ledger = ledger or TokenLedger()
        self.redactor = Redactor(settings.redact_patterns)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        #: per model, the response format the endpoint accepted (``auto`` mode)
        self._formats: dict[str, FormatMode] = {}
        #: requests in flight to the endpoint (ONCALLM_LLM_CONCURRENCY)
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))

    @classmethod
    def from_settings(cls, settings: LLMSettings, **kwargs: Any) -> ModelClient | None:
        """The client for these settings, or None when no endpoint is configured."""
        if not settings.enabled:
            return None
        return cls(settings, **kwargs)

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    def format_mode(self, model: str) -> FormatMode:
        """The response format the next request for ``model`` will use."""
        mode = self.settings.response_format
        if mode != "auto":
            return mode
        return self._formats.get(model, NEGOTIATION_ORDER[0])

    @property
    def negotiated(self) -> dict[str, FormatMode]:
        """What ``auto`` learned so far, per model."""
        return dict(self._formats)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self.openai.close()

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One chat completion with structured output.

        ``schema`` is the reply's JSON schema (the Diagnosis schema by default);
        ``max_tokens`` overrides the reply cap. At most ``concurrency`` calls are in flight;
        the others wait here. Raises :class:`ModelUnavailable` when the breaker is open or
        retries ran out, and :class:`ModelRequestError` when the endpoint refused the request.
        """
        async with self._slots:
            return await self._guarded(
                messages,
                model=model,
                tools=tools,
                tool_choice=tool_choice,
                schema=schema or diagnosis_json_schema(),
                max_tokens=max_tokens or self.settings.max_output_tokens,
            )

    async def _guarded(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        schema: dict[str, Any],
        max_tokens: int,
    ) -> Completion:
        if not self.breaker.before_call():
            wait = self.breaker.seconds_until_retry()
            raise ModelUnavailable(
                f"the model endpoint {self.endpoint} failed repeatedly; the circuit breaker is "
                f"open for another {wait:.0f}s"
            )
        recorded = False
        try:
            completion = await self._complete(
                messages,
                model=model,
                tools=tools,
                tool_choice=tool_choice,
                schema=schema,
                max_tokens=max_tokens,
            )
            self.breaker.record_success()
            recorded = True
            return completion
        except ModelRequestError:
            # The endpoint answered: it is up, whatever it thought of the request.
            self.breaker.record_success()
            recorded = True
            raise
        except ModelUnavailable:
            self.breaker.record_failure()
            recorded = True
            raise
        finally:
            if not recorded:
                # Cancelled: proves the endpoint neither up nor down, but a half-open trial
                # must not stay claimed forever.
                self.breaker.release()

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        schema: dict[str, Any],
        max_tokens: int,
    ) -> Completion:
        mode = self.format_mode(model)
        attempt = 0
        started = self._clock()
        while True:
            request = self._request(
                messages,
                model=model,
                mode=mode,
                tools=tools,
                tool_choice=tool_choice,
                schema=schema,
                max_tokens=max_tokens,
            )
            retry_after: float | None = None
            try:
                response = await self.openai.chat.completions.create(**request)
            except openai.APIStatusError as exc:
                if exc.status_code != 429 and is_format_refusal(exc):
                    following = self._next_format(model, mode)
                    if following is not None:
                        log.warning(
                            "The model endpoint %s refused the response format %s for model %s "
                            "(HTTP %d: %s); trying %s. Set ONCALLM_LLM_RESPONSE_FORMAT=%s to "
                            "skip this probe.",
                            self.endpoint,
                            mode,
                            model,
                            exc.status_code,
                            _error_text(exc),
                            following,
                            following,
                        )
                        mode = following
                        continue
                    raise ModelRequestError(
                        f"the model endpoint refused the response format {mode} (HTTP "
                        f"{exc.status_code}: {_error_text(exc)}); set "
                        "ONCALLM_LLM_RESPONSE_FORMAT=auto to negotiate one it accepts",
                        exc.status_code,
                    ) from exc
                if exc.status_code != 429 and exc.status_code < 500:
                    raise ModelRequestError(_refusal(exc, model), exc.status_code) from exc
                reason = f"HTTP {exc.status_code}: {_error_text(exc)}"
                retry_after = parse_retry_after(exc.response.headers)
            except openai.APITimeoutError:
                reason = f"no answer within {self.settings.timeout_seconds:g}s"
            except openai.APIConnectionError as exc:
                reason = f"cannot connect ({exc.__cause__ or exc})"
            except openai.OpenAIError as exc:
                raise ModelRequestError(
                    f"the model endpoint {self.endpoint} sent an answer the openai client "
                    f"cannot read ({exc}); check it is an OpenAI-compatible chat API"
                ) from exc
            else:
                if self.settings.response_format == "auto" and self._formats.get(model) != mode:
                    self._formats[model] = mode
                    log.info(
                        "The model endpoint %s takes the response format %s for model %s",
                        self.endpoint,
                        mode,
                        model,
                    )
                return self._completion(
                    response, mode, attempt + 1, self._clock() - started, messages
                )
            if attempt >= self.settings.max_retries:
                raise ModelUnavailable(
                    f"the model endpoint {self.endpoint} failed {attempt + 1} time(s), last: "
                    f"{reason}"
                )
            if retry_after is not None and retry_after > self.settings.max_retry_after_seconds:
                raise ModelUnavailable(
                    f"the model endpoint {self.endpoint} asked to wait {retry_after:g}s "
                    f"(more than ONCALLM_LLM_MAX_RETRY_AFTER_SECONDS="
                    f"{self.settings.max_retry_after_seconds:g}); not waiting"
                )
            delay = self.backoff(attempt)
            if retry_after is not None:
                delay = max(delay, retry_after)
            log.info("Model call failed (%s); retry %d in %.2fs", reason, attempt + 1, delay)
            await self._sleep(delay)
            attempt += 1

    def _next_format(self, model: str, refused: FormatMode) -> FormatMode | None:
        """The form to try after ``refused`` (``auto`` only), remembered for ``model``."""
        if self.settings.response_format != "auto" or refused not in NEGOTIATION_ORDER:
            return None
        index = NEGOTIATION_ORDER.index(refused)
        if index + 1 >= len(NEGOTIATION_ORDER):
            return None
        following = NEGOTIATION_ORDER[index + 1]
        self._formats[model] = following
        return following

    def backoff(self, attempt: int) -> float:
        """The wait before retry ``attempt + 1``: base * 2^attempt, capped, with jitter.

        "Equal jitter": half the delay fixed, half random, so retries spread out but never
        come back much sooner than planned.
        """
        delay = min(
            self.settings.backoff_cap_seconds, self.settings.backoff_base_seconds * 2**attempt
        )
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _request(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        mode: FormatMode,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        schema: dict[str, Any],
        max_tokens: int,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "messages": messages}
        if mode in ("json_object_schema", "ollama_format", "guided_json"):
            schema = citing_at_least_one(schema)
        if mode == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "diagnosis", "strict": True, "schema": schema},
            }
        elif mode == "json_object_schema":
            # llama.cpp's server: JSON mode constrained by a schema it turns into a grammar
            request["response_format"] = {"type": "json_object", "schema": schema}
        elif mode == "ollama_format":
            request["extra_body"] = {"format": schema}
        elif mode == "guided_json":
            request["extra_body"] = {"guided_json": schema}
        elif mode == "json_object":
            request["response_format"] = {"type": "json_object"}
        request[self.settings.max_tokens_field] = max_tokens
        if self.settings.temperature is not None:
            request["temperature"] = self.settings.temperature
        if tools:
            request["tools"] = tools
            if tool_choice:
                request["tool_choice"] = tool_choice
        return request

    def _completion(
        self,
        response: Any,
        mode: FormatMode,
        attempts: int,
        latency: float,
        messages: list[dict[str, Any]],
    ) -> Completion:
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        content = message.content if message is not None else None
        calls: list[ToolCall] = []
        for call in (message.tool_calls or []) if message is not None else []:
            function = getattr(call, "function", None)
            if function is not None:
                calls.append(ToolCall(call.id, function.name, function.arguments or "{}"))
        usage = response.usage
        if usage is not None:
            prompt_tokens = usage.prompt_tokens or 0
            completion_tokens = usage.completion_tokens or 0
        else:
            # Some servers send no usage; estimate so budgets still hold.
            prompt_tokens = sum(estimate_tokens(str(m.get("content") or "")) for m in messages)
            completion_tokens = estimate_tokens(content or "")
        metrics.TOKENS.labels(kind="prompt").inc(prompt_tokens)
        metrics.TOKENS.labels(kind="completion").inc(completion_tokens)
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            assistant["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        return Completion(
            content=content,
            tool_calls=calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_seconds=latency,
            response_format=mode,
            attempts=attempts,
            finish_reason=choice.finish_reason if choice is not None else None,
            message=assistant,
        )


def parse_retry_after(headers: Any, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Fractional seconds are accepted, as the openai client does. None when absent or unusable.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_format_refusal(exc: openai.APIStatusError) -> bool:
    """True when an error answer names the response format, the schema or the grammar.

    Such an answer (a 400, a 422, or llama.cpp's 500 to ``json_schema``) says the endpoint is
    up and refuses this form of request; a simpler form may work. Anything else is an outage
    or a refusal of the request as a whole.
    """
    texts = [_error_text(exc)]
    if isinstance(exc.body, dict):
        error = exc.body.get("error")
        if isinstance(error, dict) and error.get("param"):
            texts.append(str(error["param"]))
    try:
        texts.append(exc.response.text[:2000])
    except Exception:  # a streamed or closed body: the message is enough
        pass
    return any(_FORMAT_REFUSAL.search(t) for t in texts)


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return str(exc)[:300]


def _refusal(exc: openai.APIStatusError, model: str) -> str:
    hint = {
        401: "check the API key (ONCALLM_LLM_API_KEY or ONCALLM_LLM_API_KEY_FILE)",
        403: "check the key may use this model and endpoint",
        404: f"check the model name {model!r} (ONCALLM_LLM_MODEL or the policy's "
        "spec.llm.model) and ONCALLM_LLM_BASE_URL (it usually ends in /v1)",
    }.get(exc.status_code, "check ONCALLM_LLM_BASE_URL points at an OpenAI-compatible API")
    return (
        f"the model endpoint refused the request (HTTP {exc.status_code}: "
        f"{_error_text(exc)}); {hint}"
    )
