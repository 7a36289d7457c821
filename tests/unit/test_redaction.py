"""Redaction: realistic secrets out, diagnostic text kept."""

from __future__ import annotations

import time

import pytest

from oncallm.llm.redaction import MASK, Redactor, redact
from oncallm.models.analysis import EvidenceRef

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjNmMmEifQ.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3Vi"
    "Ijoic3lzdGVtOnNlcnZpY2VhY2NvdW50OnNob3A6Y2hlY2tvdXQifQ.c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb25n"
)

# (text, the secret that must disappear, text that must survive)
LEAKS = [
    (
        "ERROR db connect failed dsn=postgres://orders:Xk9$mP2vLq@orders-db.shop.svc:5432/orders",
        "Xk9$mP2vLq",
        "orders-db.shop.svc:5432/orders",
    ),
    (
        "pika.exceptions.AMQPConnectionError: amqp://guest:guestpass42@rabbitmq.queue:5672/%2F",
        "guestpass42",
        "rabbitmq.queue:5672",
    ),
    (
        "redis.exceptions.AuthenticationError redis://:Sup3rR3dis@redis-master:6379/0",
        "Sup3rR3dis",
        "redis-master:6379",
    ),
    (
        "mongodb+srv://app:m0ng0-pw@cluster0.ab1cd.mongodb.net/shop?retryWrites=true",
        "m0ng0-pw",
        "cluster0.ab1cd.mongodb.net",
    ),
    ("DB_PASSWORD=correct-horse-battery-staple", "correct-horse-battery-staple", "DB_PASSWORD="),
    ("PGPASSWORD='p a s s' psql -h orders-db -U orders", "p a s s", "psql -h orders-db"),
    (
        '{"level":"debug","msg":"login","password":"hunter2!","user":"alice"}',
        "hunter2!",
        '"user":"alice"',
    ),
    ("  client_secret: 7f3e9a1b2c4d5e6f", "7f3e9a1b2c4d5e6f", "client_secret:"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key",
    ),
    (
        "botocore: using credentials AKIAIOSFODNN7EXAMPLE from env",
        "AKIAIOSFODNN7EXAMPLE",
        "botocore: using credentials",
    ),
    ("temporary creds ASIAY34FZKBOKMUTVV7A expire soon", "ASIAY34FZKBOKMUTVV7A", "expire soon"),
    (
        "openai.AuthenticationError: Incorrect API key provided: sk-proj-abcDEF1234567890ghiJKL",
        "sk-proj-abcDEF1234567890ghiJKL",
        "Incorrect API key provided",
    ),
    (
        "export OPENAI_API_KEY=sk-Zx81KqLm29VbNc47TrEw56YuIo03PaSd",
        "sk-Zx81KqLm29VbNc47TrEw56YuIo03PaSd",
        "export OPENAI_API_KEY=",
    ),
    (
        "anthropic key sk-ant-api03-Qw3rTy8uIo9pAsDfGhJkLzXcVbNm-0123456789",
        "Qw3rTy8uIo9pAsDfGhJkL",
        "anthropic key",
    ),
    (
        "git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/acme/catalog.git",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "github.com/acme/catalog.git",
    ),
    (
        "GITHUB_TOKEN github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz012345",
        "github_pat_11ABCDEFG0123456789",
        "GITHUB_TOKEN",
    ),
    (
        "glpat-x9Kq2LmN8vB4cR7tY1wZ used for registry.gitlab.com",
        "glpat-x9Kq2LmN8vB4cR7tY1wZ",
        "registry.gitlab.com",
    ),
    (
        "slack post failed for xoxb-208374651234-5501234567890-Zq8sVtYwLmNoPqRsTuVwXyZa: "
        "ratelimited",
        "Zq8sVtYwLmNoPqRsTuVwXyZa",
        "ratelimited",
    ),
    (
        "posting to https://hooks.slack.com/services/T024BE7LD/B01ABCDEF/8n0tR3alW3bh00k",
        "8n0tR3alW3bh00k",
        "hooks.slack.com",
    ),
    (
        f"curl -H 'Authorization: Bearer {JWT}' https://payments.shop.svc/v1/charge",
        JWT[:30],
        "https://payments.shop.svc/v1/charge",
    ),
    (
        "GET /metrics Authorization: Basic YWRtaW46cHJvbWV0aGV1cw==",
        "YWRtaW46cHJvbWV0aGV1cw==",
        "GET /metrics",
    ),
    (
        "upstream rejected bearer dGhpcy1pcy1hLXRva2VuLTEyMw in 3ms",
        "dGhpcy1pcy1hLXRva2VuLTEyMw",
        "in 3ms",
    ),
    (f"serviceaccount token {JWT} mounted", JWT[-20:], "mounted"),
    (
        "Stripe error with key sk_live_51HxQ2bLkZx9Yv8Wu7Ts6Rq",
        "sk_live_51HxQ2bLkZx9Yv8Wu7Ts6Rq",
        "Stripe error",
    ),
    (
        "maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY rejected",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "rejected",
    ),
    ("--db-password=s3cr3t-flag --port=5432", "s3cr3t-flag", "--port=5432"),
    ("X-Api-Key: 0b1c2d3e4f5a6b7c8d9e", "0b1c2d3e4f5a6b7c8d9e", "X-Api-Key:"),
    ("Set-Cookie: session_id=a81f9c0d2e; Path=/", "a81f9c0d2e", "Path=/"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), LEAKS, ids=[t[0][:40] for t in LEAKS])
