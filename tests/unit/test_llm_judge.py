"""Never worse than the rules: the model's category against the evidence and the rules.

The judge alone (pure), then analyse_with_model through the real openai client: a valid,
grounded and wrong answer loses to the rules with both sides in the notes; runaway replies;
every call recorded, used or not; the transcript of what left the cluster.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from oncallm.llm.analyse import analyse_with_model, parse_diagnosis, transcript_json
from oncallm.llm.client import ModelClient
from oncallm.llm.judge import NEEDS, healthy_pods, judge, support
from oncallm.models.analysis import Category, Diagnosis, EvidenceRef
from tests.openai_server import FakeOpenAI, Reply, json_reply, openai_server
from tests.unit.llm_fixtures import (
    POD,
    baseline,
    context,
    evidence,
    model_client,
    model_diagnosis,
    policy,
    unknown_baseline,
)

__all__ = ["model_client", "openai_server"]

CONTAINER = f"container/{POD}/checkout"


def _diagnosis(category: str, **overrides: object) -> Diagnosis:
    data = model_diagnosis(category=category, **overrides)
    diagnosis, problem = parse_diagnosis(json.dumps(data))
    assert diagnosis is not None, problem
    return diagnosis


def _disagreements(kept: str) -> float:
    return REGISTRY.get_sample_value("oncallm_llm_disagreements_total", {"kept": kept}) or 0.0


def test_every_category_but_unknown_names_what_proves_it() -> None:
    assert set(NEEDS) == set(Category) - {Category.UNKNOWN}


def test_an_oom_needs_a_termination_or_kernel_record() -> None:
    item, need = support(Category.OOM_KILLED, evidence())
    assert item is not None and item.id == CONTAINER
    without = [e for e in evidence() if e.id != CONTAINER]
    item, need = support(Category.OOM_KILLED, without)
    assert item is None
    assert "exit-137" in need
    kernel = EvidenceRef(
        id="event/Node/w1/OOMKilling",
        source="event",
        object="node/w1",
        excerpt="Warning OOMKilling: Memory cgroup out of memory: Killed process 4821 (java)",
    )
    assert support(Category.OOM_KILLED, [*without, kernel])[0] == kernel


def test_an_image_error_needs_a_pull_event_or_waiting_reason() -> None:
    assert support(Category.IMAGE_PULL_ERROR, evidence())[0] is None
    pull = EvidenceRef(
        id=f"event/Pod/{POD}/Failed",
        source="event",
        object=f"pod/shop/{POD}",
        excerpt='Warning Failed: Failed to pull image "shop/checkout:2.14.2": not found',
    )
    assert support(Category.IMAGE_PULL_ERROR, [*evidence(), pull])[0] == pull


def test_a_wrong_category_with_real_citations_loses_to_confident_rules() -> None:
    # What SmolLM2 answered for an obvious OOMKilled container: valid, cited, wrong.
    proposed = _diagnosis(
        "app_crash_exception",
        rootCause="The application crashed with an exception.",
        confidence=0.5,
    )
    verdict = judge(proposed, baseline(), evidence(), confident_rules=0.6)
    assert not verdict.accept and verdict.disagreement
    assert verdict.note is not None
    assert verdict.note.startswith(
        'The model proposed app_crash_exception because "The application crashed'
    )
    assert "kept oom_killed because" in verdict.note
    assert "app_crash_exception needs a crash in the logs" in verdict.note


def test_a_supported_category_still_loses_to_a_confident_rules_finding() -> None:
    extra = EvidenceRef(
        id=f"log/{POD}/checkout/previous#L9",
        source="log",
        object=f"pod/shop/{POD}",
        excerpt="panic: runtime error: invalid memory address or nil pointer dereference",
    )
    proposed = _diagnosis("app_crash_exception", evidence=[extra.id])
    verdict = judge(proposed, baseline(0.9), [*evidence(), extra], confident_rules=0.6)
    assert not verdict.accept
    assert verdict.note is not None
    assert "the rules found oom_killed with confidence 0.90" in verdict.note
    assert extra.id in verdict.note


def test_a_supported_category_beats_rules_that_know_nothing() -> None:
    proposed = _diagnosis("oom_killed")
    verdict = judge(proposed, unknown_baseline(), evidence(), confident_rules=0.6)
    assert verdict.accept and verdict.disagreement
    assert verdict.note is not None and CONTAINER in verdict.note


def test_replacing_unsure_rules_takes_a_sure_model_citing_the_proof() -> None:
    unsure = _diagnosis("oom_killed", confidence=0.4)
    verdict = judge(unsure, unknown_baseline(), evidence(), confident_rules=0.6)
    assert not verdict.accept and verdict.note is not None
    assert "confidence 0.40 is below 0.60" in verdict.note
    uncited = _diagnosis("oom_killed", evidence=[f"event/Pod/{POD}/BackOff"])
    verdict = judge(uncited, unknown_baseline(), evidence(), confident_rules=0.6)
    assert not verdict.accept and verdict.note is not None
    assert f"cited none of the evidence that proves it (such as {CONTAINER})" in verdict.note


def test_an_unsupported_category_loses_even_to_rules_that_know_nothing() -> None:
    proposed = _diagnosis("image_pull_error")
    verdict = judge(proposed, unknown_baseline(), evidence(), confident_rules=0.6)
    assert not verdict.accept
    assert verdict.note is not None and "needs an image pull event" in verdict.note


def _recovered_pod(restarts: int = 0, ready: str = "true") -> list[EvidenceRef]:
    """A pod whose readiness probe failed while it started and that runs ready now."""
    pod = "web-5c9d7f8b6-q7x2m"
    return [
        EvidenceRef(
            id=f"event/Pod/{pod}/Unhealthy",
            source="event",
            object=f"pod/shop/{pod}",
            excerpt="Warning Unhealthy: Readiness probe failed: dial tcp 10.42.0.9:8080: connect: "
            "connection refused (x2)",
        ),
        EvidenceRef(
            id=f"container/{pod}/web",
            source="containerStatus",
            object=f"pod/shop/{pod}",
            excerpt=f"container web (shop/web:1.2.0); running; restarts {restarts}, ready {ready}; "
            "limits memory=256Mi",
        ),
        EvidenceRef(
            id=f"log/{pod}/web/current#L1",
            source="log",
            object=f"pod/shop/{pod}/web",
            excerpt="2024-05-01T10:02:03Z ERROR unhandled exception in request handler",
        ),
    ]


def test_what_a_pod_that_runs_ready_and_never_restarted_shows_is_history() -> None:
    # The rules call a recovered pod unknown on purpose; a sure model citing its old probe
    # failure (or a handled exception) must not replace that.
    recovered = _recovered_pod()
    assert healthy_pods(recovered) == {"pod/shop/web-5c9d7f8b6-q7x2m"}
    for category, cited in (
        ("failing_probe", recovered[0].id),
        ("app_crash_exception", recovered[2].id),
    ):
        proposed = _diagnosis(category, evidence=[cited], confidence=0.95)
        verdict = judge(proposed, unknown_baseline(), recovered, confident_rules=0.6)
        assert not verdict.accept and verdict.disagreement, category
        assert verdict.note is not None
        assert f"{cited} is history: it is about pod/shop/web-5c9d7f8b6-q7x2m, which runs " in (
            verdict.note
        )
        assert "which runs ready and never restarted" in verdict.note
    # the same evidence of a pod that is not ready now proves it
    failing = _recovered_pod(ready="false")
    assert healthy_pods(failing) == set()
    proposed = _diagnosis("failing_probe", evidence=[failing[0].id], confidence=0.95)
    assert judge(proposed, unknown_baseline(), failing, confident_rules=0.6).accept
    # a restarted pod that is ready now: its readiness probe passes now, and its crash proves
    restarted = _recovered_pod(restarts=3)
    assert healthy_pods(restarted) == set()
    proposed = _diagnosis("failing_probe", evidence=[restarted[0].id], confidence=0.95)
    verdict = judge(proposed, unknown_baseline(), restarted, confident_rules=0.6)
    assert not verdict.accept and verdict.note is not None
    assert "is ready now, so its readiness probe passes" in verdict.note
    proposed = _diagnosis("app_crash_exception", evidence=[restarted[2].id], confidence=0.95)
    assert judge(proposed, unknown_baseline(), restarted, confident_rules=0.6).accept


def test_a_probes_failed_connection_is_no_dependency_down() -> None:
    # the probe connects to the container itself, not to a dependency
    failing = _recovered_pod(ready="false")
    assert support(Category.DEPENDENCY_UNREACHABLE, failing[:1])[0] is None
    refused = EvidenceRef(
        id="log/web-5c9d7f8b6-q7x2m/web/current#L4",
        source="log",
        object="pod/shop/web-5c9d7f8b6-q7x2m/web",
        excerpt="dial tcp 10.43.7.1:5432: connect: connection refused",
    )
    assert support(Category.DEPENDENCY_UNREACHABLE, [*failing, refused])[0] == refused


def test_the_alerted_pods_own_service_without_endpoints_is_no_dependency_down() -> None:
    def service(relation: str, ready: int) -> EvidenceRef:
        return EvidenceRef(
            id="service/es-data", source="service", object="service/logs/es-data",
            excerpt=f"{relation} service, ClusterIP None ports 9200/TCP->9200; "
            f"{ready} ready / 0 not ready endpoints",
        )  # fmt: skip

    assert support(Category.DEPENDENCY_UNREACHABLE, [service("member", 0)])[0] is None
    assert support(Category.DEPENDENCY_UNREACHABLE, [service("member", 10)])[0] is None
    down = service("dependency", 0)
    assert support(Category.DEPENDENCY_UNREACHABLE, [down])[0] == down
    assert support(Category.DEPENDENCY_UNREACHABLE, [service("dependency", 10)])[0] is None


def test_a_bound_claim_proves_no_pending_claim() -> None:
    # a PersistentVolume filling up: its claim is Bound, and the alert names the claim
    def claim(phase: str) -> EvidenceRef:
        return EvidenceRef(
            id="pvc/storage-vmsingle-0",
            source="pvc",
            object="persistentvolumeclaim/mosaic/storage-vmsingle-0",
            excerpt=f"{phase}; storageClass gp3; requests 500Gi",
        )

    alert = EvidenceRef(
        id="alert",
        source="alert",
        object="pod/mosaic/vmsingle-0",
        excerpt="KubePersistentVolumeFillingUp (firing) persistentvolumeclaim=storage-vmsingle-0",
    )
    assert support(Category.PVC_PENDING, [alert, claim("Bound")])[0] is None
    assert support(Category.PVC_PENDING, [alert, claim("Pending")])[0] == claim("Pending")


ALERT_START = "2026-12-02T04:00:00Z"


def _alert() -> EvidenceRef:
    return EvidenceRef(
        id="alert",
        source="alert",
        object="service/shop/api",
        excerpt="TargetDown (firing) job=api, namespace=shop",
        time=ALERT_START,
    )


def _container(pod: str, state: str, *, time: str | None = None) -> list[EvidenceRef]:
    """A pod's status item and its container line, as the pods source writes them."""
    return [
        EvidenceRef(
            id=f"container/{pod}/api",
            source="containerStatus",
            object=f"pod/shop/{pod}",
            excerpt=f"container api (shop/api:3.1.0); {state}; limits memory=1Gi",
            time=time,
        ),
        EvidenceRef(
            id=f"pod/{pod}",
            source="podStatus",
            object=f"pod/shop/{pod}",
            excerpt="phase Running; node w1; owned by ReplicaSet/api-6d9f",
        ),
    ]


