"""Build the operator's clients once at startup, keep them in ``memo``, close them at exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import kopf
import prometheus_client

from oncallm.kube.api import KubeAPI
from oncallm.kube.cache import CachedReader, CacheSettings
from oncallm.kube.reader import ApiReader
from oncallm.llm.budget import SharedTokenLedger
from oncallm.llm.client import ModelClient
from oncallm.llm.settings import LLMSettings
from oncallm.pipeline.claims import IncidentClaims
from oncallm.pipeline.ledger import ConfigMapLedgerStore
from oncallm.pipeline.prometheus import PrometheusSource
from oncallm.pipeline.run import Pipeline
from oncallm.pipeline.service import AnalysisService
from oncallm.pipeline.settings import IncidentSettings, OperatorSettings
from oncallm.pipeline.shards import ShardKeeper
from oncallm.sharding import ShardSettings

log = logging.getLogger(__name__)

#: kopf's own API requests time out after this many seconds; without a client timeout a
#: watch can hang forever on a half-open connection (nolar/kopf#585, #847).
WATCH_CLIENT_TIMEOUT = 300
#: Server-side watch timeout, shorter than the client's so the server ends watches cleanly.
WATCH_SERVER_TIMEOUT = 270
#: kopf workers at once. kopf starts one per object with events in flight; ours only hand the
#: event to the queue, so a worker's life is its idle timeout. Unbounded, a restart over 5,000
#: analyses started 5,000 at once (1.7 GB, docs/bench.md); 100 hold at most 100 bodies.
WORKER_LIMIT = 100
#: Seconds an idle kopf worker waits for its object's next event before it exits and frees
#: its slot. kopf's watcher puts every event in its object's backlog at once and only the
#: worker's start waits for a slot (kopf/_core/reactor/queueing.py), so while slots idle the
#: bodies of all objects behind them stay in memory: at 0.2 s, 100 slots took 500 objects a
#: second and a restart's first listing of 11,000 analyses piled up in kopf (the storm
#: benchmark's restart peaked at 354 MiB; at 10 ms, 253 MiB: docs/bench.md). Our handler takes
#: microseconds, and an object's next event most often comes from our own status write
#: seconds later, when a new worker is as cheap as a kept one; at 10 ms the slots take up to
#: 10,000 objects a second.
WORKER_IDLE_TIMEOUT = 0.01
#: Objects per page of kopf's first list of a resource. kopf lists everything in one answer by
#: default: 10,000 analyses (~8 KiB each as JSON) parsed at once were most of the operator's
#: peak memory at a restart; a page at a time holds 500.
LIST_CHUNK = 500
#: Seconds a stopping replica waits for its running analyses to finish before it gives its
#: shards back (it starts nothing new meanwhile): under the pod's terminationGracePeriodSeconds
#: (30 s in manifests/), so a rolling restart or a scale-down hands work over finished, and an
#: analysis still running after it is resumed by the shard's next owner.
DRAIN_SECONDS = 20.0


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its ServiceAccount; elsewhere, the kubeconfig (KUBECONFIG or ~/.kube/config).

    kopf's own readers, not a client library's: kubernetes-asyncio's loader is async and kopf
    cannot piggyback on it reliably.
    """
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # No resource-changing handlers (handlers/alertanalysis.py watches events only), so kopf
    # keeps no progress or diff-base on the objects; the status' phase is the only state.
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    # OnCallM watches its own namespace only; scanning namespaces and CRDs cluster-wide needs
    # rights it does not have, and kopf would retry them for about a minute at every start.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING  # k8s Events for problems only; ours are explicit
    # Only the AnalysisPolicy handler is synchronous; analyses run in OnCallM's own queue.
    settings.execution.max_workers = 4
    settings.watching.chunk_size = LIST_CHUNK
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT

    config = OperatorSettings.from_env()
    _serve_metrics(config.metrics_port)
    api = await KubeAPI.connect()
    model = ModelClient.from_settings(LLMSettings.from_env())
    if model is not None:
        # The day's tokens per policy live in the API server, shared by every replica and
        # kept across restarts (docs/ha.md#durable-budgets).
        model.ledger = SharedTokenLedger(ConfigMapLedgerStore(api, config.namespace))
    session = aiohttp.ClientSession()
    metrics_source = (
        PrometheusSource(config.prometheus_url, session) if config.prometheus_url else None
    )
    # Analyses read through watch-backed caches of the namespaces and nodes in play: in a
    # storm the API server's cost per alert falls instead of growing (kube/cache.py).
    reader = CachedReader(api, ApiReader(api), CacheSettings.from_env())
    pipeline = Pipeline.from_env(api, reader, config, model, metrics_source)
    service = AnalysisService(api, pipeline, config, IncidentSettings.from_env())
    # Shards through Leases (docs/ha.md): a client of its own, so renewals never queue behind
    # the analyses' reads for the rate limit.
    shard_settings = ShardSettings.from_env()
    lease_api = await KubeAPI.connect()
    keeper = ShardKeeper(
        lease_api, config.namespace, shard_settings, on_owned=service.adopt, busy=service.busy
    )
    service.shards, service.shard_count = keeper, shard_settings.shards
    # Members of one incident may run on different replicas: the primary is agreed through a
    # claim on the API server (pipeline/claims.py).
    service.incidents.claims = IncidentClaims(
        api, config.namespace, service.incident_settings.window_seconds
    )
    # Policies are known before the first analysis runs: kopf starts every watch at once, and
    # an analysis resumed at startup must not run under the built-in default by accident.
    await service.load_policies()
    # Open incidents are rebuilt from the completed primaries before the first unfinished
    # analysis is placed: kopf's listing comes by name, and a new alert listed before its
    # incident's primary would open the incident a second time.
    primaries = await service.load_incidents()
    memo.keeper, memo.lease_api = keeper, lease_api
    # The first Lease round before the first analysis: a lone replica owns every shard then.
    await keeper.start()
    service.start()
    memo.service = service
    memo.reader = reader
    memo.api = api
    memo.session = session
    memo.model = model
    memo.sweeps = [
        asyncio.create_task(_every(config.retention_sweep_seconds, service.sweep_retention)),
        asyncio.create_task(_every(config.upgrade_sweep_seconds, service.sweep_model_pending)),
    ]
    log.info(
        "OnCallM operator ready: namespace %s (%d incidents open, from %d primaries), %d "
        "analyses at once, replica %s holding %d of %d shards, model %s, Prometheus %s",
        config.namespace,
        len(service.incidents.registry),
        primaries,
        config.concurrency,
        shard_settings.identity,
        len(keeper.owned()),
        shard_settings.shards,
        "configured" if model else "off (set ONCALLM_LLM_BASE_URL / OPENAI_API_KEY to add one)",
        config.prometheus_url or "off (set ONCALLM_PROMETHEUS_URL to add metrics evidence)",
    )


