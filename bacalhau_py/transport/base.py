"""The transport interface: signed messages between nodes.

Direct requests get exactly one reply (which is the acknowledgement) and are
retried on failure; gossip carries only announcements that are re-sent.
A request to the node's own peer ID is dispatched in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import trio

from bacalhau_py.models.messages import Message


class MessageHandler(Protocol):
    """The node's side: what to do with messages that arrive."""

    async def on_request(self, sender: str, message: Message) -> Message:
        """Answer a direct request. Must not raise for bad input: reply `Ack(ok=False)`."""

    async def on_gossip(self, sender: str, message: Message) -> None:
        """Take note of a gossiped announcement."""

    def on_stream_request(self, sender: str, message: Message) -> AsyncIterator[bytes]:
        """Answer a bulk request (e.g. `FetchResult`) with a stream of bytes."""


class Transport(Protocol):
    peer_id: str

    @property
    def addresses(self) -> list[str]:
        """Multiaddrs others can dial, each ending in /p2p/<peer_id>."""

    async def serve(self, handler: MessageHandler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; `task_status.started()` once listening and subscribed."""

    async def connect(self, multiaddr: str) -> str:
        """Dial a peer; return its peer ID. Raises `TransportError`."""

    def connected_peers(self) -> list[str]: ...

    async def request(self, peer_id: str, message: Message, *, timeout: float = 10.0) -> Message:
        """Send a direct message and return the reply; retried; raises `TransportError`."""

    def request_stream(self, peer_id: str, message: Message) -> AsyncIterator[bytes]:
        """Send a direct message and iterate the bytes the peer streams back."""

    async def publish(self, message: Message) -> None:
        """Gossip an announcement to every subscribed peer (best effort)."""