def _event(pod: str, reason: str, message: str, time: str) -> EvidenceRef:
    return EvidenceRef(
        id=f"event/Pod/{pod}/{reason}",
        source="event",
        object=f"pod/shop/{pod}",
        excerpt=f"Warning {reason}: {message}",
        time=time,
    )


def _sure(category: str, *cited: str) -> Diagnosis:
    return _diagnosis(category, evidence=list(cited), confidence=0.9)


def _why_kept(proposed: Diagnosis, evidence: list[EvidenceRef]) -> str:
    verdict = judge(proposed, unknown_baseline(), evidence, confident_rules=0.6)
    assert not verdict.accept and verdict.note is not None
    return verdict.note


def test_a_termination_long_before_the_alert_is_history() -> None:
    # an OOM kill four days before a TargetDown, the pod ready since: the rules' own hour
    state = "running; last state terminated OOMKilled exit code 137 at {t}; restarts 1, ready true"
    old = "2026-11-28T04:00:00Z"
    evidence = [_alert(), *_container("api-1", state.format(t=old), time=old)]
    note = _why_kept(_sure("oom_killed", "container/api-1/api"), evidence)
    assert "runs ready since its container last terminated at 2026-11-28T04:00:00Z" in note
    # ten minutes before the alert, the kill may be what it saw (ready between two kills)
    recent = "2026-12-02T03:50:00Z"
    evidence = [_alert(), *_container("api-1", state.format(t=recent), time=recent)]
    assert judge(
        _sure("oom_killed", "container/api-1/api"),
        unknown_baseline(),
        evidence,
        confident_rules=0.6,
    ).accept


