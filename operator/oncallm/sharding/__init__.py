"""Shards: which operator replica runs which AlertAnalysis.

- :mod:`~oncallm.sharding.shards`: an analysis' shard, from its fingerprint, written as a
  label at intake;
- :mod:`~oncallm.sharding.leases`: shard ownership through ``coordination.k8s.io/v1`` Leases,
  as plain decisions over the Leases listed (which to renew, take, give back), and the Lease
  objects to write.

Pure logic: times are passed in, nothing here reads or writes the cluster
(``pipeline/shards.py`` does the I/O). See docs/ha.md.
"""

from oncallm.sharding.leases import (
    LeaseRecord,
    Plan,
    fair_share,
    live_replicas,
    plan,
)
from oncallm.sharding.shards import SHARD_LABEL, ShardSettings, shard_label, shard_of, shard_of_body

__all__ = [
    "SHARD_LABEL",
    "LeaseRecord",
    "Plan",
    "ShardSettings",
    "fair_share",
    "live_replicas",
    "plan",
    "shard_label",
    "shard_of",
    "shard_of_body",
]
