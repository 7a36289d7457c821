"""Several replicas on a real API server: three operator processes and two webhook processes.

Alerts go to both webhooks at once (the same notification twice, concurrently); the operators
divide the shards through Leases. One operator is SIGKILLed mid-storm: its shards are taken
over once its Leases expire, and every alert still ends with exactly one AlertAnalysis,
completed once, one report ConfigMap and one Event. Scaling 3 → 1 → 3 during a stream loses
and repeats nothing. Each alert is about a pod of its own that does not exist, so every
analysis stands alone (no incident) and is quick: what is measured is the distribution.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.cluster import free_port
from oncallm.intake.naming import analysis_name
from oncallm.kube.api import ApiError, KubeAPI
from oncallm.kube.resources import resource
from oncallm.models.alert import Alert
from tests.helpers.models import agreeing_model
from tests.helpers.operator import operator_process
from tests.helpers.planting import ts, wait_for
from tests.openai_server import FakeOpenAI

pytestmark = pytest.mark.cluster

#: Short Leases, so a takeover is seconds: the tunables of docs/ha.md.
LEASE_SECONDS = 3
RENEW_SECONDS = 1.0
SHARDS = 8
HA_ENV = {
    "ONCALLM_SHARDS": str(SHARDS),
    "ONCALLM_LEASE_SECONDS": str(LEASE_SECONDS),
    "ONCALLM_LEASE_RENEW_SECONDS": str(RENEW_SECONDS),
    # nothing to merge: each alert is analysed on its own
    "ONCALLM_INCIDENTS": "false",
}


def alert(namespace: str, index: int) -> dict[str, Any]:
    pod = f"api-{index:04d}-{secrets.token_hex(3)}"
    return {
        "status": "firing",
        "labels": {
            "alertname": "KubePodCrashLooping",
            "container": "api",
            "namespace": namespace,
            "pod": pod,
            "severity": "warning",
        },
        "annotations": {"summary": "Pod is crash looping."},
        "startsAt": ts(timedelta(minutes=-3)),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring.svc:9090/graph",
        "fingerprint": secrets.token_hex(8),
    }


def notification(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "receiver": "oncallm",
        "status": "firing",
        "alerts": [raw],
        "groupLabels": {"pod": raw["labels"]["pod"]},
        "commonLabels": raw["labels"],
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "version": "4",
        "groupKey": f'{{}}:{{pod="{raw["labels"]["pod"]}"}}',
        "truncatedAlerts": 0,
    }


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Replicas:
    """The operator and webhook processes of one test, and what it sent."""

    namespace: str
    plane: LocalControlPlane
    folder: Path
    operators: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    webhooks: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    started: int = 0

    def start_operator(self, identity: str, **env: str) -> None:
        log = self.folder / f"operator-{identity}.log"
        self.operators[identity] = operator_process(
            self.namespace,
            self.plane.kubeconfig,
            log,
            ONCALLM_REPLICA_ID=identity,
            # kopf's liveness endpoint: a port of its own per process
            ONCALLM_OPERATOR_HEALTH_PORT=str(free_port()),
            **HA_ENV,
            **env,
        )

    async def start_webhook(self, session: aiohttp.ClientSession) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = self.folder / f"webhook-{len(self.webhooks)}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.kubeconfig),
            "ONCALLM_NAMESPACE": self.namespace,
            "ONCALLM_HOST": "127.0.0.1",
            "ONCALLM_PORT": str(port),
            "ONCALLM_SHARDS": str(SHARDS),
        }
        proc = spawn([sys.executable, "-m", "oncallm", "webhook"], env, log)
        self.webhooks.append((url, proc))

        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the webhook exited:\n{log.read_text()[-3000:]}")
            try:
                async with session.get(url + "/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, timeout=60, interval=0.1, what="the webhook's /readyz")

    def stop(self, identity: str, sig: int = signal.SIGTERM) -> None:
        proc = self.operators.pop(identity)
        proc.send_signal(sig)
        proc.wait(timeout=40)

    def close(self) -> None:
        for proc in [*self.operators.values(), *(p for _, p in self.webhooks)]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.operators.values(), *(p for _, p in self.webhooks)]:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(self.folder.glob("*.log"))
        )

    async def send(self, session: aiohttp.ClientSession, count: int) -> None:
        """``count`` alerts, each notification to every webhook at once."""
        limit = asyncio.Semaphore(8)

        async def one(index: int) -> None:
            raw = alert(self.namespace, index)
            self.names.append(analysis_name(Alert.model_validate(raw)))
            body = notification(raw)
            async with limit:
                answers = await asyncio.gather(
                    *(session.post(url + "/webhook", json=body) for url, _ in self.webhooks)
                )
            for resp in answers:
                assert resp.status == 200, await resp.text()
                resp.release()

        await asyncio.gather(*(one(self.started + i) for i in range(count)))
        self.started += count


async def leases(kube: KubeAPI, namespace: str) -> dict[str, dict[str, Any]]:
    listing = await kube.request(
        "GET", resource("Lease").path(namespace), query={"labelSelector": "oncallm.io/lease"}
    )
    return {item["metadata"]["name"]: item for item in listing["items"]}


async def shard_holders(kube: KubeAPI, namespace: str) -> dict[int, str]:
    return {
        int(name.rsplit("-", 1)[1]): str(item["spec"].get("holderIdentity") or "")
        for name, item in (await leases(kube, namespace)).items()
        if name.startswith("oncallm-shard-")
    }


async def balanced(kube: KubeAPI, namespace: str, replicas: set[str]) -> dict[int, str]:
    """Every shard held by one of ``replicas``, each holding its fair share at most."""

    async def check() -> dict[int, str] | None:
        holders = await shard_holders(kube, namespace)
        counts = Counter(holders.values())
        share = -(-SHARDS // len(replicas))
        ok = (
            set(holders) == set(range(SHARDS))
            and set(counts) == replicas
            and max(counts.values()) <= share
        )
        return holders if ok else None

    result: dict[int, str] = await wait_for(
        check, timeout=60, interval=0.1, what=f"the shards divided between {sorted(replicas)}"
    )
    return result


async def count_completions(kube: KubeAPI, namespace: str, seen: Counter[str]) -> None:
    """Per analysis, the watch events that take it into phase Completed."""
    path = resource("AlertAnalysis").path(namespace)
    phases: dict[str, str | None] = {}
    version = (await kube.request("GET", path))["metadata"]["resourceVersion"]
    while True:
        try:
            async for event in kube.watch(path, resource_version=version):
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                name = str((obj.get("metadata") or {}).get("name"))
                phase = (obj.get("status") or {}).get("phase")
                if phase == "Completed" and phases.get(name) != "Completed":
                    seen[name] += 1
                phases[name] = phase
        except ApiError:
            await asyncio.sleep(0.2)


async def analyses(kube: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await kube.request("GET", resource("AlertAnalysis").path(namespace))
    )["items"]
    return items


async def all_completed(kube: KubeAPI, namespace: str, names: list[str], timeout: float) -> None:
    async def check() -> bool:
        phases = {
            a["metadata"]["name"]: (a.get("status") or {}).get("phase")
            for a in await analyses(kube, namespace)
        }
        return all(phases.get(n) == "Completed" for n in names)

    await wait_for(check, timeout=timeout, interval=0.5, what=f"{len(names)} analyses completed")


async def assert_exactly_once(
    kube: KubeAPI, namespace: str, names: list[str], completions: Counter[str]
) -> None:
    """One AlertAnalysis per alert, completed once, one report ConfigMap, one Event."""
    stored = Counter(a["metadata"]["name"] for a in await analyses(kube, namespace))
    assert sorted(stored) == sorted(names) and set(stored.values()) == {1}
    twice = {n: c for n, c in completions.items() if c != 1}
    assert not twice and set(completions) >= set(names), twice
    reports = await kube.request(
        "GET",
        resource("ConfigMap").path(namespace),
        query={"labelSelector": "app.kubernetes.io/component=report"},
    )
    per_analysis = Counter(
        cm["metadata"]["labels"]["oncallm.io/analysis"] for cm in reports["items"]
    )
    assert per_analysis == Counter(names)
    events = await kube.request(
        "GET",
        resource("Event").path(namespace),
        query={"fieldSelector": "reason=AnalysisCompleted"},
    )
    per_event = Counter(e["involvedObject"]["name"] for e in events["items"])
    assert per_event == Counter(names), {n: c for n, c in per_event.items() if c != 1}


@contextlib.asynccontextmanager
async def replicas(
    kube: KubeAPI, plane: LocalControlPlane, namespace: str, folder: Path
) -> AsyncIterator[tuple[Replicas, aiohttp.ClientSession, Counter[str]]]:
    ha = Replicas(namespace, plane, folder)
    completions: Counter[str] = Counter()
    watch = asyncio.create_task(count_completions(kube, namespace, completions))
    try:
        async with aiohttp.ClientSession() as session:
            yield ha, session, completions
    except BaseException:
        print(ha.logs())
        raise
    finally:
        watch.cancel()
        ha.close()


async def test_three_operators_two_webhooks_a_sigkill_mid_storm_loses_and_repeats_nothing(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    async with replicas(kube, control_plane, namespace, tmp_path) as (ha, session, completions):
        for identity in ("op-a", "op-b", "op-c"):
            ha.start_operator(identity)
        for _ in range(2):
            await ha.start_webhook(session)
        holders = await balanced(kube, namespace, {"op-a", "op-b", "op-c"})
        victim = "op-c"
        victim_shards = {s for s, h in holders.items() if h == victim}

        storm = asyncio.create_task(ha.send(session, 300))

        async def some_completed() -> bool:
            return sum(completions.values()) >= 60

        await wait_for(some_completed, timeout=120, interval=0.05, what="60 analyses completed")
        last_renew = {
            name: item["spec"]["renewTime"]
            for name, item in (await leases(kube, namespace)).items()
            if item["spec"].get("holderIdentity") == victim
        }
        killed = time.monotonic()
        killed_wall = datetime.now(UTC)
        ha.operators[victim].send_signal(signal.SIGKILL)
        ha.operators.pop(victim).wait(timeout=10)
        done_at_kill = sum(completions.values())

        async def taken_over() -> dict[int, str] | None:
            now = await shard_holders(kube, namespace)
            moved = all(now.get(s) in ("op-a", "op-b") for s in victim_shards)
            return now if moved else None

        await wait_for(taken_over, timeout=60, interval=0.02, what="the victim's shards taken")
        takeover = time.monotonic() - killed
        renewed = max(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in last_renew.values())
        since_renewal = takeover + (killed_wall - renewed).total_seconds()
        await storm
        await all_completed(kube, namespace, ha.names, timeout=240)
        await balanced(kube, namespace, {"op-a", "op-b"})
        await assert_exactly_once(kube, namespace, ha.names, completions)
        print(
            f"\nHA storm: 300 alerts, each notification to both webhooks at once; {victim} "
            f"(shards {sorted(victim_shards)}) SIGKILLed after {done_at_kill} completed; its "
            f"shards taken over {takeover:.2f} s after the kill, {since_renewal:.2f} s after "
            f"its last renewal (Lease {LEASE_SECONDS} s, renewal every {RENEW_SECONDS} s); "
            f"{len(ha.names)} analyses, each completed once, one report and one Event each"
        )
        # How soon the takeover comes is a figure, printed above and kept in docs/ha.md, not
        # a timed assertion: on a loaded machine the survivors' requests take longer. What
        # must hold is above: every shard is taken over, and nothing is lost or repeated.


async def test_scaling_3_to_1_to_3_during_a_stream_loses_and_repeats_nothing(
    kube: KubeAPI, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    async with replicas(kube, control_plane, namespace, tmp_path) as (ha, session, completions):
        for identity in ("op-a", "op-b", "op-c"):
            ha.start_operator(identity)
        await ha.start_webhook(session)
        await ha.start_webhook(session)
        await balanced(kube, namespace, {"op-a", "op-b", "op-c"})

        async def stream() -> None:
            for _ in range(15):
                await ha.send(session, 10)

        flowing = asyncio.create_task(stream())

        async def completed(count: int) -> bool:
            return sum(completions.values()) >= count

        await wait_for(lambda: completed(30), timeout=120, interval=0.05, what="30 completed")
        # scale down: as a Deployment does, SIGTERM; each stopping replica drains first
        ha.stop("op-b")
        ha.stop("op-c")
        await balanced(kube, namespace, {"op-a"})
        await wait_for(lambda: completed(80), timeout=120, interval=0.05, what="80 completed")
        ha.start_operator("op-d")
        ha.start_operator("op-e")
        await balanced(kube, namespace, {"op-a", "op-d", "op-e"})
        await flowing
        await all_completed(kube, namespace, ha.names, timeout=240)
        await assert_exactly_once(kube, namespace, ha.names, completions)
        print(
            f"\nHA scale 3 -> 1 -> 3: {len(ha.names)} alerts in a stream, each completed "
            "once, one report and one Event each"
        )


#: What each model call costs, as the test server reports it (prompt, completion).
CALL_USAGE = (3000, 500)
#: The policy's daily budget: room for a few calls, far fewer than the alerts sent.
BUDGET = 40_000


async def test_the_daily_token_budget_holds_across_replicas_and_a_restart(
    kube: KubeAPI,
    control_plane: LocalControlPlane,
    namespace: str,
    tmp_path: Path,
    openai_server: FakeOpenAI,
) -> None:
    """Two operators share one budget; one is SIGKILLed and replaced by a third: the server
    receives at most the budget's worth of tokens in all, though each process alone (with
    the in-memory ledger of before) would have spent nearly the budget itself."""
    openai_server.responder = lambda body: dataclasses.replace(
        agreeing_model(body), usage=CALL_USAGE
    )
    await kube.request(
        "POST",
        resource("AnalysisPolicy").path(namespace),
        body={
            "apiVersion": "oncallm.io/v1alpha1",
            "kind": "AnalysisPolicy",
            "metadata": {"name": "budgeted", "namespace": namespace},
            "spec": {"selector": {}, "priority": 10, "llm": {"dailyTokenBudget": BUDGET}},
        },
    )
    model = {
        "ONCALLM_LLM_BASE_URL": openai_server.base_url,
        "ONCALLM_LLM_API_KEY": "sk-test-not-a-real-key",
        "ONCALLM_LLM_MODEL": "test-model",
        "ONCALLM_LLM_TIMEOUT_SECONDS": "10",
    }

    def tokens_received() -> int:
        return len(openai_server.chat_requests) * sum(CALL_USAGE)

    async with replicas(kube, control_plane, namespace, tmp_path) as (ha, session, _):
        ha.start_operator("op-a", **model)
        ha.start_operator("op-b", **model)
        await ha.start_webhook(session)
        await balanced(kube, namespace, {"op-a", "op-b"})
        await ha.send(session, 8)
        await all_completed(kube, namespace, ha.names, timeout=180)
        before_restart = tokens_received()
        ha.operators[("op-a")].send_signal(signal.SIGKILL)
        ha.operators.pop("op-a").wait(timeout=10)
        ha.start_operator("op-c", **model)
        await ha.send(session, 8)
        await all_completed(kube, namespace, ha.names, timeout=180)
        outcomes = Counter(
            (a.get("status") or {}).get("modelOutcome") for a in await analyses(kube, namespace)
        )
        ledger = await kube.request(
            "GET", resource("ConfigMap").path(namespace, "oncallm-token-ledger")
        )
    total = tokens_received()
    recorded = sum(int(v) for k, v in ledger["data"].items() if k.endswith(".budgeted"))
    print(
        f"\nHA budget: {len(ha.names)} alerts, budget {BUDGET} tokens; the server received "
        f"{len(openai_server.chat_requests)} calls, {total} tokens ({before_restart} before "
        f"the restart); the ledger holds {recorded}; outcomes {dict(outcomes)}"
    )
    assert 0 < total <= BUDGET
    assert total <= recorded <= BUDGET
    assert outcomes["budget_spent"] > 0  # the budget was what stopped the calls
