"""How a node keeps its directory of the network: joins, heartbeats and repair.

- **Join.** A node dials its bootstrap peers, exchanges `NodeInfo` with each,
  asks each for the nodes it knows (one reply) and introduces itself to them.
  Of two nodes joining through the same peer at about the same time, the
  later one to ask finds the other in the list (the peer records a node when
  it exchanges with it, before that node asks), so each pair meets once.
- **Heartbeats.** Two nodes exchange their `NodeInfo` directly once a period
  (`NodeDirectory.heartbeat_period`): the request carries one's, the reply
  the other's, so each hears the other first-hand. One node of each pair
  starts the exchange (`initiates`), so a pair costs one exchange a period,
  and each node spreads its exchanges evenly over the period.
- **Repair.** A node not heard from for 1.5 periods is exchanged with
  directly before it counts as lost. Once a period each node
  compares its directory with one other node's (a digest, then the list if
  they differ) and introduces itself to the nodes it does not count alive: a
  join that gossip lost, or the other side of a partition that healed. Lost
  nodes are still sent heartbeats for `RETRY_LOST_FOR` lost-after periods.

Why direct exchanges, not a gossiped announcement every period (as before):
GossipSub hands each message to every node about `degree` (6) times, each
copy decrypted, parsed and checked in Python, with control messages of its
own every second. An idle 20-node network spent 4.3% of a core per node on
announcements every 10 s, and 50 nodes never settled on 2 cores. A direct
exchange reaches its node once, and a pair needs one.

What a node tells about others is never taken as their sign of life: a
listed node is introduced to, and counts as alive once it answers.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Awaitable, Callable

import trio

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.errors import BacalhauError
from bacalhau_py.models.messages import Directory, DirectoryRequest, NodeInfo
from bacalhau_py.transport.base import Transport

log = logging.getLogger("bacalhau_py.membership")

# Lost nodes are still sent heartbeats for this many lost-after periods.
RETRY_LOST_FOR = 10
# Introductions after a directory reply: at most this many at once.
INTRODUCE_AT_ONCE = 8


def initiates(own: str, peer: str) -> bool:
    """Whether `own` starts the pair's heartbeat exchanges: half of its pairs, by a hash both ends agree on."""
    low, high = sorted((own, peer))
    first_starts = hashlib.sha256(f"{low} {high}".encode()).digest()[0] & 1
    return own == (low if first_starts else high)


