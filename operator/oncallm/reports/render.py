"""Render an analysis as ``report.md`` and ``report.html``, bounded in size.

The two files go into one ConfigMap, and Kubernetes refuses a ConfigMap over 1 MiB. Alert
annotations, log lines and a model's words can be any size, so rendering measures the result
and, when it is too big, trims in this order until it fits:

1. the longest evidence excerpts (down to :data:`MIN_EXCERPT_CHARS` each);
2. every other text (labels, annotations, notes, commands... down to :data:`MIN_TEXT_CHARS`);
3. the number of items in each list (down to none: a minimal report that points to the object).

Every trim is said in the report itself, next to the text and at the top.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import jinja2

from oncallm.models.analysis import AlertAnalysis, CauseLink
from oncallm.reports import present

#: The size of both files together, in bytes. Kubernetes caps a ConfigMap at 1 MiB
#: (1,048,576 bytes) including its metadata and keys; 900 KiB leaves room for those.
DEFAULT_MAX_REPORT_BYTES = 900 * 1024

#: The smallest ``max_bytes`` accepted: the minimal report (every list emptied, every text cut
#: to :data:`MIN_TEXT_CHARS`) is guaranteed to fit in it.
MIN_REPORT_BYTES = 64 * 1024

#: Evidence excerpts are cut no shorter than this before anything else is trimmed: a few log
#: lines are what makes evidence evidence.
MIN_EXCERPT_CHARS = 400

#: Other texts are cut no shorter than this before lists are shortened.
MIN_TEXT_CHARS = 200

#: The file names inside the ConfigMap.
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


@dataclass
class ReportSettings:
    """How reports are rendered."""

    max_bytes: int = DEFAULT_MAX_REPORT_BYTES
    """Bytes for report.md and report.html together (``ONCALLM_REPORT_MAX_BYTES``). Keep it
    below 1 MiB: both files share one ConfigMap, which Kubernetes caps at 1 MiB."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ReportSettings:
        """Settings from ``ONCALLM_REPORT_*`` environment variables (defaults when unset)."""
        env = dict(os.environ) if env is None else env
        raw = env.get("ONCALLM_REPORT_MAX_BYTES", "").strip()
        if not raw:
            return cls()
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(
                f"ONCALLM_REPORT_MAX_BYTES={raw!r} is not a whole number of bytes; "
                f"set it to e.g. {DEFAULT_MAX_REPORT_BYTES} or unset it"
            ) from None
        if not MIN_REPORT_BYTES <= value <= 1024 * 1024:
            raise ValueError(
                f"ONCALLM_REPORT_MAX_BYTES={value} is outside {MIN_REPORT_BYTES}..1048576; "
                "a ConfigMap holds at most 1 MiB, and smaller reports lose their evidence"
            )
        return cls(max_bytes=value)


@dataclass(frozen=True)
class _Caps:
    """Limits applied while building the report's view; None means no limit."""

    excerpt: int | None = None
    text: int | None = None
    items: int | None = None


@dataclass
class _Trims:
    """What was cut while building the view, for the notice at the top of the report."""

    excerpts: int = 0
    texts: int = 0
    items: int = 0
    links: int = 0


T = TypeVar("T")


#: Bytes every list item adds at least (markup in both files); used to skip rendering
#: attempts that cannot fit.
_MIN_ITEM_BYTES = 8


class _TooBig(Exception):
    """The view already holds more than the budget: rendering it is pointless."""


@dataclass
class _Builder:
    caps: _Caps
    #: the budget in bytes; building stops with :class:`_TooBig` once it is surely exceeded
    limit: int
    trims: _Trims = field(default_factory=_Trims)
    #: characters and list items kept: a lower bound of the rendered size
    chars: int = 0
    items: int = 0

    def _count(self, chars: int = 0, items: int = 0) -> None:
        self.chars += chars
        self.items += items
        if self.chars + self.items * _MIN_ITEM_BYTES > self.limit:
            raise _TooBig

    def text(self, value: str | None) -> str:
        value = value or ""
        if self.caps.text is not None and len(value) > self.caps.text:
            self.trims.texts += 1
            value = _clip(value, self.caps.text)
        self._count(chars=len(value))
        return value

    def excerpt(self, value: str) -> tuple[str, bool]:
        cap = self.caps.excerpt
        if self.caps.text is not None:
            cap = min(cap, self.caps.text) if cap is not None else self.caps.text
        trimmed = cap is not None and len(value) > cap
        if cap is not None and trimmed:
            self.trims.excerpts += 1
            value = _clip(value, cap)
        self._count(chars=len(value))
        return value, trimmed

    def take(self, seq: Sequence[T]) -> tuple[Sequence[T], int]:
        """The first items that fit, and how many were left out."""
        omitted = 0
        if self.caps.items is not None and len(seq) > self.caps.items:
            omitted = len(seq) - self.caps.items
            self.trims.items += omitted
            seq = seq[: self.caps.items]
        self._count(items=len(seq))
        return seq, omitted

    def url(self, value: str | None) -> str | None:
        # A cut URL is a broken link: drop it instead, and say so.
        if value is None:
            return None
        if self.caps.text is not None and len(value) > self.caps.text:
            self.trims.links += 1
            return None
        self._count(chars=len(value))
        return value


