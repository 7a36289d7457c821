"""Web view settings from the environment, and the pure list logic behind the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oncallm.web import WebSettings, WebSettingsError
from oncallm.web.auth import Authenticator
from oncallm.web.demo import crashloop_analysis, oom_analysis
from oncallm.web.views import Filters, etag, etag_matches, group_label, group_rows, newest_first

NOW = datetime(2024, 5, 14, 3, 26, 0, tzinfo=UTC)


def test_defaults_leave_the_view_open_and_build_no_links() -> None:
    settings = WebSettings.from_env({})
    assert settings == WebSettings()
    assert not settings.auth_required
    assert Authenticator(settings).allows(None)


def test_settings_from_env(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0k3n-from-a-secret\n")
    users = tmp_path / "users"
    users.write_text("# on-call rota\noncall:correct horse battery staple\n\nsre:pa:ss\n")
    settings = WebSettings.from_env(
        {
            "ONCALLM_REPORT_BASE_URL": "https://oncallm.example.com/",
            "ONCALLM_WEB_TOKEN_FILE": str(token_file),
            "ONCALLM_WEB_BASIC_AUTH_FILE": str(users),
            "ONCALLM_WEB_LONG_POLL_SECONDS": "20",
            "ONCALLM_WEB_LIST_LIMIT": "200",
            "ONCALLM_CLUSTER_NAME": "prod-eu-1",
        }
    )
    assert settings.base_url == "https://oncallm.example.com/"
    assert settings.token == "t0k3n-from-a-secret"
    assert settings.basic_auth == {"oncall": "correct horse battery staple", "sre": "pa:ss"}
    assert settings.long_poll_seconds == 20 and settings.list_limit == 200
    assert settings.cluster_name == "prod-eu-1"
    assert "t0k3n" not in repr(settings) and "horse" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONCALLM_WEB_TOKEN_FILE": "/nonexistent/token"}, "cannot be read"),
        ({"ONCALLM_WEB_TOKEN": "a", "ONCALLM_WEB_TOKEN_FILE": "/x"}, "unset one"),
        ({"ONCALLM_WEB_LONG_POLL_SECONDS": "soon"}, "not a number"),
        ({"ONCALLM_WEB_LONG_POLL_SECONDS": "3600"}, "outside"),
        ({"ONCALLM_WEB_LIST_LIMIT": "0"}, "outside"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(WebSettingsError, match=message):
        WebSettings.from_env(env)


def test_a_malformed_users_file_names_the_line_but_not_its_content(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("oncall:fine\nhunter2-without-a-user\n")
    with pytest.raises(WebSettingsError, match="line 2") as err:
        WebSettings.from_env({"ONCALLM_WEB_BASIC_AUTH_FILE": str(users)})
    assert "hunter2" not in str(err.value)


def test_filters_round_trip_through_the_query() -> None:
    filters = Filters.from_query({"phase": "active", "namespace": "orders", "other": "x"})
    assert filters == Filters(phase="active", namespace="orders")
    assert filters.query() == "phase=active&namespace=orders"
    assert not Filters.from_query({}).active


def test_group_label_reads_alertmanager_group_keys() -> None:
    key = '{}/{severity="warning"}:{alertname="KubePodCrashLooping", namespace="orders"}'
    assert group_label(key) == "alertname=KubePodCrashLooping, namespace=orders"
    assert group_label("custom-key") == "custom-key"


def test_same_group_key_beyond_the_window_is_another_incident() -> None:
    first, second = crashloop_analysis(NOW), oom_analysis(NOW)
    later = oom_analysis(NOW + timedelta(hours=3))
    later.metadata["name"] = "kube-pod-crash-looping-later"
    groups = group_rows(newest_first([first, second, later]), NOW, timedelta(hours=1))
    assert [[r.name for r in g.rows] for g in groups] == [
        ["kube-pod-crash-looping-later"],
        [second.name, first.name],
    ]


def test_etag_changes_exactly_when_the_analysis_does() -> None:
    a, b = crashloop_analysis(NOW), crashloop_analysis(NOW)
    assert etag(a) == etag(b)
    b.status.attempts = 2
    assert etag(a) != etag(b)
    assert etag_matches(f'"x", {etag(a)}', etag(a))
    assert not etag_matches(None, etag(a))
