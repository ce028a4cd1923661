"""The real transport: a py-libp2p (0.8.1, trio) host on TCP.

* Identity: an ed25519 key kept in `repo_dir/keys/libp2p.key` through
  libp2p's `FileSystemKeyStore`, so the peer ID survives restarts.  We load the
  key ourselves (rather than `new_host(keystore=...)`) because we also need the
  private key to sign envelopes.
* Direct requests, protocol `/bacalhau-py/request/1.0.0`: the requester opens
  a stream, writes one framed request envelope, the responder writes one
  framed reply envelope; that reply is the acknowledgement.  Requests are
  retried (new stream, and a fresh dial) with backoff until the deadline, so
  handlers must be idempotent: a request may arrive twice if a reply is lost.
* The same, many times over one stream, protocol `/bacalhau-py/request/1.1.0`
  (preferred; 1.0.0 still answers older nodes): after a reply the requester
  keeps the stream for its next request to that peer, and the responder
  reads the next request.  Opening a stream (yamux, then multistream-select)
  cost about 60% of a request's CPU in py-libp2p.  A kept stream is used for
  one request at a time, dropped after IDLE_STREAM_SECONDS unused (before
  the responder's own SESSION_IDLE_TIMEOUT), and one that fails is replaced
  by a new stream at once.
* Bulk replies, protocol `/bacalhau-py/stream/1.0.0`: one framed request
  envelope, then frames whose first byte says what they are: `D` data chunk,
  `E` end, `X` error (UTF-8 reason).  Chunks are not signed one by one: the
  stream runs over a Noise-authenticated connection to the peer we asked, and
  the request itself is a verified envelope.
* Gossip, GossipSub topic `bacalhau-py/announce/1`: announcements only.
  py-libp2p's defaults drop messages silently (10 msg/s per-topic spam limit,
  32-slot subscription buffer, 32-slot outbound queue per peer); we turn the
  spam limit off, enlarge the subscription buffer, and pace `publish` so the
  outbound queues never fill (see `_wait_for_outbound_room`).
* Every envelope is verified (`envelope.open_envelope`); on direct streams the
  envelope's sender must also be the connection's authenticated peer, so a
  signed envelope cannot be replayed by someone else.  Anything invalid is
  logged in one line on logger `bacalhau_py.transport`, its stream reset, and
  serving goes on.

py-libp2p types stay in this module: callers see peer-ID strings, multiaddr
strings and our message models; libp2p errors become `TransportError` in
`_libp2p_errors`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import multiaddr
import trio

# py-libp2p's yamux sends a WINDOW_UPDATE frame after every read by default
# (PY_YAMUX_RELEASE_ON_READ, read at each read): a request and its reply took 7
# frames, each encrypted, sent and parsed in Python, instead of 2-4. Off, it
# updates the window as go-yamux does (once half of it is used): a request
# costs 3.0 ms of CPU (both ends) instead of 3.9-4.4.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

import libp2p.pubsub.pubsub as _libp2p_pubsub_module
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.keystore import FileSystemKeyStore
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service.context import background_trio_service

from bacalhau_py.errors import BacalhauError, InvalidMessage, TransportError
from bacalhau_py.models.messages import MESSAGE, Ack, Message
from bacalhau_py.transport.base import MessageHandler
from bacalhau_py.transport.envelope import (
    MAX_FRAME_SIZE,
    encode_frame,
    open_envelope,
    peer_id_of,
    read_frame,
    seal,
)

log = logging.getLogger("bacalhau_py.transport")

ANNOUNCE_TOPIC = "bacalhau-py/announce/1"
REQUEST_PROTOCOL = TProtocol("/bacalhau-py/request/1.0.0")
SESSION_PROTOCOL = TProtocol("/bacalhau-py/request/1.1.0")
STREAM_PROTOCOL = TProtocol("/bacalhau-py/stream/1.0.0")
IDENTITY_NAME = "libp2p"

# Stream reply frame tags.
_DATA, _END, _ERROR = b"D", b"E", b"X"
# Chunks from the handler are re-cut to this size so every frame stays far
# below MAX_FRAME_SIZE and the reader's memory use stays bounded.
STREAM_CHUNK = 256 * 1024

# How long a responder waits for a request envelope after the stream opens:
# a peer that opens a stream and says nothing must not hold a task forever.
INBOUND_READ_TIMEOUT = 30.0
# How long a responder may take to write its reply / a chunk.
WRITE_TIMEOUT = 30.0
# Idle timeout between chunks of a bulk reply, on the reading side.
STREAM_IDLE_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
# A kept request stream unused this long is closed by its requester; the
# responder gives up on it after SESSION_IDLE_TIMEOUT, later, so a request
# never races the responder's close. Longer than the heartbeat period of
# networks of up to about 300 nodes (directory.py: 10 s x nodes / 30), so a
# pair's heartbeats reuse one stream instead of opening one each time.
IDLE_STREAM_SECONDS = 100.0
# How long a responder waits for the next request on a kept stream (one that
# has carried a valid signed request already).
SESSION_IDLE_TIMEOUT = 120.0
# Kept streams per peer: enough for the requests usually in flight to one peer.
IDLE_STREAMS_PER_PEER = 4
GOSSIP_JOIN_WAIT = 2.0
ADDRESSES_TTL = 10.0

RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 2.0

# GossipSub: announcements must not be dropped silently.
_SUBSCRIPTION_BUFFER = 4096  # libp2p's default is 32 and it drops on overflow
_OUTBOUND_HIGH_WATER = 16  # libp2p's per-peer outbound queue holds 32 and drops the rest
_GOSSIP_MAX_BYTES = 512 * 1024  # pubsub frames are capped at 1 MiB; leave room for the RPC
_GOSSIP_INBOX = 4096


@contextmanager
def _libp2p_errors(what: str) -> Iterator[None]:
    """Translate anything py-libp2p raises into `TransportError` (the one place)."""
    try:
        yield
    except BacalhauError:
        raise
    except trio.TooSlowError:
        raise TransportError(f"{what}: timed out") from None
    except Exception as e:  # noqa: BLE001 - libp2p raises many unrelated types
        # The innermost error says what happened; trio's groups only say where.
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1 and isinstance(e.exceptions[0], Exception):
            e = e.exceptions[0]
        if isinstance(e, BacalhauError):
            raise e from None
        detail = " ".join(str(e).split())[:200]
        raise TransportError(f"{what}: {type(e).__name__}: {detail}" if detail else f"{what}: {type(e).__name__}") from e


def load_or_create_identity(repo_dir: Path) -> KeyPair:
    """The node's ed25519 key pair, created on first use and kept in repo_dir."""
    store = FileSystemKeyStore(Path(repo_dir) / "keys")
    if store.has(IDENTITY_NAME):
        try:
            return store.get(IDENTITY_NAME)
        except (ValueError, OSError) as e:
            raise TransportError(f"cannot load the node identity from {store.directory}: {e}") from e
    key_pair = create_new_key_pair()
    store.put(IDENTITY_NAME, key_pair)  # written with mode 0600 by libp2p
    return key_pair


