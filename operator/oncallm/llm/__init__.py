"""Analysis by a language model through any OpenAI-compatible endpoint.

The operator builds one :class:`ModelClient` at startup (``ModelClient.from_settings(
LLMSettings.from_env())``, None when no endpoint is configured) and calls
:func:`analyse_with_model` after the rules. Modules:

- ``settings``: every tunable, from ``ONCALLM_LLM_...`` environment variables.
- ``redaction``: secrets out of every text before it leaves the cluster.
- ``prompt``: instructions, hints and evidence as delimited data, within a token budget.
- ``client``: the openai client with bounded retries, Retry-After and a circuit breaker.
- ``breaker``, ``budget``: the circuit breaker and the daily token ledger.
- ``tools``: read-only tools for deep analyses, and the backend the operator implements.
- ``analyse``: the entry point; validation, grounding, never worse than the rules.
- ``metrics``: Prometheus counters and histogram.
"""

from oncallm.llm.analyse import ModelOutcome, analyse_with_model, ground, parse_diagnosis
from oncallm.llm.breaker import BreakerState, CircuitBreaker
from oncallm.llm.budget import TokenLedger
from oncallm.llm.client import ModelClient, ModelRequestError, ModelUnavailable
from oncallm.llm.prompt import PromptStats, build_prompt, estimate_tokens
from oncallm.llm.redaction import Redacted, Redactor, redact
from oncallm.llm.settings import LLMSettings, SettingsError
from oncallm.llm.tools import TOOL_DEFINITIONS, ToolBackend

__all__ = [
    "TOOL_DEFINITIONS",
    "BreakerState",
    "CircuitBreaker",
    "LLMSettings",
    "ModelClient",
    "ModelOutcome",
    "ModelRequestError",
    "ModelUnavailable",
    "PromptStats",
    "Redacted",
    "Redactor",
    "SettingsError",
    "TokenLedger",
    "ToolBackend",
    "analyse_with_model",
    "build_prompt",
    "estimate_tokens",
    "ground",
    "parse_diagnosis",
    "redact",
]
