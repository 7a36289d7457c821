"""Fixtures of the RBAC suite: OnCallM installed from manifests/, and its ServiceAccount."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncallm.controlplane import LocalControlPlane
from oncallm.kube.api import KubeAPI
from tests.rbac.install import install, service_account_token, uninstall, write_kubeconfig


@pytest.fixture(scope="session")
def installed(control_plane: LocalControlPlane) -> Iterator[LocalControlPlane]:
    """OnCallM applied with ``kubectl apply -k manifests/``; removed (but its CRDs) after."""
    install(control_plane)
    yield control_plane
    uninstall(control_plane)


@pytest.fixture(scope="session")
async def sa_kubeconfig(
    installed: LocalControlPlane, kube: KubeAPI, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig holding only a TokenRequest token of OnCallM's ServiceAccount."""
    token = await service_account_token(kube)
    return write_kubeconfig(installed, token, tmp_path_factory.mktemp("sa") / "kubeconfig")
