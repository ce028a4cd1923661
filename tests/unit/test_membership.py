"""How nodes come to know each other and stay known: joins, heartbeats, repair.

Real nodes (the simulation's, which wire `Node` as `serve` does, without IPFS
or the HTTP API) over the in-memory transport, on trio's autojump clock.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import trio

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.membership import initiates
from bacalhau_py.models.messages import NodeInfo
from bacalhau_py.node import NodeConfig
from bacalhau_py.simulation import SimulatedNode
from bacalhau_py.transport.memory import Conditions, MemoryNetwork, MemoryTransport


class Network:
    def __init__(self, tmp_path, nursery) -> None:
        self.heartbeats: Counter[str] = Counter()
        self.net = MemoryNetwork(Conditions(latency=(0.001, 0.01)), tap=self._carried)
        self.tmp_path, self.nursery = tmp_path, nursery
        self.nodes: dict[str, SimulatedNode] = {}

    def _carried(self, sender, receiver, message, answering) -> None:
        if answering is None and isinstance(message, NodeInfo):
            self.heartbeats[sender] += 1

    async def start(self, name: str, *peers: str, nursery=None) -> SimulatedNode:
        config = NodeConfig(
            repo=self.tmp_path / name, node_types=frozenset({"requester", "compute"}), engines=("noop",),
            peers=tuple(a for p in peers for a in self.nodes[p].transport.addresses),
        )
        node = await (nursery or self.nursery).start(SimulatedNode(config, transport=MemoryTransport(self.net, name)).serve)
        self.nodes[name] = node
        return node

    def known(self, name: str) -> set[str]:
        return {info.peer_id for info in self.nodes[name].directory.all()}

    def unknown(self) -> dict[str, set[str]]:
        """Per node, the nodes of the network it does not list as alive (none when all know all)."""
        everyone = set(self.nodes)
        return {name: everyone - self.known(name) for name in self.nodes if self.known(name) != everyone}


def test_one_node_of_each_pair_starts_its_exchanges_and_each_node_starts_about_half():
    peers = [f"12D3KooW{i:04d}" for i in range(60)]
    started = Counter()
    for a, b in combinations(peers, 2):
        assert initiates(a, b) != initiates(b, a), "exactly one side of a pair"
        started[a if initiates(a, b) else b] += 1
    assert all(10 <= started[p] <= 50 for p in peers), started


async def test_the_heartbeat_period_grows_past_30_nodes_and_lost_after_with_it(mock_clock):
    directory = NodeDirectory(lambda: NodeInfo(peer_id="own", node_types=["requester"]), lost_after=30)
    for i in range(29):
        directory.update(NodeInfo(peer_id=f"n{i}", node_types=["compute"]))
    assert (directory.heartbeat_period(), directory.lost_after) == (10.0, 30.0)
    for i in range(29, 59):
        directory.update(NodeInfo(peer_id=f"n{i}", node_types=["compute"]))
    assert (directory.heartbeat_period(), directory.lost_after) == (20.0, 60.0)
    # Nodes lost still count: losing nodes must not shorten the time after which others are lost.
    for i in range(30):
        directory.update(NodeInfo(peer_id=f"n{i}", node_types=["compute"]))
    mock_clock.jump(61)
    assert len(directory.liveness_changes()[0]) == 59
    assert directory.lost_after == 60.0


async def test_nodes_joining_together_through_one_peer_all_know_each_other(tmp_path, nursery, autojump_clock):
    network = Network(tmp_path, nursery)
    await network.start("boot")
    async with trio.open_nursery() as joining:
        for i in range(12):
            joining.start_soon(network.start, f"node{i:02d}", "boot")
    assert network.unknown() == {}


async def test_two_networks_joined_by_one_node_become_one_by_repair(tmp_path, nursery, autojump_clock):
    network = Network(tmp_path, nursery)
    await network.start("a0")
    await network.start("a1", "a0")
    await network.start("b0")
    await network.start("b1", "b0")
    await network.start("bridge", "a0", "b0")
    assert network.known("a1") == {"a0", "a1", "bridge"}, "a1 has not met the b side yet"
    period = network.nodes["a1"].directory.heartbeat_period()
    await trio.sleep(4 * period)
    assert network.unknown() == {}


async def test_idle_nodes_stay_known_at_one_exchange_per_pair_per_period(tmp_path, nursery, autojump_clock):
    network = Network(tmp_path, nursery)
    await network.start("boot")
    for i in range(9):
        await network.start(f"node{i}", "boot")
    await trio.sleep(15)  # joined, and past the first round
    network.heartbeats.clear()
    period = network.nodes["boot"].directory.heartbeat_period()
    for _ in range(20):
        await trio.sleep(period / 2)
        assert network.unknown() == {}, "a live node counted lost"
    pairs = 10 * 9 // 2
    assert 9 * pairs <= sum(network.heartbeats.values()) <= 11 * pairs, network.heartbeats


async def test_a_node_that_stops_is_lost_after_lost_after_and_the_others_stay(tmp_path, nursery, autojump_clock):
    network = Network(tmp_path, nursery)
    await network.start("boot")
    for i in range(4):
        await network.start(f"node{i}", "boot")
    leaver = trio.CancelScope()

    async def run_leaver(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with leaver:
            async with trio.open_nursery() as own:
                await network.start("leaver", "boot", nursery=own)
                task_status.started()

    await nursery.start(run_leaver)
    assert all("leaver" in network.known(name) for name in network.nodes)
    leaver.cancel()
    lost_after = network.nodes["boot"].directory.lost_after
    await trio.sleep(lost_after - 1)
    assert all("leaver" in network.known(name) for name in network.nodes if name != "leaver")
    await trio.sleep(2)
    others = set(network.nodes) - {"leaver"}
    for name in others:
        assert network.known(name) == others, name
