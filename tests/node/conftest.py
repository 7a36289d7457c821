"""Fixtures of the node suite: one control plane with a real node for the whole run.

``ONCALLM_TEST_NODE_DIR`` reuses a control plane started by ``oncallm controlplane up --node
--dir DIR`` (neither started nor stopped by the run). Without root or the node's Debian
packages the suite skips, saying which is missing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.controlplane.node import check_host
from oncallm.kube.api import ClientSettings, KubeAPI


@pytest.fixture(scope="session")
def node_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """etcd, kube-apiserver, controller manager, scheduler, and a real node (kubelet,
    containerd, kube-proxy, CoreDNS)."""
    existing = os.environ.get("ONCALLM_TEST_NODE_DIR")
    if existing:
        plane = LocalControlPlane.attach(Path(existing))
        assert plane.has_node, f"the control plane in {existing} runs without a node"
        yield plane
        return
    try:
        check_host()
    except RuntimeError as err:
        pytest.skip(str(err))
    plane = LocalControlPlane(tmp_path_factory.mktemp("node"), node=True).up()
    try:
        yield plane
    finally:
        plane.down()


@pytest.fixture(scope="session")
async def node_kube(node_plane: LocalControlPlane) -> AsyncIterator[KubeAPI]:
    api = await KubeAPI.connect(ClientSettings(kubeconfig=str(node_plane.kubeconfig), qps=0))
    yield api
    await api.close()


@pytest.fixture
def node_namespace(node_plane: LocalControlPlane) -> Iterator[str]:
    """A fresh namespace on the node's control plane, deleted (with its pods) afterwards."""
    name = f"n-{secrets.token_hex(4)}"
    node_plane.kubectl_run("create", "namespace", name)
    node_plane.kubectl_run("-n", name, "wait", "--for=create", "serviceaccount/default")
    yield name
    try:
        node_plane.kubectl_run("delete", "namespace", name, "--wait=false")
    except subprocess.CalledProcessError:
        pass
