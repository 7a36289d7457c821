"""kubectl commands filled in with the real names, for the "what to run next" part of a report.

Each helper returns one command line. Names come from the cluster, so they are quoted with
:func:`shlex.quote` (a no-op for ordinary Kubernetes names) in case one ever holds a shell
metacharacter.
"""

from __future__ import annotations

import json
from shlex import quote


def _ns(namespace: str | None) -> str:
    return f"-n {quote(namespace)} " if namespace else ""


def describe(kind: str, namespace: str | None, name: str) -> str:
    """``kubectl -n ns describe pod api-...``"""
    return f"kubectl {_ns(namespace)}describe {kind.lower()} {quote(name)}"


def get_yaml(kind: str, namespace: str | None, name: str) -> str:
    return f"kubectl {_ns(namespace)}get {kind.lower()} {quote(name)} -o yaml"


def logs(namespace: str, pod: str, container: str | None = None, *, previous: bool = False) -> str:
    """``kubectl -n ns logs pod -c container --previous``: the log of the crashed container."""
    cmd = f"kubectl {_ns(namespace)}logs {quote(pod)}"
    if container:
        cmd += f" -c {quote(container)}"
    if previous:
        cmd += " --previous"
    return cmd


def events_for(namespace: str | None, name: str) -> str:
    """Events about one object, newest last."""
    return (
        f"kubectl {_ns(namespace)}get events --field-selector "
        f"involvedObject.name={quote(name)} --sort-by=.lastTimestamp"
    )


def warning_events(namespace: str) -> str:
    return (
        f"kubectl {_ns(namespace)}get events --field-selector type=Warning --sort-by=.lastTimestamp"
    )


def rollout_undo(kind: str, namespace: str, name: str, revision: int | None = None) -> str:
    """Roll a Deployment/StatefulSet/DaemonSet back (to a revision when given)."""
    to = f" --to-revision={revision}" if revision is not None else ""
    return f"kubectl {_ns(namespace)}rollout undo {kind.lower()}/{quote(name)}{to}"


def rollout_history(kind: str, namespace: str, name: str) -> str:
    return f"kubectl {_ns(namespace)}rollout history {kind.lower()}/{quote(name)}"


def rollout_status(kind: str, namespace: str, name: str) -> str:
    return f"kubectl {_ns(namespace)}rollout status {kind.lower()}/{quote(name)}"


def rollout_restart(kind: str, namespace: str, name: str) -> str:
    return f"kubectl {_ns(namespace)}rollout restart {kind.lower()}/{quote(name)}"


def endpoints(namespace: str, service: str) -> str:
    """The EndpointSlices of a Service: which pod addresses it has, and whether they are ready."""
    return (
        f"kubectl {_ns(namespace)}get endpointslices "
        f"-l kubernetes.io/service-name={quote(service)} -o wide"
    )


def pods_by_selector(namespace: str, selector: dict[str, str]) -> str:
    sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    return f"kubectl {_ns(namespace)}get pods -l {quote(sel)} -o wide"


def pods_on_node(node: str) -> str:
    return f"kubectl get pods -A -o wide --field-selector spec.nodeName={quote(node)}"


def top_pod(namespace: str, pod: str) -> str:
    return f"kubectl {_ns(namespace)}top pod {quote(pod)} --containers"


def top_node(node: str) -> str:
    return f"kubectl top node {quote(node)}"


def set_resources(
    kind: str, namespace: str, name: str, container: str, *, limits: str = "", requests: str = ""
) -> str:
    """``kubectl set resources``: change a container's limits/requests (e.g. ``memory=1Gi``)."""
    cmd = (
        f"kubectl {_ns(namespace)}set resources {kind.lower()}/{quote(name)} -c {quote(container)}"
    )
    if limits:
        cmd += f" --limits={quote(limits)}"
    if requests:
        cmd += f" --requests={quote(requests)}"
    return cmd


def annotate_template(kind: str, namespace: str, name: str, key: str, value: str) -> str:
    """Set an annotation on a workload's pod template (a rollout follows)."""
    patch = json.dumps({"spec": {"template": {"metadata": {"annotations": {key: value}}}}})
    return f"kubectl {_ns(namespace)}patch {kind.lower()}/{quote(name)} -p {quote(patch)}"


def auth_can_i(verb: str, resource: str, namespace: str | None, service_account: str) -> str:
    """Ask the API server whether a service account may do something."""
    who = quote(service_account)
    return f"kubectl auth can-i {quote(verb)} {quote(resource)} {_ns(namespace)}--as={who}"


def exec_in(namespace: str, pod: str, container: str | None, command: str) -> str:
    c = f" -c {quote(container)}" if container else ""
    return f"kubectl {_ns(namespace)}exec {quote(pod)}{c} -- {command}"


def uncordon(node: str) -> str:
    return f"kubectl uncordon {quote(node)}"


def drain(node: str) -> str:
    return f"kubectl drain {quote(node)} --ignore-daemonsets --delete-emptydir-data"


def get_kind(kind: str, namespace: str | None = None, *, wide: bool = False) -> str:
    return f"kubectl {_ns(namespace)}get {kind.lower()}" + (" -o wide" if wide else "")


def scale(kind: str, namespace: str, name: str, replicas: int) -> str:
    return f"kubectl {_ns(namespace)}scale {kind.lower()}/{quote(name)} --replicas={replicas}"
