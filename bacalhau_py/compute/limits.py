"""A compute node's limits on each job: default memory and cpu, output quota, free-disk watermark.

The defaults are caps enforced on a job that asks for no memory or cpu, not
reservations: capacity accounting still assumes such a job is small
(`capacity.DEFAULT_JOB_*`), so many small jobs share a node, while one
runaway job cannot take more than the cap.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from bacalhau_py.compute.bidding import Refusal
from bacalhau_py.compute.capacity import Capacity
from bacalhau_py.models import JobSpec
from bacalhau_py.models.spec import describe_size

# 1 GiB and 1 core: enough for the usual data job (a pandas frame of a few
# hundred MB, a compression, an image pipeline), and small enough that one
# job without limits cannot starve a node or the node process itself (wasm
# runs inside it).
DEFAULT_JOB_MEMORY = 1 << 30
DEFAULT_JOB_CPU = 1.0


@dataclass(frozen=True)
class JobLimits:
    default_memory: int = DEFAULT_JOB_MEMORY
    default_cpu: float = DEFAULT_JOB_CPU
    disk: int | None = None
    """The output quota of every job (`--limit-job-disk`); a job's `--disk` may only lower it."""
    min_free_disk: int = 0
    """No bids while the work folder's disk has less free space (`--min-free-disk`)."""

    def within(self, per_job: Capacity | None) -> "JobLimits":
        """These limits with defaults no larger than the node's per-job limits (`--limit-job-*`)."""
        if per_job is None:
            return self
        return replace(
            self, default_memory=min(self.default_memory, per_job.memory), default_cpu=min(self.default_cpu, per_job.cpu)
        )

    def refusal(self, spec: JobSpec, work_dir: Path) -> Refusal | None:
        """Why this node will not bid for `spec` because of these limits, else None."""
        asked = spec.resources.disk
        if asked is not None and self.disk is not None and asked > self.disk:
            return Refusal(
                f"job asks for {describe_size(asked)} of disk, over this node's per-job limit "
                f"of {describe_size(self.disk)}"
            )
        if self.min_free_disk:
            free = shutil.disk_usage(work_dir).free
            if free < self.min_free_disk:
                return Refusal(
                    f"free disk {describe_size(free)} is under this node's minimum of "
                    f"{describe_size(self.min_free_disk)} (--min-free-disk)"
                )
        return None

    def applied(self, spec: JobSpec) -> JobSpec:
        """`spec` as it runs here: the defaults for what it leaves unset, the quota on its outputs."""
        resources = spec.resources
        quotas = [d for d in (resources.disk, self.disk) if d is not None]
        resources = resources.model_copy(
            update={
                "memory": resources.memory if resources.memory is not None else self.default_memory,
                "cpu": resources.cpu if resources.cpu is not None else self.default_cpu,
                "disk": min(quotas) if quotas else None,
            }
        )
        return spec.model_copy(update={"resources": resources})


def bytes_written(folders: list[Path]) -> int:
    """(In a thread.) Bytes in the files under `folders`; symlinks are not followed."""
    total = 0
    for folder in folders:
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue  # removed while we looked
    return total
