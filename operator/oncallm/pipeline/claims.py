"""Which analysis diagnoses a cause, agreed between operator replicas through the API server.

Members of one incident may land on different replicas (their shards differ). Each replica
sees every completed primary in its watch, so once a primary completed every replica joins
its incident; before that, two replicas could each open the incident and diagnose it twice.
So the analysis about to become a primary first creates a Lease named after the cause,
``oncallm-incident-<hash>``, holding its own name: the create that succeeds makes the primary;
a replica whose create answers 409 reads the holder and joins that analysis' incident, its
members waiting for the primary's completed status. The claim is owned by the primary (the
garbage collector deletes it with the analysis) and holds for the incident window: a cause
claimed longer ago is open to a new claim (taken conditionally on its resourceVersion), by
then every replica knows the incident from the primary's status.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

from oncallm.incidents import CauseKey
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.analysis import API_VERSION, KIND, AlertAnalysis
from oncallm.sharding.leases import micro_time

#: Label of the claim Leases (apart from the shard Leases' ``oncallm.io/lease``).
CLAIM_LABEL = "oncallm.io/incident-claim"


def claim_name(namespace: str, key: CauseKey) -> str:
    digest = hashlib.sha256(f"{namespace}|{key.text}".encode()).hexdigest()[:20]
    return f"oncallm-incident-{digest}"


class IncidentClaims:
    """Claims of causes as Leases in OnCallM's namespace."""

    def __init__(self, api: KubeAPI, namespace: str, window_seconds: float) -> None:
        self.api = api
        self.namespace = namespace
        self.window = max(1, int(window_seconds))
        self._path = resource("Lease").path(namespace)

    async def claim(self, key: CauseKey, analysis: AlertAnalysis) -> str:
        """The name of the analysis that diagnoses ``key``: ``analysis`` when its claim was
        made (or it held the claim already: a primary resumed after a takeover)."""
        name = claim_name(analysis.namespace, key)
        body = self._body(name, key, analysis)
        try:
            await self.api.request("POST", self._path, body=body)
            return analysis.name
        except ApiError as err:
            if err.status != 409:
                raise
        current = await self.api.request("GET", f"{self._path}/{name}")
        holder = str((current.get("spec") or {}).get("holderIdentity") or "")
        if holder == analysis.name or not self._stale(current):
            return holder or analysis.name
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            await self.api.request("PUT", f"{self._path}/{name}", body=body)
        except ApiError as err:
            if err.status != 409:
                raise
            # taken by another meanwhile: that one diagnoses it
            again = await self.api.request("GET", f"{self._path}/{name}")
            return str((again.get("spec") or {}).get("holderIdentity") or analysis.name)
        return analysis.name

    def _stale(self, lease: dict[str, Any]) -> bool:
        renewed = str((lease.get("spec") or {}).get("renewTime") or "")
        try:
            when = datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return True
        return time.time() - when > self.window

    def _body(self, name: str, key: CauseKey, analysis: AlertAnalysis) -> dict[str, Any]:
        now = micro_time(time.time())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": analysis.namespace,
                "labels": {"app.kubernetes.io/name": "oncallm", CLAIM_LABEL: "true"},
                "annotations": {"oncallm.io/cause": key.text[:1000]},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "name": analysis.name,
                        "uid": analysis.metadata.get("uid"),
                    }
                ],
            },
            "spec": {
                "holderIdentity": analysis.name,
                "leaseDurationSeconds": self.window,
                "acquireTime": now,
                "renewTime": now,
            },
        }