def test_an_event_of_a_pod_that_no_longer_exists_is_history() -> None:
    # the alert's pod was replaced: its pull event is still listed, its status is gone
    pulling = _event("api-old", "Pulling", 'Pulling image "shop/api:3.0.9"', "2026-12-02T03:30:00Z")
    evidence = [_alert(), *_container("api-new", "running; restarts 0, ready true"), pulling]
    note = _why_kept(_sure("image_pull_error", pulling.id), evidence)
    assert "pod/shop/api-old, which no longer exists (replaced since)" in note
    # without any pod status gathered there is nothing to tell, and the event proves it
    assert judge(
        _sure("image_pull_error", pulling.id), unknown_baseline(), [pulling], confident_rules=0.6
    ).accept


def test_an_event_before_the_restart_belongs_to_the_container_replaced() -> None:
    restarted = "running; last state terminated Error exit code 143 at {t}; restarts 1, ready true"
    ended = "2026-12-02T03:50:00Z"
    liveness = _event(
        "api-1", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 503", "{t}"
    )
    before = liveness.model_copy(update={"time": "2026-12-02T03:45:00Z"})
    evidence = [_alert(), *_container("api-1", restarted.format(t=ended), time=ended), before]
    note = _why_kept(_sure("failing_probe", before.id), evidence)
    assert "last seen before pod/shop/api-1's container restarted" in note
    # a liveness failure since the restart is the container that runs now
    after = liveness.model_copy(update={"time": "2026-12-02T03:58:00Z"})
    evidence = [_alert(), *_container("api-1", restarted.format(t=ended), time=ended), after]
    assert judge(
        _sure("failing_probe", after.id), unknown_baseline(), evidence, confident_rules=0.6
    ).accept


