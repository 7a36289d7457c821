"""A thin JSON client over kubernetes-asyncio's ApiClient.

Everything OnCallM reads or writes goes through :class:`KubeAPI`: raw JSON in and out (no
model deserialisation on the hot path), one connection pool, errors as :class:`ApiError`
with the status code, and an optional client-side rate limit — neither kopf nor
kubernetes-asyncio has one, and a notification of thousands of alerts must not flood the
API server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config


class ApiError(Exception):
    """The API server answered with an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}

    @property
    def transient(self) -> bool:
        """Worth retrying: unreachable, throttled, or a server-side failure."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def retry_after(self) -> float | None:
        details = self.body.get("details") or {}
        value = details.get("retryAfterSeconds")
        return float(value) if value else None


class RateLimiter:
    """A token bucket: ``qps`` requests a second on average, bursts up to ``burst``.

    The same shape as client-go's default limiter (QPS 5, burst 10 there; OnCallM's defaults
    are higher because one notification may carry thousands of alerts). Waiting requests are
    served in order, except that a request marked ``first`` goes before every unmarked one:
    the write that completes an analysis is its last request and makes a report visible, so in
    a storm it should not queue behind the reads of analyses that are still gathering.
    """

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._first: deque[asyncio.Future[None]] = deque()
        self._rest: deque[asyncio.Future[None]] = deque()
        self._dispenser: asyncio.Task[None] | None = None

    async def acquire(self, *, first: bool = False) -> None:
        if self.qps <= 0:
            return
        if not self._first and not self._rest and self._take():
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._first if first else self._rest).append(waiter)
        if self._dispenser is None or self._dispenser.done():
            self._dispenser = asyncio.create_task(self._dispense())
        await waiter

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def _dispense(self) -> None:
        """Hand out tokens to the waiters as they accrue, marked ones first."""
        while self._first or self._rest:
            queue = self._first or self._rest
            if queue[0].done():  # its request was cancelled while it waited
                queue.popleft()
                continue
            if self._take():
                queue.popleft().set_result(None)
            else:
                await asyncio.sleep((1 - self._tokens) / self.qps)


@dataclass
class ClientSettings:
    """How OnCallM talks to the API server."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; unset means in-cluster config, else ~/.kube/config (KUBECONFIG)."""
    qps: float = 50.0
    """Client-side request rate toward the API server (ONCALLM_KUBE_QPS). 50/s keeps a burst of
    thousands of alerts well inside API Priority and Fairness' default share for a workload."""
    burst: int = 100
    """Requests allowed at once above the rate (ONCALLM_KUBE_BURST)."""
    pool_size: int = 64
    """Connections kept open to the API server (ONCALLM_KUBE_POOL)."""
    request_timeout: float = 15.0
    """Seconds before a single request is abandoned (ONCALLM_KUBE_TIMEOUT)."""

    @classmethod
    def from_env(cls) -> ClientSettings:
        return cls(
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            qps=float(os.environ.get("ONCALLM_KUBE_QPS", cls.qps)),
            burst=int(os.environ.get("ONCALLM_KUBE_BURST", cls.burst)),
            pool_size=int(os.environ.get("ONCALLM_KUBE_POOL", cls.pool_size)),
            request_timeout=float(os.environ.get("ONCALLM_KUBE_TIMEOUT", cls.request_timeout)),
        )


class KubeAPI:
    """Raw JSON requests to the API server, rate-limited."""

    def __init__(self, api_client: k8s_client.ApiClient, settings: ClientSettings) -> None:
        self.api_client = api_client
        self.settings = settings
        self.limiter = RateLimiter(settings.qps, settings.burst)
        #: requests made, by HTTP method: lets tests prove a path made no writes
        self.calls: Counter[str] = Counter()

    @classmethod
    async def connect(cls, settings: ClientSettings | None = None) -> KubeAPI:
        """Build a client from in-cluster config or a kubeconfig."""
        settings = settings or ClientSettings.from_env()
        configuration = k8s_client.Configuration()
        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = settings.pool_size
        return cls(k8s_client.ApiClient(configuration), settings)

    async def close(self) -> None:
        await self.api_client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        text: bool = False,
        first: bool = False,
    ) -> Any:
        """One request; the decoded JSON answer. Raises ApiError on any failure. ``first``:
        ahead of the unmarked requests waiting for the rate limit (see ``RateLimiter``)."""
        await self.limiter.acquire(first=first)
        self.calls[method] += 1
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = body  # the REST client serialises JSON bodies itself
        try:
            resp = await self.api_client.call_api(
                path,
                method,
                query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
                header_params=headers,
                body=data,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or self.settings.request_timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise ApiError(0, f"API server unreachable: {err or type(err).__name__}") from err
        try:
            raw = await resp.read()
        finally:
            resp.release()
        if text and 200 <= resp.status < 300:
            return raw.decode(errors="replace")
        if resp.content_type == "application/json" or raw[:1] in (b"{", b"["):
            try:
                decoded = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                decoded = {"message": raw.decode(errors="replace")}
        else:
            decoded = raw.decode(errors="replace")
        if not 200 <= resp.status < 300:
            payload = decoded if isinstance(decoded, dict) else {"message": decoded}
            raise ApiError(resp.status, str(payload.get("message", resp.reason)), payload)
        return decoded

    async def text(self, path: str, *, query: dict[str, Any] | None = None) -> str:
        """A plain-text GET (pod logs)."""
        result: str = await self.request("GET", path, query=query, text=True)
        return result

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events (``{"type": ..., "object": ...}``) until the server ends it."""
        query: dict[str, Any] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        try:
            resp = await self.api_client.call_api(
                path,
                "GET",
                query_params=list(query.items()),
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise ApiError(0, f"API server unreachable: {err}") from err
        try:
            if resp.status != 200:
                raw = await resp.read()
                raise ApiError(resp.status, raw.decode(errors="replace"))
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ApiError(0, f"watch broken: {err}") from err
        finally:
            resp.release()
