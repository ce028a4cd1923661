"""The in-memory transport keeps the libp2p transport's contract."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio
import trio.testing

from bacalhau_py.errors import NotFound, TransportError
from bacalhau_py.models.messages import Ack, Directory, FetchResult, JobAnnounce, NodeInfo, NodeInfoRequest, RevealRequest
from bacalhau_py.transport import MemoryNetwork, MemoryTransport
from bacalhau_py.transport.memory import Conditions


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []
        self.gossip: list[tuple[str, object]] = []
        self.gossip_arrived = trio.Event()

    async def on_request(self, sender, message):
        self.requests.append((sender, message))
        if isinstance(message, RevealRequest):
            raise NotFound(f"no execution {message.execution_id}")
        return Ack(message=f"got {message.kind}")

    async def on_gossip(self, sender, message):
        self.gossip.append((sender, message))
        self.gossip_arrived.set()

    async def on_stream_request(self, sender, message):
        if message.execution_id == "missing":
            raise NotFound("no such result")
        for i in range(3):
            yield bytes([i]) * 10


@pytest.fixture
async def trio_net(nursery):
    net = MemoryNetwork()
    nodes = {}
    for name in ("a", "b", "c"):
        t = MemoryTransport(net, name)
        h = Recorder()
        await nursery.start(t.serve, h)
        nodes[name] = (t, h)
    return net, nodes


async def test_request_round_trip(trio_net):
    _, nodes = trio_net
    (a, _), (_, hb) = nodes["a"], nodes["b"]
    reply = await a.request("b", NodeInfoRequest())
    assert reply == Ack(message="got node_info_request")
    assert hb.requests == [("a", NodeInfoRequest())]


async def test_request_to_self_is_local(trio_net):
    _, nodes = trio_net
    a, ha = nodes["a"]
    assert (await a.request("a", NodeInfoRequest())).ok
    assert ha.requests == [("a", NodeInfoRequest())]


async def test_handler_error_becomes_negative_ack(trio_net):
    _, nodes = trio_net
    a, _ = nodes["a"]
    reply = await a.request("b", RevealRequest(execution_id="e9"))
    assert reply == Ack(ok=False, message="no execution e9")


async def test_unknown_and_stopped_peers_raise(trio_net, nursery):
    net, nodes = trio_net
    a, _ = nodes["a"]
    with pytest.raises(TransportError):
        await a.request("nobody", NodeInfoRequest())
    d = MemoryTransport(net, "d")
    scope = trio.CancelScope()
    nursery.start_soon(_serve_until, d, scope)
    await trio.testing.wait_all_tasks_blocked()
    assert (await a.request("d", NodeInfoRequest())).ok
    scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    # d stopped: it left the network.
    with pytest.raises(TransportError):
        await a.request("d", NodeInfoRequest())


async def _serve_until(t, scope):
    with scope:
        await t.serve(Recorder())


async def test_gossip_reaches_every_member(trio_net):
    _, nodes = trio_net
    a, _ = nodes["a"]
    for i in range(100):
        await a.publish(JobAnnounce(job_id=str(i), requester_id="a"))
    await trio.testing.wait_all_tasks_blocked()
    for name in ("a", "b", "c"):
        got = nodes[name][1].gossip
        assert [m.job_id for _, m in got] == [str(i) for i in range(100)]
        assert {s for s, _ in got} == {"a"}


async def test_request_stream(trio_net):
    _, nodes = trio_net
    a, _ = nodes["a"]
    async with aclosing(a.request_stream("b", FetchResult(execution_id="e"))) as chunks:
        data = b"".join([c async for c in chunks])
    assert data == b"\x00" * 10 + b"\x01" * 10 + b"\x02" * 10
    with pytest.raises(TransportError, match="no such result"):
        async with aclosing(a.request_stream("b", FetchResult(execution_id="missing"))) as chunks:
            async for _ in chunks:
                pass


async def test_messages_cross_json(trio_net):
    """Messages are copies that went through JSON, not the sender's objects."""
    _, nodes = trio_net
    a, _ = nodes["a"]
    _, hb = nodes["b"]
    msg = JobAnnounce(job_id="x", requester_id="a")
    await a.request("b", msg)
    assert hb.requests[-1][1] == msg and hb.requests[-1][1] is not msg


