"""Capacity accounting: a compute node never runs more than its limits at once."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from bacalhau_py.models import Resources

# What a job that names no resources is assumed to use (Bacalhau's defaults).
DEFAULT_JOB_CPU = 0.1
DEFAULT_JOB_MEMORY = 100 << 20


@dataclass(frozen=True)
class Capacity:
    cpu: float
    memory: int
    gpu: int = 0

    @classmethod
    def of_machine(cls) -> "Capacity":
        """The whole machine less a margin for the node itself (80% of memory)."""
        return cls(cpu=float(os.cpu_count() or 1), memory=int(psutil.virtual_memory().total * 0.8), gpu=0)

    @classmethod
    def needed_by(cls, resources: Resources) -> "Capacity":
        return cls(
            cpu=resources.cpu if resources.cpu is not None else DEFAULT_JOB_CPU,
            memory=resources.memory if resources.memory is not None else DEFAULT_JOB_MEMORY,
            gpu=resources.gpu,
        )

    def fits_in(self, other: "Capacity") -> bool:
        return self.cpu <= other.cpu + 1e-9 and self.memory <= other.memory and self.gpu <= other.gpu

    def __add__(self, other: "Capacity") -> "Capacity":
        return Capacity(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)

    def __sub__(self, other: "Capacity") -> "Capacity":
        return Capacity(self.cpu - other.cpu, self.memory - other.memory, self.gpu - other.gpu)

    def describe(self) -> str:
        # round(): free capacity is a difference of floats (2.0 - 20 * 0.1).
        return f"cpu={round(self.cpu, 3):g} memory={self.memory >> 20}MiB gpu={self.gpu}"


ZERO = Capacity(0.0, 0, 0)


class CapacityTracker:
    """Reservations against a total. A bid reserves; a finished or rejected execution releases."""

    def __init__(self, total: Capacity, per_job: Capacity | None = None) -> None:
        self.total = total
        self.per_job = per_job or total
        self._per_job_limited = per_job is not None
        self._reserved: dict[str, Capacity] = {}

    @property
    def used(self) -> Capacity:
        used = ZERO
        for amount in self._reserved.values():
            used = used + amount
        return used

    @property
    def free(self) -> Capacity:
        return self.total - self.used

    def why_never(self, need: Capacity) -> str | None:
        """Why this node could never run a job needing `need` (over its limits), else None."""
        if not need.fits_in(self.total):
            return f"job needs {need.describe()}, over this node's total {self.total.describe()}"
        if not need.fits_in(self.per_job):
            return f"job needs {need.describe()}, over this node's per-job limit {self.per_job.describe()}"
        return None

    def why_not_now(self, need: Capacity) -> str | None:
        """Why `need` cannot be reserved at this moment (the node is busy), else None."""
        if not need.fits_in(self.free):
            return f"node is busy: job needs {need.describe()}, free {self.free.describe()}"
        return None

    def reserve(self, key: str, need: Capacity) -> str | None:
        """Reserve `need` under `key`; None on success, else why not."""
        reason = self.why_never(need) or self.why_not_now(need)
        if reason is None:
            self._reserved[key] = need
        return reason

    def release(self, key: str) -> None:
        self._reserved.pop(key, None)
