"""The daily token ledger on the API server: one ConfigMap, written conditionally.

``llm/budget.py``'s :class:`~oncallm.llm.budget.SharedTokenLedger` decides what to reserve and
reconcile; this store keeps the counts in the ConfigMap ``oncallm-token-ledger`` of OnCallM's
namespace, one key ``<UTC day>.<policy>`` per policy and day, each write a PUT carrying the
resourceVersion read (a 409 is :class:`~oncallm.llm.budget.LedgerConflict`: read and retry).
Every operator replica and every restart share it.
"""

from __future__ import annotations

from typing import Any

from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.llm.budget import LedgerConflict

#: The ConfigMap holding the day's tokens per policy (`kubectl get cm oncallm-token-ledger`).
LEDGER_NAME = "oncallm-token-ledger"


class ConfigMapLedgerStore:
    """The counts of a SharedTokenLedger in one ConfigMap."""

    def __init__(self, api: KubeAPI, namespace: str, name: str = LEDGER_NAME) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self._path = resource("ConfigMap").path(namespace)

    async def load(self) -> tuple[dict[str, int], str | None]:
        try:
            cm = await self.api.request("GET", f"{self._path}/{self.name}")
        except ApiError as err:
            if err.status == 404:
                return {}, None
            raise
        counts = {}
        for key, value in (cm.get("data") or {}).items():
            if str(value).isdigit():
                counts[key] = int(value)
        return counts, str(cm["metadata"]["resourceVersion"])

    async def save(self, counts: dict[str, int], version: str | None) -> str:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/name": "oncallm",
                    "app.kubernetes.io/component": "token-ledger",
                },
                "annotations": {
                    "oncallm.io/about": "tokens spent or reserved per UTC day and "
                    "AnalysisPolicy by every operator replica (docs/ha.md#durable-budgets)"
                },
            },
            "data": {key: str(value) for key, value in sorted(counts.items())},
        }
        try:
            if version is None:
                written = await self.api.request("POST", self._path, body=body)
            else:
                body["metadata"]["resourceVersion"] = version
                written = await self.api.request("PUT", f"{self._path}/{self.name}", body=body)
        except ApiError as err:
            if err.status in (404, 409):
                raise LedgerConflict(str(err)) from err
            raise
        return str(written["metadata"]["resourceVersion"])
