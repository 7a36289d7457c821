"""Gather the evidence for one alert: concurrent, each source bounded, failures recorded.

A source that fails (forbidden, timed out, absent) becomes a ``missing`` entry of the
:class:`~oncallm.models.evidence.Context` and never fails the analysis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from oncallm.gathering import snapshots as snap
from oncallm.gathering.reader import KubeReader, SourceError
from oncallm.gathering.target import resolve_target
from oncallm.models.alert import Alert
from oncallm.models.analysis import MissingEvidence, TargetRef
from oncallm.models.evidence import (
    Context,
    HistorySnapshot,
    LogSnapshot,
    MetricSnapshot,
    PodSnapshot,
)
from oncallm.models.policy import AnalysisPolicy, Depth

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class GatherSettings:
    """Bounds on gathering, so one analysis never stalls or floods anything."""

    source_timeout: float = 10.0
    """Seconds one source may take before it is recorded as missing (ONCALLM_SOURCE_TIMEOUT)."""
    max_pods: int = 20
    """Pods of a workload snapshotted; the unhealthiest first (ONCALLM_MAX_PODS)."""
    max_log_pods: int = 3
    """Failing pods whose logs are read (ONCALLM_MAX_LOG_PODS): the worst few tell the story."""
    max_events: int = 60
    """Events kept, Warning and newest first (ONCALLM_MAX_EVENTS)."""
    max_line_chars: int = 2000
    """A log line longer than this is cut: one minified JSON line must not fill the report."""

    @classmethod
    def from_env(cls) -> GatherSettings:
        return cls(
            source_timeout=float(os.environ.get("ONCALLM_SOURCE_TIMEOUT", cls.source_timeout)),
            max_pods=int(os.environ.get("ONCALLM_MAX_PODS", cls.max_pods)),
            max_log_pods=int(os.environ.get("ONCALLM_MAX_LOG_PODS", cls.max_log_pods)),
            max_events=int(os.environ.get("ONCALLM_MAX_EVENTS", cls.max_events)),
        )


class MetricsSource(Protocol):
    """Prometheus, or anything that answers instant PromQL queries."""

    async def query(self, promql: str) -> dict[str, float]:
        """Latest value of each series, keyed by its labels as text."""
        ...


class HistorySource(Protocol):
    async def earlier(self, alert: Alert, exclude: str | None) -> list[HistorySnapshot]: ...


class _Gatherer:
    def __init__(
        self,
        alert: Alert,
        reader: KubeReader,
        policy: AnalysisPolicy,
        settings: GatherSettings,
        now: datetime,
    ) -> None:
        self.alert = alert
        self.reader = reader
        self.policy = policy
        self.settings = settings
        self.now = now
        self.target = resolve_target(alert)
        self.ctx = Context(alert=alert, target=self.target)
        self.raw_pods: list[Obj] = []

    @asynccontextmanager
    async def source(self, name: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.settings.source_timeout):
                yield
        except SourceError as err:
            self.ctx.missing.append(MissingEvidence(source=err.source, reason=err.reason))
        except TimeoutError:
            self.ctx.missing.append(
                MissingEvidence(
                    source=name,
                    reason=f"timed out after {self.settings.source_timeout:.0f} s "
                    "(raise ONCALLM_SOURCE_TIMEOUT if the API server is slow)",
                )
            )

    async def _get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        obj = await self.reader.get(kind, namespace, name)
        if obj is not None:
            obj.setdefault("kind", kind)
        return obj

    # -- the target and its workload ------------------------------------------------------
    async def workload(self) -> None:
        t = self.target
        ns = t.namespace
        if t.kind == "Pod":
            pod = await self._get("Pod", ns, t.name)
            if pod is None:
                self.ctx.missing.append(
                    MissingEvidence(source=f"pod {ns}/{t.name}", reason="the pod no longer exists")
                )
                # The alert may outlive the pod; look at its siblings through a guessed owner.
                owner = _guess_deployment(t.name)
                if owner:
                    await self._workload_by_name("Deployment", ns, owner, guessed=True)
                return
            owner_ref = snap.controller_of(pod)
            if owner_ref:
                await self._workload_by_name(owner_ref[0], ns, owner_ref[1], focus=pod)
            else:
                self.raw_pods = [pod]
            return
        if t.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"):
            await self._workload_by_name(t.kind, ns, t.name)
        elif t.kind == "HorizontalPodAutoscaler":
            hpa = await self._get("HorizontalPodAutoscaler", ns, t.name)
            if hpa:
                ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
                if ref.get("kind") and ref.get("name"):
                    await self._workload_by_name(str(ref["kind"]), ns, str(ref["name"]))
        elif t.kind == "PersistentVolumeClaim" and ns:
            pods = await self.reader.list("Pod", ns)
            self.raw_pods = [
                p
                for p in pods
                if any(
                    (v.get("persistentVolumeClaim") or {}).get("claimName") == t.name
                    for v in (p.get("spec") or {}).get("volumes") or []
                )
            ]
        elif t.kind == "Node":
            self.raw_pods = await self.reader.list(
                "Pod", None, field_selector=f"spec.nodeName={t.name}"
            )
        elif t.kind == "Service" and ns:
            svc = await self._get("Service", ns, t.name)
            selector = ((svc or {}).get("spec") or {}).get("selector") or {}
            if selector:
                self.raw_pods = await self.reader.list("Pod", ns, label_selector=_sel(selector))

    async def _workload_by_name(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        focus: Obj | None = None,
        guessed: bool = False,
    ) -> None:
        obj = await self._get(kind, namespace, name)
        if obj is None:
            if not guessed:
                self.ctx.missing.append(
                    MissingEvidence(source=f"{kind.lower()} {namespace}/{name}", reason="not found")
                )
            if focus is not None:
                self.raw_pods = [focus]
            return
        # A ReplicaSet stands for its Deployment; a Job for its CronJob (kept as owner).
        owner = snap.controller_of(obj)
        if kind == "ReplicaSet" and owner and owner[0] == "Deployment":
            dep = await self._get("Deployment", namespace, owner[1])
            if dep is not None:
                obj, kind = dep, "Deployment"
        if kind == "Job" and owner and owner[0] == "CronJob":
            cron = await self._get("CronJob", namespace, owner[1])
            if cron is not None:
                self.ctx.owners.append(snap.workload_snapshot(cron))
        revisions = []
        if kind == "Deployment":
            all_rs = await self.reader.list(
                "ReplicaSet", namespace, label_selector=_sel(_match_labels(obj))
            )
            owned = [r for r in all_rs if snap.controller_of(r) == ("Deployment", name_of(obj))]
            revisions = snap.replicaset_revisions(owned)
        self.ctx.workload = snap.workload_snapshot(obj, revisions)
        if kind == "CronJob":
            jobs = [
                j
                for j in await self.reader.list("Job", namespace)
                if snap.controller_of(j) == ("CronJob", name_of(obj))
            ]
            jobs.sort(key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp", "")))
            if jobs:
                latest = jobs[-1]
                self.ctx.owners.append(self.ctx.workload)
                self.ctx.workload = snap.workload_snapshot(latest)
                self.raw_pods = await self.reader.list(
                    "Pod", namespace, label_selector=f"job-name={name_of(latest)}"
                )
            return
        selector: str | None
        if kind == "Job":
            selector = f"job-name={name_of(obj)}"
        else:
            labels = _match_labels(obj)
            selector = _sel(labels) if labels else None
        if selector:
            self.raw_pods = await self.reader.list("Pod", namespace, label_selector=selector)
        if focus is not None and all(name_of(p) != name_of(focus) for p in self.raw_pods):
            self.raw_pods.append(focus)

    # -- everything around the pods -------------------------------------------------------
    def pods(self) -> list[PodSnapshot]:
        pods = [snap.pod_snapshot(p) for p in self.raw_pods]
        focus = self.target.name if self.target.kind == "Pod" else None
        pods.sort(key=lambda p: (p.name != focus, -snap.pod_badness(p), p.name))
        limit = 1 if self.policy.spec.depth == Depth.QUICK and focus else self.settings.max_pods
        return pods[:limit]

    async def logs(self) -> None:
        src = self.policy.spec.sources
        if src.log_lines == 0:
            return
        failing = [p for p in self.ctx.pods if snap.pod_is_unhealthy(p) and p.node_name]
        tasks: list[Awaitable[None]] = []
        for pod in failing[: self.settings.max_log_pods]:
            for c in _log_containers(pod, self.target.container):
                if src.previous_logs and (c.restart_count > 0 or c.last_state == "terminated"):
                    tasks.append(self._log(pod, c.name, previous=True))
                if c.state in ("running", "terminated") or c.restart_count > 0:
                    tasks.append(self._log(pod, c.name, previous=False))
        await asyncio.gather(*tasks)

    async def _log(self, pod: PodSnapshot, container: str, *, previous: bool) -> None:
        tail = self.policy.spec.sources.log_lines
        async with self.source(f"logs {pod.name}/{container}"):
            text = await self.reader.logs(
                pod.namespace, pod.name, container, previous=previous, tail_lines=tail
            )
            lines = text.splitlines()
            cut = [
                ln
                if len(ln) <= self.settings.max_line_chars
                else ln[: self.settings.max_line_chars] + " …"
                for ln in lines[-tail:]
            ]
            self.ctx.logs.append(
                LogSnapshot(
                    pod=pod.name,
                    namespace=pod.namespace,
                    container=container,
                    previous=previous,
                    lines=cut,
                    truncated=len(lines) >= tail,
                )
            )

    async def events(self) -> None:
        ns = self.target.namespace
        window = timedelta(minutes=self.policy.spec.sources.event_window_minutes)
        wanted: set[tuple[str, str]] = {(self.target.kind, self.target.name)}
        for p in self.ctx.pods:
            wanted.add(("Pod", p.name))
            for claim in p.pvcs:
                wanted.add(("PersistentVolumeClaim", claim))
        if self.ctx.workload:
            wanted.add((self.ctx.workload.kind, self.ctx.workload.name))
            for rev in self.ctx.workload.revisions[:2]:
                wanted.add(("ReplicaSet", rev.name))
        for owner in self.ctx.owners:
            wanted.add((owner.kind, owner.name))
        for hpa in self.ctx.hpas:
            wanted.add(("HorizontalPodAutoscaler", hpa.name))
        raw: list[Obj] = []
        if ns:
            async with self.source("events"):
                raw.extend(await self.reader.list("Event", ns))
        nodes = {p.node_name for p in self.ctx.pods if p.node_name}
        if self.target.kind == "Node":
            nodes.add(self.target.name)
        for node in sorted(nodes)[:3]:
            async with self.source(f"events of node {node}"):
                raw.extend(
                    await self.reader.list(
                        "Event",
                        None,
                        field_selector=f"involvedObject.kind=Node,involvedObject.name={node}",
                    )
                )
            wanted.add(("Node", node))
        events = [snap.event_snapshot(e) for e in raw]
        cutoff = self.now - window
        kept = [
            e
            for e in events
            if (e.object_kind, e.object_name) in wanted and _after(e.last_seen, cutoff)
        ]
        kept.sort(key=lambda e: (e.type != "Warning", _neg_time(e.last_seen)))
        seen: set[tuple[str, str, str, str]] = set()
        unique = []
        for e in kept:
            key = (e.object_kind, e.object_name, e.reason, e.message)
            if key not in seen:
                seen.add(key)
                unique.append(e)
        self.ctx.events = unique[: self.settings.max_events]

    async def nodes(self) -> None:
        names = {p.node_name for p in self.ctx.pods if p.node_name}
        if self.target.kind == "Node":
            names.add(self.target.name)
        for name in sorted(names)[:3]:
            async with self.source(f"node {name}"):
                node = await self._get("Node", None, name)
                if node is None:
                    self.ctx.missing.append(
                        MissingEvidence(source=f"node {name}", reason="the node no longer exists")
                    )
                    continue
                on_node = await self.reader.list(
                    "Pod", None, field_selector=f"spec.nodeName={name}"
                )
                self.ctx.nodes.append(snap.node_snapshot(node, on_node))

    async def pvcs(self) -> None:
        ns = self.target.namespace
        names = {c for p in self.ctx.pods for c in p.pvcs}
        if self.target.kind == "PersistentVolumeClaim":
            names.add(self.target.name)
        for name in sorted(names)[:10]:
            async with self.source(f"pvc {name}"):
                pvc = await self._get("PersistentVolumeClaim", ns, name)
                if pvc is None:
                    self.ctx.missing_objects.append(f"PersistentVolumeClaim {ns}/{name}")
                    continue
                spec = pvc.get("spec") or {}
                pv = (
                    await self._get("PersistentVolume", None, spec["volumeName"])
                    if spec.get("volumeName")
                    else None
                )
                sc_name = spec.get("storageClassName")
                sc = await self._get("StorageClass", None, sc_name) if sc_name else None
                self.ctx.pvcs.append(snap.pvc_snapshot(pvc, pv, sc, sc_checked=bool(sc_name)))

    async def services(self) -> None:
        ns = self.target.namespace
        if not ns:
            return
        services = await self.reader.list("Service", ns)
        mentioned = self._mentioned_text()
        chosen: list[tuple[Obj, str]] = []
        for svc in services:
            name = name_of(svc)
            selector = (svc.get("spec") or {}).get("selector") or {}
            if self.target.kind == "Service" and name == self.target.name:
                chosen.append((svc, "target"))
            elif selector and any(snap.selector_matches(selector, p.labels) for p in self.ctx.pods):
                chosen.append((svc, "member"))
            elif _mentions(mentioned, name, ns):
                chosen.append((svc, "dependency"))
        # Dependencies named in env or logs that do not exist at all are evidence too.
        for svc, relation in chosen[:10]:
            endpoints = await self._get("Endpoints", ns, name_of(svc))
            selector = (svc.get("spec") or {}).get("selector") or {}
            pods = self.ctx.pods
            if relation == "dependency" and selector:
                pods = [
                    snap.pod_snapshot(p)
                    for p in await self.reader.list("Pod", ns, label_selector=_sel(selector))
                ]
            self.ctx.services.append(snap.service_snapshot(svc, endpoints, pods, relation))

    def _mentioned_text(self) -> str:
        parts: list[str] = []
        for p in self.ctx.pods:
            for c in p.containers:
                parts.extend(c.env.values())
        for lg in self.ctx.logs:
            parts.extend(lg.lines[-200:])
        parts.extend(e.message for e in self.ctx.events)
        return "\n".join(parts)

    async def namespace_limits(self) -> None:
        ns = self.target.namespace
        if not ns:
            return
        async with self.source("resourcequotas"):
            self.ctx.quotas = [
                snap.quota_snapshot(q) for q in await self.reader.list("ResourceQuota", ns)
            ]
        async with self.source("limitranges"):
            self.ctx.limit_ranges = [
                snap.limit_range_snapshot(lr) for lr in await self.reader.list("LimitRange", ns)
            ]

    async def hpas(self) -> None:
        ns = self.target.namespace
        if not ns:
            return
        wl = self.ctx.workload
        for hpa in await self.reader.list("HorizontalPodAutoscaler", ns):
            s = snap.hpa_snapshot(hpa)
            if (self.target.kind == "HorizontalPodAutoscaler" and s.name == self.target.name) or (
                wl and s.target_kind == wl.kind and s.target_name == wl.name
            ):
                self.ctx.hpas.append(s)

    async def network_policies(self) -> None:
        ns = self.target.namespace
        if not ns or not self.ctx.pods:
            return
        for np in await self.reader.list("NetworkPolicy", ns):
            s = snap.network_policy_snapshot(np, self.ctx.pods)
            if s.selects_target:
                self.ctx.network_policies.append(s)

    async def config_refs(self) -> None:
        """ConfigMaps the pods reference that do not exist (Secrets: OnCallM may not read them)."""
        ns = self.target.namespace
        names = sorted({c for p in self.ctx.pods for c in p.config_maps})[:10]
        for name in names:
            async with self.source(f"configmap {name}"):
                if await self._get("ConfigMap", ns, name) is None:
                    self.ctx.missing_objects.append(f"ConfigMap {ns}/{name}")

    async def run_all(
        self, metrics: MetricsSource | None, history: HistorySource | None, exclude: str | None
    ) -> Context:
        async with self.source(f"{self.target.kind.lower()} {self.target.name}"):
            await self.workload()
        self.ctx.pods = self.pods()
        standard = self.policy.spec.depth != Depth.QUICK
        first: list[Callable[[], Awaitable[None]]] = [self.logs, self.hpas]
        if standard:
            first += [
                self.nodes,
                self.pvcs,
                self.namespace_limits,
                self.network_policies,
                self.config_refs,
            ]
        await asyncio.gather(*(self._guarded(f) for f in first))
        # Events and services read what the first round found (pods' nodes, log text).
        second: list[Callable[[], Awaitable[None]]] = [self.events]
        if standard:
            second.append(self.services)
        if metrics is not None and self.policy.spec.sources.metrics:
            second.append(lambda: self.metrics(metrics))
        if history is not None and self.policy.spec.sources.history:
            second.append(lambda: self.history(history, exclude))
        await asyncio.gather(*(self._guarded(f) for f in second))
        return self.ctx

    async def _guarded(self, func: Callable[[], Awaitable[None]]) -> None:
        name = getattr(func, "__name__", "source").strip("_")
        async with self.source(name):
            await func()

    async def metrics(self, source: MetricsSource) -> None:
        for name, query, description in standard_queries(self.alert, self.target, self.ctx):
            async with self.source(f"metric {name}"):
                values = await source.query(query)
                if values:
                    self.ctx.metrics.append(
                        MetricSnapshot(
                            name=name, query=query, values=values, description=description
                        )
                    )

    async def history(self, source: HistorySource, exclude: str | None) -> None:
        self.ctx.history = (await source.earlier(self.alert, exclude))[:10]


def standard_queries(alert: Alert, target: TargetRef, ctx: Context) -> list[tuple[str, str, str]]:
    """The alert's own expression and a few standard series for its target."""
    out: list[tuple[str, str, str]] = []
    expr = alert_expression(alert.generator_url)
    if expr:
        out.append(("alert_expression", expr, "the alert's own expression, now"))
    pods = [p.name for p in ctx.pods][:10]
    ns = target.namespace
    if ns and pods:
        sel = f'namespace="{ns}",pod=~"{"|".join(_promql_regex(p) for p in pods)}"'
        out += [
            (
                "restarts",
                f"kube_pod_container_status_restarts_total{{{sel}}}",
                "container restarts so far",
            ),
            (
                "memory_working_set_bytes",
                f'container_memory_working_set_bytes{{{sel},container!=""}}',
                "memory in use per container",
            ),
            (
                "memory_limit_bytes",
                f'kube_pod_container_resource_limits{{{sel},resource="memory"}}',
                "memory limit per container",
            ),
            (
                "cpu_throttled_ratio",
                "sum by (pod, container) "
                f"(increase(container_cpu_cfs_throttled_periods_total{{{sel}}}[5m]))"
                " / sum by (pod, container) "
                f"(increase(container_cpu_cfs_periods_total{{{sel}}}[5m]))",
                "share of CPU periods throttled, last 5 minutes",
            ),
        ]
    return out


