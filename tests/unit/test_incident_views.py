"""Incidents in every interface: the status model, the report and the web view."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from oncallm.kube.store import AnalysisStore
from oncallm.models.analysis import AlertAnalysis, IncidentRef, IncidentRole
from oncallm.reports import render_report
from oncallm.web import WebSettings, add_web_routes
from oncallm.web.demo import NAMESPACE, crashloop_analysis, oom_analysis
from oncallm.web.views import group_rows, incident_members

NOW = datetime.now(UTC)
BASE = "https://oncallm.example.com"
CAUSE = "service/orders/orders-db"


def _analysis(
    name: str, pod: str, minutes_ago: float, incident: IncidentRef | None
) -> AlertAnalysis:
    base = crashloop_analysis(NOW)
    spec = base.spec.model_copy(
        update={
            "alert": base.spec.alert.model_copy(
                update={"labels": {**base.spec.alert.labels, "pod": pod}}
            ),
            "received_at": (NOW - timedelta(minutes=minutes_ago))
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z"),
        }
    )
    status = base.status.model_copy(
        update={
            "incident": incident,
            "target_display": f"pod/orders/{pod}",
            "report_url": f"{BASE}/analyses/{NAMESPACE}/{name}",
        }
    )
    return base.model_copy(
        update={
            "metadata": {**base.metadata, "name": name, "uid": f"uid-{name}"},
            "spec": spec,
            "status": status,
        }
    )


PRIMARY = _analysis(
    "crash-primary",
    "api-7d9f8c6b5-aaaaa",
    10,
    IncidentRef(cause=CAUSE, role=IncidentRole.PRIMARY, primary="crash-primary", members=2),
)
MEMBERS = [
    _analysis(
        f"crash-member-{i}",
        f"api-7d9f8c6b5-m{i}xyz",
        9 - i,
        IncidentRef(
            cause=CAUSE,
            role=IncidentRole.MEMBER,
            primary="crash-primary",
            members=i,
            reason="the same revision api-7d9f8c6b5 failing the same way",
        ),
    )
    for i in (1, 2)
]
#: An alert of the same namespace and Alertmanager group with a cause of its own.
UNRELATED = oom_analysis(NOW)


def test_a_primarys_report_lists_its_members() -> None:
    files = render_report(PRIMARY, members=MEMBERS)
    md, html = files["report.md"], files["report.html"]
    assert "## Incident" in md and CAUSE in md
    assert "once for 3 alert(s)" in md
    for m in MEMBERS:
        assert m.name in md and m.name in html
        assert f"{BASE}/analyses/{NAMESPACE}/{m.name}" in html
    assert "<h2>Incident</h2>" in html


def test_a_members_report_links_its_primary_and_says_why() -> None:
    md = render_report(MEMBERS[0])["report.md"]
    assert "Member of the incident of **service/orders/orders-db**" in md
    assert f"[crash-primary](<{BASE}/analyses/{NAMESPACE}/crash-primary>)" in md
    assert "the same revision api-7d9f8c6b5 failing the same way" in md


def test_members_beyond_the_listed_are_counted() -> None:
    primary = PRIMARY.model_copy(
        update={
            "status": PRIMARY.status.model_copy(
                update={"incident": PRIMARY.status.incident.model_copy(update={"members": 40})}  # type: ignore[union-attr]
            )
        }
    )
    md = render_report(primary, members=MEMBERS)["report.md"]
    assert "once for 41 alert(s)" in md and "| … | | 38 more | |" in md


def test_the_list_shows_one_card_per_incident_primary_first() -> None:
    analyses = sorted(
        [*MEMBERS, PRIMARY, UNRELATED],
        key=lambda a: a.spec.received_at or "",
        reverse=True,
    )
    groups = group_rows(analyses, NOW)
    incidents = [g for g in groups if g.kind == "incident"]
    assert len(incidents) == 1
    card = incidents[0]
    assert [r.name for r in card.rows] == ["crash-primary", "crash-member-2", "crash-member-1"]
    assert [r.role for r in card.rows] == ["primary", "member", "member"]
    assert card.cause == CAUSE and card.root_cause
    # the unrelated alert shares the namespace and the Alertmanager group, not the card
    assert UNRELATED.spec.group_key == PRIMARY.spec.group_key
    assert all(UNRELATED.name not in [r.name for r in g.rows] for g in incidents)
    assert incident_members(PRIMARY, analyses) == [MEMBERS[1], MEMBERS[0]]
    assert incident_members(MEMBERS[0], analyses) == []


def test_an_incident_of_one_is_an_ordinary_row() -> None:
    single = _analysis(
        "alone",
        "api-7d9f8c6b5-sssss",
        1,
        IncidentRef(cause=CAUSE, role=IncidentRole.PRIMARY, primary="alone"),
    )
    assert [g.kind for g in group_rows([single], NOW)] == ["alertmanager"]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    store = AnalysisStore()
    for analysis in [PRIMARY, *MEMBERS, UNRELATED]:
        store.apply_event("ADDED", analysis.to_kube())
    app = web.Application()
    add_web_routes(app, store, WebSettings())
    test_client: TestClient[Any, Any] = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def test_the_web_view_shows_the_incident_everywhere(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/")).text()
    cards = re.findall(r'<section class="group incident".*?</section>', html, re.S)
    assert len(cards) == 1
    assert "3 alerts" in cards[0] and CAUSE in cards[0]
    assert cards[0].index("crash-primary") < cards[0].index("crash-member-1")
    assert UNRELATED.name not in cards[0]

    page = await (await client.get(f"/analyses/{NAMESPACE}/crash-primary")).text()
    assert 'id="incident"' in page and "once for 3 alert(s)" in page
    assert "analyses/oncallm/crash-member-1" in page and "analyses/oncallm/crash-member-2" in page

    member = await (await client.get(f"/analyses/{NAMESPACE}/crash-member-1")).text()
    assert "Member of the incident" in member
    assert 'href="../../analyses/oncallm/crash-primary"' in member

    report = await (await client.get(f"/analyses/{NAMESPACE}/crash-primary/report.md")).text()
    assert "crash-member-1" in report and "crash-member-2" in report
