"""Which object an alert is about, from its labels alone.

kube-prometheus conventions: kube-state-metrics alerts carry the object in labels
(``namespace``, ``pod``, ``container``, ``deployment``, ``statefulset``, ``daemonset``,
``job_name``, ``cronjob``, ``horizontalpodautoscaler``, ``persistentvolumeclaim``,
``node``); when Prometheus relabels a scraped target's own labels they appear as
``exported_namespace``/``exported_pod``. The label ``job`` names the *scrape job*
(``kube-state-metrics``), never a Kubernetes Job; TargetDown-style alerts name the scrape
target through ``job``, ``service`` and ``namespace``.
"""

from __future__ import annotations

import re

from oncallm.models.alert import Alert
from oncallm.models.analysis import TargetRef

#: label -> Kind, most specific first.
_OBJECT_LABELS: list[tuple[str, str]] = [
    ("pod", "Pod"),
    ("job_name", "Job"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("replicaset", "ReplicaSet"),
    ("cronjob", "CronJob"),
    ("horizontalpodautoscaler", "HorizontalPodAutoscaler"),
    ("persistentvolumeclaim", "PersistentVolumeClaim"),
    ("service", "Service"),
    ("node", "Node"),
]

_CLUSTER_SCOPED = {"Node"}


def _label(labels: dict[str, str], key: str) -> str | None:
    return labels.get(f"exported_{key}") or labels.get(key) or None


def resolve_target(alert: Alert) -> TargetRef:
    """The alert's object; a Namespace when only a namespace is known, else a Cluster."""
    labels = alert.labels
    namespace = _label(labels, "namespace")
    container = _label(labels, "container")
    for label, kind in _OBJECT_LABELS:
        name = _label(labels, label)
        if not name:
            continue
        if kind == "Service" and "pod" in labels:
            continue  # a pod's metric that also names its scrape service
        if kind in _CLUSTER_SCOPED:
            return TargetRef(kind=kind, name=name)
        if namespace:
            return TargetRef(kind=kind, namespace=namespace, name=name, container=container)
    # Node alerts from node-exporter name the node only through ``instance``.
    instance = labels.get("instance")
    if instance and (labels.get("job") in ("node-exporter", "node") or "Node" in alert.name):
        return TargetRef(kind="Node", name=re.sub(r":\d+$", "", instance))
    if namespace and labels.get("job") and labels.get("alertname") == "TargetDown":
        return TargetRef(kind="Service", namespace=namespace, name=labels["job"])
    if namespace:
        return TargetRef(kind="Namespace", name=namespace, namespace=namespace)
    return TargetRef(kind="Cluster", name="cluster")