def test_an_exit_137_that_a_liveness_kill_explains_is_no_oom() -> None:
    ended = "2026-12-02T03:55:00Z"
    killed = (
        f"running; last state terminated Error exit code 137 at {ended}; restarts 1, ready true"
    )
    kill = _event(
        "api-1", "Killing", "Container api failed liveness probe, will be restarted", ended
    )
    evidence = [_alert(), *_container("api-1", killed, time=ended), kill]
    note = _why_kept(_sure("oom_killed", "container/api-1/api"), evidence)
    assert "an exit 137 is any SIGKILL, and the liveness probe of pod/shop/api-1 killed" in note
    assert judge(
        _sure("oom_killed", "container/api-1/api"),
        unknown_baseline(),
        evidence[:-1],
        confident_rules=0.6,
    ).accept


def test_a_failed_connection_a_ready_pod_logged_is_one_it_survived() -> None:
    timeout = EvidenceRef(
        id="log/api-1/api/current#L2",
        source="log",
        object="pod/shop/api-1/api",
        excerpt="WARN upload: s3 PutObject RequestTimeout, retry 1/3",
    )
    healthy = [_alert(), *_container("api-1", "running; restarts 0, ready true"), timeout]
    note = _why_kept(_sure("dependency_unreachable", timeout.id), healthy)
    assert "which runs ready and never restarted" in note
    crashing = [_alert(), *_container("api-1", "waiting CrashLoopBackOff; restarts 9, ready false")]
    assert judge(
        _sure("dependency_unreachable", timeout.id),
        unknown_baseline(),
        [*crashing, timeout],
        confident_rules=0.6,
    ).accept


