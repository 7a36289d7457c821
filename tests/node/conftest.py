"""Fixtures of the node suite, on the control plane with a real node (``node_plane``, in
tests/conftest.py, shared with tests/e2e)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ClientSettings, KubeAPI


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
