"""transport: signed messages between nodes (libp2p) and an in-memory twin for tests.

`Libp2pTransport` is imported lazily so that code using only the in-memory
transport (unit tests) does not pay for importing py-libp2p.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bacalhau_py.transport.base import MessageHandler, Transport
from bacalhau_py.transport.memory import MemoryNetwork, MemoryTransport

if TYPE_CHECKING:
    from bacalhau_py.transport.libp2p import Libp2pTransport

__all__ = ["Libp2pTransport", "MemoryNetwork", "MemoryTransport", "MessageHandler", "Transport"]


def __getattr__(name: str) -> Any:
    if name == "Libp2pTransport":
        from bacalhau_py.transport.libp2p import Libp2pTransport

        return Libp2pTransport
    raise AttributeError(name)
