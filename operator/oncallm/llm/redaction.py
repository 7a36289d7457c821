"""Redaction: secrets are removed from every text before it leaves the cluster.

Logs, events, environment values, annotations and alert text all pass through the same
:class:`Redactor` before a prompt is built. It removes what a careless log line or manifest
typically leaks: passwords and tokens in ``key=value`` / ``key: value`` form, credentials in
connection strings, bearer and basic credentials, JWTs, PEM private keys, and API keys of
well-known formats (OpenAI ``sk-``, AWS ``AKIA``, GitHub ``ghp_``, Slack ``xox?-``, ...).

Redaction is deliberately greedy: losing a harmless value costs a little diagnostic detail,
leaking a secret to a third party cannot be undone. Values only are replaced, never the key
names, so the model still sees *that* ``DB_PASSWORD`` was set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from oncallm.models.analysis import EvidenceRef

#: What a redacted value is replaced with.
MASK = "[REDACTED]"

# Names of keys whose values are secrets. Matched inside longer names too
# (DB_PASSWORD, aws_secret_access_key, X-Api-Key), case-insensitively. Key matches start at
# a word boundary and are bounded in length so a megabyte-long token stays linear to scan.
_SENSITIVE_KEY = (
    r"passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|credentials?|authorization|auth[_-]?(?:token|key|header|pass)"
    r"|session[_-]?(?:id|key)|cookie"
)

# A value after a sensitive key: an auth scheme with its credential, a quoted string, or a
# bare word. Already-redacted values and empty values are left alone.
_VALUE = (
    r"(?!\[REDACTED\])"
    r"(?:(?:bearer|basic|digest|token)\s+[^\s\"',;&]+"
    r"|\"[^\"\n]{1,500}\""
    r"|'[^'\n]{1,500}'"
    r"|[^\s\"',;&}\]]+)"
)


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    #: the group holding the secret; the rest of the match is kept
    group: str | int = 0
    #: a match whose group ``key`` matches this is kept as it is (a reference, not a secret)
    keep_key: re.Pattern[str] | None = None


# Keys that name where a secret lives rather than hold it (secretName: db-creds,
# tokenPath=/var/run/..., PASSWORD_FILE=...): their values help a diagnosis and stay.
_REFERENCE_KEY = re.compile(
    r"(?i)(?:name|ref|file|path|dir|type|kind|count|length|ttl|expiry|expires|version"
    r"|provider|mount|namespace|required|enabled|source)$"
)

_BUILTIN: tuple[_Rule, ...] = (
    # A PEM private key, whole; an unterminated one (a cut-off log) is redacted to the end.
    _Rule(
        "pem_private_key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",
            re.DOTALL,
        ),
    ),
    # postgres://user:pass@host, amqp://guest:guest@rabbit, redis://:pass@redis
    _Rule(
        "url_credentials",
        re.compile(
            r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s:/@]{0,200}:(?P<secret>[^\s@/]+)@"
        ),
        "secret",
    ),
    # password=..., "apiKey": "...", secret: ..., PGPASSWORD=..., --db-password=...,
    # Authorization: Bearer ...  The separator is '=' (spaces allowed) or ':' right after
    # the key, so Kubernetes' own 'volume "secret-vol" : secret "x" not found' is kept.
    _Rule(
        "key_value",
        re.compile(
            rf"(?i)(?<![\w.-])(?P<key>[\w.-]{{0,60}}?(?:{_SENSITIVE_KEY})[\w.-]{{0,60}}?)"
            rf"[\"']?(?:\s*=\s*|:[ \t]*)"
            rf"(?P<secret>{_VALUE})"
        ),
        "secret",
        _REFERENCE_KEY,
    ),
    # Bearer/Basic credentials outside a key-value (e.g. in a curl command line).
    _Rule(
        "auth_scheme",
        re.compile(r"(?i)\b(?:bearer|basic)\s+(?P<secret>(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,})"),
        "secret",
    ),
    # Token formats. Each starts where no token character precedes it: with a plain \b, a
    # long run like "sk-sk-sk-..." would be rescanned from every start (quadratic time).
    _Rule(
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    ),
    _Rule("openai_key", re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}")),
    _Rule("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|AIPA)[A-Z0-9]{16}\b")),
    _Rule("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[\w]{22,})")),
    _Rule("gitlab_token", re.compile(r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}")),
    _Rule("slack_token", re.compile(r"(?<![A-Za-z0-9-])xox[abposre]-[A-Za-z0-9-]{10,}")),
    _Rule(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_-]+)"),
        "secret",
    ),
    _Rule("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    _Rule("stripe_key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9a-zA-Z]{16,}")),
)


@dataclass(frozen=True)
class Redacted:
    """A redacted text and how many secrets were taken out of it."""

    text: str
    count: int


class Redactor:
    """Removes secrets from text: the built-in rules plus configured extra patterns."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        """``extra_patterns`` are regular expressions (``ONCALLM_REDACT_PATTERNS``); a group
        named ``secret`` limits the redaction to that group."""
        rules = list(_BUILTIN)
        for i, pattern in enumerate(extra_patterns):
            compiled = re.compile(pattern)
            group: str | int = "secret" if "secret" in compiled.groupindex else 0
            rules.append(_Rule(f"configured_{i}", compiled, group))
        self._rules = tuple(rules)

    def redact(self, text: str) -> Redacted:
        """``text`` with every secret replaced by ``[REDACTED]``, and the number replaced."""
        count = 0
        for rule in self._rules:
            text, n = _apply(rule, text)
            count += n
        return Redacted(text, count)

    def redact_mapping(self, values: Mapping[str, str]) -> tuple[dict[str, str], int]:
        """A mapping (env, labels, annotations) with secret values redacted.

        A value whose *key* names a secret (``DB_PASSWORD``) is masked whole, whatever it
        looks like; other values go through :meth:`redact`.
        """
        out: dict[str, str] = {}
        count = 0
        for key, value in values.items():
            if value and value != MASK and _SENSITIVE_NAME.search(key):
                out[key] = MASK
                count += 1
                continue
            red = self.redact(value)
            out[key] = red.text
            count += red.count
        return out, count

    def redact_evidence(self, items: Iterable[EvidenceRef]) -> tuple[list[EvidenceRef], int]:
        """Evidence items with their excerpts and object names redacted."""
        out: list[EvidenceRef] = []
        count = 0
        for item in items:
            excerpt = self.redact(item.excerpt)
            obj = self.redact(item.object)
            count += excerpt.count + obj.count
            out.append(item.model_copy(update={"excerpt": excerpt.text, "object": obj.text}))
        return out, count


_SENSITIVE_NAME = re.compile(rf"(?i)(?:{_SENSITIVE_KEY})")


def _apply(rule: _Rule, text: str) -> tuple[str, int]:
    if rule.group == 0:
        return rule.pattern.subn(MASK, text)
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        start, end = match.span(rule.group)
        if start < 0 or start == end:
            return match.group(0)
        if rule.keep_key is not None and rule.keep_key.search(match.group("key") or ""):
            return match.group(0)
        count += 1
        whole_start = match.start()
        return match.group(0)[: start - whole_start] + MASK + match.group(0)[end - whole_start :]

    return rule.pattern.sub(replace, text), count


#: The redactor with the built-in rules only.
DEFAULT_REDACTOR = Redactor()


def redact(text: str) -> Redacted:
    """``text`` redacted with the built-in rules (see :class:`Redactor` for configured ones)."""
    return DEFAULT_REDACTOR.redact(text)
