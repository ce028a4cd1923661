"""The publisher interface. Called on the compute side after a run."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Publisher(Protocol):
    async def publish(self, execution_id: str, result_dir: Path) -> str:
        """Publish the folder (stdout, stderr, exitCode, one folder per output) and return its CID.

        ipfs: the folder is added to the node's IPFS, so any peer can fetch it.
        local: the folder stays on this node (served on request); the CID is
        computed without adding, so clients can still check what they receive.
        """