def _clip(value: str, cap: int) -> str:
    return f"{value[:cap]}… [trimmed {len(value) - cap} characters]"


@dataclass
class _Source:
    """What the report shows, computed once; each rendering attempt only applies caps."""

    analysis: AlertAnalysis
    history: list[AlertAnalysis]
    now: datetime
    #: the incident's members, when this analysis is its primary
    members: list[AlertAnalysis]
    labels: list[tuple[str, str]]
    annotations: list[tuple[str, str]]
    timeline: list[present.TimelineEntry]
    target: str
    generator_url: str | None
    alertmanager_url: str | None
    silence_url: str | None

    @classmethod
    def of(
        cls,
        analysis: AlertAnalysis,
        history: list[AlertAnalysis],
        now: datetime,
        members: list[AlertAnalysis] | None = None,
    ) -> _Source:
        alert = analysis.spec.alert
        return cls(
            analysis=analysis,
            history=history,
            now=now,
            members=list(members or []),
            labels=sorted(alert.labels.items()),
            annotations=sorted(alert.annotations.items()),
            timeline=present.timeline(analysis),
            target=present.target_display(analysis),
            generator_url=present.http_url(alert.generator_url),
            alertmanager_url=present.alertmanager_alert_url(
                analysis.spec.external_url, alert.labels
            ),
            silence_url=present.alertmanager_silence_url(analysis.spec.external_url, alert.labels),
        )