def _deployment(line: str) -> EvidenceRef:
    return EvidenceRef(
        id="workload/Deployment/api",
        source="workload",
        object="deployment/shop/api",
        excerpt=f"Deployment api; {line}",
    )


def test_a_rollout_needs_the_rollout_at_fault() -> None:
    # a finished rollout whose pods fail shows unavailable replicas: no rollout is stuck
    done = _deployment(
        "desired 2, ready 0, updated 2, available 0, unavailable 2; Progressing=True "
        'NewReplicaSetAvailable: ReplicaSet "api-6d9f" has successfully progressed.'
    )
    assert support(Category.ROLLOUT_STUCK, [done])[0] is None
    under_way = _deployment("desired 3, ready 3, updated 1, available 3, unavailable 0")
    assert support(Category.ROLLOUT_STUCK, [under_way])[0] == under_way
    # under way, with a new pod that crash-loops: the crash is the cause, the rollout its wrapper
    crash = _container(
        "api-new", "waiting CrashLoopBackOff: back-off 5m0s; restarts 7, ready false"
    )
    evidence = [_alert(), under_way, *crash]
    note = _why_kept(_sure("rollout_stuck", under_way.id), evidence)
    assert "is a controller reporting that what it manages fails, and container/api-new/api" in (
        note
    )
    pending = EvidenceRef(
        id="pod/api-new",
        source="podStatus",
        object="pod/shop/api-new",
        excerpt="phase Pending; node (not scheduled); PodScheduled=False (Unschedulable)",
    )
    assert judge(
        _sure("rollout_stuck", under_way.id),
        unknown_baseline(),
        [_alert(), under_way, pending],
        confident_rules=0.6,
    ).accept


def test_a_dependency_unreachable_restates_the_rules_blocking_policy() -> None:
    refused = EvidenceRef(
        id="log/api-1/api/previous#L3",
        source="log",
        object="pod/shop/api-1/api",
        excerpt="failed to connect to 127.0.0.1:5432: unexpected EOF",
    )
    evidence = [
        _alert(),
        *_container("api-1", "waiting CrashLoopBackOff; restarts 9, ready false"),
        refused,
    ]
    policy_block = baseline(0.5).model_copy(update={"category": Category.NETWORK_POLICY_BLOCK})
    verdict = judge(
        _sure("dependency_unreachable", refused.id), policy_block, evidence, confident_rules=0.6
    )
    assert not verdict.accept and verdict.note is not None
    assert "dependency_unreachable is what network_policy_block looks like from the client" in (
        verdict.note
    )
    assert judge(
        _sure("dependency_unreachable", refused.id),
        unknown_baseline(),
        evidence,
        confident_rules=0.6,
    ).accept


def test_a_readiness_probe_the_application_answers_with_a_5xx_works() -> None:
    # the application says it is not ready: the rules call that unknown, and so must the judge
    not_ready = _container("api-1", "running; restarts 0, ready false")
    verdict_5xx = _event(
        "api-1",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 500 (x96)",
        "2026-12-02T04:10:00Z",
    )
    timeout = _event(
        "api-1",
        "Unhealthy",
        "Readiness probe failed: context deadline exceeded (x7)",
        "2026-12-02T04:05:00Z",
    ).model_copy(update={"id": "event/Pod/api-1/Unhealthy~2"})
    evidence = [_alert(), *not_ready, verdict_5xx, timeout]
    note = _why_kept(_sure("failing_probe", timeout.id), evidence)
    assert "the application answers pod/shop/api-1's readiness probe with a server error" in note
    assert judge(
        _sure("failing_probe", timeout.id),
        unknown_baseline(),
        [_alert(), *not_ready, timeout],
        confident_rules=0.6,
    ).accept


