"""An in-process transport with the same contract as the libp2p one.

For fast unit tests of requester and compute logic.  Every message goes
through JSON and `MESSAGE` validation on the way in and out, so a model that
does not serialise fails here as it would on the wire.  Gossip is delivered to
every serving member (the publisher included, as with libp2p) by each member's
own dispatcher task, so `publish` returns before handlers run, as on a real
network.  A request to a peer that is unknown or not serving raises
`TransportError`.

The network may be told to delay and lose messages (`Conditions`, off by
default), for simulations of big networks on trio's mock clock; a `tap` sees
every message carried, to count them.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import trio

from bacalhau_py.errors import BacalhauError, TransportError
from bacalhau_py.models.messages import MESSAGE, Ack, Directory, Message, NodeInfo
from bacalhau_py.transport.base import MessageHandler

log = logging.getLogger("bacalhau_py.transport")

_GOSSIP_INBOX = 4096


def _wire(message: Message) -> Message:
    if isinstance(message, NodeInfo):
        return _node_info(MESSAGE.dump_json(message))
    if isinstance(message, Directory):
        # Through JSON node by node, so that its nodes are the shared copies too.
        return Directory.model_validate({"digest": message.digest, "nodes": [_wire(n) for n in message.nodes]})
    return MESSAGE.validate_json(MESSAGE.dump_json(message))


@functools.lru_cache(maxsize=8192)
def _node_info(data: bytes) -> Message:
    """One copy of each node's info for all who hear it (messages are frozen).

    Heartbeats (membership.py) are most of what a network carries: every pair
    of nodes exchanges its NodeInfo each period, and each node keeps the
    latest of every other; each node that joins is handed a `Directory` of
    all the others. Parsed apart, a thousand simulated nodes held a million
    copies (5 GB); a node's info is the same bytes until it changes.
    """
    return MESSAGE.validate_json(data)


@dataclass(frozen=True)
class Conditions:
    """What the network does to each message it carries. The default: nothing (instant, never lost)."""

    latency: tuple[float, float] = (0.0, 0.0)
    """Each message takes a time drawn uniformly from this range, in seconds of trio's clock
    (an announcement takes one such time to reach every member)."""
    loss: float = 0.0
    """The probability that a message is lost. A lost request or reply is never answered (the
    sender's timeout ends the wait, as with a stalled stream); a lost announcement never arrives."""
    seed: int = 0


Tap = Callable[[str, str, Message, Message | None], None]
"""Called with (sender, receiver, message, the request it answers or None) for each message carried."""


class MemoryNetwork:
    """The members of one in-process network, by peer ID."""

    def __init__(self, conditions: Conditions = Conditions(), tap: Tap | None = None) -> None:
        self._serving: dict[str, MemoryTransport] = {}
        self.conditions = conditions
        self.tap = tap
        self._random = random.Random(conditions.seed)

    def _member(self, peer_id: str) -> MemoryTransport:
        member = self._serving.get(peer_id)
        if member is None or member._handler is None:
            raise TransportError(f"peer {peer_id} is not reachable")
        return member

    def serving_peers(self) -> list[str]:
        return sorted(self._serving)

    def _lost(self, sender: str, receiver: str, message: Message, answering: Message | None = None) -> bool:
        """Whether this message is lost on its way (and the tap sees it leave)."""
        if self.tap is not None:
            self.tap(sender, receiver, message, answering)
        return bool(self.conditions.loss) and self._random.random() < self.conditions.loss

    def _latency(self) -> float:
        low, high = self.conditions.latency
        return self._random.uniform(low, high) if high else 0.0

    async def _carry(self, sender: str, receiver: str, message: Message, answering: Message | None = None) -> None:
        """Return once the message has arrived; never, if it is lost."""
        if self._lost(sender, receiver, message, answering):
            await trio.sleep_forever()
        delay = self._latency()
        if delay:
            await trio.sleep(delay)


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, peer_id: str) -> None:
        self.network = network
        self.peer_id = peer_id
        self._handler: MessageHandler | None = None
        self._inbox: trio.MemorySendChannel[tuple[str, Message]] | None = None
        self._outbox: trio.MemorySendChannel[tuple[Message, float]] | None = None

    @property
    def addresses(self) -> list[str]:
        return [f"/memory/{self.peer_id}/p2p/{self.peer_id}"]

    async def serve(self, handler: MessageHandler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.peer_id in self.network._serving:
            raise TransportError(f"peer {self.peer_id} is already serving on this network")
        send, recv = trio.open_memory_channel[tuple[str, Message]](_GOSSIP_INBOX)
        later, outbox = trio.open_memory_channel[tuple[Message, float]](math.inf)
        self._handler, self._inbox, self._outbox = handler, send, later
        self.network._serving[self.peer_id] = self
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_later, outbox)
                task_status.started()
                async for sender, message in recv:
                    await self._take(handler, sender, message)
                    # The rest of what arrived, without a turn of the run loop each: a
                    # member of a simulated thousand hears a thousand announcements at once.
                    while True:
                        try:
                            sender, message = recv.receive_nowait()
                        except trio.WouldBlock:
                            break
                        await self._take(handler, sender, message)
        finally:
            self.network._serving.pop(self.peer_id, None)
            self._handler = self._inbox = self._outbox = None

    @staticmethod
    async def _take(handler: MessageHandler, sender: str, message: Message) -> None:
        try:
            await handler.on_gossip(sender, message)
        except Exception:  # noqa: BLE001 - as in libp2p.py: keep gossiping
            log.exception("gossip handler failed on message from %s", sender)

    async def _deliver_later(self, outbox: trio.MemoryReceiveChannel[tuple[Message, float]]) -> None:
        """This member's announcements on a network with latency: each goes out once its time has passed."""
        async for message, arrival in outbox:
            await trio.sleep_until(arrival)
            self._deliver(message)

    async def connect(self, multiaddr: str) -> str:
        self._require_serving()
        peer = multiaddr.rsplit("/p2p/", 1)[-1]
        self.network._member(peer)
        return peer

    def connected_peers(self) -> list[str]:
        if self._handler is None:
            return []
        return [p for p in self.network.serving_peers() if p != self.peer_id]

    def _require_serving(self) -> None:
        if self._handler is None:
            raise TransportError("transport is not serving")

    async def request(self, peer_id: str, message: Message, *, timeout: float = 10.0) -> Message:
        self._require_serving()
        target = self.network._member(peer_id)
        handler = target._handler
        assert handler is not None
        with trio.move_on_after(timeout):
            await self.network._carry(self.peer_id, peer_id, message)
            try:
                reply = await handler.on_request(self.peer_id, _wire(message))
            except BacalhauError as e:
                reply = Ack(ok=False, message=e.message)
            except Exception as e:  # noqa: BLE001 - same answer as libp2p.py gives
                log.exception("request handler of %s failed on %s", peer_id, message.kind)
                reply = Ack(ok=False, message=f"internal error: {type(e).__name__}")
            await self.network._carry(peer_id, self.peer_id, reply, message)
            return _wire(reply)
        raise TransportError(f"request {message.kind} to {peer_id}: no reply within {timeout:g}s")

    async def request_stream(self, peer_id: str, message: Message, *, timeout: float = 10.0) -> AsyncIterator[bytes]:
        self._require_serving()
        target = self.network._member(peer_id)
        handler = target._handler
        assert handler is not None
        agen = handler.on_stream_request(self.peer_id, _wire(message))
        try:
            async for chunk in agen:
                yield bytes(chunk)
        except BacalhauError as e:
            if isinstance(e, TransportError):
                raise
            raise TransportError(f"{peer_id} failed to stream {message.kind}: {e.message}") from e
        except Exception as e:  # noqa: BLE001 - same error as libp2p.py reports
            log.exception("stream handler of %s failed on %s", peer_id, message.kind)
            raise TransportError(f"{peer_id} failed to stream {message.kind}: internal error: {type(e).__name__}") from e
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

    async def publish(self, message: Message) -> None:
        self._require_serving()
        # Through JSON once, at the publisher (it fails there, as seal() would); the
        # members share the copy (messages are frozen): a thousand members need not
        # hold a thousand copies of each announcement.
        wired = _wire(message)
        # One latency for every member: a simulated announcement wakes them all at one
        # moment, not a thousand (trio's run loop would turn once per moment).
        delay = self.network._latency()
        if delay:
            assert self._outbox is not None
            self._outbox.send_nowait((wired, trio.current_time() + delay))
        else:
            self._deliver(wired)

    def _deliver(self, message: Message) -> None:
        for member in list(self.network._serving.values()):
            if member._inbox is None or self.network._lost(self.peer_id, member.peer_id, message):
                continue
            try:
                member._inbox.send_nowait((self.peer_id, message))
            except trio.WouldBlock:
                log.warning("gossip inbox of %s full: dropped %s", member.peer_id, message.kind)
            except trio.ClosedResourceError:
                pass


__all__ = ["Conditions", "MemoryNetwork", "MemoryTransport"]
