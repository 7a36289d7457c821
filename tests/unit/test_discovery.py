"""Kinds resolve through discovery documents; readers read any kind, absent kinds as absent."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from oncallm.gathering.memory import MemoryReader
from oncallm.gathering.reader import SourceError, split_api_version
from oncallm.kube.api import ApiError
from oncallm.kube.discovery import Discovery
from oncallm.kube.reader import ApiReader


def resources(*items: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "resources": [
            {"name": plural, "kind": kind, "namespaced": namespaced}
            for plural, kind, namespaced in items
        ]
        + [{"name": f"{items[0][0]}/status", "kind": items[0][1], "namespaced": items[0][2]}],
    }


class DiscoveryAPI:
    """An API server's discovery documents (and lists), counting requests by path."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {
            "/api/v1": resources(
                ("pods", "Pod", True), ("replicationcontrollers", "ReplicationController", True)
            ),
            "/apis": {
                "groups": [
                    {"name": "policy", "preferredVersion": {"version": "v1"}},
                    {"name": "coordination.k8s.io", "preferredVersion": {"version": "v1"}},
                ]
            },
            "/apis/policy": {
                "versions": [{"version": "v1"}],
                "preferredVersion": {"version": "v1"},
            },
            "/apis/policy/v1": resources(("poddisruptionbudgets", "PodDisruptionBudget", True)),
            "/apis/coordination.k8s.io/v1": resources(("leases", "Lease", True)),
        }
        self.lists: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, ApiError] = {}
        self.calls: list[str] = []

    def install(
        self, group: str, versions: list[str], plural: str, kind: str, namespaced: bool
    ) -> None:
        """What creating a CRD does to discovery."""
        self.documents["/apis"]["groups"].append(
            {"name": group, "preferredVersion": {"version": versions[0]}}
        )
        self.documents[f"/apis/{group}"] = {
            "versions": [{"version": v} for v in versions],
            "preferredVersion": {"version": versions[0]},
        }
        for version in versions:
            self.documents[f"/apis/{group}/{version}"] = resources((plural, kind, namespaced))

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(path)
        await asyncio.sleep(0)
        if path in self.errors:
            raise self.errors[path]
        if path in self.documents:
            return self.documents[path]
        if path in self.lists:
            return self.lists[path]
        raise ApiError(404, "the server could not find the requested resource")


@pytest.mark.parametrize(
    ("api_version", "expected"),
    [
        ("v1", ("", "v1")),
        ("apps/v1", ("apps", "v1")),
        ("external-secrets.io/v1beta1", ("external-secrets.io", "v1beta1")),
        ("cert-manager.io", ("cert-manager.io", None)),
        ("v2alpha1", ("", "v2alpha1")),
    ],
)
def test_api_versions_split_into_group_and_version(
    api_version: str, expected: tuple[str, str | None]
) -> None:
    assert split_api_version(api_version) == expected


async def test_table_kinds_need_no_request_and_others_come_from_discovery() -> None:
    api = DiscoveryAPI()
    discovery = Discovery(api)  # type: ignore[arg-type]
    pod = await discovery.resolve("Pod")
    assert pod is not None and pod.path("orders") == "/api/v1/namespaces/orders/pods"
    assert await discovery.resolve("Deployment", "apps/v1") is not None
    assert api.calls == []

    pdb = await discovery.resolve("PodDisruptionBudget", "policy/v1")
    assert pdb is not None
    assert pdb.path("orders", "api") == "/apis/policy/v1/namespaces/orders/poddisruptionbudgets/api"
    assert await discovery.resolve("PodDisruptionBudget", "policy/v1") is pdb
    assert api.calls == ["/apis/policy/v1"]  # read once: a kind found stays found

    lease = await discovery.resolve("Lease")  # no apiVersion: searched in every group
    assert lease is not None and lease.api_version == "coordination.k8s.io/v1"
    rc = await discovery.resolve("ReplicationController", "v1")
    assert rc is not None and rc.prefix == "/api/v1"


async def test_a_group_alone_resolves_to_its_preferred_version_first() -> None:
    api = DiscoveryAPI()
    api.install("cert-manager.io", ["v1", "v1alpha2"], "certificates", "Certificate", True)
    discovery = Discovery(api)  # type: ignore[arg-type]
    cert = await discovery.resolve("Certificate", "cert-manager.io")
    assert cert is not None and cert.api_version == "cert-manager.io/v1"
    assert await discovery.versions("cert-manager.io") == ["v1", "v1alpha2"]
    assert await discovery.versions("not-installed.example.com") == []


async def test_a_kind_not_served_is_asked_again_and_found_once_installed() -> None:
    api = DiscoveryAPI()
    discovery = Discovery(api)  # type: ignore[arg-type]
    assert await discovery.resolve("ExternalSecret", "external-secrets.io/v1beta1") is None
    assert await discovery.resolve("ExternalSecret") is None
    api.install("external-secrets.io", ["v1beta1"], "externalsecrets", "ExternalSecret", True)
    found = await discovery.resolve("ExternalSecret", "external-secrets.io/v1beta1")
    assert found is not None and found.plural == "externalsecrets" and found.namespaced