def test_realistic_secrets_are_redacted_and_context_kept(text: str, secret: str, kept: str) -> None:
    result = redact(text)
    assert secret not in result.text
    assert kept in result.text
    assert MASK in result.text
    assert result.count >= 1


def test_pem_private_key_is_removed_whole() -> None:
    text = (
        "loading TLS key from env:\n-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
        "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
        "-----END RSA PRIVATE KEY-----\nhandshake failed: x509: certificate has expired"
    )
    result = redact(text)
    assert "MIIEowIBAAKCAQEAu1SU1Lf" not in result.text
    assert "VTLw7onLRnrq0" not in result.text
    assert "x509: certificate has expired" in result.text
    assert result.count == 1


def test_a_cut_off_private_key_is_redacted_to_the_end() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    assert "b3BlbnNzaC1rZXkt" not in redact(text).text


@pytest.mark.parametrize(
    "text",
    [
        'MountVolume.SetUp failed for volume "db-creds" : secret "db-creds" not found',
        'Error: secret "orders-db-credentials" not found',
        "Error: couldn't find key password in Secret shop/orders-db",
        "secretName: orders-db-credentials",
        "tokenPath=/var/run/secrets/kubernetes.io/serviceaccount/token",
        "Back-off restarting failed container checkout in pod checkout-7d9f8b6c5-x2k4q",
        "Last State: Terminated Reason: OOMKilled Exit Code: 137",
        "0/6 nodes are available: 3 Insufficient memory, 3 node(s) had untolerated taint",
        'Failed to pull image "registry.acme.io/shop/checkout:2.14.1": 401 Unauthorized',
        "dial tcp 10.96.12.7:5432: connect: connection refused",
        "https://grafana.acme.io/d/abc123/checkout?orgId=1&from=now-1h",
    ],
)
def test_diagnostic_text_without_secrets_is_untouched(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert result.count == 0


def test_counts_every_secret() -> None:
    text = (
        "DB_PASSWORD=a1b2c3d4 REDIS_URL=redis://:r3d1s@redis:6379 "
        "key AKIAIOSFODNN7EXAMPLE and ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    )
    result = redact(text)
    assert result.count == 4
    assert result.text.count(MASK) == 4


def test_redacting_twice_changes_nothing_more() -> None:
    once = redact("password=hunter22 Authorization: Bearer abcdefgh12345678")
    twice = redact(once.text)
    assert twice.text == once.text
    assert twice.count == 0


def test_configured_patterns_with_and_without_a_secret_group() -> None:
    redactor = Redactor([r"ACME-[0-9]{6}-[A-Z]{4}", r"customer_ssn=(?P<secret>\d{3}-\d{2}-\d{4})"])
    result = redactor.redact("licence ACME-123456-QWER for customer_ssn=123-45-6789 ok")
    assert result.text == f"licence {MASK} for customer_ssn={MASK} ok"
    assert result.count == 2


def test_mapping_masks_values_of_secret_names_whatever_they_look_like() -> None:
    env = {
        "LOG_LEVEL": "debug",
        "DB_PASSWORD": "x",  # too short for any pattern, masked by its name
        "STRIPE_SECRET": "plain words here",
        "DATABASE_URL": "postgres://orders:Xk9mP2vLq@orders-db:5432/orders",
    }
    out, count = Redactor().redact_mapping(env)
    assert out["LOG_LEVEL"] == "debug"
    assert out["DB_PASSWORD"] == MASK
    assert out["STRIPE_SECRET"] == MASK
    assert "Xk9mP2vLq" not in out["DATABASE_URL"]
    assert out["DATABASE_URL"].startswith("postgres://orders:")
    assert count == 3


def test_evidence_excerpts_and_objects_are_redacted() -> None:
    items = [
        EvidenceRef(
            id="log/api-1/api#L1",
            source="log",
            object="pod/shop/api-1",
            excerpt="token=abcd1234efgh5678\nready",
        ),
        EvidenceRef(id="alert", source="alert", object="alert", excerpt="nothing secret"),
    ]
    out, count = Redactor().redact_evidence(items)
    assert out[0].excerpt == f"token={MASK}\nready"
    assert out[1] == items[1]
    assert count == 1
    assert items[0].excerpt.startswith("token=abcd"), "the input is not modified"


@pytest.mark.parametrize(
    "text",
    [
        "x" * 400_000,
        "sk-" + "a-" * 100_000,
        "aa.bb-" * 60_000 + ":x",
        "eyJa-" * 60_000,
        'password="' * 40_000,
        "a://" * 60_000,
    ],
    ids=["one-long-word", "dashed-key", "dotted-key", "jwt-starts", "open-quotes", "schemes"],
)
def test_long_pathological_lines_are_scanned_in_linear_time(text: str) -> None:
    # A stuck regex would hang the operator on one odd log line. Linear patterns take about
    # 0.25 s here; the quadratic ones this replaced took minutes. The bound leaves room for a
    # busy test machine.
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 3
