"""OnCallM's whole stack in one event loop: the operator (kopf) and the sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from oncallm.intake.server import RunningSidecar, running_sidecar
from oncallm.intake.settings import IntakeSettings
from oncallm.kube.api import ClientSettings

log = logging.getLogger(__name__)


@dataclass
class Stack:
    sidecar: RunningSidecar
    namespace: str

    @property
    def url(self) -> str:
        return self.sidecar.url

    async def send(
        self, payload: dict[str, object], token: str | None = None
    ) -> list[dict[str, str]]:
        """POST a notification as Alertmanager does; the sidecar's answer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url + "/webhook", json=payload, headers=headers) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RuntimeError(f"the webhook answered {resp.status}: {body}")
                result: list[dict[str, str]] = body
                return result


@asynccontextmanager
async def running_stack(
    kubeconfig: str, namespace: str, *, port: int = 0, host: str = "127.0.0.1"
) -> AsyncIterator[Stack]:
    """Operator and sidecar for ``namespace`` against the cluster of ``kubeconfig``."""
    import kopf

    import oncallm.handlers  # noqa: F401 - registers the handlers

    os.environ["KUBECONFIG"] = kubeconfig
    os.environ["ONCALLM_NAMESPACE"] = namespace
    os.environ.setdefault("ONCALLM_OPERATOR_METRICS_PORT", "0")
    stop = asyncio.Event()
    ready = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            namespaces=[namespace],
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    settings = IntakeSettings(namespace=namespace, host=host, port=port)
    try:
        await asyncio.wait_for(ready.wait(), 60)
        async with running_sidecar(settings, ClientSettings(kubeconfig=kubeconfig)) as sidecar:
            while not sidecar.store.synced:
                await asyncio.sleep(0.05)
            yield Stack(sidecar=sidecar, namespace=namespace)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(operator, 30)
