"""Evidence flattening: stable readable ids, most diagnostic first, bounded logs."""

from __future__ import annotations

import pytest

from oncallm.analysis.evidence import (
    EvidenceSettings,
    build_evidence,
    index_evidence,
    is_error_line,
)
from oncallm.models.analysis import EvidenceSource, TargetRef
from oncallm.models.evidence import Context, EventSnapshot, LogSnapshot, ServiceSnapshot
from tests.unit.test_rules import NODE, NS, POD, alert, container, ctx, deployment, node, pod


def crash_log(previous: bool = True) -> LogSnapshot:
    lines = [f"2025-05-14T09:48:{i:02d}Z INFO  handled GET /orders/{i} 200" for i in range(40)]
    lines[10] = "2025-05-14T09:48:10Z WARN  DeprecationWarning: 'pool_size' is deprecated"
    lines[11] = '2025-05-14T09:48:11Z INFO  10.42.0.1 "GET /favicon.ico HTTP/1.1" 404 0'
    lines[30] = "2025-05-14T09:48:30Z ERROR could not connect to orders-db:5432: connection refused"
    lines.append("psycopg2.OperationalError: could not connect to server: Connection refused")
    return LogSnapshot(pod=POD, namespace=NS, container="api", previous=previous, lines=lines)


def full_ctx() -> Context:
    return ctx(
        logs=[crash_log(previous=False), crash_log()],
        events=[
            EventSnapshot(
                type="Normal",
                reason="Pulled",
                message='Container image "x" already present on machine',
                object_kind="Pod",
                object_name=POD,
            ),
            EventSnapshot(
                type="Warning",
                reason="BackOff",
                message="Back-off restarting failed container api in pod " + POD,
                count=31,
                object_kind="Pod",
                object_name=POD,
            ),
        ],
        nodes=[node(DiskPressure=("True", "KubeletHasDiskPressure", "kubelet has disk pressure"))],
        services=[ServiceSnapshot(name="orders-db", namespace=NS, relation="dependency")],
    )


def test_ids_are_readable_and_stable() -> None:
    first = [e.id for e in build_evidence(full_ctx())]
    again = [e.id for e in build_evidence(full_ctx())]
    assert first == again
    for expected in (
        "alert",
        f"container/{POD}/api",
        f"pod/{POD}",
        f"event/Pod/{POD}/BackOff",
        f"event/Pod/{POD}/Pulled",
        f"log/{POD}/api/previous#L31",
        f"log/{POD}/api/previous#L41",
        f"log/{POD}/api/current#L31",
        f"node/{NODE}/DiskPressure",
        f"node/{NODE}",
        "service/orders-db",
        "workload/Deployment/api",
        "revision/api-7d9f8c6b5",
    ):
        assert expected in first, expected
    assert len(first) == len(set(first)), "ids are unique"


def test_most_diagnostic_first() -> None:
    ids = [e.id for e in build_evidence(full_ctx())]

    def pos(prefix: str) -> int:
        return next(i for i, eid in enumerate(ids) if eid.startswith(prefix))

    assert ids[0] == "alert"
    assert pos(f"container/{POD}/api") < pos(f"event/Pod/{POD}/BackOff")
    assert pos(f"event/Pod/{POD}/BackOff") < pos(f"log/{POD}/api/previous#L31")
    assert pos(f"log/{POD}/api/previous#L31") < pos(f"log/{POD}/api/current#L31")
    assert pos(f"log/{POD}/api/current#L31") < pos(f"node/{NODE}/DiskPressure")
    assert pos(f"node/{NODE}/DiskPressure") < pos(f"event/Pod/{POD}/Pulled")
    assert ids.index("service/orders-db") < ids.index(f"node/{NODE}")  # no endpoints


