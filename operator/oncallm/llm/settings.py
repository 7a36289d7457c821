"""How OnCallM talks to a language model: every tunable, its default, and why.

Any endpoint that speaks OpenAI's chat-completions API works: OpenAI, Azure OpenAI (its
``/openai/v1`` base URL), vLLM, Ollama, LiteLLM, llama.cpp's server. Settings come from
environment variables (``ONCALLM_LLM_...``) through :meth:`LLMSettings.from_env`; with neither
an API key nor a base URL the model path is off and analyses use the built-in rules only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

#: How the reply is constrained to the Diagnosis schema; ``auto`` negotiates (see client.py).
ResponseFormatMode = Literal[
    "auto",
    "json_schema",
    "json_object_schema",
    "ollama_format",
    "guided_json",
    "json_object",
    "text",
]
RESPONSE_FORMATS: tuple[str, ...] = (
    "auto",
    "json_schema",
    "json_object_schema",
    "ollama_format",
    "guided_json",
    "json_object",
    "text",
)

#: Where OpenAI itself answers; used when a key is set but no base URL.
OPENAI_BASE_URL = "https://api.openai.com/v1"

#: A placeholder key for local endpoints (vLLM, Ollama) that do not check one; the openai
#: client refuses to start without some key.
NO_KEY = "not-needed"


class SettingsError(ValueError):
    """An environment variable holds a value OnCallM cannot use."""


@dataclass(frozen=True)
class LLMSettings:
    """The model endpoint and how OnCallM uses it. Read with :meth:`from_env`."""

    api_key: str | None = None
    """``ONCALLM_LLM_API_KEY``, else ``OPENAI_API_KEY``, else the file named by
    ``ONCALLM_LLM_API_KEY_FILE`` (a mounted Secret, so the key never sits in the pod spec)."""

    base_url: str | None = None
    """``ONCALLM_LLM_BASE_URL``: the OpenAI-compatible endpoint, e.g.
    ``http://vllm.models:8000/v1`` or ``http://ollama:11434/v1``. Unset with a key set means
    OpenAI itself."""

    model: str = "gpt-4o-mini"
    """``ONCALLM_LLM_MODEL``: the model used when a policy names none
    (``spec.llm.model``). A small, cheap model is enough: the evidence is already gathered."""

    timeout_seconds: float = 60.0
    """``ONCALLM_LLM_TIMEOUT_SECONDS``: one request's timeout. Long enough for a deep analysis
    on a slow self-hosted model, short enough that a hung endpoint does not hold a worker."""

    max_retries: int = 2
    """``ONCALLM_LLM_MAX_RETRIES``: retries after a 429, a 5xx, a timeout or a refused
    connection. Few, because the rules' result is ready and a later upgrade is possible."""

    backoff_base_seconds: float = 1.0
    """``ONCALLM_LLM_BACKOFF_BASE_SECONDS``: the first retry waits about this long, doubling
    each time (with jitter, so many analyses do not retry in step)."""

    backoff_cap_seconds: float = 20.0
    """``ONCALLM_LLM_BACKOFF_CAP_SECONDS``: no retry waits longer than this on its own
    schedule."""

    max_retry_after_seconds: float = 30.0
    """``ONCALLM_LLM_MAX_RETRY_AFTER_SECONDS``: a ``Retry-After`` longer than this is not
    waited for; the call fails at once and the analysis is marked for a later upgrade."""

    breaker_failure_threshold: int = 5
    """``ONCALLM_LLM_BREAKER_FAILURES``: consecutive failed calls (retries exhausted) that open
    the circuit breaker; while open, analyses finish at once with the rules."""

    breaker_cooldown_seconds: float = 60.0
    """``ONCALLM_LLM_BREAKER_COOLDOWN_SECONDS``: how long the breaker stays open before one
    trial call (half-open) checks whether the endpoint is back."""

    response_format: ResponseFormatMode = "auto"
    """``ONCALLM_LLM_RESPONSE_FORMAT``: how the reply is held to the schema. ``auto`` learns
    it per model: ``json_schema`` (OpenAI, vLLM, Ollama), then ``json_object_schema``
    (``json_object`` with a ``schema``: llama.cpp), ``ollama_format`` (Ollama's ``format``),
    ``guided_json`` (vLLM's guided decoding), then ``text`` (no constraint; the JSON object is
    taken out of the reply). The endpoint refusing one (any 4xx or 5xx naming the response
    format, the schema or the grammar) moves to the next; the outcome is remembered. Set one
    of them to skip the probe; ``json_object`` (JSON mode without a schema) only by hand."""

    max_output_tokens: int = 1500
    """``ONCALLM_LLM_MAX_OUTPUT_TOKENS``: the reply's token cap; a diagnosis is a few hundred
    tokens, so this only stops a runaway model. A reply cut at the cap (``finish_reason``
    ``length``) is asked for once more under half the cap, in the short form (the deciding
    fields only), then dropped."""

    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    """``ONCALLM_LLM_MAX_TOKENS_FIELD``: the request field carrying the cap. OpenAI's reasoning
    models need ``max_completion_tokens``; most self-hosted servers know ``max_tokens``."""

    temperature: float | None = 0.0
    """``ONCALLM_LLM_TEMPERATURE``: 0 for repeatable diagnoses; ``none`` leaves it out for
    models that refuse the field."""

    redact_patterns: tuple[str, ...] = ()
    """``ONCALLM_REDACT_PATTERNS``: extra regular expressions to redact, one per line (a YAML
    block scalar in the Deployment). A group named ``secret`` limits the redaction to it."""

    prompt_tokens_quick: int = 2000
    """``ONCALLM_LLM_PROMPT_TOKENS_QUICK``: the prompt budget of a ``quick`` analysis: the
    alert, the rules' hints and the few most telling evidence items."""

    prompt_tokens_standard: int = 6000
    """``ONCALLM_LLM_PROMPT_TOKENS_STANDARD``: the prompt budget of a ``standard`` analysis;
    fits the usual pod status, events and a log tail."""

    prompt_tokens_deep: int = 16000
    """``ONCALLM_LLM_PROMPT_TOKENS_DEEP``: the prompt budget of a ``deep`` analysis (tool
    results come on top, each cut to ``max_tool_result_chars``)."""

    confident_rules_threshold: float = 0.6
    """``ONCALLM_LLM_CONFIDENT_RULES``: a rules' result at least this confident is kept when
    the model answers ``unknown`` (never worse than the rules)."""

    max_tool_result_chars: int = 6000
    """``ONCALLM_LLM_MAX_TOOL_RESULT_CHARS``: a tool result (deep analyses) is cut to this
    many characters, so one huge log cannot fill the context window."""

    concurrency: int = 4
    """``ONCALLM_LLM_CONCURRENCY``: requests in flight to the endpoint at once; the others
    wait their turn. A self-hosted server (llama.cpp, Ollama on one GPU) serves one request
    at a time, so set 1 there; a hosted API takes more."""

    max_transcript_bytes: int = 256 * 1024
    """``ONCALLM_LLM_MAX_TRANSCRIPT_BYTES``: the redacted prompt and the raw replies of an
    analysis, kept in the ConfigMap ``<analysis>-model`` for the web view, are cut to this
    (a ConfigMap holds at most 1 MiB)."""

    max_tool_calls_per_round: int = 4
    """``ONCALLM_LLM_MAX_TOOL_CALLS_PER_ROUND``: tool calls executed per round; more are
    answered with a refusal, which keeps a deep analysis bounded."""

    extra_headers: Mapping[str, str] = field(default_factory=dict)
    """Headers sent with every request (not from the environment; for gateways in tests)."""

    def prompt_budget(self, depth: str) -> int:
        """The prompt token budget of a depth (``quick``, ``standard`` or ``deep``)."""
        return {
            "quick": self.prompt_tokens_quick,
            "standard": self.prompt_tokens_standard,
            "deep": self.prompt_tokens_deep,
        }.get(str(depth), self.prompt_tokens_standard)

    @property
    def enabled(self) -> bool:
        """True when a key or a base URL is configured: the model path is on."""
        return bool(self.api_key) or bool(self.base_url)

    @property
    def endpoint(self) -> str:
        """The base URL requests go to."""
        return (self.base_url or OPENAI_BASE_URL).rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LLMSettings:
        """Settings from environment variables (``os.environ`` unless ``env`` is given).

        Raises :class:`SettingsError` naming the variable when a value does not parse.
        """
        env = os.environ if env is None else env
        defaults = cls()
        api_key = _api_key(env)
        return cls(
            api_key=api_key,
            base_url=env.get("ONCALLM_LLM_BASE_URL") or None,
            model=env.get("ONCALLM_LLM_MODEL") or defaults.model,
            timeout_seconds=_float(env, "ONCALLM_LLM_TIMEOUT_SECONDS", defaults.timeout_seconds),
            max_retries=_int(env, "ONCALLM_LLM_MAX_RETRIES", defaults.max_retries),
            backoff_base_seconds=_float(
                env, "ONCALLM_LLM_BACKOFF_BASE_SECONDS", defaults.backoff_base_seconds
            ),
            backoff_cap_seconds=_float(
                env, "ONCALLM_LLM_BACKOFF_CAP_SECONDS", defaults.backoff_cap_seconds
            ),
            max_retry_after_seconds=_float(
                env, "ONCALLM_LLM_MAX_RETRY_AFTER_SECONDS", defaults.max_retry_after_seconds
            ),
            breaker_failure_threshold=_int(
                env, "ONCALLM_LLM_BREAKER_FAILURES", defaults.breaker_failure_threshold
            ),
            breaker_cooldown_seconds=_float(
                env, "ONCALLM_LLM_BREAKER_COOLDOWN_SECONDS", defaults.breaker_cooldown_seconds
            ),
            response_format=_choice(
                env,
                "ONCALLM_LLM_RESPONSE_FORMAT",
                RESPONSE_FORMATS,
                defaults.response_format,
            ),  # type: ignore[arg-type]
            max_output_tokens=_int(
                env, "ONCALLM_LLM_MAX_OUTPUT_TOKENS", defaults.max_output_tokens
            ),
            max_tokens_field=_choice(
                env,
                "ONCALLM_LLM_MAX_TOKENS_FIELD",
                ("max_tokens", "max_completion_tokens"),
                defaults.max_tokens_field,
            ),  # type: ignore[arg-type]
            temperature=_temperature(env, defaults.temperature),
            redact_patterns=parse_patterns(env.get("ONCALLM_REDACT_PATTERNS", "")),
            prompt_tokens_quick=_int(
                env, "ONCALLM_LLM_PROMPT_TOKENS_QUICK", defaults.prompt_tokens_quick
            ),
            prompt_tokens_standard=_int(
                env, "ONCALLM_LLM_PROMPT_TOKENS_STANDARD", defaults.prompt_tokens_standard
            ),
            prompt_tokens_deep=_int(
                env, "ONCALLM_LLM_PROMPT_TOKENS_DEEP", defaults.prompt_tokens_deep
            ),
            confident_rules_threshold=_float(
                env, "ONCALLM_LLM_CONFIDENT_RULES", defaults.confident_rules_threshold
            ),
            max_tool_result_chars=_int(
                env, "ONCALLM_LLM_MAX_TOOL_RESULT_CHARS", defaults.max_tool_result_chars
            ),
            max_tool_calls_per_round=_int(
                env, "ONCALLM_LLM_MAX_TOOL_CALLS_PER_ROUND", defaults.max_tool_calls_per_round
            ),
            concurrency=max(1, _int(env, "ONCALLM_LLM_CONCURRENCY", defaults.concurrency)),
            max_transcript_bytes=_int(
                env, "ONCALLM_LLM_MAX_TRANSCRIPT_BYTES", defaults.max_transcript_bytes
            ),
        )

    def describe(self) -> dict[str, object]:
        """The settings for a startup log line, with the API key left out."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key":
                value = "(set)" if value else "(unset)"
            elif f.name == "extra_headers":
                value = sorted(value)
            out[f.name] = value
        return out


def parse_patterns(text: str) -> tuple[str, ...]:
    """Regular expressions, one per line; blank lines ignored. Raises SettingsError."""
    patterns = tuple(line.strip() for line in text.splitlines() if line.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError(
                f"ONCALLM_REDACT_PATTERNS: {pattern!r} is not a valid regular expression "
                f"({exc}); fix or remove that line"
            ) from exc
    return patterns


def _api_key(env: Mapping[str, str]) -> str | None:
    key = env.get("ONCALLM_LLM_API_KEY") or env.get("OPENAI_API_KEY")
    if key:
        return key.strip()
    path = env.get("ONCALLM_LLM_API_KEY_FILE")
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(
            f"ONCALLM_LLM_API_KEY_FILE: cannot read {path} ({exc.strerror}); check the Secret "
            "is mounted there, or unset the variable to run with the rules only"
        ) from exc
    return text or None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number; set e.g. {default}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative; set e.g. {default}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; set e.g. {default}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative; set e.g. {default}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _temperature(env: Mapping[str, str], default: float | None) -> float | None:
    raw = (env.get("ONCALLM_LLM_TEMPERATURE") or "").strip()
    if raw.lower() == "none":
        return None
    return _float(env, "ONCALLM_LLM_TEMPERATURE", 0.0) if raw else default