async def _read_exactly(stream: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise TransportError(f"stream closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _remote_peer(stream: Any) -> str:
    return stream.muxed_conn.peer_id.to_base58()


async def _quietly(action) -> None:
    """`stream.reset` or `stream.close` on a stream that may already be broken: failures don't matter then."""
    with trio.move_on_after(2) as scope:
        scope.shield = True
        try:
            await action()
        except Exception:  # noqa: BLE001
            pass


async def _with_retries(attempt_once, what: str, timeout: float):
    """Run `attempt_once` until it succeeds, with backoff, all within `timeout`.

    A peer that answered with garbage (InvalidMessage) is not asked again:
    resending the same request will not help.
    """
    deadline = trio.current_time() + timeout
    delay = RETRY_BASE_DELAY
    last: TransportError | None = None
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            break
        try:
            with trio.fail_after(remaining):
                return await attempt_once()
        except trio.TooSlowError:
            last = TransportError(f"no reply within {timeout:g}s")
            break
        except InvalidMessage:
            raise
        except TransportError as e:
            last = e
            log.debug("%s: attempt %d failed: %s", what, attempt, e)
        if attempt == RETRY_ATTEMPTS:
            break
        pause = min(delay * (1 + random.random() * 0.2), deadline - trio.current_time())
        if pause <= 0:
            break
        await trio.sleep(pause)
        delay = min(delay * 2, RETRY_MAX_DELAY)
    raise TransportError(f"{what} failed after retries: {last}")


def _interface_ipv4s() -> list[str]:
    """This machine's IPv4 addresses, non-loopback first (others dial those)."""
    import socket

    import psutil

    ips = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET
    ]
    return sorted(set(ips), key=lambda ip: (ip.startswith("127."), ip))


def _why_not_listening(address: multiaddr.Multiaddr) -> str:
    """The OS's reason a TCP listen on `address` fails (py-libp2p keeps its own to itself)."""
    import socket

    host = address.value_for_protocol("ip6" if "ip6" in {p.name for p in address.protocols()} else "ip4")
    port = int(address.value_for_protocol("tcp"))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            taken = " (is another process using it? choose another --swarm-port)" if port else ""
            return f"{error.strerror}{taken}"
    return "the libp2p listener did not start"


def _local_copy(message: Message) -> Message:
    """Round-trip through JSON + schema so in-process dispatch sees what the wire would."""
    return MESSAGE.validate_json(MESSAGE.dump_json(message))


class Libp2pTransport:
    def __init__(
        self,
        repo_dir: Path,
        listen_port: int = 0,
        bootstrap: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        # Reading one small key file at construction keeps `peer_id` available
        # before `serve`, which the node needs to wire itself up.
        self._key_pair = load_or_create_identity(Path(repo_dir))
        self.peer_id: str = peer_id_of(self._key_pair.public_key)
        self._listen_addr = multiaddr.Multiaddr(
            f"/ip6/{host}/tcp/{listen_port}" if ":" in host else f"/ip4/{host}/tcp/{listen_port}"
        )
        self._bootstrap = list(bootstrap or [])
        self._host: Any = None
        self._pubsub: Pubsub | None = None
        self._handler: MessageHandler | None = None
        self._gossip_in: trio.MemorySendChannel[tuple[str, Message]] | None = None
        # Our own address book: libp2p's peerstore forgets dialled addresses
        # after 120 s, and we want to re-dial a known peer at any time.
        self._addr_book: dict[str, list[multiaddr.Multiaddr]] = {}
        self._publish_lock = trio.Lock()
        self._addresses_cache: tuple[float, list[str]] = (0.0, [])
        # peer -> (stream, unused since) of request streams kept for reuse.
        self._idle_streams: dict[str, list[tuple[Any, float]]] = {}

    # ------------------------------------------------------------------ info

    @property
    def addresses(self) -> list[str]:
        if self._host is None:
            return []
        # Every heartbeat carries them: asked of libp2p (and the interfaces)
        # at most every ADDRESSES_TTL seconds, not per message.
        expires, addresses = self._addresses_cache
        if time.monotonic() < expires:
            return list(addresses)
        addresses = self._listen_addresses()
        self._addresses_cache = (time.monotonic() + ADDRESSES_TTL, addresses)
        return list(addresses)

    def _listen_addresses(self) -> list[str]:
        addresses = []
        for address in map(str, self._host.get_addrs()):
            if address.startswith("/ip4/0.0.0.0/"):
                # Listening on every interface: 0.0.0.0 cannot be dialled, so
                # advertise each interface's own address instead.
                rest = address.removeprefix("/ip4/0.0.0.0")
                addresses += [f"/ip4/{ip}{rest}" for ip in _interface_ipv4s()]
            else:
                addresses.append(address)
        return addresses

    def connected_peers(self) -> list[str]:
        if self._host is None:
            return []
        return sorted(p.to_base58() for p in self._host.get_connected_peers())

    def _require_host(self) -> Any:
        if self._host is None:
            raise TransportError("transport is not serving")
        return self._host

    # ----------------------------------------------------------------- serve

    async def serve(self, handler: MessageHandler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self._host is not None:
            raise TransportError(f"transport {self.peer_id} is already serving")
        host = new_host(key_pair=self._key_pair, listen_addrs=[self._listen_addr])
        router = GossipSub(
            # Not v1.2: its IDONTWANT sends one more control RPC to every mesh
            # peer for every message received (as costly as the message itself
            # in py-libp2p), and with it 20 nodes in one process lost 62% of
            # announcements against 14% without.
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            # go-libp2p's mesh degrees.  Smaller meshes (4, at most 6) lost
            # most announcements in py-libp2p: peers pruned from a full mesh
            # are not reached by its gossip repair.
            degree=6,
            degree_low=4,
            degree_high=12,
            # libp2p's default heartbeat is 120 s: a late joiner would wait
            # that long to enter the mesh (go-libp2p uses 1 s).  Gossip carries
            # only receipts (membership's heartbeats are direct), and
            # each heartbeat's mesh upkeep costs CPU on every node: at 50 nodes
            # peers pruned from full meshes re-GRAFTed every second.  Every 5 s
            # a newcomer is in a mesh within 5 s; a receipt announced before
            # that is still found by a direct ReceiptRequest.
            heartbeat_interval=5,
            # Fixed parameters: the adaptive mode raises the mesh degree and
            # the gossip factor when it judges the network unhealthy, which
            # on a busy machine adds load exactly when there is least room.
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
            # Messages held for a peer whose protocol is not yet identified
            # (default 100, older ones dropped).
            max_pending_messages_per_peer=_SUBSCRIPTION_BUFFER,
        )
        pubsub = Pubsub(host, router, strict_signing=True)
        host.set_stream_handler(REQUEST_PROTOCOL, self._on_request_stream)
        host.set_stream_handler(SESSION_PROTOCOL, self._on_session_stream)
        host.set_stream_handler(STREAM_PROTOCOL, self._on_stream_stream)
        gossip_send, gossip_recv = trio.open_memory_channel[tuple[str, Message]](_GOSSIP_INBOX)
        try:
            with _libp2p_errors(f"libp2p host on {self._listen_addr}"):
                async with host.run([self._listen_addr]):
                    if not host.get_addrs():
                        # py-libp2p logs a failed listen at debug level and runs on
                        # without a listener: a node nobody can dial. Say why instead.
                        raise TransportError(f"cannot listen on {self._listen_addr}: {_why_not_listening(self._listen_addr)}")
                    try:
                        async with background_trio_service(router), background_trio_service(pubsub):
                            with trio.fail_after(10):
                                await pubsub.wait_until_ready()
                            subscription = await self._subscribe(pubsub)
                            async with trio.open_nursery() as nursery:
                                self._host, self._pubsub, self._handler = host, pubsub, handler
                                self._gossip_in = gossip_send
                                nursery.start_soon(self._read_gossip, subscription)
                                nursery.start_soon(self._dispatch_gossip, gossip_recv, handler)
                                for addr in self._bootstrap:
                                    nursery.start_soon(self._bootstrap_one, addr)
                                log.info(
                                    "libp2p transport %s listening on %s", self.peer_id, ", ".join(self.addresses)
                                )
                                task_status.started()
                                await trio.sleep_forever()
                    finally:
                        self._host = self._pubsub = self._handler = self._gossip_in = None
                        self._addresses_cache = (0.0, [])
                        self._idle_streams.clear()  # host.close() ends them
                        # host.run() only stops the swarm's service: the TCP
                        # listeners live in trio *system* tasks that only
                        # host.close() ends, so without it the port stays open
                        # after we are cancelled.  Shielded so it runs while
                        # we are being cancelled; bounded so a stuck close
                        # cannot hang the caller.
                        with trio.move_on_after(5) as scope:
                            scope.shield = True
                            try:
                                await host.close()
                            except Exception as e:  # noqa: BLE001 - must not replace Cancelled
                                log.warning("libp2p host close failed: %s", _reason(e))
                        if scope.cancelled_caught:
                            log.warning("libp2p host did not close within 5 s")
        finally:
            self._host = self._pubsub = self._handler = self._gossip_in = None
            self._addresses_cache = (0.0, [])

    async def _subscribe(self, pubsub: Pubsub) -> Any:
        # libp2p sizes the subscription channel from this module constant at
        # subscribe time and drops messages when it is full; 32 is too small
        # for a burst of announcements.
        _libp2p_pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = max(
            _libp2p_pubsub_module.SUBSCRIPTION_CHANNEL_SIZE, _SUBSCRIPTION_BUFFER
        )
        return await pubsub.subscribe(ANNOUNCE_TOPIC)

    async def _bootstrap_one(self, addr: str) -> None:
        delay = RETRY_BASE_DELAY
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                peer = await self.connect(addr)
                log.info("bootstrap: connected to %s", peer)
                return
            except TransportError as e:
                log.warning("bootstrap %s attempt %d/%d: %s", addr, attempt, RETRY_ATTEMPTS, e)
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)

    # --------------------------------------------------------------- connect

    async def connect(self, multiaddr_str: str) -> str:
        host = self._require_host()
        try:
            maddr = multiaddr.Multiaddr(multiaddr_str)
            info = info_from_p2p_addr(maddr)
        except Exception as e:  # noqa: BLE001 - multiaddr raises assorted types
            raise TransportError(f"bad peer address {multiaddr_str!r}: {e}") from None
        peer = info.peer_id.to_base58()
        if peer == self.peer_id:
            return peer
        # Remember it before dialling: a peer that is not up yet can still be
        # reached by a later request's retries.
        book = self._addr_book.setdefault(peer, [])
        for a in info.addrs:
            if a not in book:
                book.append(a)
        await self._dial(host, peer, CONNECT_TIMEOUT)
        await self._wait_for_gossip_peer(peer)
        return peer

    async def _wait_for_gossip_peer(self, peer: str) -> None:
        # The subscription exchange follows the connection by a few ms; an
        # announcement published in between would miss this peer.  Waiting
        # here (measured: < 1 ms after the dial) makes "connect, then
        # announce" work.  Bounded and silent: a peer without our topic is
        # still a valid peer for direct requests.  Only while this node's mesh
        # is empty: past its first peer an announcement reaches the network
        # anyway, and most peers of a big network never join this node's mesh
        # (degree 6-12), so each dial would wait the whole GOSSIP_JOIN_WAIT.
        pubsub = self._pubsub
        if pubsub is None or pubsub.router.mesh.get(ANNOUNCE_TOPIC):
            return
        with trio.move_on_after(GOSSIP_JOIN_WAIT):
            try:
                await pubsub.wait_for_mesh(ID.from_base58(peer), ANNOUNCE_TOPIC, timeout=GOSSIP_JOIN_WAIT)
            except Exception as e:  # noqa: BLE001 - TooSlowError or a libp2p error: not fatal
                log.debug("%s did not join %s: %s", peer, ANNOUNCE_TOPIC, _reason(e))

    async def _dial(self, host: Any, peer: str, timeout: float) -> None:
        peer_id = ID.from_base58(peer)
        if host.get_network().get_connections(peer_id):
            return
        # Our retry policy replaces libp2p's 60 s negative dial cache, which
        # would otherwise refuse to re-dial a peer that was down a moment ago.
        host.get_network().unblock_peer(peer_id)
        addrs = self._addr_book.get(peer, [])
        with _libp2p_errors(f"cannot connect to {peer}"):
            with trio.fail_after(timeout):
                if addrs:
                    await host.connect(PeerInfo(peer_id, addrs))
                else:
                    # Possibly known to libp2p's peerstore (it connected to us).
                    await host.get_network().dial_peer(peer_id)

    # -------------------------------------------------------------- requests

    async def request(self, peer_id: str, message: Message, *, timeout: float = 10.0) -> Message:
        if peer_id == self.peer_id:
            return await self._request_self(message, timeout)
        host = self._require_host()
        body = seal(message, self._key_pair)
        return await _with_retries(
            lambda: self._request_once(host, peer_id, body), f"request {message.kind} to {peer_id}", timeout
        )

    async def _request_once(self, host: Any, peer_id: str, body: bytes) -> Message:
        kept = await self._kept_stream(peer_id)
        if kept is not None:
            try:
                return await self._exchange(kept, peer_id, body)
            except TransportError as e:
                # The peer closed it meanwhile (restarted, or idle too long on its side).
                log.debug("kept stream to %s failed (%s); opening a new one", peer_id, _reason(e))
        await self._dial(host, peer_id, CONNECT_TIMEOUT)
        with _libp2p_errors(f"stream to {peer_id}"):
            stream = await host.new_stream(ID.from_base58(peer_id), [SESSION_PROTOCOL, REQUEST_PROTOCOL])
        return await self._exchange(stream, peer_id, body)

    async def _exchange(self, stream: Any, peer_id: str, body: bytes) -> Message:
        """One request and its reply on `stream`; the stream is kept for the next one if its protocol allows."""
        done = False
        try:
            with _libp2p_errors(f"request to {peer_id}"):
                await stream.write(encode_frame(body))
                reply = await read_frame(lambda n: _read_exactly(stream, n))
            sender, message = open_envelope(reply)
            if sender != peer_id:
                raise InvalidMessage(f"reply signed by {sender}, expected {peer_id}")
            done = True
            return message
        finally:
            if not done:
                await _quietly(stream.reset)  # mid-exchange: what is left on it is unknown
            elif stream.get_protocol() == SESSION_PROTOCOL:
                await self._keep(peer_id, stream)
            else:
                await _quietly(stream.close)

    async def _kept_stream(self, peer_id: str) -> Any:
        kept = self._idle_streams.get(peer_id, [])
        while kept:
            stream, since = kept.pop()
            if trio.current_time() - since < IDLE_STREAM_SECONDS:
                return stream
            await _quietly(stream.reset)  # too old to trust: its responder may be closing it
        return None

    async def _keep(self, peer_id: str, stream: Any) -> None:
        kept = self._idle_streams.setdefault(peer_id, [])
        if len(kept) >= IDLE_STREAMS_PER_PEER:
            await _quietly(stream.close)
            return
        kept.append((stream, trio.current_time()))

    async def _request_self(self, message: Message, timeout: float) -> Message:
        handler = self._handler
        if handler is None:
            raise TransportError("transport is not serving")
        with trio.move_on_after(timeout) as scope:
            return _local_copy(await _call_handler(handler, self.peer_id, _local_copy(message)))
        assert scope.cancelled_caught
        raise TransportError(f"request {message.kind} to self: no reply within {timeout:g}s")

    async def _accept(self, stream: Any, what: str, *, quiet_end: bool = False) -> tuple[str, str, Message] | None:
        """Read and verify an inbound stream's request: (remote, sender, message), or None if dropped.

        `quiet_end`: a stream that ends or stays idle before a request is
        normal (a kept stream between requests): closed without a warning.
        """
        try:
            remote = _remote_peer(stream)
        except Exception:  # noqa: BLE001 - a stream without a connection: nothing to do
            await _quietly(stream.reset)
            return None
        try:
            with trio.fail_after(SESSION_IDLE_TIMEOUT if quiet_end else INBOUND_READ_TIMEOUT):
                sender, message = await _read_request(stream, remote, ended_ok=quiet_end)
        except _StreamEnded:
            return None
        except trio.TooSlowError:
            if not quiet_end:
                log.warning("dropped %s from %s: timed out", what, remote)
            await _quietly(stream.reset)
            return None
        except TransportError as e:
            log.warning("dropped %s from %s: %s", what, remote, _reason(e))
            await _quietly(stream.reset)
            return None
        if self._handler is None:
            await _quietly(stream.reset)
            return None
        return remote, sender, message

    async def _on_request_stream(self, stream: Any) -> None:
        accepted = await self._accept(stream, "request stream")
        if accepted is not None and await self._reply(stream, *accepted):
            await _quietly(stream.close)

    async def _on_session_stream(self, stream: Any) -> None:
        accepted = await self._accept(stream, "request stream")
        while accepted is not None and await self._reply(stream, *accepted):
            # The requester closes the stream (or goes quiet) when it is done
            # with it: the end of a session, not an error.
            accepted = await self._accept(stream, "request stream", quiet_end=True)
        await _quietly(stream.close)

    async def _reply(self, stream: Any, remote: str, sender: str, message: Message) -> bool:
        """Answer one request on `stream`; False (stream reset) if the reply could not be sent."""
        handler = self._handler
        if handler is None:  # stopping
            await _quietly(stream.reset)
            return False
        reply = await _call_handler(handler, sender, message)
        try:
            with trio.fail_after(WRITE_TIMEOUT), _libp2p_errors(f"reply to {remote}"):
                await stream.write(encode_frame(seal(reply, self._key_pair)))
        except (TransportError, trio.TooSlowError) as e:
            log.warning("could not reply %s to %s: %s", reply.kind, remote, _reason(e))
            await _quietly(stream.reset)
            return False
        return True

    # ---------------------------------------------------------- bulk streams

    async def request_stream(self, peer_id: str, message: Message, *, timeout: float = 10.0) -> AsyncIterator[bytes]:
        """Iterate the bytes the peer streams back.

        An async generator: use it inside `contextlib.aclosing(...)` so the
        stream closes promptly if the caller stops early.  `timeout` bounds
        opening the stream (with retries); after that each chunk must arrive
        within STREAM_IDLE_TIMEOUT.
        """
        if peer_id == self.peer_id:
            handler = self._handler
            if handler is None:
                raise TransportError("transport is not serving")
            async for chunk in _handler_chunks(handler, self.peer_id, _local_copy(message)):
                yield chunk
            return
        host = self._require_host()
        body = seal(message, self._key_pair)
        stream = await self._open_bulk(host, peer_id, body, message.kind, timeout)
        try:
            while True:
                with trio.move_on_after(STREAM_IDLE_TIMEOUT) as scope, _libp2p_errors(f"stream from {peer_id}"):
                    frame = await read_frame(lambda n: _read_exactly(stream, n))
                if scope.cancelled_caught:
                    raise TransportError(f"stream from {peer_id}: no data for {STREAM_IDLE_TIMEOUT:g}s")
                tag, data = frame[:1], frame[1:]
                if tag == _DATA:
                    yield data
                elif tag == _END:
                    return
                elif tag == _ERROR:
                    raise TransportError(f"{peer_id} failed to stream {message.kind}: {data.decode('utf-8', 'replace')}")
                else:
                    raise InvalidMessage(f"stream from {peer_id}: unknown frame tag {tag!r}")
        finally:
            await _quietly(stream.close)

    async def _open_bulk(self, host: Any, peer_id: str, body: bytes, kind: str, timeout: float) -> Any:
        # Retry only the opening: once chunks flow, a failure is reported,
        # because replaying half a byte stream is the caller's decision.
        async def open_once() -> Any:
            await self._dial(host, peer_id, CONNECT_TIMEOUT)
            with _libp2p_errors(f"stream to {peer_id}"):
                stream = await host.new_stream(ID.from_base58(peer_id), [STREAM_PROTOCOL])
            try:
                with _libp2p_errors(f"stream request to {peer_id}"):
                    await stream.write(encode_frame(body))
            except BaseException:
                await _quietly(stream.reset)
                raise
            return stream

        return await _with_retries(open_once, f"stream request {kind} to {peer_id}", timeout)

    async def _on_stream_stream(self, stream: Any) -> None:
        handler = self._handler
        accepted = await self._accept(stream, "stream request")
        if accepted is None:
            return
        remote, sender, message = accepted

        async def send(frame: bytes) -> None:
            with trio.fail_after(WRITE_TIMEOUT), _libp2p_errors(f"stream to {remote}"):
                await stream.write(encode_frame(frame))

        try:
            try:
                async for chunk in _handler_chunks(handler, sender, message):
                    await send(_DATA + chunk)
            except TransportError:
                raise  # the stream itself broke: nothing more can be sent
            except BacalhauError as e:
                await send(_ERROR + e.message.encode("utf-8")[:4096])
                await _quietly(stream.close)
                return
            except Exception as e:  # noqa: BLE001 - a handler bug must not kill the host
                log.exception("stream handler for %s from %s failed", message.kind, sender)
                await send(_ERROR + f"internal error: {type(e).__name__}".encode())
                await _quietly(stream.close)
                return
            await send(_END)
        except (TransportError, trio.TooSlowError) as e:
            log.warning("stream %s to %s aborted: %s", message.kind, remote, _reason(e))
            await _quietly(stream.reset)
            return
        await _quietly(stream.close)

    # ---------------------------------------------------------------- gossip

    async def publish(self, message: Message) -> None:
        self._require_host()
        pubsub, inbox = self._pubsub, self._gossip_in
        assert pubsub is not None and inbox is not None
        body = seal(message, self._key_pair)
        if len(body) > _GOSSIP_MAX_BYTES:
            raise TransportError(f"announcement of {len(body)} bytes is too large for gossip")
        async with self._publish_lock:
            await self._wait_for_outbound_room(pubsub)
            with _libp2p_errors("publish"):
                await pubsub.publish(ANNOUNCE_TOPIC, body)
        # The node's own roles hear its own announcements too (a node that is
        # both requester and compute must see its own jobs); libp2p's own
        # loop-back is ignored in `_read_gossip` so this is the only copy.
        try:
            inbox.send_nowait((self.peer_id, _local_copy(message)))
        except trio.WouldBlock:
            log.warning("gossip inbox full: own %s not delivered locally", message.kind)

    async def _wait_for_outbound_room(self, pubsub: Pubsub) -> None:
        # libp2p's per-peer outbound queue (32 RPCs) rejects pushes when full
        # and only logs at debug level.  Waiting until every queue is below a
        # high-water mark turns a silent drop into back-pressure.  Bounded: a
        # peer whose queue never drains (dead connection) delays us at most 2 s.
        with trio.move_on_after(2):
            while any(len(q) >= _OUTBOUND_HIGH_WATER for q in list(pubsub.peer_queues.values())):
                await trio.sleep(0.002)

    async def _read_gossip(self, subscription: Any) -> None:
        inbox = self._gossip_in
        assert inbox is not None
        while True:
            with _libp2p_errors("gossip subscription"):
                msg = await subscription.get()
            try:
                origin = ID(msg.from_id).to_base58()
            except Exception:  # noqa: BLE001
                origin = "?"
            if origin == self.peer_id:
                continue  # delivered locally by publish()
            try:
                sender, message = open_envelope(msg.data)
                if sender != origin:
                    raise InvalidMessage(f"envelope from {sender} published by {origin}")
            except InvalidMessage as e:
                log.warning("dropped gossip from %s: %s", origin, e)
                continue
            try:
                inbox.send_nowait((sender, message))
            except trio.WouldBlock:
                log.warning("gossip inbox full: dropped %s from %s", message.kind, sender)

    async def _dispatch_gossip(self, inbox: trio.MemoryReceiveChannel[tuple[str, Message]], handler: MessageHandler) -> None:
        # Handlers run here, one at a time, so a slow handler delays later
        # announcements instead of making libp2p drop them.
        async for sender, message in inbox:
            try:
                await handler.on_gossip(sender, message)
            except Exception:  # noqa: BLE001 - one bad announcement must not stop gossip
                log.exception("gossip handler failed on %s from %s", message.kind, sender)


# ---------------------------------------------------------------- helpers


class _StreamEnded(Exception):
    """The stream ended cleanly where a new request could have started."""


async def _read_request(stream: Any, remote: str, *, ended_ok: bool = False) -> tuple[str, Message]:
    first = b""
    if ended_ok:
        try:
            first = await stream.read(1)
        except Exception:  # noqa: BLE001 - closed or reset by the requester: the session is over
            first = b""
        if not first:
            raise _StreamEnded

    async def read(n: int) -> bytes:
        nonlocal first
        head, first = first[:n], first[n:]
        return head + (await _read_exactly(stream, n - len(head)) if n > len(head) else b"")

    with _libp2p_errors(f"read from {remote}"):
        frame = await read_frame(read, MAX_FRAME_SIZE)
    sender, message = open_envelope(frame)
    if sender != remote:
        raise InvalidMessage(f"envelope signed by {sender} arrived over a connection from {remote}")
    return sender, message


async def _call_handler(handler: MessageHandler, sender: str, message: Message) -> Message:
    """Run `on_request`; a handler that raises still gets the requester an answer."""
    try:
        return await handler.on_request(sender, message)
    except BacalhauError as e:
        return Ack(ok=False, message=e.message)
    except Exception as e:  # noqa: BLE001 - a handler bug must not kill the host
        log.exception("request handler failed on %s from %s", message.kind, sender)
        return Ack(ok=False, message=f"internal error: {type(e).__name__}")


async def _handler_chunks(handler: MessageHandler, sender: str, message: Message) -> AsyncIterator[bytes]:
    """The handler's byte stream, re-cut into chunks of at most STREAM_CHUNK."""
    agen = handler.on_stream_request(sender, message)
    try:
        async for chunk in agen:
            view = memoryview(chunk)
            for start in range(0, len(view), STREAM_CHUNK):
                yield bytes(view[start : start + STREAM_CHUNK])
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()


def _reason(e: BaseException) -> str:
    if isinstance(e, trio.TooSlowError):
        return "timed out"
    return " ".join(str(e).split())[:300]


__all__ = [
    "ANNOUNCE_TOPIC",
    "REQUEST_PROTOCOL",
    "SESSION_PROTOCOL",
    "STREAM_PROTOCOL",
    "Libp2pTransport",
    "load_or_create_identity",
]
