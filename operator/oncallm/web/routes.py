"""The web view's HTTP handlers: server-rendered pages, a JSON API, static files.

Everything reads the in-memory :class:`~oncallm.kube.store.AnalysisStore` (kept current by a
watch), never the API server, so a page costs no list call. Only GET and HEAD are routed:
the view is read-only whatever the credentials.

Live pages (a running analysis, the list) long-poll their API URL with ``HEAD`` and
``If-None-Match``: the server answers when the content changes, or ``304`` after
:attr:`WebSettings.long_poll_seconds`; the page then fetches itself and swaps its content.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import AlertAnalysis, Phase
from oncallm.reports import present, render_report
from oncallm.web import views
from oncallm.web.auth import Authenticator
from oncallm.web.settings import WebSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Reads an analysis's model transcript (the ConfigMap named by ``status.modelTranscript``):
#: ``(namespace, config map name) -> transcript.json text``, None when it is gone.
TranscriptLoader = Callable[[str, str], Awaitable[str | None]]

#: Scripts and styles only from the view itself; no inline code, no frames, no plugins.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: The standalone report.html carries its CSS inline and has no script at all.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"

_STATIC_FILES = ("app.css", "app.js", "favicon.svg")
_ROUTE_PREFIX = "oncallm-web"


@dataclass
class _Static:
    body: bytes
    content_type: str
    etag: str


class _WebView:
    def __init__(
        self,
        store: AnalysisStore,
        settings: WebSettings,
        transcripts: TranscriptLoader | None = None,
    ) -> None:
        self.transcripts = transcripts
        self.store = store
        self.settings = settings
        self.auth = Authenticator(settings)
        # Changes with every process, so a list ETag from before a restart never matches.
        self.boot = secrets.token_hex(4)
        self.static = _load_static()
        digest = hashlib.sha256(b"".join(s.etag.encode() for s in self.static.values()))
        self.static_version = digest.hexdigest()[:10]
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("oncallm.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            category=present.category_label,
            confidence=present.confidence_label,
            source=present.source_label,
            http_url=present.http_url,
        )

    # -- helpers -----------------------------------------------------------------------

    def list_etag(self) -> str:
        return f'"{self.boot}-{self.store.version}"'

    def page(self, template: str, root: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(
            root=root,
            static_version=self.static_version,
            cluster=self.settings.cluster_name,
            synced=self.store.synced,
            long_poll=int(self.settings.long_poll_seconds),
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def json(self, data: Any, status: int = 200, etag: str | None = None) -> web.Response:
        response = web.json_response(data, status=status)
        if etag:
            response.headers["ETag"] = etag
        return response

    def not_found_json(self, namespace: str, name: str) -> web.Response:
        hint = "" if self.store.synced else " (the view is still loading analyses; retry soon)"
        return self.json(
            {
                "error": "NotFound",
                "message": f"no AlertAnalysis {namespace}/{name}{hint}; "
                "list the known ones at api/analyses",
            },
            status=404,
        )

    async def wait_for(self, changed: Callable[[], bool], wait: float) -> None:
        """Wait until ``changed()`` or ``wait`` seconds pass, waking on every store change."""
        deadline = time.monotonic() + wait
        version = self.store.version
        while not changed():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            version = await self.store.wait_changed(version, remaining)

    def wait_seconds(self, request: web.Request) -> float:
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            return 0.0
        if wait != wait:  # NaN
            return 0.0
        return max(0.0, min(wait, self.settings.long_poll_seconds))

    def listed(self, request: web.Request) -> tuple[views.Filters, list[AlertAnalysis], int]:
        filters = views.Filters.from_query(request.query)
        matching = [a for a in self.store.all() if filters.matches(a)]
        return filters, views.newest_first(matching)[: self.settings.list_limit], len(matching)

    # -- pages ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        filters, shown, total = self.listed(request)
        now = datetime.now(UTC)
        everything = self.store.all()
        poll = "api/analyses" + (f"?{filters.query()}" if filters.active else "")
        return self.page(
            "list.html",
            root="",
            filters=filters,
            options=views.filter_options(everything),
            groups=views.group_rows(
                shown, now, timedelta(minutes=self.settings.group_window_minutes)
            ),
            shown=len(shown),
            total=total,
            stored=len(everything),
            running=sum(1 for a in everything if not present.phase(a).finished),
            etag=self.list_etag(),
            poll=poll,
        )

    async def analysis_page(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        analysis = self.store.get(namespace, name)
        if analysis is None:
            return self.page(
                "not_found.html", root="../../", status=404, namespace=namespace, name=name
            )
        same_alert, same_target = views.related(
            analysis,
            self.store.by_fingerprint(analysis.spec.alert.fingerprint),
            self.store.all(),
            self.settings.history_limit,
        )
        now = datetime.now(UTC)
        current = present.phase(analysis)
        status = analysis.status
        steps = [Phase.PENDING, Phase.GATHERING, Phase.ANALYZING, Phase.COMPLETED]
        members = views.incident_members(analysis, self.store.all())
        return self.page(
            "analysis.html",
            root="../../",
            a=analysis,
            s=status,
            alert=analysis.spec.alert,
            phase=current,
            steps=steps,
            step_index=steps.index(current) if current in steps else len(steps),
            title=f"{analysis.spec.alert.labels.get('alertname', '')}",
            target=present.target_display(analysis),
            severity=present.severity(analysis),
            received=present.received_time(analysis),
            age=present.format_age(present.received_time(analysis), now),
            format_time=present.format_time,
            parse_time=present.parse_time,
            timeline=present.timeline(analysis),
            generator_url=present.http_url(analysis.spec.alert.generator_url),
            alertmanager_url=present.alertmanager_alert_url(
                analysis.spec.external_url, analysis.spec.alert.labels
            ),
            silence_url=present.alertmanager_silence_url(
                analysis.spec.external_url, analysis.spec.alert.labels
            ),
            runbook_url=present.http_url(analysis.spec.alert.annotations.get("runbook_url")),
            members=[views.row(m, now) for m in members[: self.settings.list_limit]],
            members_more=max(0, len(members) - self.settings.list_limit),
            primary_path=views.analysis_path(
                namespace, status.incident.primary if status.incident else name
            ),
            same_alert=[views.row(a, now) for a in same_alert],
            same_target=[views.row(a, now) for a in same_target],
            etag=views.etag(analysis),
            poll=f"api/{views.analysis_path(namespace, name)}",
            self_path=views.analysis_path(namespace, name),
        )

    async def transcript_page(self, request: web.Request) -> web.StreamResponse:
        """What left the cluster for the model, and what came back."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        analysis = self.store.get(namespace, name)
        if analysis is None:
            return self.page(
                "not_found.html", root="../../../", status=404, namespace=namespace, name=name
            )
        status = analysis.status
        messages: list[dict[str, Any]] | None = None
        missing = "This analysis did not ask a model."
        if status.model_transcript and self.transcripts is None:
            missing = "This web view cannot read transcripts (no API access)."
        elif status.model_transcript and self.transcripts is not None:
            text = await self.transcripts(namespace, status.model_transcript)
            if text is None:
                missing = f"The ConfigMap {status.model_transcript} is gone."
            else:
                try:
                    loaded = json.loads(text)
                    messages = list(loaded.get("messages") or [])
                except (ValueError, AttributeError):
                    messages = [{"role": "(unreadable)", "content": text}]
        return self.page(
            "transcript.html",
            root="../../../",
            a=analysis,
            s=status,
            messages=messages,
            missing=missing,
            self_path=views.analysis_path(namespace, name),
        )

    async def report_file(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        analysis = self.store.get(namespace, name)
        if analysis is None:
            return self.page(
                "not_found.html", root="../../../", status=404, namespace=namespace, name=name
            )
        history, _ = views.related(
            analysis,
            self.store.by_fingerprint(analysis.spec.alert.fingerprint),
            [],
            self.settings.history_limit,
        )
        members = views.incident_members(analysis, self.store.all())
        files = render_report(analysis, history, members=members)
        if request.match_info["file"] == "report.md":
            return web.Response(
                text=files["report.md"], content_type="text/markdown", charset="utf-8"
            )
        response = web.Response(
            text=files["report.html"], content_type="text/html", charset="utf-8"
        )
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    # -- API -----------------------------------------------------------------------------

    async def api_list(self, request: web.Request) -> web.StreamResponse:
        wait = self.wait_seconds(request)
        since = self.store.version
        if views.etag_matches(request.headers.get("If-None-Match"), self.list_etag()):
            if wait > 0:
                await self.wait_for(lambda: self.store.version != since, wait)
            if views.etag_matches(request.headers.get("If-None-Match"), self.list_etag()):
                return web.Response(status=304, headers={"ETag": self.list_etag()})
        if request.method == "HEAD":
            return web.Response(headers={"ETag": self.list_etag()})
        _, shown, total = self.listed(request)
        return self.json(
            {
                "apiVersion": "oncallm.io/v1alpha1",
                "kind": "AlertAnalysisList",
                "metadata": {"total": total, "shown": len(shown)},
                "items": [a.to_kube() for a in shown],
            },
            etag=self.list_etag(),
        )

    async def api_analysis(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        analysis = self.store.get(namespace, name)
        if analysis is None:
            return self.not_found_json(namespace, name)
        tag = views.etag(analysis)
        if_none_match = request.headers.get("If-None-Match")
        if views.etag_matches(if_none_match, tag):
            wait = self.wait_seconds(request)
            if wait > 0:
                before = analysis
                # The store swaps in a new object on every event: identity says "maybe
                # changed" cheaply, the ETag says whether the content did.
                await self.wait_for(
                    lambda: (
                        (cur := self.store.get(namespace, name)) is None
                        or (cur is not before and views.etag(cur) != tag)
                    ),
                    wait,
                )
                current = self.store.get(namespace, name)
                if current is None:
                    return self.not_found_json(namespace, name)
                analysis, tag = current, views.etag(current)
            if views.etag_matches(if_none_match, tag):
                return web.Response(status=304, headers={"ETag": tag})
        if request.method == "HEAD":
            return web.Response(headers={"ETag": tag})
        return self.json(analysis.to_kube(), etag=tag)

    # -- static --------------------------------------------------------------------------

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        item = self.static.get(request.match_info["file"])
        if item is None:
            raise web.HTTPNotFound(text="no such file; the view serves " + ", ".join(self.static))
        if views.etag_matches(request.headers.get("If-None-Match"), item.etag):
            return web.Response(status=304, headers={"ETag": item.etag})
        return web.Response(
            body=item.body,
            headers={
                "Content-Type": item.content_type,
                "ETag": item.etag,
                # Pages link with ?v=<content hash>, so a cached copy is never stale.
                "Cache-Control": "public, max-age=86400",
            },
        )

    # -- wrappers ------------------------------------------------------------------------

    def guard(self, handler: Handler, *, api: bool = False, csp: str = PAGE_CSP) -> Handler:
        """Require credentials (when configured) and set the security headers."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.auth.allows(request.headers.get("Authorization")):
                message = "authentication required: send the web view token or a user's password"
                if api:
                    response: web.StreamResponse = self.json(
                        {"error": "Unauthorized", "message": message}, status=401
                    )
                else:
                    response = web.Response(text=message + "\n", status=401)
                response.headers["WWW-Authenticate"] = self.auth.challenge
            else:
                response = await handler(request)
            _secure(response, api=api, csp=csp)
            return response

        return guarded


def _secure(response: web.StreamResponse, *, api: bool, csp: str) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", API_CSP if api else csp)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    # Live data behind (maybe) credentials: never from a shared cache.
    headers.setdefault("Cache-Control", "no-store")


def _load_static() -> dict[str, _Static]:
    folder = resources.files("oncallm.web").joinpath("static")
    files: dict[str, _Static] = {}
    for name in _STATIC_FILES:
        body = folder.joinpath(name).read_bytes()
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or name.endswith(".js"):
            content_type += "; charset=utf-8"
        files[name] = _Static(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:16]}"')
    return files


def add_web_routes(
    app: web.Application,
    store: AnalysisStore,
    settings: WebSettings,
    transcripts: TranscriptLoader | None = None,
) -> None:
    """Serve the web view on ``app``: ``/``, ``/analyses/...``, ``/api/analyses...``,
    ``/static/...``. GET and HEAD only; ``/webhook``, ``/healthz``, ``/readyz`` and
    ``/metrics`` stay free for the sidecar. ``transcripts`` reads the model transcripts
    shown at ``/analyses/<ns>/<name>/model``."""
    view = _WebView(store, settings, transcripts)
    r = app.router
    g = view.guard
    r.add_get("/", g(view.index), name=f"{_ROUTE_PREFIX}-index")
    r.add_get(
        "/analyses/{namespace}/{name}",
        g(view.analysis_page),
        name=f"{_ROUTE_PREFIX}-analysis",
    )
    r.add_get(
        "/analyses/{namespace}/{name}/model",
        g(view.transcript_page),
        name=f"{_ROUTE_PREFIX}-transcript",
    )
    r.add_get(
        "/analyses/{namespace}/{name}/{file:report\\.(?:md|html)}",
        g(view.report_file, csp=REPORT_CSP),
        name=f"{_ROUTE_PREFIX}-report-file",
    )
    r.add_get("/api/analyses", g(view.api_list, api=True), name=f"{_ROUTE_PREFIX}-api-list")
    r.add_get(
        "/api/analyses/{namespace}/{name}",
        g(view.api_analysis, api=True),
        name=f"{_ROUTE_PREFIX}-api-analysis",
    )
    # Static files need no credentials: they are the same public code for everyone.
    r.add_get("/static/{file}", _headers_only(view.static_file), name=f"{_ROUTE_PREFIX}-static")


def _headers_only(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        _secure(response, api=True, csp=API_CSP)
        return response

    return wrapped
