"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

Built from Go modules (``tools/controlplane``), started on free loopback ports. It is the
cluster of every test and the embedded default for ``make demo``. See ``docs/controlplane.md``.
"""

from oncallm.controlplane.cluster import LocalControlPlane

__all__ = ["LocalControlPlane"]
