"""Prometheus as a :class:`~oncallm.gathering.gather.MetricsSource` (HTTP API v1)."""

from __future__ import annotations

import aiohttp

from oncallm.gathering.reader import SourceError


class PrometheusSource:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = timeout

    async def query(self, promql: str) -> dict[str, float]:
        url = f"{self.base_url}/api/v1/query"
        try:
            async with self.session.get(
                url, params={"query": promql}, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SourceError(
                "prometheus", f"{url} unreachable ({err}); check ONCALLM_PROMETHEUS_URL"
            ) from err
        if data.get("status") != "success":
            raise SourceError("prometheus", str(data.get("error", "query failed")))
        out: dict[str, float] = {}
        result = data.get("data", {}).get("result", [])
        for series in result[:20]:
            labels = series.get("metric", {})
            key = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            try:
                out[key or "value"] = float(series.get("value", [0, "nan"])[1])
            except (TypeError, ValueError):
                continue
        return out
