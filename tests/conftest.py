"""Fixtures shared by every suite.

One real local control plane for the whole run (started on first use only, so unit tests
never pay for it), a fresh namespace per test, and helpers to plant cluster state.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import ClientSettings, KubeAPI
from oncallm.scenarios.plant import clear_namespace, ensure_namespace

REPO = Path(__file__).resolve().parents[1]

#: The scripted OpenAI-compatible server (fixture ``openai_server``) and llama.cpp's real one
#: with SmolLM2 (fixture ``llama_server``, started on first use).
pytest_plugins = ["tests.openai_server", "tests.llama_server"]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A real etcd + kube-apiserver + kube-controller-manager, up for the whole run."""
    existing = os.environ.get("ONCALLM_TEST_CONTROLPLANE_DIR")
    if existing:  # reuse one started by `oncallm controlplane up` (fast local iterations)
        plane = LocalControlPlane.attach(Path(existing))
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        yield plane
        return
    plane = LocalControlPlane(tmp_path_factory.mktemp("controlplane")).up()
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    try:
        yield plane
    finally:
        plane.down()


@pytest.fixture(scope="session")
def node_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A control plane with a real node (``up --node``: kubelet, containerd, kube-proxy,
    CoreDNS, scheduler, the workload controllers), up for the whole run on first use; for
    tests/node and tests/e2e. One node runs on a machine at a time, hence one fixture here.
    ``ONCALLM_TEST_NODE_DIR`` reuses one started by ``oncallm controlplane up --node --dir``.
    Skips without root or the node's Debian packages, saying which is missing."""
    from oncallm.controlplane.node import check_host

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
async def kube(control_plane: LocalControlPlane) -> AsyncIterator[KubeAPI]:
    """An admin client of the control plane, without a client-side rate limit."""
    api = await KubeAPI.connect(ClientSettings(kubeconfig=str(control_plane.kubeconfig), qps=0))
    yield api
    await api.close()


@pytest.fixture
async def namespace(kube: KubeAPI) -> AsyncIterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount), removed after the test."""
    name = f"t-{secrets.token_hex(4)}"
    await ensure_namespace(kube, name)
    yield name
    await clear_namespace(kube, name)
