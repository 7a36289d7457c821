"""ModelClient against the local OpenAI-compatible server, with the real openai client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from oncallm.llm.analyse import parse_diagnosis
from oncallm.llm.breaker import BreakerState
from oncallm.llm.client import ModelClient, ModelRequestError, ModelUnavailable, parse_retry_after
from tests.openai_server import (
    FakeOpenAI,
    Reply,
    error_reply,
    json_reply,
    openai_server,
    output_format,
    rate_limited,
    text_reply,
)
from tests.unit.llm_fixtures import FakeClock, model_diagnosis, settings

__all__ = ["openai_server"]

MESSAGES = [
    {"role": "system", "content": "Reply in JSON."},
    {"role": "user", "content": "Diagnose."},
]


def _client(server: FakeOpenAI, **overrides: Any) -> ModelClient:
    clock = overrides.pop("clock", None)
    client = ModelClient.from_settings(
        settings(server, **overrides), **({"clock": clock} if clock else {})
    )
    assert client is not None
    return client


async def test_sends_a_strict_json_schema_request_and_reads_usage(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.script(json_reply(model_diagnosis(), usage=(812, 143)))
    client = _client(openai_server)
    try:
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert completion.content is not None and '"oom_killed"' in completion.content
    assert (completion.prompt_tokens, completion.completion_tokens) == (812, 143)
    assert completion.attempts == 1
    (request,) = openai_server.chat_requests
    body = request.json
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == MESSAGES
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
    assert body["max_tokens"] == 1500
    assert body["temperature"] == 0
    assert request.headers["Authorization"] == "Bearer test-key"


async def test_server_errors_are_retried_with_backoff(openai_server: FakeOpenAI) -> None:
    openai_server.script(error_reply(500), error_reply(503), json_reply(model_diagnosis()))
    client = _client(openai_server)
    try:
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert completion.attempts == 3
    assert len(openai_server.chat_requests) == 3
    assert client.breaker.consecutive_failures == 0


async def test_retries_are_bounded_and_count_one_breaker_failure(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.script(*[error_reply(503, "upstream overloaded")] * 5)
    client = _client(openai_server, max_retries=2)
    try:
        with pytest.raises(ModelUnavailable, match=r"failed 3 time.*503.*upstream overloaded"):
            await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert len(openai_server.chat_requests) == 3, "1 try + 2 retries, the openai client adds none"
    assert client.breaker.consecutive_failures == 1


@pytest.mark.parametrize(
    ("header", "value", "seconds"),
    [
        ("Retry-After", "0.3", 0.3),
        ("retry-after-ms", "250", 0.25),
    ],
)
async def test_429_waits_at_least_retry_after(
    openai_server: FakeOpenAI, header: str, value: str, seconds: float
) -> None:
    openai_server.script(rate_limited(value, header), json_reply(model_diagnosis()))
    client = _client(openai_server)
    try:
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    first, second = openai_server.chat_requests
    assert second.at - first.at >= seconds
    assert completion.attempts == 2


async def test_a_retry_after_beyond_the_limit_is_not_waited_for(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.script(rate_limited("120"), json_reply(model_diagnosis()))
    client = _client(openai_server, max_retry_after_seconds=10)
    try:
        with pytest.raises(ModelUnavailable, match="asked to wait 120s"):
            await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert len(openai_server.chat_requests) == 1


async def test_json_schema_refused_falls_back_to_json_object_and_remembers(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.reject_json_schema = True
    openai_server.script(json_reply(model_diagnosis()), json_reply(model_diagnosis()))
    client = _client(openai_server)
    try:
        first = await client.complete(MESSAGES, model="llama3.1:8b")
        second = await client.complete(MESSAGES, model="llama3.1:8b")
    finally:
        await client.close()
    formats = [output_format(r.json) for r in openai_server.chat_requests]
    assert formats == ["json_schema", "json_object_schema", "json_object_schema"]
    assert first.response_format == second.response_format == "json_object_schema"
    assert client.format_mode("llama3.1:8b") == "json_object_schema"
    assert client.format_mode("gpt-4o-mini") == "json_schema", "remembered per model"
    assert client.breaker.consecutive_failures == 0


async def test_a_500_refusing_json_schema_is_negotiated_down_without_opening_the_breaker(
    openai_server: FakeOpenAI,
) -> None:
    # llama.cpp's server answers json_schema with a 500 that names it; it takes json_object
    # with a schema (which it turns into a grammar).
    openai_server.refuse_format(
        "json_schema",
        500,
        "1 validation error for CreateChatCompletionRequest: response_format.type: Input "
        "should be 'text' or 'json_object'",
    )
    openai_server.script(*[json_reply(model_diagnosis())] * 3)
    client = _client(openai_server, breaker_failure_threshold=1, max_retries=2)
    try:
        for _ in range(3):
            completion = await client.complete(MESSAGES, model="smollm2")
            assert completion.attempts == 1, "a refusal costs no retry"
    finally:
        await client.close()
    formats = [output_format(r.json) for r in openai_server.chat_requests]
    assert formats == ["json_schema", *["json_object_schema"] * 3], "probed once, remembered"
    body = openai_server.chat_requests[1].json
    schema = body["response_format"]["schema"]
    assert schema["properties"]["category"]["enum"][-1] == "unknown"
    assert "maxLength" not in json.dumps(schema) and "maxItems" not in json.dumps(schema)
    assert set(schema["required"]) >= {"category", "summary", "rootCause", "evidence"}
    assert schema["properties"]["evidence"]["minItems"] == 1, "a grammar makes it cite"
    strict = openai_server.chat_requests[0].json["response_format"]["json_schema"]["schema"]
    assert "minItems" not in json.dumps(strict), "OpenAI's strict mode refuses minItems"
    assert client.breaker.state is BreakerState.CLOSED
    assert client.breaker.consecutive_failures == 0
    assert client.negotiated == {"smollm2": "json_object_schema"}


async def test_negotiation_goes_down_to_plain_text(openai_server: FakeOpenAI) -> None:
    openai_server.refuse_format("json_schema", 500, "json_schema is not supported")
    openai_server.refuse_format("json_object_schema", 422, "schema: unsupported")
    openai_server.refuse_format("ollama_format", 400, "unknown field: format")
    openai_server.refuse_format("guided_json", 400, "guided decoding is off")
    openai_server.script(
        text_reply("Here is the diagnosis:\n" + json.dumps(model_diagnosis()) + "\nHope it helps!")
    )
    client = _client(openai_server, breaker_failure_threshold=1)
    try:
        completion = await client.complete(MESSAGES, model="tiny")
    finally:
        await client.close()
    formats = [output_format(r.json) for r in openai_server.chat_requests]
    assert formats == ["json_schema", "json_object_schema", "ollama_format", "guided_json", "text"]
    bodies = [r.json for r in openai_server.chat_requests]
    assert bodies[2]["format"]["type"] == "object"
    assert bodies[3]["guided_json"]["type"] == "object"
    assert "response_format" not in bodies[4]
    assert completion.response_format == "text"
    diagnosis, problem = parse_diagnosis(completion.content)
    assert diagnosis is not None, problem
    assert diagnosis.category.value == "oom_killed"
    assert client.breaker.state is BreakerState.CLOSED


async def test_a_500_that_names_no_format_is_an_outage(openai_server: FakeOpenAI) -> None:
    openai_server.script(error_reply(500, "CUDA error: out of memory"))
    client = _client(openai_server, breaker_failure_threshold=1, max_retries=0)
    try:
        with pytest.raises(ModelUnavailable, match="CUDA"):
            await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert client.breaker.state is BreakerState.OPEN
    assert client.format_mode("gpt-4o-mini") == "json_schema", "nothing learned from an outage"


async def test_a_fixed_format_that_is_refused_says_to_negotiate(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.refuse_format("json_object_schema", 500, "failed to parse grammar")
    client = _client(openai_server, response_format="json_object_schema")
    try:
        with pytest.raises(ModelRequestError, match="ONCALLM_LLM_RESPONSE_FORMAT=auto"):
            await client.complete(MESSAGES, model="smollm2")
    finally:
        await client.close()
    assert len(openai_server.chat_requests) == 1
    assert not client.breaker.is_open


async def test_model_concurrency_one_serves_one_request_at_a_time(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.script(*[json_reply(model_diagnosis(), delay=0.2)] * 2)
    client = _client(openai_server, concurrency=1)
    try:
        await asyncio.gather(
            client.complete(MESSAGES, model="gpt-4o-mini"),
            client.complete(MESSAGES, model="gpt-4o-mini"),
        )
    finally:
        await client.close()
    first, second = openai_server.chat_requests
    assert second.at - first.at >= 0.2, "the second waited for the first"


async def test_json_schema_required_and_refused_is_a_request_error(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.reject_json_schema = True
    client = _client(openai_server, response_format="json_schema")
    try:
        with pytest.raises(ModelRequestError, match=r"HTTP 400.*json_schema"):
            await client.complete(MESSAGES, model="llama3.1:8b")
    finally:
        await client.close()
    assert len(openai_server.chat_requests) == 1


async def test_json_object_mode_never_asks_for_a_schema(openai_server: FakeOpenAI) -> None:
    openai_server.script(json_reply(model_diagnosis()))
    client = _client(
        openai_server,
        response_format="json_object",
        temperature=None,
        max_tokens_field="max_completion_tokens",
    )
    try:
        await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    body = openai_server.chat_requests[0].json
    assert body["response_format"] == {"type": "json_object"}
    assert "temperature" not in body
    assert body["max_completion_tokens"] == 1500 and "max_tokens" not in body


async def test_bad_key_is_not_retried_and_says_what_to_check(openai_server: FakeOpenAI) -> None:
    openai_server.script(error_reply(401, "Incorrect API key provided"))
    client = _client(openai_server)
    try:
        with pytest.raises(ModelRequestError, match="ONCALLM_LLM_API_KEY") as info:
            await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert info.value.status_code == 401
    assert len(openai_server.chat_requests) == 1
    assert not client.breaker.is_open


async def test_a_slow_endpoint_times_out(openai_server: FakeOpenAI) -> None:
    openai_server.script(Reply(content="{}", delay=0.5))
    client = _client(openai_server, timeout_seconds=0.1, max_retries=0)
    try:
        with pytest.raises(ModelUnavailable, match=r"no answer within 0.1s"):
            await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()


async def test_breaker_opens_when_the_endpoint_is_down_and_closes_when_back(
    openai_server: FakeOpenAI,
) -> None:
    clock = FakeClock()
    client = _client(
        openai_server,
        clock=clock,
        max_retries=0,
        breaker_failure_threshold=2,
        breaker_cooldown_seconds=30,
    )
    try:
        await openai_server.go_down()
        for _ in range(2):
            with pytest.raises(ModelUnavailable, match="cannot connect"):
                await client.complete(MESSAGES, model="gpt-4o-mini")
        assert client.breaker.state is BreakerState.OPEN
        seen = len(openai_server.requests)
        with pytest.raises(ModelUnavailable, match="circuit breaker is open"):
            await client.complete(MESSAGES, model="gpt-4o-mini")
        assert len(openai_server.requests) == seen, "an open breaker makes no request"

        await openai_server.go_up()
        openai_server.script(json_reply(model_diagnosis()))
        clock.advance(30)
        assert client.breaker.state is BreakerState.HALF_OPEN
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
        assert completion.content
        assert client.breaker.state is BreakerState.CLOSED
    finally:
        await client.close()


async def test_missing_usage_is_estimated(openai_server: FakeOpenAI) -> None:
    openai_server.script(json_reply(model_diagnosis(), omit_usage=True))
    client = _client(openai_server)
    try:
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert completion.prompt_tokens > 0
    assert completion.completion_tokens > 50


async def test_the_server_lists_models_and_records_malformed_replies(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.script(text_reply("Sure! The root cause is memory."))
    client = _client(openai_server)
    try:
        models = await client.openai.models.list()
        completion = await client.complete(MESSAGES, model="gpt-4o-mini")
    finally:
        await client.close()
    assert [m.id for m in models.data] == openai_server.models
    assert completion.content == "Sure! The root cause is memory."
    assert [r.path for r in openai_server.requests] == ["/v1/models", "/v1/chat/completions"]


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    when = {"retry-after": "Wed, 01 May 2024 10:00:12 GMT"}
    assert parse_retry_after(when, now=now) == 12
