"""The bid strategy: may this compute node take this job?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.models import JobSpec
from bacalhau_py.storage.base import StorageProvider


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry: bool = False
    """The node could take the job later (it is busy now); the requester may ask again."""


@dataclass(frozen=True)
class BidPolicy:
    labels: dict[str, str]
    data_locality: Literal["local", "anywhere"] = "anywhere"


class BidStrategy:
    """Checks, cheapest first; the first failing check is the reason given to the requester."""

    def __init__(
        self,
        policy: BidPolicy,
        capacity: CapacityTracker,
        engines: set[str],
        storages: dict[str, StorageProvider],
    ) -> None:
        self.policy = policy
        self.capacity = capacity
        self.engines = engines
        self.storages = storages

    async def refusal(self, spec: JobSpec) -> Refusal | None:
        """None if the node will bid, else why not (one line) and whether to ask again later."""
        engine = spec.task.engine.value
        if engine not in self.engines:
            return Refusal(f"engine {engine} is not installed on this node")
        for key, value in spec.selector.items():
            if self.policy.labels.get(key) != value:
                return Refusal(f"node labels do not match selector {key}={value}")
        for constraint in spec.constraints:
            if not constraint.matches(self.policy.labels):
                return Refusal(f"node labels do not meet constraint {constraint.key} {constraint.operator} {constraint.values}")
        for source in spec.inputs:
            if source.source not in self.storages:
                return Refusal(f"input source {source.source} is not available on this node")
        need = Capacity.needed_by(spec.resources)
        reason = self.capacity.why_never(need)
        if reason:
            return Refusal(reason)
        if self.policy.data_locality == "local":
            ipfs = self.storages.get("ipfs")
            for source in spec.inputs:
                if source.source == "ipfs" and not (ipfs and await ipfs.has_locally(source)):
                    return Refusal(f"input {source.cid} is not on this node (data locality: local)")
        reason = self.capacity.why_not_now(need)
        return Refusal(reason, retry=True) if reason else None
