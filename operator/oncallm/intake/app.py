"""The sidecar's HTTP application: ``/webhook``, ``/healthz``, ``/readyz``, ``/metrics``.

Alertmanager is the client, and its rules decide what "nothing lost" means: it retries a
notification on any 5xx and never on a 4xx. So a malformed notification gets a 4xx that
says what is wrong, and anything transient a 503 with Retry-After.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from oncallm.intake import metrics
from oncallm.intake.settings import IntakeSettings
from oncallm.intake.writer import AlertWriter
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.store import AnalysisStore
from oncallm.models.alert import WebhookPayload

log = logging.getLogger(__name__)

API_KEY: web.AppKey[KubeAPI] = web.AppKey("api", KubeAPI)
STORE_KEY: web.AppKey[AnalysisStore] = web.AppKey("store", AnalysisStore)
SETTINGS_KEY: web.AppKey[IntakeSettings] = web.AppKey("intake_settings", IntakeSettings)
WRITER_KEY: web.AppKey[AlertWriter] = web.AppKey("writer", AlertWriter)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def report_url(base: str, namespace: str, name: str) -> str:
    return (
        f"{base.rstrip('/')}/analyses/{namespace}/{name}"
        if base
        else f"/analyses/{namespace}/{name}"
    )


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        return await _webhook(request)
    finally:
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)


async def _webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    if settings.token is not None:
        header = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.token}"
        if not hmac.compare_digest(header.encode(), expected.encode()):
            metrics.REJECTED.labels("unauthorized").inc()
            return _error(
                401,
                "missing or wrong bearer token: set http_config.authorization.credentials "
                "in Alertmanager's webhook receiver to the token in ONCALLM_WEBHOOK_TOKEN",
            )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.REJECTED.labels("too_large").inc()
        return _error(
            413,
            f"notification larger than {settings.max_body_bytes} bytes: raise "
            "ONCALLM_MAX_BODY_BYTES or set max_alerts in Alertmanager's webhook_config",
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        metrics.REJECTED.labels("malformed_json").inc()
        return _error(400, f"the body is not JSON: {err}")
    try:
        payload = WebhookPayload.model_validate(data)
    except ValidationError as err:
        metrics.REJECTED.labels("invalid_payload").inc()
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in err.errors(include_url=False)
        ]
        names = ", ".join(f["field"] or "(body)" for f in fields[:10])
        return _error(
            422,
            f"not an Alertmanager webhook payload (version 4); wrong fields: {names}",
            fields=fields[:100],
        )
    try:
        stored = await request.app[WRITER_KEY].store_notification(payload)
    except ApiError as err:
        metrics.REJECTED.labels("api_unavailable").inc()
        log.warning(
            "could not store a notification of %d alerts (%s); answered 503 so Alertmanager "
            "retries. Check the API server and OnCallM's RBAC.",
            len(payload.alerts),
            err,
        )
        retry = int(err.retry_after or settings.retry_after_seconds)
        return web.json_response(
            {"error": f"the Kubernetes API server could not store the alerts: {err}; retry later"},
            status=503,
            headers={"Retry-After": str(retry)},
        )
    base = settings.report_base_url
    return web.json_response(
        [
            {
                "fingerprint": s.fingerprint,
                "analysis": f"{s.namespace}/{s.analysis}",
                "outcome": s.outcome,
                "reportURL": report_url(base, s.namespace, s.analysis),
            }
            for s in stored
        ]
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    try:
        discovery = await api.request("GET", "/apis/oncallm.io/v1alpha1", timeout=3)
    except ApiError as err:
        status = 503
        if err.status == 404:
            return web.Response(
                status=status,
                text="the AlertAnalysis CRD is not installed: kubectl apply -f crds/\n",
            )
        return web.Response(status=status, text=f"the API server does not answer: {err}\n")
    kinds = {r.get("name") for r in discovery.get("resources", [])}
    if "alertanalyses" not in kinds:
        return web.Response(status=503, text="the AlertAnalysis CRD is not served yet\n")
    if not request.app[STORE_KEY].synced:
        return web.Response(status=503, text="the list of known alerts is still loading\n")
    return web.Response(text="ok")


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(api: KubeAPI, store: AnalysisStore, settings: IntakeSettings) -> web.Application:
    """The sidecar's application; the web view's routes are added by the caller."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[API_KEY] = api
    app[STORE_KEY] = store
    app[SETTINGS_KEY] = settings
    app[WRITER_KEY] = AlertWriter(
        api, store, settings.namespace, settings.concurrency, shards=settings.shards
    )
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
