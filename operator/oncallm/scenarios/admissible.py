"""What the API server demands of objects copied from another cluster, supplied so that they
plant as written (used by :mod:`oncallm.scenarios.plant`). Each change is the least that
makes the server accept the object, and reads back as the scenario wrote it where it can:

- a Job keeps the selector it carries (the original cluster's ``controller-uid`` labels):
  ``manualSelector: true``, so the server does not generate one with the new uid;
- a finished Job's status gets what validation requires since 1.31: ``SuccessCriteriaMet``
  before ``Complete``, ``FailureTarget`` before ``Failed``, a start (and completion) time
  from the final condition, no active pods;
- a pod's empty ``podIP``/``podIPs`` (``[{ip: ""}]``) and ``hostIP``/``hostIPs`` are left out;
- a typed Secret gets the keys its type requires (empty; OnCallM never reads Secret data);
- a byte field holding a placeholder rather than base64 (a ``caBundle`` of ``<redacted>``,
  Secret ``data``) is planted as the base64 of its text;
- a pod's ServiceAccount and PriorityClass the scenario leaves out are implied
  (:func:`implied_prerequisites`): the planter creates them only while it creates pods.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from oncallm.kube.resources import Resource, resource

Obj = dict[str, Any]

#: Labels the API server puts on a Job's pod template, with the Job's uid, unless the Job
#: has ``manualSelector``; a scenario copied from a cluster carries the original uid.
_JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
#: The data keys each Secret type requires (the API server refuses the Secret without them).
#: Scenarios leave secret data out; OnCallM never reads it, so empty stand-ins do.
_SECRET_KEYS = {
    "kubernetes.io/tls": {"tls.crt": "", "tls.key": ""},
    "kubernetes.io/ssh-auth": {"ssh-privatekey": ""},
    "kubernetes.io/dockerconfigjson": {".dockerconfigjson": "e30="},  # base64 of {}
    "kubernetes.io/dockercfg": {".dockercfg": "e30="},
}


def admissible(body: Obj) -> Obj:
    """``body`` (changed in place) as the API server accepts it; see the module's list."""
    kind = body.get("kind")
    spec = _part(body, "spec")
    status = _part(body, "status")
    if kind == "Job":
        _job(spec, status)
    elif kind == "Pod":
        _drop_empty_ips(status, "podIP", "podIPs")
        _drop_empty_ips(status, "hostIP", "hostIPs")
    elif kind == "Secret":
        required = _SECRET_KEYS.get(str(body.get("type")), {})
        given = {**(body.get("data") or {}), **(body.get("stringData") or {})}
        missing = {k: v for k, v in required.items() if k not in given}
        if missing:
            body["data"] = {**(body.get("data") or {}), **missing}
    _bytes_fields(body)
    return body


def _part(body: Obj, key: str) -> Obj:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _job(spec: Obj, status: Obj) -> None:
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    uid_labels = {k: v for k, v in labels.items() if k in _JOB_UID_LABELS}
    if spec.get("selector"):
        spec["manualSelector"] = True
    elif uid_labels:
        spec["manualSelector"] = True
        spec["selector"] = {"matchLabels": uid_labels}
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return
    true = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    for final, interim in (("Complete", "SuccessCriteriaMet"), ("Failed", "FailureTarget")):
        if final in true and interim not in true:
            conditions.insert(conditions.index(true[final]), {**true[final], "type": interim})
    finished = true.get("Complete") or true.get("Failed")
    if finished is None:
        return
    when = finished.get("lastTransitionTime") or finished.get("lastProbeTime")
    if when:
        status.setdefault("startTime", when)
        if "Complete" in true:
            status.setdefault("completionTime", when)
    if status.get("active"):
        status["active"] = 0  # a finished Job runs nothing


def _drop_empty_ips(status: Obj, single: str, plural: str) -> None:
    ips = [i for i in status.get(plural) or [] if (i or {}).get("ip")]
    if plural in status:
        if ips:
            status[plural] = ips
        else:
            del status[plural]
    if single in status and not status[single]:
        del status[single]


def _bytes_fields(body: Obj) -> None:
    """Placeholders in byte fields (``caBundle: <redacted>``) the server would not decode."""
    kind = body.get("kind")
    spec = _part(body, "spec")
    if kind == "Secret" and isinstance(body.get("data"), dict):
        body["data"] = {k: _base64(v) for k, v in body["data"].items()}
    elif kind == "ConfigMap" and isinstance(body.get("binaryData"), dict):
        body["binaryData"] = {k: _base64(v) for k, v in body["binaryData"].items()}
    elif kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in body.get("webhooks") or []:
            config = (hook or {}).get("clientConfig") or {}
            if "caBundle" in config:
                config["caBundle"] = _base64(config["caBundle"])
    elif kind == "APIService" and "caBundle" in spec:
        spec["caBundle"] = _base64(spec["caBundle"])
    elif kind == "CustomResourceDefinition":
        config = (((spec.get("conversion") or {}).get("webhook") or {}).get("clientConfig")) or {}
        if "caBundle" in config:
            config["caBundle"] = _base64(config["caBundle"])


def _base64(value: Any) -> Any:
    """``value`` if it decodes as base64, else the base64 of its text."""
    if not isinstance(value, str):
        return value
    try:
        base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
        return value  # Go's decoder skips line breaks too
    except (binascii.Error, ValueError):
        return base64.b64encode(value.encode()).decode()


def implied_prerequisites(objects: list[Obj]) -> list[tuple[Resource, str | None, Obj]]:
    """The ServiceAccounts and PriorityClasses the scenario's pods name but it leaves out, as
    (resource, namespace, body). A PriorityClass takes the pod's ``spec.priority`` as its
    value, so the priority admission computes what the pod says."""
    present = {
        (
            o.get("kind"),
            (o.get("metadata") or {}).get("namespace"),
            (o.get("metadata") or {}).get("name"),
        )
        for o in objects
    }
    out: list[tuple[Resource, str | None, Obj]] = []
    for obj in objects:
        if obj.get("kind") != "Pod":
            continue
        spec = obj.get("spec") or {}
        ns = (obj.get("metadata") or {}).get("namespace")
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if (
            account
            and account != "default"
            and ns
            and ("ServiceAccount", ns, account) not in present
        ):
            present.add(("ServiceAccount", ns, account))
            body: Obj = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account},
            }
            out.append((resource("ServiceAccount"), ns, body))
        priority = spec.get("priorityClassName")
        if priority and not str(priority).startswith("system-"):
            if ("PriorityClass", None, priority) not in present:
                present.add(("PriorityClass", None, priority))
                classes = resource("PriorityClass")
                body = {
                    "apiVersion": classes.api_version,
                    "kind": "PriorityClass",
                    "metadata": {"name": priority},
                    "value": int(spec.get("priority") or 0),
                }
                out.append((classes, None, body))
    return out


_PRIORITY_CLASSES = Resource(
    "PriorityClass", "/apis/scheduling.k8s.io/v1", "priorityclasses", False
)
