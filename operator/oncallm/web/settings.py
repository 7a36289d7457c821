"""Settings of the web view, read from ``ONCALLM_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class WebSettingsError(ValueError):
    """A web view setting cannot be used; the message says which and how to fix it."""


@dataclass
class WebSettings:
    """How the web view is reached and who may read it. It is read-only in every case."""

    base_url: str = ""
    """The web view's address as engineers reach it, e.g. ``https://oncallm.example.com``
    (``ONCALLM_REPORT_BASE_URL``). Used to build report links for notifications and the
    AlertAnalysis status; empty means no links are built. Pages link relatively, so a proxy
    that serves the view under a path prefix needs nothing else."""

    token: str = field(default="", repr=False)
    """A bearer token required to read the view (``ONCALLM_WEB_TOKEN``, or a file named by
    ``ONCALLM_WEB_TOKEN_FILE``, e.g. a mounted Secret). Browsers may send it as the password
    of basic auth, with any user name. Empty: no token."""

    basic_auth: dict[str, str] = field(default_factory=dict, repr=False)
    """Users allowed in with basic auth, user -> password, read from the file named by
    ``ONCALLM_WEB_BASIC_AUTH_FILE`` (one ``user:password`` a line, ``#`` comments). Empty:
    no users. With neither a token nor users, the view is open to whoever reaches it."""

    long_poll_seconds: float = 25.0
    """How long a live page's request waits for a change before answering "no change"
    (``ONCALLM_WEB_LONG_POLL_SECONDS``). Below the 30-60 s idle timeouts of common proxies
    and load balancers, so they never cut a waiting request."""

    list_limit: int = 500
    """The most analyses the list page and ``/api/analyses`` show, newest first
    (``ONCALLM_WEB_LIST_LIMIT``): a page an engineer can still scroll on a phone."""

    history_limit: int = 20
    """The most earlier analyses shown on a report page (``ONCALLM_WEB_HISTORY_LIMIT``)."""

    group_window_minutes: float = 60.0
    """Alerts with the same Alertmanager group key are listed together when they reached
    OnCallM within this many minutes of each other (``ONCALLM_WEB_GROUP_WINDOW_MINUTES``).
    Alertmanager re-notifies a live group every ``group_interval`` (5 m by default), so an
    hour joins one incident's alerts without merging yesterday's firing into today's."""

    cluster_name: str = ""
    """A name for the cluster, shown in every page title so a tab says which cluster it is
    about (``ONCALLM_CLUSTER_NAME``). Empty: not shown."""

    @property
    def auth_required(self) -> bool:
        """True when requests must carry a token or a user's password."""
        return bool(self.token or self.basic_auth)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WebSettings:
        """Settings from the environment; raises :class:`WebSettingsError` naming the variable."""
        env = dict(os.environ) if env is None else env
        token = env.get("ONCALLM_WEB_TOKEN", "").strip()
        token_file = env.get("ONCALLM_WEB_TOKEN_FILE", "").strip()
        if token_file:
            if token:
                raise WebSettingsError(
                    "both ONCALLM_WEB_TOKEN and ONCALLM_WEB_TOKEN_FILE are set; unset one"
                )
            token = _read(token_file, "ONCALLM_WEB_TOKEN_FILE").strip()
            if not token:
                raise WebSettingsError(
                    f"ONCALLM_WEB_TOKEN_FILE={token_file} is empty; put the token in it"
                )
        basic_file = env.get("ONCALLM_WEB_BASIC_AUTH_FILE", "").strip()
        basic_auth = (
            parse_basic_auth_file(_read(basic_file, "ONCALLM_WEB_BASIC_AUTH_FILE"), basic_file)
            if basic_file
            else {}
        )
        return cls(
            base_url=env.get("ONCALLM_REPORT_BASE_URL", "").strip(),
            token=token,
            basic_auth=basic_auth,
            long_poll_seconds=_number(env, "ONCALLM_WEB_LONG_POLL_SECONDS", 25.0, 1.0, 300.0),
            list_limit=int(_number(env, "ONCALLM_WEB_LIST_LIMIT", 500, 1, 100_000)),
            history_limit=int(_number(env, "ONCALLM_WEB_HISTORY_LIMIT", 20, 0, 1000)),
            group_window_minutes=_number(
                env, "ONCALLM_WEB_GROUP_WINDOW_MINUTES", 60.0, 0.0, 7 * 24 * 60.0
            ),
            cluster_name=env.get("ONCALLM_CLUSTER_NAME", "").strip(),
        )


def parse_basic_auth_file(text: str, path: str = "the basic auth file") -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) as a dict."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            # Never echo the line: it may hold a password.
            raise WebSettingsError(
                f"{path} line {number} is not 'user:password'; fix or remove that line"
            )
        users[user] = password
    if not users:
        raise WebSettingsError(f"{path} holds no 'user:password' line; add one or unset the file")
    return users


def _read(path: str, variable: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise WebSettingsError(
            f"{variable}={path} cannot be read ({err.strerror}); mount the Secret there "
            "or unset the variable"
        ) from None


def _number(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise WebSettingsError(f"{name}={raw!r} is not a number; unset it for {default}") from None
    if not low <= value <= high:
        raise WebSettingsError(f"{name}={raw} is outside {low:g}..{high:g}; unset it for {default}")
    return value
