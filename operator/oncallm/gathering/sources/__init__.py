"""The context sources, one module each, registered in :data:`SOURCES`.

Each module reads its part of the cluster during gathering (``read``, through the
``KubeReader``) and says how its snapshots become evidence (``evidence``, pure). Adding a
source: write its module with a ``SOURCE`` record, add it to ``SOURCES``, grant what it reads
in ``manifests/base/rbac/reader.yaml``; docs/rules.md lists its evidence ids.
"""

from __future__ import annotations

from oncallm.gathering.sources import (
    config_refs,
    credential_refreshers,
    custom_resources,
    dns,
    drains,
    events,
    history,
    hpas,
    kubelet_certs,
    load_balancers,
    logs,
    mesh,
    metrics,
    metrics_api,
    namespace_limits,
    network_paths,
    network_policies,
    node_health,
    node_storage,
    nodes,
    pods,
    pull_credentials,
    pvcs,
    quota_consumers,
    resource_holders,
    retention,
    role_bindings,
    scheduling,
    scrape_paths,
    services,
    tls_peers,
    webhooks,
    workload,
)
from oncallm.gathering.sources.base import EvidenceOut, Source, Stage, Tier

SOURCES: tuple[Source, ...] = (
    pods.SOURCE,
    config_refs.SOURCE,
    events.SOURCE,
    logs.SOURCE,
    nodes.SOURCE,
    workload.SOURCE,
    pvcs.SOURCE,
    services.SOURCE,
    namespace_limits.SOURCE,
    hpas.SOURCE,
    network_policies.SOURCE,
    metrics.SOURCE,
    role_bindings.SOURCE,
    history.SOURCE,
    # Leads: each reads only when the evidence before points at it.
    quota_consumers.SOURCE,
    node_storage.SOURCE,
    node_health.SOURCE,
    drains.SOURCE,
    scheduling.SOURCE,
    resource_holders.SOURCE,
    retention.SOURCE,
    dns.SOURCE,
    metrics_api.SOURCE,
    load_balancers.SOURCE,
    webhooks.SOURCE,
    network_paths.SOURCE,
    scrape_paths.SOURCE,
    kubelet_certs.SOURCE,
    mesh.SOURCE,
    pull_credentials.SOURCE,
    credential_refreshers.SOURCE,
    tls_peers.SOURCE,
    custom_resources.SOURCE,
)
"""Every source. Gathering runs them stage by stage (the sources of a stage at once, in this
order); evidence is flattened in this order, then sorted by tier (stably), so within a tier
items keep this order: it is part of the evidence contract."""

__all__ = ["SOURCES", "EvidenceOut", "Source", "Stage", "Tier"]
