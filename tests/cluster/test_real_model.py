"""The model path end to end against a real self-hosted server: the operator on the real API
server asks llama.cpp's server (SmolLM2-135M) through the real openai client."""

from __future__ import annotations

import json

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import KubeAPI
from oncallm.kube.resources import resource
from tests.cluster.test_operator import create_analysis, plant_scenario, scenario, wait_phase
from tests.helpers.operator import environment, operator_running
from tests.llama_server import LlamaServer

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.mark.timeout(1500)  # a few minutes when the machine is busy
async def test_an_analysis_through_a_real_model_server_is_on_the_record(
    kube: KubeAPI, control_plane: LocalControlPlane, llama_server: LlamaServer, namespace: str
) -> None:
    shifted = scenario(namespace)  # orders-api cannot reach its database
    await plant_scenario(kube, control_plane, shifted)
    with (
        environment(
            ONCALLM_LLM_BASE_URL=llama_server.base_url,
            ONCALLM_LLM_MODEL=llama_server.model,
            ONCALLM_LLM_TIMEOUT_SECONDS="600",
            ONCALLM_LLM_MAX_RETRIES="0",
            ONCALLM_LLM_CONCURRENCY="1",
            ONCALLM_LLM_MAX_OUTPUT_TOKENS="800",
            # SmolLM2's window is 8k tokens; a small prompt keeps one analysis near a minute
            ONCALLM_LLM_PROMPT_TOKENS_STANDARD="2000",
        ),
        operator_running(namespace),
    ):
        name = await create_analysis(kube, namespace, shifted.alert)
        aa = await wait_phase(kube, namespace, name, {"Completed", "Failed"}, timeout=1300)
    status = aa["status"]
    assert status["phase"] == "Completed"
    assert status["category"] == "dependency_unreachable", status.get("notes")  # never worse
    # the model path ran (the server answered, whatever it thought)
    assert status.get("modelOutcome") in {"accepted", "rejected", "invalid", "runaway"}, status
    assert status["model"] == "smollm2"
    assert status["tokenUsage"]["prompt"] > 0 and status["tokenUsage"]["completion"] > 0
    calls = status["modelCalls"]
    assert calls and all(c["format"] == "json_object_schema" for c in calls)
    assert status["timings"]["model"] > 0
    assert status["timings"]["model"] <= status["timings"]["analyzing"]
    cm = await kube.request("GET", resource("ConfigMap").path(namespace, status["modelTranscript"]))
    messages = json.loads(cm["data"]["transcript.json"])["messages"]
    assert messages[0]["role"] == "system" and "OnCallM" in messages[0]["content"]
    assert any(m["role"] == "assistant" for m in messages)
    assert cm["metadata"]["ownerReferences"][0]["name"] == name