def _build_view(src: _Source, caps: _Caps, limit: int) -> dict[str, Any]:
    """The template's view under ``caps``; raises :class:`_TooBig` when it surely renders to
    more than ``limit`` bytes (the characters kept alone are more)."""
    b = _Builder(caps, limit)
    analysis = src.analysis
    spec, status = analysis.spec, analysis.status
    alert = spec.alert
    current = present.phase(analysis)

    evidence_items, evidence_omitted = b.take(status.evidence or [])
    evidence = []
    for ev in evidence_items:
        excerpt, trimmed = b.excerpt(ev.excerpt)
        evidence.append(
            {
                "id": b.text(ev.id),
                "source": present.source_label(ev.source),
                "object": b.text(ev.object),
                "time": present.format_time(present.parse_time(ev.time)) or b.text(ev.time),
                "excerpt": excerpt,
                "trimmed": trimmed,
            }
        )

    def texts(values: Sequence[str] | None) -> tuple[list[str], int]:
        kept, omitted = b.take(values or [])
        return [b.text(v) for v in kept], omitted

    def pairs(items: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
        kept, omitted = b.take(items)
        return [(b.text(k), b.text(v)) for k, v in kept], omitted

    actions, actions_omitted = texts(status.immediate_actions)
    recommendations, recommendations_omitted = texts(status.recommendations)
    commands, commands_omitted = texts(status.commands)
    notes, notes_omitted = texts(status.notes)
    labels, labels_omitted = pairs(src.labels)
    annotations, annotations_omitted = pairs(src.annotations)
    missing_items, missing_omitted = b.take(status.missing_evidence or [])
    missing = [{"source": b.text(m.source), "reason": b.text(m.reason)} for m in missing_items]

    def links(values: Sequence[CauseLink] | None) -> tuple[list[dict[str, Any]], int]:
        kept, omitted = b.take(values or [])
        return [
            {
                "role": link.role.value,
                "summary": b.text(link.summary),
                "category": present.category_label(link.category) if link.category else "",
                "evidence": [b.text(e) for e in link.evidence],
            }
            for link in kept
        ], omitted

    chain, chain_omitted = links(status.chain)
    secondary, secondary_omitted = links(status.secondary_causes)

    timeline_items, timeline_omitted = b.take(src.timeline)
    timeline = [
        {
            "time": present.format_time(e.at),
            "label": b.text(e.label),
            "detail": b.text(e.detail),
            "offset": e.offset,
        }
        for e in timeline_items
    ]

    earlier_items, earlier_omitted = b.take(src.history)
    earlier = [
        {
            "fired": present.format_time(present.parse_time(h.spec.alert.starts_at)),
            "phase": present.phase(h).value,
            "category": present.category_label(h.status.category),
            "root_cause": b.text(present.short_root_cause(h)),
            "url": b.url(present.http_url(h.status.report_url)),
        }
        for h in earlier_items
    ]

    incident = _incident_view(b, src)

    timings = status.timings
    timing_rows = []
    if timings is not None:
        for label, value in (
            ("Gathering", timings.gathering),
            ("Analysing", timings.analyzing),
            ("Reporting", timings.reporting),
            ("Total", timings.total),
        ):
            if value is not None:
                timing_rows.append((label, present.format_duration(value)))

    usage = status.token_usage
    tokens = ""
    if usage is not None and usage.total:
        tokens = f"{usage.total} tokens ({usage.prompt} prompt, {usage.completion} completion)"

    alertname = alert.labels.get("alertname", "")
    summary = status.summary or (
        f"Analysis {current.value.lower()}." if not current.finished else ""
    )
    view: dict[str, Any] = {
        "title": b.text(f"{alertname} on {src.target}".strip()),
        "alertname": b.text(alertname),
        "name": b.text(analysis.name),
        "namespace": b.text(analysis.namespace),
        "alert_status": alert.status.value,
        "phase": current.value,
        "finished": current.finished,
        "reason": b.text(status.reason),
        "severity": b.text(present.severity(analysis)),
        "target": b.text(src.target),
        "summary": b.text(summary),
        "root_cause": b.text(status.root_cause),
        "category": present.category_label(status.category),
        "confidence": present.confidence_label(status.confidence),
        "impact": b.text(status.impact),
        "incident": incident,
        "chain": chain,
        "chain_omitted": chain_omitted,
        "secondary": secondary,
        "secondary_omitted": secondary_omitted,
        "actions": actions,
        "actions_omitted": actions_omitted,
        "recommendations": recommendations,
        "recommendations_omitted": recommendations_omitted,
        "commands": commands,
        "commands_omitted": commands_omitted,
        "evidence": evidence,
        "evidence_omitted": evidence_omitted,
        "missing": missing,
        "missing_omitted": missing_omitted,
        "labels": labels,
        "labels_omitted": labels_omitted,
        "annotations": annotations,
        "annotations_omitted": annotations_omitted,
        "timeline": timeline,
        "timeline_omitted": timeline_omitted,
        "timings": timing_rows,
        "analyzer": b.text(status.analyzer),
        "policy": b.text(status.policy),
        "tokens": tokens,
        "notes": notes,
        "notes_omitted": notes_omitted,
        "earlier": earlier,
        "earlier_omitted": earlier_omitted,
        "fingerprint": b.text(alert.fingerprint),
        "generator_url": b.url(src.generator_url),
        "alertmanager_url": b.url(src.alertmanager_url),
        "silence_url": b.url(src.silence_url),
        "report_url": b.url(present.http_url(status.report_url)),
        "rendered_at": present.format_time(src.now),
    }
    view["trim_notice"] = _trim_notice(b.trims)
    return view


def _incident_view(b: _Builder, src: _Source) -> dict[str, Any] | None:
    """The incident this analysis belongs to: its cause, its primary, and (on the primary)
    the members, primary first in the web view's order."""
    ref = src.analysis.status.incident
    if ref is None:
        return None
    own_url = present.http_url(src.analysis.status.report_url)
    members, omitted = b.take(src.members)
    return {
        "role": ref.role.value,
        "cause": b.text(ref.cause),
        "primary": b.text(ref.primary),
        "primary_url": b.url(present.sibling_url(own_url, ref.primary)),
        "members_count": max(ref.members, len(src.members)),
        "reason": b.text(ref.reason),
        "members": [
            {
                "name": b.text(m.name),
                "alertname": b.text(m.spec.alert.labels.get("alertname", "")),
                "target": b.text(present.target_display(m)),
                "phase": present.phase(m).value,
                "url": b.url(
                    present.http_url(m.status.report_url) or present.sibling_url(own_url, m.name)
                ),
            }
            for m in members
        ],
        "members_omitted": omitted + max(0, ref.members - len(src.members)),
    }


def _trim_notice(trims: _Trims) -> str:
    parts = []
    if trims.excerpts:
        parts.append(f"{trims.excerpts} evidence excerpt(s) cut")
    if trims.texts:
        parts.append(f"{trims.texts} other text(s) cut")
    if trims.items:
        parts.append(f"{trims.items} list item(s) left out")
    if trims.links:
        parts.append(f"{trims.links} over-long link(s) left out")
    if not parts:
        return ""
    return (
        "This report was trimmed to fit the 1 MiB ConfigMap limit: "
        + ", ".join(parts)
        + ". The AlertAnalysis object and the web view hold the full analysis."
    )


_MD_INLINE = re.compile(r"([\\`*_\[\]<>|])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])", re.MULTILINE)


def _md(value: object) -> str:
    """Text for one markdown line or table cell: escaped, newlines folded into spaces."""
    text = " ".join(str(value).split())
    return _MD_INLINE.sub(r"\\\1", text)


def _md_block(value: object) -> str:
    """Prose for markdown: escaped, line breaks kept, no line read as a heading or list."""
    lines = [_MD_INLINE.sub(r"\\\1", line.rstrip()) for line in str(value).splitlines()]
    text = "  \n".join(lines)
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def _fence(value: object, lang: str = "") -> str:
    """A fenced code block whose fence no backtick run in the text can close."""
    text = str(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("oncallm.reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md
    env.filters["md_block"] = _md_block
    env.filters["fence"] = _fence
    return env


_ENV = _environment()


def _render(view: dict[str, Any]) -> tuple[dict[str, str], int]:
    files = {
        REPORT_MD: _ENV.get_template("report.md.j2").render(r=view),
        REPORT_HTML: _ENV.get_template("report.html.j2").render(r=view),
    }
    return files, sum(len(text.encode("utf-8")) for text in files.values())


def _largest_fitting(
    attempt: Callable[[int], tuple[dict[str, str], int] | None], lo: int, hi: int, max_bytes: int
) -> dict[str, str] | None:
    """Files for (nearly) the largest cap in ``lo..hi`` that fits; size shrinks with the cap.

    The search stops within 2 % of the best cap: a few characters more of one excerpt are not
    worth another rendering of a report near a megabyte.
    """
    best: dict[str, str] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = attempt(mid)
        if result is not None and result[1] <= max_bytes:
            best, lo = result[0], mid + 1
            if hi - lo < max(1, lo // 50):
                break
        else:
            hi = mid - 1
    return best


def render_report(
    analysis: AlertAnalysis,
    history: list[AlertAnalysis] | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_REPORT_BYTES,
    now: datetime | None = None,
    members: list[AlertAnalysis] | None = None,
) -> dict[str, str]:
    """``{"report.md": ..., "report.html": ...}`` for an analysis, together under ``max_bytes``.

    ``history`` holds earlier analyses of the same alert, newest first; ``members`` the other
    alerts of the incident this analysis is the primary of. Whatever the analysis
    holds, the result fits: the longest evidence excerpts are trimmed first, then other
    texts, then lists, and the report says what was trimmed.
    """
    if max_bytes < MIN_REPORT_BYTES:
        raise ValueError(
            f"max_bytes={max_bytes} is below {MIN_REPORT_BYTES}, too small for a report; "
            f"use the default ({DEFAULT_MAX_REPORT_BYTES})"
        )
    src = _Source.of(analysis, list(history or []), now or datetime.now(UTC), members)
    # No text or list can be longer than the budget and still fit, so cap them there first:
    # it changes nothing for sane input and keeps hostile input cheap.
    most_items = max_bytes // _MIN_ITEM_BYTES

    def attempt(caps: _Caps) -> tuple[dict[str, str], int] | None:
        try:
            view = _build_view(src, caps, max_bytes)
        except _TooBig:
            return None
        return _render(view)

    first = attempt(_Caps(excerpt=max_bytes, text=max_bytes, items=most_items))
    if first is not None and first[1] <= max_bytes:
        return first[0]

    longest = max((len(e.excerpt) for e in analysis.status.evidence or []), default=0)
    longest = min(longest, max_bytes)
    if longest > MIN_EXCERPT_CHARS:
        fitted = _largest_fitting(
            lambda cap: attempt(_Caps(excerpt=cap, text=max_bytes, items=most_items)),
            MIN_EXCERPT_CHARS,
            longest,
            max_bytes,
        )
        if fitted is not None:
            return fitted

    fitted = _largest_fitting(
        lambda cap: attempt(_Caps(excerpt=MIN_EXCERPT_CHARS, text=cap, items=most_items)),
        MIN_TEXT_CHARS,
        max_bytes,
        max_bytes,
    )
    if fitted is not None:
        return fitted

    fitted = _largest_fitting(
        lambda cap: attempt(_Caps(excerpt=MIN_EXCERPT_CHARS, text=MIN_TEXT_CHARS, items=cap)),
        0,
        most_items,
        max_bytes,
    )
    if fitted is not None:
        return fitted
    raise AssertionError(  # pragma: no cover - MIN_REPORT_BYTES is chosen so this cannot happen
        f"a minimal report of {analysis.namespace}/{analysis.name} does not fit in {max_bytes} "
        "bytes; raise ONCALLM_REPORT_MAX_BYTES"
    )
