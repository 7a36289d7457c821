"""The load balancer in front of pods whose readiness gate it holds False.

A pod with ``spec.readinessGates`` is Ready only when a controller outside the kubelet sets
each gate's condition True: the AWS Load Balancer Controller (``target-health.elbv2.k8s.aws/…``)
and GKE's NEG controller (``cloud.google.com/load-balancer-neg-ready``) set it from the load
balancer's own health check of the pod. When the containers are ready and the gate is not, the
load balancer's health check fails, and how it checks is written on the Ingress (or Service)
in front of the pods: ``alb.ingress.kubernetes.io/healthcheck-path``, ``success-codes``, the
port. This source reads the Ingresses of the namespace that route to the pods' Services.

Reads nothing unless a pod's Ready condition is held by a readiness gate.

Evidence: ``lbhealth/<ingress>`` (the gate, its reason, and the Ingress's health check).
"""

from __future__ import annotations

from oncallm.gathering.objects import Obj, meta, name_of
from oncallm.gathering.scope import Scope
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier
from oncallm.models.analysis import EvidenceSource
from oncallm.models.evidence import Context, GateSnapshot, PodSnapshot

#: Annotation words that describe a load balancer's health check of its targets.
HEALTH_CHECK_WORDS = ("healthcheck", "health-check", "success-codes")


def lb_health_id(ingress: str) -> str:
    """``lbhealth/<ingress>``: a failing readiness gate and the health check behind it."""
    return f"lbhealth/{ingress}"


def held_gate(pod: PodSnapshot) -> tuple[str, str, str] | None:
    """(gate, reason, message) of a readiness gate that holds a pod not Ready."""
    ready = pod.conditions.get("Ready", ("True", "", ""))
    if ready[0] == "True" or ready[1] != "ReadinessGatesNotReady":
        return None
    for kind, (status, reason, message) in pod.conditions.items():
        if "/" in kind and status != "True":
            return kind, reason, message
    return ready[2].split('"')[1] if '"' in ready[2] else "readiness gate", "", ready[2]


def _backends(ingress: Obj) -> set[str]:
    spec = ingress.get("spec") or {}
    names = {str(((spec.get("defaultBackend") or {}).get("service") or {}).get("name", ""))}
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            names.add(str(((path.get("backend") or {}).get("service") or {}).get("name", "")))
    return names - {""}


async def read(scope: Scope) -> None:
    ctx = scope.ctx
    held = next(((p, g) for p in ctx.pods if (g := held_gate(p)) is not None), None)
    if held is None or scope.namespace is None:
        return
    pod, (gate, reason, message) = held
    services = {
        s.name for s in ctx.services if pod.name in s.matching_pods or s.relation != "dependency"
    }
    async with scope.guard(f"ingresses of {scope.namespace}"):
        for ingress in await scope.reader.list("Ingress", scope.namespace):
            if not _backends(ingress) & services:
                continue
            annotations = {
                str(k): str(v)
                for k, v in (meta(ingress).get("annotations") or {}).items()
                if any(word in str(k) for word in HEALTH_CHECK_WORDS)
            }
            ctx.readiness_gates.append(
                GateSnapshot(
                    pod=pod.name,
                    gate=gate,
                    reason=reason,
                    message=message,
                    ingress=name_of(ingress),
                    health_check=annotations,
                )
            )


def evidence(ctx: Context, out: EvidenceOut) -> None:
    for g in ctx.readiness_gates:
        check = ", ".join(f"{k}={v}" for k, v in g.health_check.items()) or "the defaults"
        out.add(
            Tier.OBJECT_BAD,
            lb_health_id(g.ingress),
            EvidenceSource.SERVICE,
            f"ingress/{g.ingress}",
            f"pod {g.pod}: readiness gate {g.gate} is not True ({g.reason}: {g.message}); the "
            f"load balancer of Ingress {g.ingress} health-checks the pods with {check}",
        )


SOURCE = Source(
    "load_balancers",
    Stage.LEADS,
    read,
    evidence,
    resources=("ingresses.networking.k8s.io",),
)