def _promql_regex(name: str) -> str:
    """A literal for a regex inside a PromQL string: Python's re.escape would write ``\\-``,
    which PromQL strings refuse; pod names need only their dots escaped."""
    return re.sub(r"([.+*?()|\[\]{}^$])", r"\\\\\1", name)


def alert_expression(generator_url: str) -> str | None:
    """The PromQL expression in a Prometheus generatorURL (``/graph?g0.expr=...``)."""
    from urllib.parse import parse_qs, urlparse

    if not generator_url:
        return None
    query = parse_qs(urlparse(generator_url).query)
    values = query.get("g0.expr")
    return values[0] if values else None


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _match_labels(obj: Obj) -> dict[str, str]:
    return dict(((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def _sel(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _guess_deployment(pod_name: str) -> str | None:
    """``api-7d9f8c6b5-x2kqp`` -> ``api``: a Deployment's pod name is name-hash-suffix."""
    match = re.match(r"^(.+)-[a-z0-9]{8,10}-[a-z0-9]{5}$", pod_name)
    return match.group(1) if match else None


def _log_containers(pod: PodSnapshot, wanted: str | None) -> list[Any]:
    chosen = [c for c in pod.containers if wanted and c.name == wanted]
    bad = [
        c
        for c in pod.containers
        if c not in chosen
        and (c.restart_count > 0 or c.state != "running" or not c.ready)
        and c.state != "unknown"
    ]
    rest = chosen + bad
    if not rest:
        rest = [c for c in pod.containers if not c.init][:1]
    return rest[:2]


def _mentions(text: str, name: str, namespace: str) -> bool:
    if len(name) < 3:
        return False
    # The name alone, or its cluster DNS forms, followed by a port or the end of the word.
    pattern = (
        rf"(?<![\w.-]){re.escape(name)}(?:\.{re.escape(namespace)})?"
        rf"(?:\.svc(?:\.cluster\.local)?)?(?::\d+|(?![\w-]))"
    )
    return re.search(pattern, text) is not None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _after(text: str | None, cutoff: datetime) -> bool:
    when = parse_time(text)
    return when is None or when >= cutoff


def _neg_time(text: str | None) -> float:
    when = parse_time(text)
    return -when.timestamp() if when else 0.0


async def gather(
    alert: Alert,
    reader: KubeReader,
    policy: AnalysisPolicy,
    *,
    settings: GatherSettings | None = None,
    metrics: MetricsSource | None = None,
    history: HistorySource | None = None,
    exclude_analysis: str | None = None,
    now: datetime | None = None,
) -> Context:
    """Everything an engineer would look at for ``alert``, as a Context."""
    gatherer = _Gatherer(
        alert, reader, policy, settings or GatherSettings(), now or datetime.now(UTC)
    )
    return await gatherer.run_all(metrics, history, exclude_analysis)
