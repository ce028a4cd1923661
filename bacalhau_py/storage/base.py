"""The storage interface: fetch one input source onto the compute node's disk."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bacalhau_py.models import InputSource


class StorageProvider(Protocol):
    async def is_installed(self) -> bool:
        """Can this node fetch inputs of this kind?"""

    async def has_locally(self, source: InputSource) -> bool:
        """Is the data already on this node (for `--job-selection-data-locality local`)?"""

    async def prepare(self, source: InputSource, dest: Path) -> Path:
        """Fetch `source` into the empty folder `dest`; return the host path to mount.

        For a file input the returned path is that file; for a folder CID, the
        folder. Raises `StorageError` with a user message on failure (unknown
        CID, timeout, URL error, over the size limit).
        """
