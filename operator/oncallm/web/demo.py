"""Sample analyses, and a local web view that serves them.

``python -m oncallm.web.demo [--port 8080]`` serves the web view on 127.0.0.1 with the
analyses below: a way to see and restyle the pages without a cluster. The tests plant the
same samples. They look like what OnCallM stores for real alerts from kube-prometheus rules.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from aiohttp import web

from oncallm.kube.store import AnalysisStore
from oncallm.models.alert import AlertStatus
from oncallm.models.analysis import (
    AlertAnalysis,
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    AlertSpec,
    Category,
    Condition,
    EvidenceRef,
    EvidenceSource,
    MissingEvidence,
    Phase,
    StageTimings,
    TargetRef,
    TokenUsage,
    rfc3339,
)

#: Where the samples' AlertAnalysis objects live (the operator's namespace).
NAMESPACE = "oncallm"
ALERTMANAGER = "http://alertmanager.monitoring.svc:9093"
PROMETHEUS = "http://prometheus-k8s.monitoring.svc:9090"
ORDERS_GROUP = '{}/{severity="warning"}:{alertname="KubePodCrashLooping", namespace="orders"}'
#: A line an attacker controls (a request body logged by the app): must show as text.
HOSTILE_LOG_LINE = "<script>alert(1)</script>"


def _ts(now: datetime, minutes_ago: float) -> str:
    return rfc3339((now - timedelta(minutes=minutes_ago)).replace(microsecond=0))


def _crashloop_alert(pod: str, container: str, fingerprint: str, starts_at: str) -> AlertSpec:
    return AlertSpec(
        status=AlertStatus.FIRING,
        labels={
            "alertname": "KubePodCrashLooping",
            "container": container,
            "endpoint": "http",
            "job": "kube-state-metrics",
            "namespace": "orders",
            "pod": pod,
            "prometheus": "monitoring/k8s",
            "reason": "CrashLoopBackOff",
            "service": "kube-state-metrics",
            "severity": "warning",
        },
        annotations={
            "description": (
                f'Pod orders/{pod} ({container}) is in waiting state (reason: "CrashLoopBackOff").'
            ),
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
            "summary": "Pod is crash looping.",
        },
        starts_at=starts_at,
        generator_url=(
            f"{PROMETHEUS}/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason"
            "%7Breason%3D%22CrashLoopBackOff%22%2Cjob%3D%22kube-state-metrics%22%7D%5B5m%5D%29"
            "+%3E%3D+1&g0.tab=1"
        ),
        fingerprint=fingerprint,
    )


def crashloop_analysis(now: datetime) -> AlertAnalysis:
    """A completed analysis: orders/api crash-loops since a rollout dropped an env var.

    Its log excerpt holds :data:`HOSTILE_LOG_LINE`.
    """
    pod = "api-7d9f8c6b5-x2kqp"
    fired = _ts(now, 14)
    started = now - timedelta(minutes=12, seconds=30)
    return AlertAnalysis(
        metadata={
            "name": "kube-pod-crash-looping-3f9a1c2b7d",
            "namespace": NAMESPACE,
            "creationTimestamp": _ts(now, 12.6),
            "resourceVersion": "48213",
            "uid": "6c0b9a8e-1d0e-4a8a-9a53-2f1c9f0c6a11",
        },
        spec=AlertAnalysisSpec(
            alert=_crashloop_alert(pod, "api", "4f5c2a9e8b7d6c10", fired),
            receiver="oncallm",
            group_key=ORDERS_GROUP,
            external_url=ALERTMANAGER,
            received_at=_ts(now, 12.6),
        ),
        status=AlertAnalysisStatus(
            phase=Phase.COMPLETED,
            target=TargetRef(kind="Pod", namespace="orders", name=pod, container="api"),
            target_display=f"pod/orders/{pod}",
            severity="warning",
            summary=(
                "orders/api crash-loops since revision 42: the new ReplicaSet dropped "
                "DATABASE_URL, so the app exits at start."
            ),
            root_cause=(
                "Deployment orders/api rolled out revision 42 (ReplicaSet api-7d9f8c6b5) at "
                f"{_ts(now, 16)}. That revision no longer sets DATABASE_URL from the Secret "
                "orders-db. The app reads it at start-up, logs 'DATABASE_URL is not set' and exits "
                "with code 1; the kubelet restarts it with a growing back-off (14 restarts)."
            ),
            short_root_cause="Revision 42 dropped DATABASE_URL; the app exits 1 at start",
            category=Category.BAD_CONFIG,
            confidence=0.91,
            impact=(
                "1 of 3 replicas of orders/api is not ready; the other two run revision 41 and "
                "serve traffic. The rollout is paused by its maxUnavailable, so checkout still "
                "works at reduced capacity."
            ),
            immediate_actions=[
                "Roll back the Deployment to revision 41.",
                "Confirm the two old replicas are healthy before the rollback finishes.",
            ],
            recommendations=[
                "Add DATABASE_URL back to the Deployment template (envFrom secretRef orders-db).",
                "Fail the CI pipeline when a required environment variable disappears from a "
                "manifest.",
                "Add a startupProbe so a broken revision stops the rollout quickly.",
            ],
            evidence=[
                EvidenceRef(
                    id="container/api/state",
                    source=EvidenceSource.CONTAINER_STATUS,
                    object=f"pod/orders/{pod} container api",
                    excerpt=(
                        "waiting: CrashLoopBackOff (back-off 5m0s restarting failed container)\n"
                        "last state: terminated, reason Error, exit code 1, restarts 14"
                    ),
                    time=_ts(now, 1),
                ),
                EvidenceRef(
                    id="log/api/previous",
                    source=EvidenceSource.LOG,
                    object=f"pod/orders/{pod} container api (previous)",
                    excerpt="\n".join(
                        [
                            "2024-05-14T03:11:58.102Z INFO  starting orders-api v2.14.0",
                            "2024-05-14T03:11:58.104Z INFO  loading configuration from env",
                            "2024-05-14T03:11:58.105Z WARN  rejected request body: "
                            + HOSTILE_LOG_LINE,
                            "2024-05-14T03:11:58.106Z ERROR config: DATABASE_URL is not set",
                            "2024-05-14T03:11:58.106Z FATAL exiting with status 1",
                        ]
                    ),
                    time=_ts(now, 2),
                ),
                EvidenceRef(
                    id="event/BackOff",
                    source=EvidenceSource.EVENT,
                    object=f"pod/orders/{pod}",
                    excerpt=(
                        "Warning BackOff (x61): Back-off restarting failed container api in pod "
                        f"{pod}_orders(0f3e…)"
                    ),
                    time=_ts(now, 1),
                ),
                EvidenceRef(
                    id="workload/revisions",
                    source=EvidenceSource.WORKLOAD,
                    object="deployment/orders/api",
                    excerpt=(
                        "revision 42 (api-7d9f8c6b5): env DATABASE_URL removed\n"
                        "revision 41 (api-5b8f6d4c9): image orders-api:v2.13.2, 2/2 ready"
                    ),
                    time=_ts(now, 16),
                ),
                EvidenceRef(
                    id="metric/restarts",
                    source=EvidenceSource.METRIC,
                    object="kube_pod_container_status_restarts_total",
                    excerpt='{container="api",pod="' + pod + '"} 14 (+14 in 15m)',
                ),
            ],
            missing_evidence=[
                MissingEvidence(
                    source="metrics",
                    reason="Prometheus answered 503 for container_memory_working_set_bytes",
                )
            ],
            commands=[
                f"kubectl logs -n orders {pod} -c api --previous --tail=50",
                "kubectl rollout history deployment/api -n orders",
                "kubectl rollout undo deployment/api -n orders --to-revision=41",
                "kubectl get deployment api -n orders -o jsonpath='{.spec.template.spec"
                ".containers[0].env}'",
            ],
            analyzer="rules+llm:gpt-4o-mini",
            policy="production-deep",
            token_usage=TokenUsage(prompt=5210, completion=412, total=5622),
            timings=StageTimings(gathering=2.84, analyzing=6.1, reporting=0.12, total=9.06),
            notes=["The rules matched 'bad_config'; the model agreed and named the variable."],
            report_config_map="kube-pod-crash-looping-3f9a1c2b7d-report",
            started_at=rfc3339(started.replace(microsecond=0)),
            completed_at=rfc3339((started + timedelta(seconds=9)).replace(microsecond=0)),
            attempts=1,
            conditions=[
                Condition(
                    type="Ready",
                    status="True",
                    reason="Completed",
                    message="report written to ConfigMap kube-pod-crash-looping-3f9a1c2b7d-report",
                    last_transition_time=rfc3339(
                        (started + timedelta(seconds=9)).replace(microsecond=0)
                    ),
                )
            ],
        ),
    )


def earlier_crashloop_analysis(now: datetime) -> AlertAnalysis:
    """The same alert two days earlier: the same pod name pattern, another firing."""
    pod = "api-7d9f8c6b5-x2kqp"
    fired = _ts(now, 2 * 24 * 60 + 40)
    return AlertAnalysis(
        metadata={"name": "kube-pod-crash-looping-91be04d2aa", "namespace": NAMESPACE},
        spec=AlertAnalysisSpec(
            alert=_crashloop_alert(pod, "api", "4f5c2a9e8b7d6c10", fired),
            receiver="oncallm",
            group_key=ORDERS_GROUP,
            external_url=ALERTMANAGER,
            received_at=fired,
            resolved_at=_ts(now, 2 * 24 * 60 + 5),
        ),
        status=AlertAnalysisStatus(
            phase=Phase.COMPLETED,
            target=TargetRef(kind="Pod", namespace="orders", name=pod, container="api"),
            severity="warning",
            summary="orders/api could not reach postgres.orders-db: connection refused.",
            root_cause="The database pod orders-db-0 was rescheduled; api exited on start.",
            short_root_cause="postgres.orders-db refused connections during a reschedule",
            category=Category.DEPENDENCY_UNREACHABLE,
            confidence=0.72,
            analyzer="rules",
            started_at=fired,
            completed_at=fired,
        ),
    )


def oom_analysis(now: datetime) -> AlertAnalysis:
    """A completed analysis: orders/worker is OOMKilled by its 256Mi limit."""
    pod = "worker-6b8c9d7f5-lp4vn"
    fired = _ts(now, 13)
    started = now - timedelta(minutes=12, seconds=20)
    return AlertAnalysis(
        metadata={"name": "kube-pod-crash-looping-8d21c6e0f4", "namespace": NAMESPACE},
        spec=AlertAnalysisSpec(
            alert=_crashloop_alert(pod, "worker", "b81d0c7e6a5f4e21", fired),
            receiver="oncallm",
            group_key=ORDERS_GROUP,
            external_url=ALERTMANAGER,
            received_at=_ts(now, 12.5),
        ),
        status=AlertAnalysisStatus(
            phase=Phase.COMPLETED,
            target=TargetRef(kind="Pod", namespace="orders", name=pod, container="worker"),
            target_display=f"pod/orders/{pod}",
            severity="warning",
            summary="orders/worker is OOMKilled: it uses more than its 256Mi memory limit.",
            root_cause=(
                "Container worker was terminated with reason OOMKilled (exit code 137) 9 times. "
                "Its working set climbs to the 256Mi limit within two minutes of start while it "
                "replays the order backlog."
            ),
            short_root_cause="worker hits its 256Mi memory limit while replaying the backlog",
            category=Category.OOM_KILLED,
            confidence=0.95,
            impact="Order confirmation e-mails are delayed; the backlog grows by ~40 per minute.",
            immediate_actions=[
                "Raise the memory limit of orders/worker to 512Mi.",
                "Watch the backlog drain: kubectl top pod -n orders -l app=worker.",
            ],
            recommendations=[
                "Replay the backlog in bounded batches instead of loading it whole.",
                "Set the memory request equal to the limit for predictable scheduling.",
            ],
            evidence=[
                EvidenceRef(
                    id="container/worker/state",
                    source=EvidenceSource.CONTAINER_STATUS,
                    object=f"pod/orders/{pod} container worker",
                    excerpt="last state: terminated, reason OOMKilled, exit code 137, restarts 9\n"
                    "limits: memory=256Mi cpu=500m; requests: memory=128Mi cpu=100m",
                    time=_ts(now, 2),
                ),
                EvidenceRef(
                    id="metric/memory",
                    source=EvidenceSource.METRIC,
                    object="container_memory_working_set_bytes",
                    excerpt='{container="worker",pod="' + pod + '"} 267911168 (255.5Mi)',
                ),
            ],
            commands=[
                f"kubectl describe pod -n orders {pod}",
                "kubectl set resources deployment/worker -n orders -c worker --limits=memory=512Mi",
            ],
            analyzer="rules",
            policy="production-deep",
            timings=StageTimings(gathering=2.1, analyzing=0.02, reporting=0.09, total=2.21),
            started_at=rfc3339(started.replace(microsecond=0)),
            completed_at=rfc3339((started + timedelta(seconds=2)).replace(microsecond=0)),
            attempts=1,
        ),
    )


def running_analysis(now: datetime) -> AlertAnalysis:
    """An analysis still gathering evidence: checkout/web is missing replicas."""
    fired = _ts(now, 3)
    return AlertAnalysis(
        metadata={"name": "kube-deployment-replicas-mismatch-c4e7a90b12", "namespace": NAMESPACE},
        spec=AlertAnalysisSpec(
            alert=AlertSpec(
                status=AlertStatus.FIRING,
                labels={
                    "alertname": "KubeDeploymentReplicasMismatch",
                    "deployment": "web",
                    "job": "kube-state-metrics",
                    "namespace": "checkout",
                    "severity": "critical",
                },
                annotations={
                    "description": (
                        "Deployment checkout/web has not matched the expected number of "
                        "replicas for longer than 15 minutes."
                    ),
                    "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubedeploymentreplicasmismatch",
                    "summary": "Deployment has not matched the expected number of replicas.",
                },
                starts_at=fired,
                generator_url=f"{PROMETHEUS}/graph?g0.expr=kube_deployment_spec_replicas&g0.tab=1",
                fingerprint="e3a9c1d7b2f04a68",
            ),
            receiver="oncallm",
            group_key='{}/{severity="critical"}:{alertname="KubeDeploymentReplicasMismatch"}',
            external_url=ALERTMANAGER,
            received_at=_ts(now, 1),
        ),
        status=AlertAnalysisStatus(
            phase=Phase.GATHERING,
            target=TargetRef(kind="Deployment", namespace="checkout", name="web"),
            target_display="deployment/checkout/web",
            severity="critical",
            policy="production-deep",
            started_at=_ts(now, 0.5),
            attempts=1,
        ),
    )


def skipped_analysis(now: datetime) -> AlertAnalysis:
    """An alert a policy chose not to analyse."""
    fired = _ts(now, 95)
    return AlertAnalysis(
        metadata={"name": "cpu-throttling-high-0a7d3e55c1", "namespace": NAMESPACE},
        spec=AlertAnalysisSpec(
            alert=AlertSpec(
                status=AlertStatus.FIRING,
                labels={
                    "alertname": "CPUThrottlingHigh",
                    "container": "exporter",
                    "namespace": "monitoring",
                    "pod": "node-exporter-8xk2p",
                    "severity": "info",
                },
                annotations={
                    "description": "34.5% throttling of CPU in namespace monitoring for "
                    "container exporter in pod node-exporter-8xk2p.",
                    "summary": "Processes experience elevated CPU throttling.",
                },
                starts_at=fired,
                fingerprint="7c55e0a1f9d2b384",
            ),
            receiver="oncallm",
            group_key='{}/{severity="info"}:{alertname="CPUThrottlingHigh"}',
            external_url=ALERTMANAGER,
            received_at=fired,
        ),
        status=AlertAnalysisStatus(
            phase=Phase.SKIPPED,
            reason="policy info-alerts: analyze is false for severity=info",
            severity="info",
            policy="info-alerts",
            started_at=fired,
            completed_at=fired,
        ),
    )


def sample_analyses(now: datetime | None = None) -> list[AlertAnalysis]:
    """Every sample, as of ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    return [
        crashloop_analysis(now),
        earlier_crashloop_analysis(now),
        oom_analysis(now),
        running_analysis(now),
        skipped_analysis(now),
    ]


async def _serve(port: int) -> None:
    from oncallm.web.routes import add_web_routes
    from oncallm.web.settings import WebSettings

    store = AnalysisStore()
    store.replace(a.to_kube() for a in sample_analyses())
    app = web.Application()
    add_web_routes(app, store, WebSettings(base_url=f"http://127.0.0.1:{port}"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"OnCallM web view with sample analyses: http://127.0.0.1:{port}/ (Ctrl-C stops it)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Serve the web view with the sample analyses on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (8080)")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
