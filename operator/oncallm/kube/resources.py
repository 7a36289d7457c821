"""Where each kind of object lives in the API: path prefix, plural, namespaced or not.

The table holds the kinds OnCallM itself reads and writes: a fast path that needs no
request. Every other kind (any built-in one, any custom resource) is found through the API
server's discovery documents by :class:`oncallm.kube.discovery.Discovery`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    kind: str
    prefix: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("/apis/").removeprefix("/api/")

    @property
    def group(self) -> str:
        """The API group; ``""`` for the core group."""
        version = self.api_version
        return version.split("/", 1)[0] if "/" in version else ""

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection path, or an object's path when ``name`` is given."""
        parts = [self.prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(p.strip("/") for p in parts).join(("/", ""))


_TABLE = [
    Resource("Namespace", "/api/v1", "namespaces", False),
    Resource("Pod", "/api/v1", "pods", True),
    Resource("Node", "/api/v1", "nodes", False),
    Resource("Event", "/api/v1", "events", True),
    Resource("Service", "/api/v1", "services", True),
    Resource("Endpoints", "/api/v1", "endpoints", True),
    Resource("PersistentVolumeClaim", "/api/v1", "persistentvolumeclaims", True),
    Resource("PersistentVolume", "/api/v1", "persistentvolumes", False),
    Resource("ConfigMap", "/api/v1", "configmaps", True),
    Resource("Secret", "/api/v1", "secrets", True),
    Resource("ServiceAccount", "/api/v1", "serviceaccounts", True),
    Resource("ResourceQuota", "/api/v1", "resourcequotas", True),
    Resource("LimitRange", "/api/v1", "limitranges", True),
    Resource("ReplicaSet", "/apis/apps/v1", "replicasets", True),
    Resource("Deployment", "/apis/apps/v1", "deployments", True),
    Resource("StatefulSet", "/apis/apps/v1", "statefulsets", True),
    Resource("DaemonSet", "/apis/apps/v1", "daemonsets", True),
    Resource("ControllerRevision", "/apis/apps/v1", "controllerrevisions", True),
    Resource("Job", "/apis/batch/v1", "jobs", True),
    Resource("CronJob", "/apis/batch/v1", "cronjobs", True),
    Resource("HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    Resource("StorageClass", "/apis/storage.k8s.io/v1", "storageclasses", False),
    Resource("PriorityClass", "/apis/scheduling.k8s.io/v1", "priorityclasses", False),
    Resource("Lease", "/apis/coordination.k8s.io/v1", "leases", True),
    Resource(
        "CertificateSigningRequest",
        "/apis/certificates.k8s.io/v1",
        "certificatesigningrequests",
        False,
    ),
    Resource("EndpointSlice", "/apis/discovery.k8s.io/v1", "endpointslices", True),
    Resource("NetworkPolicy", "/apis/networking.k8s.io/v1", "networkpolicies", True),
    Resource("Ingress", "/apis/networking.k8s.io/v1", "ingresses", True),
    Resource("Role", "/apis/rbac.authorization.k8s.io/v1", "roles", True),
    Resource("RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    Resource("ClusterRole", "/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    Resource(
        "ClusterRoleBinding", "/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False
    ),
    Resource(
        "CustomResourceDefinition",
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    Resource("AlertAnalysis", "/apis/oncallm.io/v1alpha1", "alertanalyses", True),
    Resource("AnalysisPolicy", "/apis/oncallm.io/v1alpha1", "analysispolicies", True),
]

RESOURCES: dict[str, Resource] = {r.kind: r for r in _TABLE}


def resource(kind: str) -> Resource:
    """A kind of the table; any other kind needs :class:`~oncallm.kube.discovery.Discovery`."""
    try:
        return RESOURCES[kind]
    except KeyError:
        raise KeyError(
            f"{kind!r} is not in OnCallM's table of kinds; resolve it with "
            "oncallm.kube.discovery.Discovery"
        ) from None
