"""The web view shows what left the cluster for the model: calls, tokens, the transcript."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import ModelCall, StageTimings, TokenUsage
from oncallm.web import WebSettings, add_web_routes
from oncallm.web.demo import oom_analysis

NOW = datetime.now(UTC)


def _analysis() -> Any:
    analysis = oom_analysis(NOW)
    status = analysis.status
    status.model = "smollm2"
    status.model_outcome = "rejected"
    status.token_usage = TokenUsage(prompt=3312, completion=214, total=3526)
    status.model_calls = [
        ModelCall(
            model="smollm2",
            format="json_object_schema",
            prompt_tokens=3312,
            completion_tokens=214,
            seconds=27.4,
            finish_reason="stop",
        )
    ]
    status.timings = StageTimings(gathering=0.2, analyzing=27.9, model=27.5, total=28.3)
    status.model_transcript = f"{analysis.name}-model"
    return analysis


async def _client(loader: Any, analysis: Any) -> TestClient[Any, Any]:
    store = AnalysisStore()
    store.apply_event("ADDED", analysis.to_kube())
    app = web.Application()
    add_web_routes(app, store, WebSettings(), loader)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_page_shows_every_model_call_and_links_the_transcript() -> None:
    analysis = _analysis()
    client = await _client(None, analysis)
    try:
        html = await (await client.get(f"/analyses/{analysis.namespace}/{analysis.name}")).text()
    finally:
        await client.close()
    card = html.split('id="model"')[1].split("</section>")[0]
    assert "smollm2: rejected" in card
    assert "3312 prompt + 214 completion tokens" in card and "27.5 s" in card
    assert "json_object_schema" in card
    assert f'href="../../analyses/{analysis.namespace}/{analysis.name}/model"' in card


async def test_the_transcript_page_shows_the_exact_messages_escaped() -> None:
    analysis = _analysis()
    asked: list[tuple[str, str]] = []
    transcript = {
        "messages": [
            {"role": "system", "content": "You are OnCallM <b>"},
            {"role": "user", "content": "evidence: DB_PASSWORD=[REDACTED]"},
            {
                "role": "assistant",
                "content": '{"category": "app_crash_exception"}',
                "finish_reason": "stop",
            },
        ]
    }

    async def loader(namespace: str, name: str) -> str | None:
        asked.append((namespace, name))
        return json.dumps(transcript)

    client = await _client(loader, analysis)
    try:
        response = await client.get(f"/analyses/{analysis.namespace}/{analysis.name}/model")
        html = await response.text()
    finally:
        await client.close()
    assert response.status == 200
    assert asked == [(analysis.namespace, f"{analysis.name}-model")]
    assert "You are OnCallM &lt;b&gt;" in html
    assert "DB_PASSWORD=[REDACTED]" in html
    assert "&#34;category&#34;: &#34;app_crash_exception&#34;" in html or (
        "&quot;category&quot;" in html
    )
    assert "(finish: stop)" in html


async def test_a_gone_transcript_says_so() -> None:
    analysis = _analysis()

    async def loader(namespace: str, name: str) -> str | None:
        return None

    client = await _client(loader, analysis)
    try:
        html = await (
            await client.get(f"/analyses/{analysis.namespace}/{analysis.name}/model")
        ).text()
    finally:
        await client.close()
    assert f"The ConfigMap {analysis.name}-model is gone." in html
