"""Small readers of Kubernetes objects in their JSON form, shared by the sources.

Pure functions: metadata, conditions, owners, label selectors, timestamps.
"""

from __future__ import annotations

import re
from typing import Any

from oncallm.models.analysis import parse_rfc3339

Obj = dict[str, Any]
"""A Kubernetes object as the API server sends it (JSON)."""


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def conditions(obj: Obj) -> dict[str, tuple[str, str, str]]:
    """``status.conditions`` as type -> (status, reason, message)."""
    out: dict[str, tuple[str, str, str]] = {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        out[str(cond.get("type"))] = (
            str(cond.get("status", "Unknown")),
            str(cond.get("reason", "")),
            str(cond.get("message", "")),
        )
    return out


def controller_of(obj: Obj) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner, if any."""
    refs = meta(obj).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return str(ref.get("kind")), str(ref.get("name"))
    if refs:
        return str(refs[0].get("kind")), str(refs[0].get("name"))
    return None


_CRONJOB_JOB = re.compile(r"^(.+)-(\d{8,10})$")


def workload_of(pod: Obj) -> tuple[str, str]:
    """The workload a pod belongs to, as people name it: its controller, a ReplicaSet as its
    Deployment (by the pod-template-hash suffix), the pod itself when it has none."""
    owner = controller_of(pod)
    if owner is None:
        return "Pod", name_of(pod)
    kind, name = owner
    template_hash = (meta(pod).get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return "Deployment", name[: -len(template_hash) - 1]
    scheduled = _CRONJOB_JOB.match(name) if kind == "Job" else None
    if scheduled:  # the CronJob controller names each Job <cronjob>-<scheduled minute>
        return "CronJob", scheduled.group(1)
    return kind, name


def match_labels(obj: Obj) -> dict[str, str]:
    """A workload's ``spec.selector.matchLabels``."""
    return dict(((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def label_selector(labels: dict[str, str]) -> str:
    """Equality terms as a ``labelSelector`` query value."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A non-empty equality selector that ``labels`` satisfy."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


#: An RFC 3339 timestamp (``2025-05-14T09:48:00Z``); None when absent or unreadable.
parse_time = parse_rfc3339
