"""Log tails of the failing pods' containers: the previous run of a restarted one, and the
current one.

Reads ``sources.logLines`` lines of each, for the first ``ONCALLM_MAX_LOG_PODS`` failing pods
on a node and at most two containers each (the alerted container, then the failing ones; a
single failing container's ready sibling, the sidecar it may talk to, otherwise).

Evidence: ``log/<pod>/<container>/previous#L42`` (``current`` for the running container) for
the lines analysis keeps: error lines first, previous logs before current ones, and the last
lines of each log further down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from oncallm.gathering.objects import Obj, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.gathering.sources.pods import pod_is_unhealthy
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import ContainerSnapshot, Context, LogSnapshot, PodSnapshot
from oncallm.models.policy import Depth


def line_ids(prefix: str) -> Callable[[LogSnapshot, int], str]:
    """Ids of a log's lines under ``prefix``: ``<prefix>/<pod>/<container>/previous#L42`` is
    line 42 (1-based) of the fetched tail of the container's previous run."""

    def line_id(log: LogSnapshot, lineno: int) -> str:
        which = "previous" if log.previous else "current"
        return f"{prefix}/{log.pod}/{log.container}/{which}#L{lineno}"

    return line_id


#: ``log/<pod>/<container>/<previous|current>#L<n>``: a line of the alerted pods' logs.
log_line_id = line_ids("log")


async def read(scope: Scope) -> None:
    src = scope.policy.spec.sources
    if src.log_lines == 0:
        return
    failing = [p for p in scope.ctx.pods if pod_is_unhealthy(p) and p.node_name]
    if not failing:
        # Nothing crashed, yet the alert fires (a Job that never finishes, a target that does
        # not answer, a pod that is slow): the running pods' own words are the evidence left.
        running = [p for p in scope.ctx.pods if p.node_name and p.phase == "Running"]
        failing = sorted(running, key=lambda p: p.name != scope.target.name)
    tasks: list[Awaitable[None]] = []
    for pod in failing[: scope.settings.max_log_pods]:
        for c in _log_containers(pod, scope.target.container):
            if src.previous_logs and (c.restart_count > 0 or c.last_state == "terminated"):
                tasks.append(_log(scope, pod, c.name, previous=True))
            if c.state in ("running", "terminated") or c.restart_count > 0:
                tasks.append(_log(scope, pod, c.name, previous=False))
    await asyncio.gather(*tasks)


async def first_container_log(scope: Scope, pod: Obj, tail: int) -> LogSnapshot | None:
    """The current log of a pod's first container: a Job's pod runs one, and its log is what
    the Job did (a clean-up, a refresh)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    namespace = str(meta(pod).get("namespace", ""))
    name = str(containers[0].get("name", ""))
    return await fetch_log(scope, namespace, name_of(pod), name, previous=False, tail=tail)


async def fetch_log(
    scope: Scope, namespace: str, pod: str, container: str, *, previous: bool, tail: int
) -> LogSnapshot | None:
    """The last ``tail`` lines of one container's log (its previous run's with ``previous``),
    each cut at the settings' line length; None when the read failed (missing evidence)."""
    limit = scope.settings.max_line_chars
    async with scope.guard(f"logs {namespace}/{pod}/{container}"):
        text = await scope.reader.logs(namespace, pod, container, previous=previous,
                                       tail_lines=tail)  # fmt: skip
        lines = text.splitlines()
        return LogSnapshot(
            pod=pod,
            namespace=namespace,
            container=container,
            previous=previous,
            lines=[ln if len(ln) <= limit else ln[:limit] + " …" for ln in lines[-tail:]],
            truncated=len(lines) >= tail,
        )
    return None


def add_error_lines(
    out: EvidenceOut, logs: list[LogSnapshot], line_id: Callable[[LogSnapshot, int], str]
) -> None:
    """The error lines of another workload's logs (CoreDNS's, metrics-server's) as broken
    objects, indexed so that rules citing a line find its id."""
    for log in sorted(logs, key=lambda lg: not lg.previous):
        errors, _ = out.kept_lines(log)
        for lineno in errors:
            line = log.lines[lineno - 1].rstrip()
            if line.strip():
                eid = out.add(
                    Tier.OBJECT_BAD,
                    line_id(log, lineno),
                    EvidenceSource.LOG,
                    f"pod/{log.namespace}/{log.pod}/{log.container}",
                    line,
                )
                out.index_line(log, lineno, eid)


async def _log(scope: Scope, pod: PodSnapshot, container: str, *, previous: bool) -> None:
    log = await fetch_log(scope, pod.namespace, pod.name, container, previous=previous,
                          tail=scope.policy.spec.sources.log_lines)  # fmt: skip
    if log is not None:
        scope.ctx.logs.append(log)


def _log_containers(pod: PodSnapshot, wanted: str | None) -> list[ContainerSnapshot]:
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
    if len(rest) == 1 and not rest[0].ready:
        # a failing container's running sibling (the proxy or agent it talks to over the
        # pod's loopback) says where it listens and what it refuses
        rest += [c for c in pod.containers if not c.init and c.ready and c not in rest][:1]
    return rest[:2]


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for log in sorted(ctx.logs, key=lambda lg: not lg.previous):
        obj = f"pod/{log.namespace}/{log.pod}/{log.container}"
        errors, tail = out.kept_lines(log)
        err_tier = Tier.LOG_ERROR_PREVIOUS if log.previous else Tier.LOG_ERROR_CURRENT
        tail_tier = Tier.LOG_TAIL_PREVIOUS if log.previous else Tier.LOG_TAIL_CURRENT
        for tier, numbers in ((err_tier, errors), (tail_tier, tail)):
            for lineno in numbers:
                line = log.lines[lineno - 1].rstrip()
                if not line.strip():
                    continue
                eid = out.add(tier, log_line_id(log, lineno), EvidenceSource.LOG, obj, line)
                out.index_line(log, lineno, eid)


SOURCE = Source("logs", Stage.AROUND, read, evidence, depth=Depth.QUICK, resources=("pods/log",))
