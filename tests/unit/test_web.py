"""The web view's handlers, through aiohttp's test client: pages, API, escaping, auth."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import AlertAnalysis, Category, CauseLink, LinkRole, Phase
from oncallm.web import WebSettings, add_web_routes, report_url
from oncallm.web.demo import (
    HOSTILE_LOG_LINE,
    NAMESPACE,
    crashloop_analysis,
    earlier_crashloop_analysis,
    oom_analysis,
    running_analysis,
    sample_analyses,
    skipped_analysis,
)

NOW = datetime.now(UTC)
CRASH = crashloop_analysis(NOW)
OOM = oom_analysis(NOW)
RUNNING = running_analysis(NOW)
EARLIER = earlier_crashloop_analysis(NOW)
SKIPPED = skipped_analysis(NOW)

Make = Callable[..., Awaitable[tuple[TestClient[Any, Any], AnalysisStore]]]


class WatchedStore(AnalysisStore):
    """A store that says when a request starts waiting on it, so a test can change it then."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait_changed(self, since: int, wait: float) -> int:
        self.waiting.set()
        return await super().wait_changed(since, wait)


@pytest.fixture
async def make_client() -> AsyncIterator[Make]:
    """A test client for an app serving the given analyses (all samples by default)."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        analyses: list[AlertAnalysis] | None = None,
        settings: WebSettings | None = None,
        app: web.Application | None = None,
        store: AnalysisStore | None = None,
    ) -> tuple[TestClient[Any, Any], AnalysisStore]:
        store = AnalysisStore() if store is None else store  # an empty store is falsy
        for analysis in sample_analyses(NOW) if analyses is None else analyses:
            store.apply_event("ADDED", analysis.to_kube())
        app = app or web.Application()
        add_web_routes(app, store, settings or WebSettings())
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, store

    yield make
    for client in clients:
        await client.close()


def page_path(analysis: AlertAnalysis) -> str:
    return f"/analyses/{analysis.namespace}/{analysis.name}"


def listed_names(html: str) -> list[str]:
    """Analysis names in the order the list page shows them."""
    return re.findall(r'href="analyses/oncallm/([^"]+)"', html)


# -- the list ------------------------------------------------------------------------------


async def test_list_shows_analyses_newest_first_with_their_essentials(make_client: Make) -> None:
    client, _ = await make_client()
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    assert listed_names(html) == [
        RUNNING.name,  # received 1 minute ago
        OOM.name,  # 12.5 minutes ago, and grouped with the crash loop below
        CRASH.name,  # 12.6 minutes ago
        SKIPPED.name,  # 95 minutes ago
        EARLIER.name,  # two days ago
    ]
    for text in (
        "KubeDeploymentReplicasMismatch",
        "deployment/checkout/web",
        "critical",
        "Gathering",
        "Revision 42 dropped DATABASE_URL; the app exits 1 at start",
        "worker hits its 256Mi memory limit",
        "Skipped",
        "2d",
    ):
        assert text in html
    # Ages are relative to the real clock: "12m" when run at once, more later in a long run.
    assert re.search(r">1[2-9]m</span>|>[2-9][0-9]m</span>", html)


async def test_alerts_sent_together_are_listed_together(make_client: Make) -> None:
    client, _ = await make_client()
    html = await (await client.get("/")).text()
    groups = re.findall(r'<section class="group".*?</section>', html, re.S)
    assert len(groups) == 1
    assert listed_names(groups[0]) == [OOM.name, CRASH.name]
    assert "fired together" in groups[0] and "2 alerts" in groups[0]
    # Same group key two days earlier: another incident, listed on its own.
    assert EARLIER.name not in groups[0]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("phase=Completed", [OOM.name, CRASH.name, EARLIER.name]),
        ("phase=active", [RUNNING.name]),
        ("phase=skipped", [SKIPPED.name]),
        ("severity=critical", [RUNNING.name]),
        ("namespace=orders", [OOM.name, CRASH.name, EARLIER.name]),
        ("alertname=CPUThrottlingHigh", [SKIPPED.name]),
        ("namespace=orders&phase=Completed&severity=warning", [OOM.name, CRASH.name, EARLIER.name]),
        ("namespace=payments", []),
    ],
)
async def test_list_filters(make_client: Make, query: str, expected: list[str]) -> None:
    client, _ = await make_client()
    html = await (await client.get(f"/?{query}")).text()
    assert listed_names(html) == expected
    if not expected:
        assert "No analysis matches these filters" in html


async def test_list_filter_values_are_escaped(make_client: Make) -> None:
    client, _ = await make_client()
    html = await (await client.get("/", params={"alertname": '"><script>alert(1)</script>'})).text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html


async def test_an_empty_store_says_where_analyses_come_from(make_client: Make) -> None:
    client, _ = await make_client([])
    html = await (await client.get("/")).text()
    assert "No analyses yet" in html
    assert "Loading analyses from the cluster" in html  # the store has not synced


# -- the report page --------------------------------------------------------------------------


async def test_report_page_shows_the_whole_analysis(make_client: Make) -> None:
    client, _ = await make_client()
    response = await client.get(page_path(CRASH))
    assert response.status == 200
    html = await response.text()
    for text in (
        "orders/api crash-loops since revision 42",  # summary
        "Root cause",
        "Bad configuration",
        "high (91%)",
        "Impact",
        "Roll back the Deployment to revision 41.",
        "Add a startupProbe so a broken revision stops the rollout quickly.",
        "log excerpt",
        "container state",
        "DATABASE_URL is not set",
        "Prometheus answered 503",
        "Alert fired",
        "Received from Alertmanager",
        "Evidence gathered",
        "Diagnosis made",
        "Analysis completed",
        "kube-state-metrics",
        "runbook_url",
    ):
        assert text in html, text
    # Every command has a copy button carrying exactly that command.
    assert html.count('class="btn copy"') == 4
    assert 'data-copy="kubectl rollout undo deployment/api -n orders --to-revision=41"' in html
    # Links to the alert's generator and to Alertmanager.
    assert 'href="http://prometheus-k8s.monitoring.svc:9090/graph?g0.expr=' in html
    assert 'href="http://alertmanager.monitoring.svc:9093/#/alerts?filter=' in html
    assert 'href="http://alertmanager.monitoring.svc:9093/#/silences/new?filter=' in html
    # The earlier firing of the same alert, linked.
    assert f'href="../../analyses/{NAMESPACE}/{EARLIER.name}"' in html
    # Finished: the page does not follow changes.
    assert 'data-live="false"' in html


async def test_report_page_shows_the_causal_chain(make_client: Make) -> None:
    chained = crashloop_analysis(NOW)
    chained.status.chain = [
        CauseLink(role=LinkRole.SYMPTOM, summary="KubePodCrashLooping fires.", evidence=["alert"]),
        CauseLink(
            role=LinkRole.CAUSE,
            category=Category.BAD_CONFIG,
            summary="api exits: <i>DATABASE_URL</i> is not set",
            evidence=["log/api/previous#L3"],
        ),
    ]
    client, _ = await make_client([chained])
    html = await (await client.get(page_path(chained))).text()
    chain = html.split('id="chain"')[1].split("</section>")[0]
    assert chain.index("KubePodCrashLooping fires.") < chain.index("DATABASE_URL")
    assert "Bad configuration" in chain and "log/api/previous#L3" in chain
    assert "<i>" not in chain and "&lt;i&gt;DATABASE_URL&lt;/i&gt;" in chain


async def test_report_page_escapes_everything_from_the_cluster(make_client: Make) -> None:
    hostile = crashloop_analysis(NOW)
    hostile.spec.alert.labels["pod"] = "<img src=x onerror=alert(2)>"
    hostile.spec.alert.annotations["summary"] = "</pre><script>alert(3)</script>"
    hostile.spec.alert.generator_url = "javascript:alert(4)"
    assert hostile.status.commands is not None
    hostile.status.commands.append('kubectl get pods" onclick="alert(5)')
    hostile.status.root_cause = "<b>bold?</b> & {{ 7*7 }}"
    client, _ = await make_client([hostile])
    response = await client.get(page_path(hostile))
    html = await response.text()
    assert HOSTILE_LOG_LINE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the log line, as text
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script>alert(3)" not in html
    assert "javascript:" not in html
    assert 'onclick="alert(5)' not in html and "&#34; onclick=&#34;alert(5)" in html
    assert "&lt;b&gt;bold?&lt;/b&gt; &amp; {{ 7*7 }}" in html  # no template injection
    # Only our own script: nothing inline could run even if something slipped through.
    assert re.findall(r"<script[^>]*>", html) == [
        re.search(r'<script src="[^"]*app\.js\?v=\w+" defer>', html).group(0)  # type: ignore[union-attr]
    ]
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_running_analysis_page_follows_its_analysis(make_client: Make) -> None:
    client, _ = await make_client()
    html = await (await client.get(page_path(RUNNING))).text()
    assert 'data-live="true"' in html
    assert f'data-poll="../../api/analyses/{NAMESPACE}/{RUNNING.name}"' in html
    assert "Analysis in progress" in html and "Gathering evidence" in html


async def test_unknown_analysis_is_a_404_page(make_client: Make) -> None:
    client, _ = await make_client()
    response = await client.get(f"/analyses/{NAMESPACE}/no-such-analysis")
    assert response.status == 404
    assert "No analysis oncallm/no-such-analysis" in await response.text()


async def test_report_files_render_on_demand(make_client: Make) -> None:
    client, _ = await make_client()
    md = await client.get(page_path(CRASH) + "/report.md")
    assert md.status == 200 and md.content_type == "text/markdown"
    assert "## Root cause" in await md.text()
    html = await client.get(page_path(CRASH) + "/report.html")
    assert html.status == 200 and "&lt;script&gt;" in await html.text()
    assert "script-src" not in html.headers["Content-Security-Policy"]  # no script at all


# -- the JSON API -------------------------------------------------------------------------------


async def test_api_lists_analyses_in_wire_form(make_client: Make) -> None:
    client, _ = await make_client()
    response = await client.get("/api/analyses", params={"namespace": "orders"})
    assert response.status == 200
    body = await response.json()
    assert body["kind"] == "AlertAnalysisList"
    assert body["items"] == [a.to_kube() for a in (OOM, CRASH, EARLIER)]


async def test_api_returns_one_analysis_and_404s_json(make_client: Make) -> None:
    client, _ = await make_client()
    response = await client.get(f"/api/analyses/{NAMESPACE}/{CRASH.name}")
    assert response.status == 200
    assert await response.json() == CRASH.to_kube()
    assert response.headers["ETag"]
    missing = await client.get(f"/api/analyses/{NAMESPACE}/nope")
    assert missing.status == 404
    assert missing.content_type == "application/json"
    assert (await missing.json())["error"] == "NotFound"


async def test_api_conditional_get_answers_304_when_unchanged(make_client: Make) -> None:
    client, _ = await make_client()
    url = f"/api/analyses/{NAMESPACE}/{RUNNING.name}"
    tag = (await client.get(url)).headers["ETag"]
    started = time.monotonic()
    unchanged = await client.get(url, params={"wait": "0.2"}, headers={"If-None-Match": tag})
    assert unchanged.status == 304
    assert time.monotonic() - started >= 0.2  # it waited for a change that did not come


async def test_api_long_poll_answers_as_soon_as_the_analysis_changes(make_client: Make) -> None:
    store = WatchedStore()
    client, _ = await make_client(store=store)
    url = f"/api/analyses/{NAMESPACE}/{RUNNING.name}"
    tag = (await client.head(url)).headers["ETag"]
    waiting = asyncio.ensure_future(
        client.get(url, params={"wait": "20"}, headers={"If-None-Match": tag})
    )
    await asyncio.wait_for(store.waiting.wait(), timeout=10)
    # Another analysis changing does not end the wait...
    store.waiting.clear()
    other = oom_analysis(NOW)
    other.metadata["resourceVersion"] = "99"
    store.apply_event("MODIFIED", other.to_kube())
    await asyncio.wait_for(store.waiting.wait(), timeout=10)  # waiting again
    assert not waiting.done()
    # ...this one moving to Analyzing does.
    moved = running_analysis(NOW)
    moved.status.phase = Phase.ANALYZING
    started = time.monotonic()
    store.apply_event("MODIFIED", moved.to_kube())
    response = await asyncio.wait_for(waiting, timeout=10)
    assert time.monotonic() - started < 10
    assert response.status == 200
    assert (await response.json())["status"]["phase"] == "Analyzing"
    assert response.headers["ETag"] != tag


async def test_api_list_long_poll_wakes_on_any_change(make_client: Make) -> None:
    store = WatchedStore()
    client, _ = await make_client(store=store)
    head = await client.head("/api/analyses")
    assert head.status == 200 and await head.read() == b""
    waiting = asyncio.ensure_future(
        client.head(
            "/api/analyses", params={"wait": "20"}, headers={"If-None-Match": head.headers["ETag"]}
        )
    )
    await asyncio.wait_for(store.waiting.wait(), timeout=10)
    store.apply_event("DELETED", SKIPPED.to_kube())
    response = await asyncio.wait_for(waiting, timeout=10)
    assert response.status == 200 and response.headers["ETag"] != head.headers["ETag"]


async def test_the_view_is_read_only(make_client: Make) -> None:
    client, _ = await make_client()
    for method, path in [
        ("POST", "/api/analyses"),
        ("DELETE", f"/api/analyses/{NAMESPACE}/{CRASH.name}"),
        ("PUT", page_path(CRASH)),
        ("PATCH", f"/api/analyses/{NAMESPACE}/{CRASH.name}"),
    ]:
        response = await client.request(method, path)
        assert response.status == 405, (method, path)


async def test_the_sidecar_keeps_its_own_paths(make_client: Make) -> None:
    app = web.Application()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="sidecar")

    app.router.add_post("/webhook", ok)
    for path in ("/healthz", "/readyz", "/metrics"):
        app.router.add_get(path, ok)
    client, _ = await make_client(app=app, settings=WebSettings(token="s3cr3t-token"))
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await client.get(path)
        assert (response.status, await response.text()) == (200, "sidecar")
    assert (await client.post("/webhook")).status == 200


async def test_static_files_are_served_with_safe_headers(make_client: Make) -> None:
    client, _ = await make_client(settings=WebSettings(token="s3cr3t-token"))
    css = await client.get("/static/app.css")  # no credentials needed for public assets
    assert css.status == 200 and css.content_type == "text/css"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get("/static/app.css", headers={"If-None-Match": css.headers["ETag"]})
    assert again.status == 304
    js = await client.get("/static/app.js")
    assert "If-None-Match" in await js.text()
    assert (await client.get("/static/../settings.py")).status == 404


# -- authentication ----------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_token_auth(make_client: Make) -> None:
    client, _ = await make_client(settings=WebSettings(token="s3cr3t-token"))
    for path in ("/", page_path(CRASH), "/api/analyses", f"/api/analyses/{NAMESPACE}/x"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "no-store" in response.headers["Cache-Control"]
    api = await client.get("/api/analyses")
    assert (await api.json())["error"] == "Unauthorized"
    wrong = await client.get("/", headers={"Authorization": "Bearer s3cr3t-tokeN"})
    assert wrong.status == 401
    ok = await client.get("/", headers={"Authorization": "Bearer s3cr3t-token"})
    assert ok.status == 200
    # A browser's login prompt can carry the token as the password.
    prompt = await client.get("/", headers={"Authorization": basic("anyone", "s3cr3t-token")})
    assert prompt.status == 200


async def test_basic_auth_users(make_client: Make) -> None:
    settings = WebSettings(basic_auth={"oncall": "correct horse", "sre": "battery staple"})
    client, _ = await make_client(settings=settings)
    assert (await client.get("/")).status == 401
    for header, status in [
        (basic("oncall", "correct horse"), 200),
        (basic("sre", "battery staple"), 200),
        (basic("oncall", "battery staple"), 401),  # another user's password
        (basic("root", "correct horse"), 401),
        ("Basic not-base64!", 401),
        ("Bearer correct horse", 401),  # no token configured
        ("Digest username=oncall", 401),
    ]:
        response = await client.get("/api/analyses", headers={"Authorization": header})
        assert response.status == status, header


def test_report_url() -> None:
    assert (
        report_url("https://oncallm.example.com/", "oncallm", "kube-pod-crash-looping-3f9a1c2b7d")
        == "https://oncallm.example.com/analyses/oncallm/kube-pod-crash-looping-3f9a1c2b7d"
    )
    assert report_url("http://localhost:8080/oncallm", "ns", "a") == (
        "http://localhost:8080/oncallm/analyses/ns/a"
    )


async def test_failed_and_skipped_analyses_say_why(make_client: Make) -> None:
    failed = crashloop_analysis(NOW)
    failed.status.phase = Phase.FAILED
    failed.status.reason = "gathering timed out after 60s: the API server did not answer"
    failed.status.attempts = 3
    client, _ = await make_client([failed, SKIPPED])
    html = await (await client.get(page_path(failed))).text()
    assert "Analysis failed" in html and "gathering timed out after 60s" in html
    assert "attempts so far: 3" in html
    assert "DATABASE_URL is not set" in html  # the evidence gathered before it failed
    html = await (await client.get(page_path(SKIPPED))).text()
    assert "Not analysed" in html and "analyze is false for severity=info" in html
    assert 'data-live="false"' in html