def test_an_eviction_is_the_kubelets_word_not_a_caches() -> None:
    cache = EvidenceRef(
        id="log/api-1/api/current#L5",
        source="log",
        object="pod/shop/api-1/api",
        excerpt="INFO cache: evicted 1200 entries (LRU)",
    )
    assert support(Category.DISK_PRESSURE, [cache])[0] is None
    evicted = _event(
        "api-1", "Evicted", "The node was low on resource: ephemeral-storage.", ALERT_START
    )
    assert support(Category.DISK_PRESSURE, [cache, evicted])[0] == evicted


def test_a_policy_that_allows_the_alerts_own_path_blocks_nothing() -> None:
    target = EvidenceRef(
        id="alert",
        source="alert",
        object="service/shop/exporter",
        excerpt="TargetDown (firing) job=exporter",
        time=ALERT_START,
    )
    policy_item = EvidenceRef(
        id="netpol/allow-monitoring-scrape",
        source="networkPolicy",
        object="networkpolicy/shop/allow-monitoring-scrape",
        excerpt="selects app=exporter (including the alerted pods); types Ingress; ingress: "
        "namespaces {'kubernetes.io/metadata.name': 'monitoring'} ports 9187/TCP",
    )

    def path(ingress: str) -> EvidenceRef:
        return EvidenceRef(
            id="netpath/exporter.shop",
            source="networkPolicy",
            object="pod/monitoring/prometheus-0",
            excerpt="monitoring/prometheus-0 -> shop/exporter:9187/TCP; 1 destination pods; "
            f"egress: no policy restricts it; ingress: {ingress}",
        )

    allowed = [target, policy_item, path("allowed by allow-monitoring-scrape")]
    note = _why_kept(_sure("network_policy_block", policy_item.id), allowed)
    assert "netpath/exporter.shop shows the policies of both ends allow the alert's own path" in (
        note
    )
    denied = [target, policy_item, path("denied: no rule of allow-monitoring-scrape allows it")]
    assert judge(
        _sure("network_policy_block", policy_item.id),
        unknown_baseline(),
        denied,
        confident_rules=0.6,
    ).accept


def test_an_outside_authority_refusing_the_pods_identity_is_a_refusal() -> None:
    vault = EvidenceRef(
        id="log/api-1/vault-agent-init/previous#L22",
        source="log",
        object="pod/shop/api-1/vault-agent-init",
        excerpt="  | * service account name not authorized",
    )
    assert support(Category.RBAC_FORBIDDEN, [vault])[0] == vault


def test_agreement_is_no_disagreement() -> None:
    verdict = judge(_diagnosis("oom_killed"), baseline(), evidence(), confident_rules=0.6)
    assert verdict.accept and not verdict.disagreement and verdict.note is None


def test_a_percent_confidence_is_read_as_a_share() -> None:
    assert _diagnosis("oom_killed", confidence=86).confidence == pytest.approx(0.86)
    assert _diagnosis("oom_killed", confidence=250).confidence == 1.0