def test_noise_lines_are_not_errors_and_not_kept() -> None:
    assert not is_error_line("WARN DeprecationWarning: 'pool_size' is deprecated")
    assert not is_error_line('10.42.0.1 "GET /favicon.ico HTTP/1.1" 404 0')
    assert not is_error_line("sync finished: 0 errors")
    assert is_error_line("ERROR could not connect to orders-db:5432: connection refused")
    assert is_error_line("psycopg2.OperationalError: could not connect to server")
    assert is_error_line("panic: runtime error: invalid memory address or nil pointer dereference")
    ids = {e.id for e in build_evidence(full_ctx())}
    assert f"log/{POD}/api/previous#L11" not in ids
    assert f"log/{POD}/api/previous#L12" not in ids


def test_error_lines_are_bounded_keeping_start_and_end() -> None:
    lines = [
        f"ERROR attempt {i}: dial tcp 10.96.14.7:5432: connect: connection refused"
        for i in range(1, 51)
    ]
    c = ctx(logs=[LogSnapshot(pod=POD, namespace=NS, container="api", previous=True, lines=lines)])
    settings = EvidenceSettings(max_error_lines=6, tail_lines=3)
    log_ids = [e.id for e in build_evidence(c, settings) if e.id.startswith("log/")]
    numbers = sorted(int(i.rsplit("#L", 1)[1]) for i in log_ids)
    assert numbers == [1, 2, 47, 48, 49, 50]


def test_duplicate_keys_get_a_suffix_and_lookups_match() -> None:
    a = EventSnapshot(
        type="Warning",
        reason="Failed",
        message='Failed to pull image "x:1"',
        object_kind="Pod",
        object_name=POD,
    )
    b = EventSnapshot(
        type="Warning",
        reason="Failed",
        message="Error: ErrImagePull",
        object_kind="Pod",
        object_name=POD,
    )
    index = index_evidence(ctx(events=[a, b]))
    assert index.event(a) == f"event/Pod/{POD}/Failed"
    assert index.event(b) == f"event/Pod/{POD}/Failed~2"
    assert index.has(f"event/Pod/{POD}/Failed~2")
    assert index.cite("nope", f"event/Pod/{POD}/Failed", f"event/Pod/{POD}/Failed") == [
        f"event/Pod/{POD}/Failed"
    ]


def test_excerpts_are_cut_and_sources_set() -> None:
    long_line = "ERROR " + "x" * 5000
    c = ctx(logs=[LogSnapshot(pod=POD, namespace=NS, container="api", lines=[long_line])])
    items = build_evidence(c, EvidenceSettings(max_excerpt_chars=100))
    line = next(e for e in items if e.id.startswith("log/"))
    assert len(line.excerpt) == 100 and line.excerpt.endswith("…")
    assert line.source == EvidenceSource.LOG
    container_item = next(e for e in build_evidence(c) if e.id == f"container/{POD}/api")
    assert "CrashLoopBackOff" in container_item.excerpt and "exit code 1" in container_item.excerpt
    assert "limits cpu=500m,memory=512Mi" in container_item.excerpt


def test_healthy_objects_go_last() -> None:
    healthy = pod(
        POD,
        container(
            state="running",
            reason="",
            message="",
            ready=True,
            restart_count=0,
            last_state=None,
            last_exit_code=None,
        ),
        conditions={"Ready": ("True", "", "")},
    )
    c = Context(
        alert=alert(),
        target=TargetRef(kind="Pod", namespace=NS, name=POD),
        pods=[healthy],
        workload=deployment(conditions={}, unavailable=0),
    )
    ids = [e.id for e in build_evidence(c)]
    assert ids[0] == "alert"
    assert set(ids[1:]) == {
        f"container/{POD}/api",
        f"pod/{POD}",
        "workload/Deployment/api",
        "revision/api-7d9f8c6b5",
    }


def test_settings_from_env() -> None:
    s = EvidenceSettings.from_env({"ONCALLM_EVIDENCE_TAIL_LINES": "2"})
    assert s.tail_lines == 2 and s.max_error_lines == 8
    with pytest.raises(ValueError, match="ONCALLM_EVIDENCE_MAX_ERROR_LINES"):
        EvidenceSettings.from_env({"ONCALLM_EVIDENCE_MAX_ERROR_LINES": "lots"})
    with pytest.raises(ValueError, match="at least 1"):
        EvidenceSettings.from_env({"ONCALLM_EVIDENCE_TAIL_LINES": "0"})
