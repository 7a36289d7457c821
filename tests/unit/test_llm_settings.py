"""LLMSettings.from_env: where the key comes from, when the model path is off, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncallm.llm.client import ModelClient
from oncallm.llm.settings import OPENAI_BASE_URL, LLMSettings, SettingsError


def test_nothing_configured_means_no_model() -> None:
    settings = LLMSettings.from_env({})
    assert not settings.enabled
    assert ModelClient.from_settings(settings) is None


def test_oncallm_key_wins_over_openai_key_and_defaults_to_openai() -> None:
    settings = LLMSettings.from_env(
        {"ONCALLM_LLM_API_KEY": " sk-oncallm \n", "OPENAI_API_KEY": "sk-other"}
    )
    assert settings.api_key == "sk-oncallm"
    assert settings.enabled
    assert settings.endpoint == OPENAI_BASE_URL


def test_key_from_a_mounted_file(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-from-secret-volume\n")
    settings = LLMSettings.from_env({"ONCALLM_LLM_API_KEY_FILE": str(key_file)})
    assert settings.api_key == "sk-from-secret-volume"


def test_unreadable_key_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"ONCALLM_LLM_API_KEY_FILE.*mounted"):
        LLMSettings.from_env({"ONCALLM_LLM_API_KEY_FILE": str(tmp_path / "missing")})


def test_base_url_alone_enables_a_local_model_without_key() -> None:
    settings = LLMSettings.from_env(
        {
            "ONCALLM_LLM_BASE_URL": "http://ollama.models:11434/v1/",
            "ONCALLM_LLM_MODEL": "llama3.1:8b",
            "ONCALLM_LLM_RESPONSE_FORMAT": "json_object",
            "ONCALLM_LLM_TEMPERATURE": "none",
            "ONCALLM_LLM_MAX_RETRIES": "0",
            "ONCALLM_LLM_PROMPT_TOKENS_DEEP": "32000",
        }
    )
    assert settings.enabled
    assert settings.api_key is None
    assert settings.endpoint == "http://ollama.models:11434/v1"
    assert settings.model == "llama3.1:8b"
    assert settings.response_format == "json_object"
    assert settings.temperature is None
    assert settings.max_retries == 0
    assert settings.prompt_budget("deep") == 32000
    assert settings.prompt_budget("quick") == 2000
    assert settings.describe()["api_key"] == "(unset)"
    assert settings.concurrency == 4


def test_model_concurrency_and_transcript_bound() -> None:
    settings = LLMSettings.from_env(
        {
            "ONCALLM_LLM_BASE_URL": "http://llama.models:8080/v1",
            "ONCALLM_LLM_CONCURRENCY": "1",
            "ONCALLM_LLM_MAX_TRANSCRIPT_BYTES": "65536",
            "ONCALLM_LLM_RESPONSE_FORMAT": "json_object_schema",
        }
    )
    assert settings.concurrency == 1
    assert settings.max_transcript_bytes == 65536
    assert settings.response_format == "json_object_schema"
    assert LLMSettings.from_env({"ONCALLM_LLM_CONCURRENCY": "0"}).concurrency == 1


def test_redact_patterns_one_per_line() -> None:
    settings = LLMSettings.from_env(
        {"ONCALLM_REDACT_PATTERNS": "ACME-[0-9]{6}\n\n  internal-[a-z]+-key  \n"}
    )
    assert settings.redact_patterns == ("ACME-[0-9]{6}", "internal-[a-z]+-key")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONCALLM_REDACT_PATTERNS": "ok\n(unclosed"}, "not a valid regular expression"),
        ({"ONCALLM_LLM_MAX_RETRIES": "three"}, "ONCALLM_LLM_MAX_RETRIES.*whole number"),
        ({"ONCALLM_LLM_TIMEOUT_SECONDS": "-1"}, "must not be negative"),
        ({"ONCALLM_LLM_RESPONSE_FORMAT": "xml"}, "auto, json_schema, json_object_schema"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        LLMSettings.from_env(env)


def test_every_field_has_a_docstring() -> None:
    source = Path(__file__).resolve().parents[2] / "operator/oncallm/llm/settings.py"
    text = source.read_text()
    for name in LLMSettings.__dataclass_fields__:
        block = text.split(f"\n    {name}:", 1)[1].split("\n", 2)
        assert block[1].strip().startswith('"""'), f"{name} has no docstring"
