"""The rendered report: what it says, how it escapes, and that it always fits a ConfigMap."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from oncallm.models.analysis import (
    AlertAnalysis,
    Category,
    CauseLink,
    Condition,
    EvidenceRef,
    EvidenceSource,
    LinkRole,
    MissingEvidence,
    Phase,
)
from oncallm.reports import (
    DEFAULT_MAX_REPORT_BYTES,
    MIN_REPORT_BYTES,
    REPORT_HTML,
    REPORT_MD,
    ReportSettings,
    present,
    render_report,
)
from oncallm.web.demo import (
    HOSTILE_LOG_LINE,
    crashloop_analysis,
    earlier_crashloop_analysis,
    running_analysis,
)

NOW = datetime(2024, 5, 14, 3, 26, 0, tzinfo=UTC)
CONFIGMAP_LIMIT = 1024 * 1024


def size(files: dict[str, str]) -> int:
    return sum(len(text.encode("utf-8")) for text in files.values())


@pytest.fixture
def crashloop() -> AlertAnalysis:
    return crashloop_analysis(NOW)


def test_report_says_everything_an_engineer_needs(crashloop: AlertAnalysis) -> None:
    files = render_report(crashloop, [earlier_crashloop_analysis(NOW)], now=NOW)
    assert set(files) == {REPORT_MD, REPORT_HTML}
    for text in files.values():
        assert "KubePodCrashLooping" in text
        assert "pod/orders/api-7d9f8c6b5-x2kqp" in text
        assert "Bad configuration" in text  # category in words
        assert "high (91%)" in text  # confidence
        assert "rolled out revision 42" in text  # root cause
        assert "1 of 3 replicas of orders/api is not ready" in text  # impact
        assert "Roll back the Deployment to revision 41." in text  # immediate action
        assert "startupProbe" in text  # long-term fix
        assert "kubectl rollout undo deployment/api -n orders --to-revision=41" in text
        assert "log excerpt" in text and "container state" in text and "metric" in text
        assert "DATABASE_URL is not set" in text  # the evidence itself
        assert "kube-state-metrics" in text  # labels
        assert "runbooks.prometheus-operator.dev" in text  # annotations
        assert "rules+llm:gpt-4o-mini" in text  # analyser
        assert "Prometheus answered 503" in text  # missing evidence
        assert "named the variable" in text  # notes
        assert "Received from Alertmanager" in text  # timeline
        assert "Dependency unreachable" in text  # the earlier analysis
    assert "Gathering: 2.8 s" in files[REPORT_MD]
    assert "5622 tokens" in files[REPORT_MD]


def test_html_is_standalone_and_escapes_a_hostile_log_line(crashloop: AlertAnalysis) -> None:
    html = render_report(crashloop, now=NOW)[REPORT_HTML]
    assert HOSTILE_LOG_LINE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html  # no script at all: it is a document
    assert "<style>" in html and "<link" not in html  # inline CSS, nothing fetched


def test_markdown_escapes_inline_html_and_keeps_code_blocks_closed(
    crashloop: AlertAnalysis,
) -> None:
    crashloop.spec.alert.annotations["description"] = '<img src=x onerror="alert(1)"> | pipe'
    crashloop.status.evidence = [
        EvidenceRef(
            id="log/api",
            source=EvidenceSource.LOG,
            object="pod/orders/api-7d9f8c6b5-x2kqp",
            excerpt="```\n# not a heading\n" + HOSTILE_LOG_LINE,
        )
    ]
    md = render_report(crashloop, now=NOW)[REPORT_MD]
    # Backslash-escaped, a markdown renderer shows the tag as text; the pipe stays in its cell.
    assert re.search(r"(?<!\\)<img", md) is None
    assert '\\<img src=x onerror="alert(1)"\\> \\| pipe' in md
    # The excerpt's own ``` cannot close the block around it: the fence is longer.
    assert "````\n```\n# not a heading\n" + HOSTILE_LOG_LINE + "\n````" in md


def test_a_javascript_url_never_becomes_a_link(crashloop: AlertAnalysis) -> None:
    crashloop.spec.alert.generator_url = "javascript:alert(document.cookie)"
    crashloop.spec.external_url = "javascript:alert(2)"
    for text in render_report(crashloop, now=NOW).values():
        assert "javascript:" not in text


def test_a_running_analysis_renders_without_a_diagnosis() -> None:
    files = render_report(running_analysis(NOW), now=NOW)
    assert "Analysis gathering." in files[REPORT_MD]
    assert "deployment/checkout/web" in files[REPORT_HTML]


def test_a_huge_log_excerpt_is_trimmed_first_and_the_report_says_so(
    crashloop: AlertAnalysis,
) -> None:
    huge = "\n".join(
        f'2024-05-14T03:11:{i % 60:02d}Z ERROR request failed body="{HOSTILE_LOG_LINE}" id={i}'
        for i in range(60_000)
    )  # ~5 MB, and HTML escaping makes it bigger still
    assert crashloop.status.evidence is not None
    crashloop.status.evidence.append(
        EvidenceRef(id="log/huge", source=EvidenceSource.LOG, object="pod/x", excerpt=huge)
    )
    files = render_report(crashloop, now=NOW)
    assert size(files) <= DEFAULT_MAX_REPORT_BYTES < CONFIGMAP_LIMIT
    md = files[REPORT_MD]
    assert "trimmed to fit the 1 MiB ConfigMap limit" in md
    assert "1 evidence excerpt(s) cut" in md
    assert re.search(r"… \[trimmed \d+ characters\]", md)
    # The short excerpts are whole; only the longest one was cut.
    assert "2024-05-14T03:11:58.106Z FATAL exiting with status 1" in md
    # Most of the budget still goes to the big excerpt: it was cut, not dropped.
    assert md.count("ERROR request failed") > 1000


def test_longest_excerpts_are_trimmed_before_shorter_ones(crashloop: AlertAnalysis) -> None:
    medium = "m" * 100_000
    crashloop.status.evidence = [
        EvidenceRef(id="big", source=EvidenceSource.LOG, object="a", excerpt="b" * 2_000_000),
        EvidenceRef(id="medium", source=EvidenceSource.LOG, object="b", excerpt=medium),
    ]
    files = render_report(crashloop, now=NOW)
    assert size(files) <= DEFAULT_MAX_REPORT_BYTES
    assert medium in files[REPORT_MD] and medium in files[REPORT_HTML]
    assert "b" * 2_000_000 not in files[REPORT_MD]


def hostile_analysis() -> AlertAnalysis:
    """Every field as large and as escape-heavy as the models allow."""
    analysis = crashloop_analysis(NOW)
    analysis.spec.alert.labels.update({f"label_{i}": '"&' * 500 for i in range(20_000)})
    analysis.spec.alert.annotations["description"] = "<b>" * 1_000_000
    analysis.spec.alert.generator_url = "http://prometheus/" + "q" * 2_000_000
    status = analysis.status
    status.notes = ["ñ" * 10_000] * 5_000
    status.root_cause = "&" * 3_000_000
    status.reason = "🔥" * 500_000
    status.commands = ["kubectl get pods " + "<x>" * 100_000] * 16
    status.evidence = [
        EvidenceRef(id=f"e{i}", source=EvidenceSource.EVENT, object="o" * 200, excerpt='"' * 2000)
        for i in range(20_000)
    ]
    status.missing_evidence = [MissingEvidence(source="s" * 1000, reason="r" * 1000)] * 10_000
    status.conditions = [
        Condition(type=f"Cond{i}", status="True", last_transition_time="2024-05-14T03:20:00Z")
        for i in range(5_000)
    ]
    return analysis


@pytest.mark.parametrize("max_bytes", [DEFAULT_MAX_REPORT_BYTES, 200 * 1024, MIN_REPORT_BYTES])
def test_the_report_fits_whatever_the_analysis_holds(max_bytes: int) -> None:
    analysis = hostile_analysis()
    history = [earlier_crashloop_analysis(NOW)] * 3_000
    started = time.monotonic()
    files = render_report(analysis, history, max_bytes=max_bytes, now=NOW)
    elapsed = time.monotonic() - started
    assert size(files) <= max_bytes
    assert "trimmed to fit the 1 MiB ConfigMap limit" in files[REPORT_MD]
    assert "KubePodCrashLooping" in files[REPORT_HTML]  # still says what it is about
    assert files[REPORT_HTML].rstrip().endswith("</html>")  # trimmed, never cut mid-markup
    assert elapsed < 10, f"rendering a hostile analysis took {elapsed:.1f}s"


def test_a_budget_below_the_minimal_report_is_refused(crashloop: AlertAnalysis) -> None:
    with pytest.raises(ValueError, match="too small"):
        render_report(crashloop, max_bytes=MIN_REPORT_BYTES - 1)


def test_report_settings_from_env() -> None:
    assert ReportSettings.from_env({}).max_bytes == DEFAULT_MAX_REPORT_BYTES
    assert ReportSettings.from_env({"ONCALLM_REPORT_MAX_BYTES": "500000"}).max_bytes == 500000
    with pytest.raises(ValueError, match="ONCALLM_REPORT_MAX_BYTES"):
        ReportSettings.from_env({"ONCALLM_REPORT_MAX_BYTES": "2000000"})
    with pytest.raises(ValueError, match="whole number"):
        ReportSettings.from_env({"ONCALLM_REPORT_MAX_BYTES": "900KiB"})


def test_timeline_orders_the_moments_and_measures_from_the_firing(
    crashloop: AlertAnalysis,
) -> None:
    entries = present.timeline(crashloop)
    labels = [e.label for e in entries]
    assert labels[:6] == [
        "Alert fired",
        "Received from Alertmanager",
        "Analysis started",
        "Evidence gathered",
        "Diagnosis made",
        "Analysis completed",
    ]
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert entries[0].offset == ""
    assert entries[1].offset == "+1m 24s"  # fired 14 min ago, received 12.6 min ago


def test_timeline_of_a_failed_analysis_ends_in_the_failure(crashloop: AlertAnalysis) -> None:
    crashloop.status.phase = Phase.FAILED
    crashloop.status.reason = "gathering timed out after 60s: the API server did not answer"
    entries = present.timeline(crashloop)
    failed = next(e for e in entries if e.label == "Analysis failed")
    assert failed.tone == "error" and "timed out" in failed.detail


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250 ms"), (4.21, "4.2 s"), (42, "42 s"), (185, "3m 05s"), (7800, "2h 10m")],
)
def test_durations_read_like_people_write_them(seconds: float, text: str) -> None:
    assert present.format_duration(seconds) == text


def test_alertmanager_links_match_exactly_the_alert() -> None:
    url = present.alertmanager_alert_url(
        "http://alertmanager:9093/", {"alertname": "KubePodCrashLooping", "pod": 'a"b'}
    )
    assert url == (
        "http://alertmanager:9093/#/alerts?filter="
        "%7Balertname%3D%22KubePodCrashLooping%22%2Cpod%3D%22a%5C%22b%22%7D"
    )
    assert present.alertmanager_alert_url("", {"alertname": "X"}) is None


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,<script>", "//evil.example", "http://a\nb", ""],
)
def test_only_http_urls_are_links(url: str) -> None:
    assert present.http_url(url) is None


def test_the_report_shows_each_link_of_the_causal_chain(crashloop: AlertAnalysis) -> None:
    chain = [
        CauseLink(role=LinkRole.SYMPTOM, summary="KubePodCrashLooping fires.", evidence=["alert"]),
        CauseLink(
            role=LinkRole.WRAPPER,
            summary="The rollout of Deployment api to revision 42 is stuck.",
            evidence=["workload/Deployment/api"],
            rule="rollout-stuck",
        ),
        CauseLink(
            role=LinkRole.CAUSE,
            category=Category.BAD_CONFIG,
            summary="api exits: DATABASE_URL is not set <b>",
            evidence=["log/api-7d9f8c6b5-x2kqp/api/previous#L3"],
        ),
    ]
    secondary = [
        CauseLink(
            role=LinkRole.SECONDARY,
            category=Category.CPU_THROTTLING,
            summary="api is CPU-throttled in 40% of its periods.",
        )
    ]
    crashloop.status.chain, crashloop.status.secondary_causes = chain, secondary
    files = render_report(crashloop, now=NOW)
    md, html = files[REPORT_MD], files[REPORT_HTML]
    assert "## Causal chain" in md and "## Secondary causes" in md
    order = [
        md.index(text)
        for text in (
            "KubePodCrashLooping fires.",
            "revision 42 is stuck",
            "DATABASE_URL is not set",
        )
    ]
    assert order == sorted(order)
    assert "`workload/Deployment/api`" in md
    assert "CPU-throttled" in md
    assert (
        "Causal chain" in html
        and "&lt;b&gt;" in html
        and "<b>" not in html.split("Causal chain")[1].split("</section>")[0]
    )
