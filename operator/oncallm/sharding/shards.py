"""An analysis' shard: a hash of its alert's fingerprint into a fixed number of shards.

The sidecar writes the shard as the label ``oncallm.io/shard`` when it creates the analysis;
the operator reads the label (and computes the same hash for an analysis without one, such as
one created before sharding), so every replica agrees on an analysis' shard without asking
anyone. All alerts of one fingerprint land in one shard: the firings of one alert and their
history stay with one replica.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any

#: The label the sidecar writes on every AlertAnalysis it creates.
SHARD_LABEL = "oncallm.io/shard"


@dataclass
class ShardSettings:
    """How analyses are divided between operator replicas (docs/ha.md)."""

    shards: int = 8
    """Shards the analyses are divided into (ONCALLM_SHARDS): the most replicas that share the
    work. Each shard is one Lease, renewed every ``renew_seconds`` by its owner, so 8 shards
    cost 8 small writes per renewal; 8 replicas of eight concurrent analyses each outrun the
    API server's default rate limits well before the shards run out. Every operator replica
    and sidecar must be given the same number."""
    lease_seconds: int = 15
    """How long a Lease holds without being renewed (ONCALLM_LEASE_SECONDS): a replica that
    dies keeps its shards this long, then the others take them over. client-go's leader
    election uses 15 s; shorter means faster takeover and more renewals."""
    renew_seconds: float = 5.0
    """How often a replica renews its Leases and looks for shards to take or give back
    (ONCALLM_LEASE_RENEW_SECONDS): a third of the Lease, so two renewals may fail before the
    Lease runs out."""
    identity: str = ""
    """This replica's name in the Leases (ONCALLM_REPLICA_ID): the pod's name when the
    manifests set POD_NAME, else the host name and process id. Two replicas must never share
    one."""

    @classmethod
    def from_env(cls) -> ShardSettings:
        env = os.environ
        lease = int(env.get("ONCALLM_LEASE_SECONDS", cls.lease_seconds))
        renew = float(env.get("ONCALLM_LEASE_RENEW_SECONDS", lease / 3))
        identity = (
            env.get("ONCALLM_REPLICA_ID")
            or env.get("POD_NAME")
            or f"{socket.gethostname()}-{os.getpid()}"
        )
        settings = cls(
            shards=int(env.get("ONCALLM_SHARDS", cls.shards)),
            lease_seconds=lease,
            renew_seconds=renew,
            identity=identity,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError, naming the variable to fix, for settings that cannot work."""
        if self.shards < 1:
            raise ValueError(f"ONCALLM_SHARDS is {self.shards}; set it to 1 or more")
        if self.lease_seconds < 1:
            raise ValueError(f"ONCALLM_LEASE_SECONDS is {self.lease_seconds}; set it to 1 or more")
        if not 0 < self.renew_seconds < self.lease_seconds:
            raise ValueError(
                f"ONCALLM_LEASE_RENEW_SECONDS is {self.renew_seconds}; set it above 0 and below "
                f"ONCALLM_LEASE_SECONDS ({self.lease_seconds}), a third of it is usual"
            )


def shard_of(fingerprint: str, shards: int) -> int:
    """The shard of an alert's fingerprint: a stable hash (not Python's, which is salted per
    process) into ``shards``."""
    digest = hashlib.sha256(fingerprint.encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(1, shards)


def shard_label(fingerprint: str, shards: int) -> dict[str, str]:
    """The label the sidecar writes."""
    return {SHARD_LABEL: str(shard_of(fingerprint, shards))}


def shard_of_body(body: dict[str, Any], shards: int) -> int:
    """The shard of an AlertAnalysis as the API server returns it: its label when it holds a
    number, else the hash of its alert's fingerprint (an analysis stored before sharding)."""
    meta = body.get("metadata") or {}
    value = (meta.get("labels") or {}).get(SHARD_LABEL)
    if value is not None and str(value).isdigit():
        return int(value) % max(1, shards)
    alert = (body.get("spec") or {}).get("alert") or {}
    return shard_of(str(alert.get("fingerprint") or meta.get("name") or ""), shards)