def _serve_metrics(port: int) -> None:
    """The operator's own /metrics (analyses by outcome, stage durations, queue, model calls)."""
    if port <= 0:
        return
    try:
        prometheus_client.start_http_server(port)
    except OSError as err:
        log.warning(
            "cannot serve operator metrics on port %d (%s); set ONCALLM_OPERATOR_METRICS_PORT "
            "to a free port, or 0 to turn them off",
            port,
            err,
        )


async def _every(seconds: float, job: Any) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a sweep must never stop the operator
            log.warning("%s failed (%s); it runs again in %.0f s", job.__name__, err, seconds)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    keeper: ShardKeeper | None = getattr(memo, "keeper", None)
    if keeper is not None and getattr(memo, "service", None) is not None:
        keeper.draining = set(keeper.held)  # start nothing new; finish what runs
        if not await memo.service.drain(DRAIN_SECONDS):
            log.warning(
                "analyses still running after %.0f s; their shards' next owner resumes them",
                DRAIN_SECONDS,
            )
    if getattr(memo, "service", None) is not None:
        await memo.service.stop()
    if keeper is not None:
        await keeper.stop()  # shards given back: the other replicas take them at once
        await memo.lease_api.close()
    for task in getattr(memo, "sweeps", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if getattr(memo, "reader", None) is not None:
        await memo.reader.close()
    if getattr(memo, "model", None) is not None:
        await memo.model.close()
    if getattr(memo, "session", None) is not None:
        await memo.session.close()
    if getattr(memo, "api", None) is not None:
        await memo.api.close()


@kopf.on.probe(id="analyses_waiting")
def waiting(memo: kopf.Memo, **_: Any) -> int:
    service: AnalysisService | None = getattr(memo, "service", None)
    return service.queue.waiting if service else 0