async def test_the_same_node_info_is_one_copy_for_all_who_hear_it_directly_or_in_a_directory(trio_net):
    """A simulated thousand nodes each keep every other's info: one shared copy each, not a million."""
    _, nodes = trio_net
    (a, _), (b, _), (c, _) = nodes["a"], nodes["b"], nodes["c"]
    info = NodeInfo(peer_id="a", node_types=["compute"], labels={"zone": "x"})
    await a.request("b", info)
    await a.request("c", info)
    await b.request("c", Directory(digest="d", nodes=[info]))
    at_b = nodes["b"][1].requests[-1][1]
    at_c, listed = (message for _, message in nodes["c"][1].requests[-2:])
    assert at_b == info and at_b is not info, "through JSON, as on the wire"
    assert at_c is at_b and listed.nodes[0] is at_b

    await a.request("b", info.model_copy(update={"running": 1}))
    changed = nodes["b"][1].requests[-1][1]
    assert changed.running == 1 and changed is not at_b


async def test_connect_and_peers(trio_net):
    _, nodes = trio_net
    a, _ = nodes["a"]
    b, _ = nodes["b"]
    assert await a.connect(b.addresses[0]) == "b"
    assert a.connected_peers() == ["b", "c"]
    with pytest.raises(TransportError):
        await a.connect("/memory/zz/p2p/zz")


async def test_request_timeout():
    net = MemoryNetwork()

    class Slow(Recorder):
        async def on_request(self, sender, message):
            await trio.sleep_forever()

    async with trio.open_nursery() as n:
        a, b = MemoryTransport(net, "a"), MemoryTransport(net, "b")
        await n.start(a.serve, Recorder())
        await n.start(b.serve, Slow())
        with pytest.raises(TransportError, match="no reply"):
            await a.request("b", NodeInfoRequest(), timeout=0.05)
        n.cancel_scope.cancel()


async def _network_of(nursery, conditions, names=("a", "b", "c")):
    seen = []
    net = MemoryNetwork(conditions, tap=lambda *carried: seen.append(carried))
    nodes = {}
    for name in names:
        transport, handler = MemoryTransport(net, name), Recorder()
        await nursery.start(transport.serve, handler)
        nodes[name] = (transport, handler)
    return nodes, seen


async def test_latency_delays_each_message_and_the_tap_sees_it(nursery, autojump_clock):
    nodes, seen = await _network_of(nursery, Conditions(latency=(0.001, 0.020), seed=1))
    a, _ = nodes["a"]
    start = trio.current_time()
    await a.request("b", NodeInfoRequest())
    # Two legs of 1-20 ms each, on the mock clock.
    assert 0.002 <= trio.current_time() - start <= 0.040
    assert [(s, r, m.kind, q and q.kind) for s, r, m, q in seen] == [
        ("a", "b", "node_info_request", None),
        ("b", "a", "ack", "node_info_request"),
    ]
    start = trio.current_time()
    await a.publish(JobAnnounce(job_id="j", requester_id="a"))
    for name in ("b", "c"):
        handler = nodes[name][1]
        with trio.fail_after(1):
            await handler.gossip_arrived.wait()
        assert 0.001 <= trio.current_time() - start <= 0.020


async def test_a_lost_request_is_never_answered(nursery, autojump_clock):
    nodes, _ = await _network_of(nursery, Conditions(loss=1.0))
    a, _ = nodes["a"]
    _, hb = nodes["b"]
    with pytest.raises(TransportError, match="no reply within 3s"):
        await a.request("b", NodeInfoRequest(), timeout=3)
    assert hb.requests == []
    await a.publish(JobAnnounce(job_id="j", requester_id="a"))
    await trio.testing.wait_all_tasks_blocked()
    assert all(handler.gossip == [] for _, handler in nodes.values())


async def test_some_messages_are_lost_at_the_rate_asked(nursery, autojump_clock):
    nodes, _ = await _network_of(nursery, Conditions(loss=0.2, seed=3))
    a, _ = nodes["a"]
    lost = 0
    for _ in range(500):
        try:
            await a.request("b", NodeInfoRequest(), timeout=1)
        except TransportError:
            lost += 1
    # A request is lost when either leg is: 1 - 0.8 ** 2 = 36%.
    assert 0.28 < lost / 500 < 0.44