async def test_concurrent_look_ups_share_one_request() -> None:
    api = DiscoveryAPI()
    discovery = Discovery(api)  # type: ignore[arg-type]
    found = await asyncio.gather(
        *(discovery.resolve("PodDisruptionBudget", "policy/v1") for _ in range(5))
    )
    assert all(f is not None for f in found)
    assert api.calls == ["/apis/policy/v1"]


async def test_a_broken_aggregated_api_does_not_hide_the_other_groups() -> None:
    api = DiscoveryAPI()
    api.documents["/apis"]["groups"].insert(
        0, {"name": "metrics.k8s.io", "preferredVersion": {"version": "v1beta1"}}
    )
    api.errors["/apis/metrics.k8s.io/v1beta1"] = ApiError(503, "service unavailable")
    discovery = Discovery(api)  # type: ignore[arg-type]
    lease = await discovery.resolve("Lease")
    assert lease is not None and lease.group == "coordination.k8s.io"


async def test_the_api_reader_reads_any_kind_and_an_absent_kind_as_absent() -> None:
    api = DiscoveryAPI()
    api.install("external-secrets.io", ["v1beta1"], "externalsecrets", "ExternalSecret", True)
    api.lists["/apis/external-secrets.io/v1beta1/namespaces/billing/externalsecrets"] = {
        "items": [{"metadata": {"name": "billing-db", "namespace": "billing"}}]
    }
    reader = ApiReader(api)  # type: ignore[arg-type]
    items = await reader.list("ExternalSecret", "billing", api_version="external-secrets.io")
    assert items == [
        {
            "metadata": {"name": "billing-db", "namespace": "billing"},
            "kind": "ExternalSecret",
            "apiVersion": "external-secrets.io/v1beta1",
        }
    ]
    assert (
        await reader.get("ExternalSecret", "billing", "gone", api_version="external-secrets.io")
        is None
    )
    # Not installed: absent, not an error.
    assert await reader.list("Certificate", "billing", api_version="cert-manager.io/v1") == []
    assert (
        await reader.get("Certificate", "billing", "tls", api_version="cert-manager.io/v1") is None
    )
    assert await reader.list("Rollout") == []


async def test_the_api_reader_says_what_failed_and_how_to_fix_it() -> None:
    api = DiscoveryAPI()
    api.install("external-secrets.io", ["v1beta1"], "externalsecrets", "ExternalSecret", True)
    path = "/apis/external-secrets.io/v1beta1/namespaces/billing/externalsecrets"
    api.errors[path] = ApiError(403, "externalsecrets is forbidden")
    reader = ApiReader(api)  # type: ignore[arg-type]
    with pytest.raises(SourceError) as err:
        await reader.list("ExternalSecret", "billing", api_version="external-secrets.io/v1beta1")
    assert err.value.source == "ExternalSecret (external-secrets.io/v1beta1)"
    assert "grant OnCallM's ServiceAccount read access" in err.value.reason
    api.errors["/apis/example.com/v1"] = ApiError(500, "etcd is down")
    with pytest.raises(SourceError) as err:
        await reader.get("Widget", "billing", "w", api_version="example.com/v1")
    assert err.value.reason.startswith("discovery: 500")


async def test_the_memory_reader_matches_the_group_when_asked() -> None:
    reader = MemoryReader(
        [
            {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret",
             "metadata": {"name": "db", "namespace": "billing"}},
            {"apiVersion": "example.com/v1", "kind": "ExternalSecret",
             "metadata": {"name": "other", "namespace": "billing"}},
            {"kind": "ExternalSecret", "metadata": {"name": "unversioned", "namespace": "billing"}},
        ]
    )  # fmt: skip
    names = [
        o["metadata"]["name"]
        for o in await reader.list("ExternalSecret", "billing", api_version="external-secrets.io")
    ]
    assert names == ["db", "unversioned"]
    assert len(await reader.list("ExternalSecret")) == 3
    assert (
        await reader.get("ExternalSecret", "billing", "db", api_version="external-secrets.io/v1")
        is None
    )
    assert await reader.get(
        "ExternalSecret", "billing", "db", api_version="external-secrets.io/v1beta1"
    )
    assert await reader.list("Certificate", api_version="cert-manager.io") == []


async def test_a_kind_without_api_version_reads_only_what_is_new() -> None:
    api = DiscoveryAPI()
    discovery = Discovery(api)  # type: ignore[arg-type]
    assert await discovery.resolve("Rollout") is None
    api.calls.clear()
    assert await discovery.resolve("Rollout") is None
    assert api.calls == ["/apis"]  # nothing new: one request
    api.install("argoproj.io", ["v1alpha1"], "rollouts", "Rollout", True)
    api.calls.clear()
    rollout = await discovery.resolve("Rollout")
    assert rollout is not None and rollout.api_version == "argoproj.io/v1alpha1"
    assert api.calls == ["/apis", "/apis/argoproj.io/v1alpha1"]


async def test_a_look_up_its_callers_gave_up_on_fails_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = DiscoveryAPI()
    api.errors["/apis/policy/v1"] = ApiError(0, "API server unreachable")
    discovery = Discovery(api)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await discovery.resolve("PodDisruptionBudget", "policy/v1")
    await asyncio.sleep(0.01)  # the shared request ends, with nobody waiting
    gc.collect()
    assert "exception was never retrieved" not in caplog.text
    assert discovery._inflight == {}
