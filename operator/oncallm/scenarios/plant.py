"""Plant a scenario on a real API server: objects, their status, events and logs.

- Objects are created in order; ``status`` is written through the status subresource.
- ``ownerReferences`` may name the owner by kind and name only; the uid is filled in.
- An object whose metadata carries ``deletionTimestamp`` is deleted after planting: a pod
  bound to a node then stays Terminating, as on an unreachable node.
- Nodes get an ``InternalIP`` of 127.0.0.1 and the kubelet-log server's port, so
  ``pods/log`` serves the scenario's logs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.scenarios.model import ShiftedScenario

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LogPlanter = Callable[[str, str, str, str, bool], None]

#: How long a new namespace may take to get its ``default`` ServiceAccount.
SERVICE_ACCOUNT_WAIT = 30.0


async def ensure_namespace(api: KubeAPI, name: str) -> None:
    try:
        await api.request(
            "POST",
            resource("Namespace").path(),
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
    except ApiError as err:
        if err.status != 409:
            raise
    await wait_for_service_account(api, name)


async def wait_for_service_account(api: KubeAPI, namespace: str) -> None:
    """Pods are admitted only once the namespace's ``default`` ServiceAccount exists."""
    deadline = time.monotonic() + SERVICE_ACCOUNT_WAIT
    path = resource("ServiceAccount").path(namespace, "default")
    while True:
        try:
            await api.request("GET", path)
            return
        except ApiError as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def clear_namespace(api: KubeAPI, namespace: str) -> None:
    """Force-delete a namespace's pods (no kubelet will finish them), then the namespace."""
    pods = resource("Pod")
    try:
        listing = await api.request("GET", pods.path(namespace))
    except ApiError as err:
        if err.status == 404:
            return
        raise
    for pod in listing.get("items", []):
        name = pod["metadata"]["name"]
        try:
            await api.request("DELETE", pods.path(namespace, name), query={"gracePeriodSeconds": 0})
        except ApiError as err:
            if err.status != 404:
                raise
    # No pvc-protection controller runs to lift its finalizer: lift it here.
    claims = resource("PersistentVolumeClaim")
    for pvc in (await api.request("GET", claims.path(namespace))).get("items", []):
        if pvc["metadata"].get("finalizers"):
            await api.request(
                "PATCH",
                claims.path(namespace, pvc["metadata"]["name"]),
                body={"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json",
            )
    try:
        await api.request("DELETE", resource("Namespace").path(None, namespace))
    except ApiError as err:
        if err.status != 404:
            raise


async def wait_namespace_gone(api: KubeAPI, namespace: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    path = resource("Namespace").path(None, namespace)
    while time.monotonic() < deadline:
        try:
            await api.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return
            raise
        await asyncio.sleep(0.2)
    raise TimeoutError(f"namespace {namespace} still exists after {timeout:.0f} s")


def _namespaces(shifted: ShiftedScenario) -> list[str]:
    found: list[str] = []
    for obj in shifted.objects:
        if obj.get("kind") == "Namespace":
            continue
        ns = (obj.get("metadata") or {}).get("namespace")
        if ns and ns not in found:
            found.append(ns)
    for ev in shifted.event_objects():
        ns = ev["metadata"]["namespace"]
        if ns not in found:
            found.append(ns)
    return found


async def plant(
    api: KubeAPI,
    shifted: ShiftedScenario,
    *,
    node_status: Obj,
    plant_log: LogPlanter,
) -> dict[tuple[str, str | None, str], Obj]:
    """Plant everything; returns the created objects by (kind, namespace, name)."""
    created: dict[tuple[str, str | None, str], Obj] = {}
    for obj in shifted.objects:
        if obj.get("kind") == "Namespace":
            await _create(api, obj, created, node_status)
    for ns in _namespaces(shifted):
        await ensure_namespace(api, ns)
    to_delete: list[Obj] = []
    for obj in planting_order(shifted.objects):
        result = await _create(api, obj, created, node_status)
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            to_delete.append(result)
    for ev in shifted.event_objects():
        await _create(api, ev, created, node_status)
    for lg in shifted.scenario.logs:
        ns = lg.namespace or _pod_ns(created, lg.pod)
        plant_log(ns, lg.pod, lg.container, lg.text, lg.previous)
    for obj in to_delete:
        meta = obj["metadata"]
        await api.request("DELETE", resource(obj["kind"]).path(meta.get("namespace"), meta["name"]))
    return created


#: Planted last: quota admission would refuse the pods a scenario shows as already running,
#: and a LimitRange would rewrite their resources.
_LAST = ("ResourceQuota", "LimitRange")


def planting_order(objects: list[Obj]) -> list[Obj]:
    """Owners before what they own, quotas and limit ranges last; otherwise as written."""
    pending = [o for o in objects if o.get("kind") != "Namespace"]
    ordered: list[Obj] = []
    placed: set[tuple[str, str | None, str]] = set()

    def key(o: Obj) -> tuple[str, str | None, str]:
        meta = o.get("metadata") or {}
        return (str(o.get("kind")), meta.get("namespace"), str(meta.get("name")))

    present = {key(o) for o in pending}
    while pending:
        progress = False
        for obj in list(pending):
            meta = obj.get("metadata") or {}
            owners = [
                (str(r.get("kind")), meta.get("namespace"), str(r.get("name")))
                for r in meta.get("ownerReferences") or []
            ]
            if all(o in placed or o not in present for o in owners):
                ordered.append(obj)
                placed.add(key(obj))
                pending.remove(obj)
                progress = True
        if not progress:  # an ownership cycle: keep the written order, _create says what's wrong
            ordered.extend(pending)
            break
    return [o for o in ordered if o.get("kind") not in _LAST] + [
        o for o in ordered if o.get("kind") in _LAST
    ]


def _pod_ns(created: dict[tuple[str, str | None, str], Obj], pod: str) -> str:
    for kind, ns, name in created:
        if kind == "Pod" and name == pod and ns:
            return ns
    return "default"


async def _create(
    api: KubeAPI, obj: Obj, created: dict[tuple[str, str | None, str], Obj], node_status: Obj
) -> Obj:
    body = copy.deepcopy(obj)
    kind = str(body.get("kind"))
    res = resource(kind)
    meta = body.setdefault("metadata", {})
    namespace = meta.get("namespace") if res.namespaced else None
    if res.namespaced and not namespace:
        raise ValueError(f"{kind} {meta.get('name')} needs metadata.namespace")
    meta.pop("deletionTimestamp", None)
    meta.pop("creationTimestamp", None)
    meta.pop("resourceVersion", None)
    meta.pop("uid", None)
    refs = []
    for ref in meta.get("ownerReferences") or []:
        owner = created.get((ref.get("kind"), namespace, ref.get("name")))
        if owner is None:
            # The scenario leaves the owner out: the garbage collector would delete an object
            # whose owner uid does not exist, so plant it without that reference.
            log.warning(
                "%s %s: owner %s %s is not in the scenario; planted without it",
                kind,
                meta.get("name"),
                ref.get("kind"),
                ref.get("name"),
            )
            continue
        ref["uid"] = owner["metadata"]["uid"]
        ref.setdefault("apiVersion", owner.get("apiVersion", "v1"))
        refs.append(ref)
    if "ownerReferences" in meta:
        meta["ownerReferences"] = refs
    body.setdefault("apiVersion", res.api_version)
    status = body.pop("status", None)
    if kind == "Node":
        status = {**(status or {}), **node_status}
    if kind == "Event":
        status = None
    if kind == "Pod" and status:
        status = {k: v for k, v in status.items() if k != "qosClass"}  # computed by the server
    try:
        result = await api.request("POST", res.path(namespace), body=body)
    except ApiError as err:
        if err.status != 409:
            raise ApiError(
                err.status, f"planting {kind} {meta.get('name')}: {err.message}"
            ) from err
        current = await api.request("GET", res.path(namespace, meta["name"]))
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        result = await api.request("PUT", res.path(namespace, meta["name"]), body=body)
    if status:
        result = await api.request(
            "PATCH",
            res.path(namespace, meta["name"]) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
    result.setdefault("kind", kind)
    created[(kind, namespace, str(meta["name"]))] = result
    return result
