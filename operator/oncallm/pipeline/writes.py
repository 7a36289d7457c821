"""What the operator writes: the analysis status, the report ConfigMap, Events."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.analysis import (
    API_VERSION,
    KIND,
    TRANSCRIPT_KEY,
    AlertAnalysis,
    AlertAnalysisStatus,
    rfc3339,
)


async def patch_status(api: KubeAPI, analysis: AlertAnalysis, status: AlertAnalysisStatus) -> None:
    """Merge the set fields of ``status`` into the object's status. A write that finishes the
    analysis goes ahead of requests still waiting for the rate limit (a member of an incident
    is done with this one write; a gathering read is one of many)."""
    path = resource("AlertAnalysis").path(analysis.namespace, analysis.name) + "/status"
    await api.request(
        "PATCH",
        path,
        body={"status": status.to_kube()},
        content_type="application/merge-patch+json",
        first=status.phase is not None and status.phase.finished,
    )


def report_name(analysis_name: str) -> str:
    return f"{analysis_name}-report"


def transcript_name(analysis_name: str) -> str:
    return f"{analysis_name}-model"


async def write_report(api: KubeAPI, analysis: AlertAnalysis, files: dict[str, str]) -> str:
    """Create or replace the report ConfigMap, owned by the analysis (garbage-collected with it)."""
    return await _write_config_map(api, analysis, report_name(analysis.name), "report", files)


async def write_transcript(api: KubeAPI, analysis: AlertAnalysis, transcript: str) -> str:
    """Create or replace the ConfigMap ``<analysis>-model``: the exact redacted prompt and the
    raw replies (already bounded), owned by the analysis like its report."""
    return await _write_config_map(
        api,
        analysis,
        transcript_name(analysis.name),
        "model-transcript",
        {TRANSCRIPT_KEY: transcript},
    )


async def _write_config_map(
    api: KubeAPI, analysis: AlertAnalysis, name: str, component: str, files: dict[str, str]
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": analysis.namespace,
            "labels": {
                "app.kubernetes.io/name": "oncallm",
                "app.kubernetes.io/component": component,
                "oncallm.io/analysis": analysis.name,
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": analysis.name,
                    "uid": analysis.metadata.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": files,
    }
    cm = resource("ConfigMap")
    try:
        await api.request("POST", cm.path(analysis.namespace), body=body)
    except ApiError as err:
        if err.status != 409:
            raise
        await api.request("PUT", cm.path(analysis.namespace, name), body=body)
    return name


def event_name(analysis: AlertAnalysis, reason: str, run: str | None) -> str:
    """The name of the Event a run posts: the same for the same run of the same analysis
    (``run``: the run's ``startedAt``), so a run resumed by another replica, or retried after
    its Event was posted, posts no second one (the create answers 409). Without a run, a
    fresh name."""
    if not run:
        return f"{analysis.name}.{secrets.token_hex(6)}"
    uid = str(analysis.metadata.get("uid") or "")
    digest = hashlib.sha256(f"{uid}|{run}|{reason}".encode()).hexdigest()[:12]
    return f"{analysis.name}.{digest}"


async def post_event(
    api: KubeAPI,
    analysis: AlertAnalysis,
    *,
    warning: bool,
    reason: str,
    message: str,
    run: str | None = None,
) -> None:
    """A core/v1 Event on the analysis, as ``kubectl describe aa`` shows; once per ``run``
    (see :func:`event_name`)."""
    now = rfc3339(datetime.now(UTC).replace(microsecond=0))
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(analysis, reason, run),
            "namespace": analysis.namespace,
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": analysis.name,
            "namespace": analysis.namespace,
            "uid": analysis.metadata.get("uid"),
        },
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "oncallm-operator"},
        "reportingComponent": "oncallm.io/operator",
        "reportingInstance": "oncallm-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await api.request("POST", resource("Event").path(analysis.namespace), body=body)
    except ApiError as err:
        if err.status != 409:  # 409: this run's Event is posted already
            raise
