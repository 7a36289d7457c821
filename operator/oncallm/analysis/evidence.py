"""Flatten a gathered :class:`~oncallm.models.evidence.Context` into citable evidence.

Each context source (``oncallm.gathering.sources``, registered in ``SOURCES``) says how its
snapshots become :class:`~oncallm.models.analysis.EvidenceRef` items and in which
:class:`~oncallm.gathering.sources.Tier`; this module adds the alert, asks every source for
its items, keeps the lines of each log worth quoting, cuts long excerpts and orders the items
most diagnostic first. Ids are derived from what an item describes
(``container/api-7d9f8c6b5-x2kqp/api``, ``event/Pod/api-7d9f8c6b5-x2kqp/BackOff``,
``log/api-7d9f8c6b5-x2kqp/api/previous#L42``), so the same cluster state always yields the
same ids and a diagnosis can cite them.

Items come out ordered by tier: termination reasons and exit codes, Warning events, error
lines of logs (previous container first), abnormal node conditions, broken dependencies, then
the healthy background; within a tier, in the order of ``SOURCES``. The language model's
prompt builder cuts this list from the end to fit its budget, so the order is part of the
contract.

The id helpers live with their sources (``gathering/sources/<name>.py``), which the rules
import them from; the ids that predate the sources are re-exported here too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from oncallm.gathering.sources import SOURCES, Source, Tier
from oncallm.gathering.sources.config_refs import missing_id
from oncallm.gathering.sources.events import event_base_id
from oncallm.gathering.sources.history import history_id
from oncallm.gathering.sources.hpas import hpa_id
from oncallm.gathering.sources.logs import log_line_id
from oncallm.gathering.sources.metrics import metric_id
from oncallm.gathering.sources.namespace_limits import (
    limit_range_id,
    quota_full_resources,
    quota_id,
)
from oncallm.gathering.sources.network_policies import netpol_id
from oncallm.gathering.sources.nodes import node_condition_abnormal, node_condition_id, node_id
from oncallm.gathering.sources.pods import (
    container_abnormal,
    container_id,
    describe_container,
    describe_pod,
    pod_abnormal,
    pod_id,
)
from oncallm.gathering.sources.pvcs import pvc_id
from oncallm.gathering.sources.services import service_id
from oncallm.gathering.sources.workload import (
    describe_workload,
    revision_id,
    workload_abnormal,
    workload_id,
)
from oncallm.models.analysis import INFO_LEVEL, EvidenceRef, EvidenceSource, logged_as_info
from oncallm.models.evidence import Context, EventSnapshot, LogSnapshot
from oncallm.models.quantity import parse_quantity

ALERT_ID = "alert"
"""The id of the alert itself."""


@dataclass(frozen=True)
class EvidenceSettings:
    """How much of each log becomes evidence.

    Read from the environment by :meth:`from_env`; the defaults fit a typical crash loop
    (a traceback and the lines around it) into a few hundred prompt tokens per container.
    """

    max_error_lines: int = 8
    """Error-looking lines kept per log (``ONCALLM_EVIDENCE_MAX_ERROR_LINES``). When there are
    more, the first two (where the trouble started) and the last ones (how it ended) are kept."""

    tail_lines: int = 5
    """Last lines kept per log whatever they say (``ONCALLM_EVIDENCE_TAIL_LINES``): the end of
    a previous container's log is where it died."""

    max_excerpt_chars: int = 400
    """Longest excerpt of one item (``ONCALLM_EVIDENCE_MAX_EXCERPT_CHARS``); longer text is cut
    with an ellipsis so one JSON log line cannot eat the prompt budget."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> EvidenceSettings:
        """Settings from ``ONCALLM_EVIDENCE_*`` variables; unset ones keep their defaults.

        Raises ValueError naming the variable when a value is not a positive integer.
        """
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name in ("max_error_lines", "tail_lines", "max_excerpt_chars"):
            var = f"ONCALLM_EVIDENCE_{name.upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not an integer; set it to e.g. 8") from None
            if values[name] < 1:
                raise ValueError(f"{var}={raw!r} must be at least 1")
        return cls(**values)


# --- what looks like an error in a log line -------------------------------------------------

ERROR_LINE = re.compile(
    r"""
    \b(?:error|err|errors?=[1-9]|exception|traceback|panic|fatal|critical|crit|emerg
      |refused|timed\ ?out|timeout|deadline\ exceeded|forbidden|denied|unauthori[sz]ed
      |x509|certificate|no\ such\ host|name\ resolution|name\ or\ service\ not\ known
      |not\ found|cannot|can't|could\ not|couldn't|unable\ to|failed|failure
      |killed|invalid|unknown\ (?:flag|field|option|key)|flag\ provided\ but\ not\ defined
      |segmentation\ fault|out\ of\ memory|oom|unreachable|reset\ by\ peer|broken\ pipe
      |exited|exit\ code|abort(?:ed|ing)?|no\ response|E[0-9]{4})\b
    | \w+(?:Error|Exception)\b
    | ^\s*at\ [\w.$]+\(
    """,
    re.IGNORECASE | re.VERBOSE,
)
"""A line worth quoting: error words, exception class names, stack frames."""

NOISE_LINE = re.compile(
    r"""
    deprecat
    | \blevel=debug\b | "(?:log\.)?level"\s*:\s*"debug" | \[debug\]   # a debug-level line,
    | (?-i:\bDEBUG\b) | ^\s*(?:\S+\s+){0,2}debug\b               # not the word in a list
    | "\s(?:404|301|302|304)\s            # access log lines for a harmless miss or redirect
    | \bstatus[=:]\s?(?:404|301|302|304)\b
    | \b(?:0|no)\ errors?\b
    | \berrors?[=:]\s?0\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
"""Lines that look like errors but are not: deprecation warnings, 404 access logs, "0 errors"."""


_STRONG_FAILURE = re.compile(
    r"\b(?:fatal|panic|unknown (?:(?:long |short )?flag|option|field|directive)"
    r"|flag provided but not defined"
    r"|unrecognized|has been removed|was removed|no longer (?:supported|available))\b",
    re.IGNORECASE,
)
"""Wording that makes a line a failure even when it names something deprecated: ``Error:
unknown flag: --deprecated-kubelet-completely-insecure`` is the program refusing its flag."""


def is_noise_line(line: str) -> bool:
    """A line that looks like an error and is not (:data:`NOISE_LINE`), unless it also says
    the program failed (a removed or unknown flag, a fatal error)."""
    return bool(NOISE_LINE.search(line)) and not _STRONG_FAILURE.search(line)


def is_error_line(line: str) -> bool:
    """True for a log line that reports a failure and is not known noise."""
    return bool(ERROR_LINE.search(line)) and not is_noise_line(line)


# --- the index and its builder --------------------------------------------------------------


@dataclass
class _Item:
    tier: int
    ref: EvidenceRef


@dataclass
class EvidenceIndex:
    """The flattened evidence of a context, with lookups from snapshots to their ids.

    Rules use the lookups (``event``, ``line``) so they cite only items that exist.
    """

    items: list[EvidenceRef] = field(default_factory=list)
    #: id(EventSnapshot) -> evidence id
    event_ids: dict[int, str] = field(default_factory=dict)
    #: (id(LogSnapshot), 1-based line number) -> evidence id, for the lines that were kept
    line_ids: dict[tuple[int, int], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = {item.id for item in self.items}

    def has(self, evidence_id: str) -> bool:
        return evidence_id in self._ids

    def cite(self, *evidence_ids: str | None) -> list[str]:
        """The given ids that exist, in order, without repeats."""
        out: list[str] = []
        for eid in evidence_ids:
            if eid and eid in self._ids and eid not in out:
                out.append(eid)
        return out

    def event(self, event: EventSnapshot) -> str | None:
        return self.event_ids.get(id(event))

    def line(self, log: LogSnapshot, lineno: int) -> str | None:
        return self.line_ids.get((id(log), lineno))

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def build_evidence(ctx: Context, settings: EvidenceSettings | None = None) -> list[EvidenceRef]:
    """The context's evidence, most diagnostic first, with stable readable ids."""
    return index_evidence(ctx, settings).items


def index_evidence(
    ctx: Context,
    settings: EvidenceSettings | None = None,
    sources: tuple[Source, ...] = SOURCES,
) -> EvidenceIndex:
    """Like :func:`build_evidence`, plus the lookups rules use to cite items.

    Build it once per analysis and hand the same index to the rules
    (``diagnose(ctx, settings, ev=index)``) and the model path, so all cite the same items.
    """
    builder = _Builder(settings or EvidenceSettings())
    builder.alert(ctx)
    for source in sources:
        if source.evidence is not None:
            source.evidence(ctx, builder)
    return builder.finish()


class _Builder:
    """Collects the sources' items (the ``EvidenceOut`` they write to): numbers repeated ids,
    cuts long excerpts, keeps the log lines worth quoting, and orders the items by tier."""

    def __init__(self, settings: EvidenceSettings) -> None:
        self.settings = settings
        self.items: list[_Item] = []
        self.seen: dict[str, int] = {}
        self.event_ids: dict[int, str] = {}
        self.line_ids: dict[tuple[int, int], str] = {}

    def add(
        self,
        tier: Tier,
        base_id: str,
        source: EvidenceSource,
        obj: str,
        excerpt: str,
        time: str | None = None,
    ) -> str:
        count = self.seen.get(base_id, 0) + 1
        self.seen[base_id] = count
        eid = base_id if count == 1 else f"{base_id}~{count}"
        limit = self.settings.max_excerpt_chars
        text = excerpt if len(excerpt) <= limit else excerpt[: limit - 1] + "…"
        ref = EvidenceRef(id=eid, source=source, object=obj, excerpt=text, time=time)
        self.items.append(_Item(int(tier), ref))
        return eid

    def index_event(self, event: EventSnapshot, evidence_id: str) -> None:
        self.event_ids[id(event)] = evidence_id

    def index_line(self, log: LogSnapshot, lineno: int, evidence_id: str) -> None:
        self.line_ids[(id(log), lineno)] = evidence_id

    def kept_lines(self, log: LogSnapshot) -> tuple[list[int], list[int]]:
        """Error lines (at most ``max_error_lines``: the first two and the last ones) and the
        last ``tail_lines`` lines that are not error lines, 1-based."""
        errors = [i for i, line in enumerate(log.lines, 1) if is_error_line(line)]
        limit = self.settings.max_error_lines
        if len(errors) > limit:
            head = min(2, limit)
            errors = errors[:head] + errors[len(errors) - (limit - head) :]
        tail_start = max(1, len(log.lines) - self.settings.tail_lines + 1)
        tail = [i for i in range(tail_start, len(log.lines) + 1) if i not in errors]
        return errors, tail

    def alert(self, ctx: Context) -> None:
        a = ctx.alert
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
        text = a.annotations.get("description") or a.annotations.get("summary") or ""
        self.add(
            Tier.ALERT,
            ALERT_ID,
            EvidenceSource.ALERT,
            ctx.target.display,
            f"{a.name} ({a.status.value}) {labels}. {text}".strip(),
            time=a.starts_at.isoformat().replace("+00:00", "Z"),
        )

    def finish(self) -> EvidenceIndex:
        ordered = sorted(self.items, key=lambda it: it.tier)  # stable: keeps source order
        return EvidenceIndex(
            items=[it.ref for it in ordered], event_ids=self.event_ids, line_ids=self.line_ids
        )


__all__ = [
    "ALERT_ID",
    "ERROR_LINE",
    "INFO_LEVEL",
    "NOISE_LINE",
    "EvidenceIndex",
    "EvidenceSettings",
    "build_evidence",
    "container_abnormal",
    "container_id",
    "describe_container",
    "describe_pod",
    "describe_workload",
    "event_base_id",
    "history_id",
    "hpa_id",
    "index_evidence",
    "is_error_line",
    "is_noise_line",
    "limit_range_id",
    "log_line_id",
    "logged_as_info",
    "metric_id",
    "missing_id",
    "netpol_id",
    "node_condition_abnormal",
    "node_condition_id",
    "node_id",
    "parse_quantity",
    "pod_abnormal",
    "pod_id",
    "pvc_id",
    "quota_full_resources",
    "quota_id",
    "revision_id",
    "service_id",
    "workload_abnormal",
    "workload_id",
]