class Membership:
    def __init__(
        self,
        transport: Transport,
        directory: NodeDirectory,
        own_info: Callable[[], NodeInfo],
        ipfs_connect: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self._transport = transport
        self._directory = directory
        self._own_info = own_info
        self._ipfs_connect = ipfs_connect

    async def join(self, addresses: tuple[str, ...]) -> None:
        """Dial each bootstrap peer, learn the nodes it knows and introduce this node to them."""

        async def join_one(address: str) -> None:
            try:
                peer_id = await self._transport.connect(address)
            except BacalhauError as error:
                log.warning("could not join peer %s: %s", address, error)
                return
            if await self._exchange(peer_id, self._directory.heartbeat_period()):
                await self._compare(peer_id, digest="")
            else:
                log.warning("could not join peer %s: it did not answer", address)

        async with trio.open_nursery() as nursery:
            for address in addresses:
                nursery.start_soon(join_one, address)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats)
            nursery.start_soon(self._probe_quiet_nodes)
            nursery.start_soon(self._repairs)
            task_status.started()

    # -- what other nodes send ----------------------------------------------------

    def directory_reply(self, request: DirectoryRequest) -> Directory:
        digest = self._directory.digest()
        nodes = [] if request.digest == digest else self._directory.all()[: Directory.MAX_NODES]
        return Directory(digest=digest, nodes=nodes)

    # -- heartbeats and repair ------------------------------------------------------

    async def _heartbeats(self) -> None:
        own = self._own_info().peer_id
        while True:
            period = self._directory.heartbeat_period()
            recent = self._directory.peers(seen_within=RETRY_LOST_FOR * self._directory.lost_after)
            # A fixed order (by peer ID): each pair's exchanges come about one period apart.
            peers = [peer_id for peer_id in recent if initiates(own, peer_id)]
            if not peers:
                await trio.sleep(period)
                continue
            async with trio.open_nursery() as nursery:
                for peer_id in peers:
                    nursery.start_soon(self._exchange, peer_id, period / 2)
                    await trio.sleep(period / len(peers))

    async def _probe_quiet_nodes(self) -> None:
        """Ask the nodes whose heartbeats stopped arriving directly, before they count as lost.

        A heartbeat can be late (its node's loop stalled) or lost, and a live
        node taken for lost has its work rescheduled. After 1.5 periods
        without news, a direct exchange settles it: a live node answers,
        a dead one does not and is lost at `lost_after` as before.
        """
        while True:
            period = self._directory.heartbeat_period()
            await trio.sleep(period / 2)
            async with trio.open_nursery() as nursery:
                for peer_id in self._directory.quiet(1.5 * period):
                    nursery.start_soon(self._exchange, peer_id, period / 2)

    async def _repairs(self) -> None:
        while True:
            await trio.sleep(self._directory.heartbeat_period())
            others = [info.peer_id for info in self._directory.all()[1:]]
            if others:
                await self._compare(random.choice(others), self._directory.digest())

    async def _compare(self, peer_id: str, digest: str) -> None:
        """Ask `peer_id` for the nodes it counts alive (unless its digest is `digest`); introduce this node to new ones."""
        period = self._directory.heartbeat_period()
        try:
            reply = await self._transport.request(peer_id, DirectoryRequest(digest=digest), timeout=period / 2)
        except BacalhauError as error:
            log.debug("no directory from %s: %s", peer_id, error)
            return
        if not isinstance(reply, Directory):
            return
        own = self._own_info().peer_id
        unknown = [i for i in reply.nodes if i.peer_id != own and self._directory.alive(i.peer_id) is None]
        if unknown:
            log.debug("%s knows %d node(s) this one does not count alive", peer_id, len(unknown))

        async def introduce() -> None:
            # A few workers, not a task per node: a newcomer to a big network
            # would otherwise hold hundreds of waiting tasks.
            while unknown:
                info = unknown.pop()
                # Skipped if it introduced itself meanwhile (it heard our join).
                if self._directory.alive(info.peer_id) is None and await self._dial(info):
                    await self._exchange(info.peer_id, period / 2)

        async with trio.open_nursery() as nursery:
            for _ in range(min(INTRODUCE_AT_ONCE, len(unknown))):
                nursery.start_soon(introduce)

    async def _exchange(self, peer_id: str, timeout: float) -> bool:
        """Send this node's NodeInfo to `peer_id` and learn its own from the reply: a heartbeat, or an introduction."""
        try:
            reply = await self._transport.request(peer_id, self._own_info(), timeout=timeout)
        except BacalhauError as error:
            log.debug("no heartbeat exchange with %s: %s", peer_id, error)
            return False
        if isinstance(reply, NodeInfo) and reply.peer_id == peer_id:
            await self.heard(reply)
            return True
        return False

    # -- the directory --------------------------------------------------------------

    async def heard(self, info: NodeInfo) -> bool:
        """Record `info`, heard first-hand (signed by its node); dial the node if it is new or moved.

        True if it was not known. A request's `NodeInfo` is answered by the caller.
        """
        if info.peer_id == self._own_info().peer_id:
            return False
        # A lookup, not a scan of `all()`: this runs for every heartbeat.
        previous = self._directory.alive(info.peer_id)
        new = self._directory.update(info)
        # A known node that restarted comes back on new ports: dial those too,
        # or requests to it keep trying its old address.
        if previous is not None and (previous.addresses, previous.ipfs_addresses) == (
            info.addresses,
            info.ipfs_addresses,
        ):
            return new
        if previous is None:
            log.info("discovered node %s (%s)", info.peer_id, ",".join(info.node_types))
        else:
            log.info("node %s is back on new addresses", info.peer_id)
        await self._dial(info)
        if self._ipfs_connect is not None:
            for address in info.ipfs_addresses:
                try:
                    await self._ipfs_connect(address)
                    break
                except BacalhauError as error:
                    log.debug("ipfs connect %s failed: %s", address, error)
        return new

    async def _dial(self, info: NodeInfo) -> bool:
        for address in info.addresses:
            try:
                await self._transport.connect(address)
                return True
            except BacalhauError:
                continue
        return False
