"""The bid strategy: may this compute node take this job?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from bacalhau_py import policy as admission
from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.errors import BacalhauError
from bacalhau_py.models import Engine, JobSpec
from bacalhau_py.models.image import ImageIdentity
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
        admission_policy: admission.Policy | None = None,
        image_identity: Callable[[str], Awaitable[ImageIdentity | None]] | None = None,
    ) -> None:
        self.policy = policy
        self.capacity = capacity
        self.engines = engines
        self.storages = storages
        self.admission_policy = admission_policy
        self.image_identity = image_identity
        """The local image a docker IMAGE names (None if not here yet): the docker executor's."""

    async def admission(self, spec: JobSpec, client_id: str, image: ImageIdentity | None) -> Refusal | None:
        """The admission policy's verdict (serve --policy); None without a policy."""
        if self.admission_policy is None:
            return None
        spec = await trio.to_thread.run_sync(_with_real_local_paths, spec)
        refusal = admission.check(self.admission_policy, spec, client_id=client_id, image=image)
        return Refusal(refusal.reason) if refusal else None

    async def refusal(self, spec: JobSpec, client_id: str = "") -> Refusal | None:
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
            if source.source == "local" and not await self.storages["local"].has_locally(source):
                return Refusal(
                    f"local path {source.local_path} is not allow-listed on this node (serve --allow-listed-local-paths)"
                )
        if self.admission_policy is not None:
            image = None
            if spec.task.engine is Engine.DOCKER and self.image_identity is not None:
                try:
                    image = await self.image_identity(spec.task.image)
                except BacalhauError as error:
                    return Refusal(error.message)
            refusal = await self.admission(spec, client_id, image)
            if refusal is not None:
                return refusal
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


def _with_real_local_paths(spec: JobSpec) -> JobSpec:
    """The spec with each local input's path resolved (symlinks), as the policy's keys are."""
    if not any(source.source == "local" for source in spec.inputs):
        return spec
    inputs = [
        source.model_copy(update={"local_path": str(Path(source.local_path).resolve())})
        if source.source == "local" else source
        for source in spec.inputs
    ]
    return spec.model_copy(update={"inputs": inputs})
