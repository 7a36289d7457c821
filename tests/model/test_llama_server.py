"""The model path against a real self-hosted server: llama.cpp's server with SmolLM2-135M.

Scenarios of ``tests/scenarios`` gathered in memory, then analysed through the real openai
client and the real server. SmolLM2 is a weak model, so these prove the machinery, not its
wisdom: structured output is negotiated (llama.cpp answers ``json_schema`` with a 500) without
opening the breaker, every call is on the record, and whatever the model says the final
diagnosis is never worse than the rules'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oncallm.analysis.baseline import build_baseline
from oncallm.analysis.evidence import EvidenceSettings
from oncallm.analysis.rules import RuleSettings
from oncallm.gathering.gather import gather
from oncallm.llm import LLMSettings, ModelClient, analyse_with_model
from oncallm.llm.analyse import transcript_json
from oncallm.llm.breaker import BreakerState
from oncallm.models.policy import AnalysisPolicy
from oncallm.scenarios.model import load_scenario
from tests.llama_server import LlamaServer

pytestmark = pytest.mark.slow

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
#: An OOMKilled container: the case SmolLM2 called app_crash_exception (the cluster test
#: takes a dependency outage).
NAMES = ("reports-oom",)


def settings(server: LlamaServer) -> LLMSettings:
    return LLMSettings(
        base_url=server.base_url,
        model=server.model,
        timeout_seconds=600,
        max_retries=0,
        breaker_failure_threshold=1,
        concurrency=1,
        max_output_tokens=800,
    )


def quick_policy() -> AnalysisPolicy:
    return AnalysisPolicy.model_validate(
        {
            "metadata": {"name": "real-model"},
            "spec": {"depth": "quick", "llm": {"dailyTokenBudget": 10_000_000}},
        }
    )


@pytest.mark.timeout(1500)  # a few minutes when the machine is busy
async def test_a_real_server_negotiates_down_and_the_model_is_never_worse(
    llama_server: LlamaServer,
) -> None:
    client = ModelClient.from_settings(settings(llama_server))
    assert client is not None
    policy = quick_policy()
    try:
        for name in NAMES:
            scenario = load_scenario(SCENARIOS / f"{name}.yaml")
            shifted = scenario.shift(scenario.now)
            ctx = await gather(shifted.alert, shifted.memory_reader(), policy, now=scenario.now)
            rules = build_baseline(ctx, EvidenceSettings(), RuleSettings())
            assert rules.diagnosis.category == scenario.expect.category
            outcome = await analyse_with_model(
                ctx, rules.evidence.items, rules.diagnosis, policy, client
            )
            # the model path ran: the server answered, whatever it thought
            assert outcome.outcome in {"accepted", "rejected", "invalid", "runaway"}, outcome.notes
            assert outcome.diagnosis.category == scenario.expect.category, outcome.notes
            assert outcome.calls and outcome.model == "smollm2"
            assert outcome.token_usage.prompt > 0 and outcome.token_usage.completion > 0
            assert all(c.format == "json_object_schema" for c in outcome.calls)
            transcript = json.loads(transcript_json(outcome.transcript, 256 * 1024))["messages"]
            assert [m["role"] for m in transcript[:3]] == ["system", "user", "assistant"]
            print(
                f"{name}: {outcome.outcome}, {outcome.token_usage.prompt} prompt + "
                f"{outcome.token_usage.completion} completion tokens, "
                f"{outcome.latency_seconds:.1f} s, {len(outcome.calls)} call(s); "
                f"{' '.join(outcome.notes)}"
            )
    finally:
        await client.close()
    assert client.negotiated == {"smollm2": "json_object_schema"}
    assert client.breaker.state is BreakerState.CLOSED
    assert client.breaker.consecutive_failures == 0