async def test_the_rules_stand_against_a_wrong_model_and_both_show(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(
        json_reply(
            model_diagnosis(
                category="app_crash_exception",
                rootCause="checkout crashed with an unhandled error.",
                confidence=0.5,
            ),
            usage=(900, 120),
        )
    )
    before = _disagreements("rules")
    outcome = await analyse_with_model(context(), evidence(), baseline(), policy(), model_client)
    assert outcome.outcome == "rejected"
    assert outcome.diagnosis == baseline()
    assert outcome.analyzer == "rules" and not outcome.used_model
    assert outcome.disagreement
    assert _disagreements("rules") == before + 1
    note = outcome.notes[-1]
    assert "The model proposed app_crash_exception because" in note
    assert "kept oom_killed because" in note
    # the call is on the record although its answer was not used
    assert outcome.model == "gpt-4o-mini"
    assert (outcome.token_usage.prompt, outcome.token_usage.completion) == (900, 120)
    (call,) = outcome.calls
    assert (call.prompt_tokens, call.completion_tokens) == (900, 120)
    assert call.format == "json_schema" and call.finish_reason == "stop"
    assert call.seconds > 0


async def test_agreeing_on_the_category_the_model_text_stands_with_the_rules_chain(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(json_reply(model_diagnosis()))
    outcome = await analyse_with_model(context(), evidence(), baseline(), policy(), model_client)
    assert outcome.outcome == "accepted" and not outcome.disagreement
    assert outcome.diagnosis.root_cause.startswith("Since 2.14.1 checkout loads 48k")
    # nothing the rules proved is lost: their citations first, their finding as a note
    assert outcome.diagnosis.evidence == [CONTAINER, f"log/{POD}/checkout/previous#L3"]
    assert outcome.notes[-1].startswith("The built-in rules found the same cause (oom_killed")
    assert "exceeded its memory limit of 256Mi" in outcome.notes[-1]


async def test_the_cited_ids_are_an_enum_of_the_prompt_evidence(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(json_reply(model_diagnosis()))
    await analyse_with_model(context(), evidence(), baseline(), policy(), model_client)
    schema = openai_server.chat_requests[0].json["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["evidence"]["items"]["enum"] == [e.id for e in evidence()]


async def test_a_runaway_reply_is_asked_for_once_shorter(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(
        Reply(content='{"category": "oom_killed", "summary": "a a a a a', finish_reason="length"),
        json_reply(model_diagnosis()),
    )
    outcome = await analyse_with_model(context(), evidence(), baseline(), policy(), model_client)
    assert outcome.outcome == "accepted"
    first, second = (r.json for r in openai_server.chat_requests)
    assert first["max_tokens"] == 1500 and second["max_tokens"] == 750
    assert "ran past 1500 tokens" in second["messages"][-1]["content"]
    short = second["response_format"]["json_schema"]["schema"]
    assert list(short["properties"]) == [
        "category",
        "evidence",
        "confidence",
        "summary",
        "rootCause",
    ], "asked again in the short form"
    assert short["required"] == list(short["properties"])
    assert "immediateActions" in first["response_format"]["json_schema"]["schema"]["properties"]
    assert [c.finish_reason for c in outcome.calls] == ["length", "stop"]


async def test_a_reply_that_runs_away_twice_is_dropped(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(
        *[Reply(content='{"summary": "loop loop loop', finish_reason="length")] * 2
    )
    outcome = await analyse_with_model(context(), evidence(), baseline(), policy(), model_client)
    assert outcome.outcome == "runaway"
    assert outcome.diagnosis == baseline()
    assert "ran past its token cap twice" in outcome.notes[-1]
    assert len(outcome.calls) == 2 and outcome.token_usage.total > 0


async def test_the_transcript_is_what_was_sent_and_what_came_back(
    openai_server: FakeOpenAI, model_client: ModelClient
) -> None:
    openai_server.script(json_reply(model_diagnosis()))
    outcome = await analyse_with_model(
        context(), evidence(with_secrets=True), baseline(), policy(), model_client
    )
    sent = openai_server.chat_requests[0].json["messages"]
    assert outcome.transcript[: len(sent)] == sent
    assert outcome.transcript[-1]["role"] == "assistant"
    assert json.loads(outcome.transcript[-1]["content"])["category"] == "oom_killed"
    text = transcript_json(outcome.transcript, 256 * 1024)
    assert "Pg-S3cr3t" not in text and "[REDACTED]" in text


def test_the_transcript_is_bounded_and_keeps_every_message() -> None:
    transcript = [
        {"role": "system", "content": "rules " * 2000},
        {"role": "user", "content": "evidence " * 20000},
        {"role": "assistant", "content": '{"category": "oom_killed"}'},
    ]
    text = transcript_json(transcript, 16 * 1024)
    assert len(text.encode()) <= 16 * 1024
    messages = json.loads(text)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert "…[cut " in messages[1]["content"]
    assert messages[2]["content"] == '{"category": "oom_killed"}'
