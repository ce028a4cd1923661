"""The libp2p transport with REAL py-libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from bacalhau_py.errors import NotFound, TransportError
from bacalhau_py.models.messages import Ack, FetchResult, JobAnnounce, NodeInfoRequest, RevealRequest
from bacalhau_py.transport import Libp2pTransport
from bacalhau_py.transport import envelope
from bacalhau_py.transport import libp2p as libp2p_transport
from bacalhau_py.transport.libp2p import ANNOUNCE_TOPIC, REQUEST_PROTOCOL, SESSION_PROTOCOL, STREAM_PROTOCOL

FIVE_MIB = 5 * 1024 * 1024


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []
        self.gossip: list[tuple[str, object]] = []

    async def on_request(self, sender, message):
        self.requests.append((sender, message))
        if isinstance(message, RevealRequest):
            raise NotFound(f"no execution {message.execution_id}")
        return Ack(message=f"got {message.kind}")

    async def on_gossip(self, sender, message):
        self.gossip.append((sender, message))

    async def on_stream_request(self, sender, message):
        if message.execution_id == "missing":
            raise NotFound("no such result")
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(5):
            yield block


@asynccontextmanager
async def running(tmp_path: Path, *names: str):
    """Start one transport per name in a nursery; cancel them all on exit."""
    async with trio.open_nursery() as nursery:
        nodes = {}
        for name in names:
            t = Libp2pTransport(tmp_path / name)
            h = Recorder()
            await nursery.start(t.serve, h)
            nodes[name] = (t, h)
        yield nodes
        nursery.cancel_scope.cancel()


async def wait_until(predicate, timeout=20.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def all_tasks() -> set:
    tasks, todo = set(), [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


async def test_request_reply_between_two_hosts(tmp_path):
    async with running(tmp_path, "a", "b") as nodes:
        (a, _), (b, hb) = nodes["a"], nodes["b"]
        assert all(addr.endswith(f"/p2p/{a.peer_id}") for addr in a.addresses)
        assert await b.connect(a.addresses[0]) == a.peer_id
        assert a.peer_id in b.connected_peers()
        await wait_until(lambda: b.peer_id in a.connected_peers())
        # a dials back over the connection b opened.
        reply = await a.request(b.peer_id, NodeInfoRequest())
        assert reply == Ack(message="got node_info_request")
        assert hb.requests == [(a.peer_id, NodeInfoRequest())]
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            await a.request(b.peer_id, NodeInfoRequest())
            times.append(time.perf_counter() - t0)
        times.sort()
        print(f"request round trip: median {times[10] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
        # A handler's BacalhauError becomes a negative ack, not a dead stream.
        assert await a.request(b.peer_id, RevealRequest(execution_id="e1")) == Ack(
            ok=False, message="no execution e1"
        )


async def test_requests_to_a_peer_reuse_one_stream_and_replace_one_it_closed(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="bacalhau_py.transport")
    async with running(tmp_path, "a", "b") as nodes:
        (a, _), (b, hb) = nodes["a"], nodes["b"]
        await a.connect(b.addresses[0])
        for _ in range(10):
            assert (await a.request(b.peer_id, NodeInfoRequest())).ok
        kept = a._idle_streams[b.peer_id]
        assert len(kept) == 1, "ten requests one after another: one stream, kept for the next"
        assert kept[0][0].get_protocol() == SESSION_PROTOCOL

        # The responder gives up on an idle kept stream (here after 0.2 s):
        # the requester's next request finds it closed and goes on at once on
        # a new one.
        monkeypatch.setattr(libp2p_transport, "SESSION_IDLE_TIMEOUT", 0.2)
        assert (await a.request(b.peer_id, NodeInfoRequest())).ok  # a session that times out soon
        stream = a._idle_streams[b.peer_id][0][0]
        with trio.fail_after(5):
            while not (stream.muxed_stream.recv_closed or stream.muxed_stream.reset_received):
                await trio.sleep(0.01)
        assert (await a.request(b.peer_id, NodeInfoRequest())).ok
        assert a._idle_streams[b.peer_id][0][0] is not stream
        assert len(hb.requests) == 12
        assert [r.getMessage() for r in caplog.records] == [], "the end of a kept stream is not news"


async def test_request_to_self_is_in_process(tmp_path):
    async with running(tmp_path, "a") as nodes:
        a, ha = nodes["a"]
        assert (await a.request(a.peer_id, NodeInfoRequest())).ok
        assert ha.requests == [(a.peer_id, NodeInfoRequest())]
        async with aclosing(a.request_stream(a.peer_id, FetchResult(execution_id="e"))) as chunks:
            assert sum([len(c) async for c in chunks]) == FIVE_MIB


async def test_request_stream_of_5_mib(tmp_path):
    async with running(tmp_path, "a", "b") as nodes:
        (a, _), (b, _) = nodes["a"], nodes["b"]
        await a.connect(b.addresses[0])
        t0 = time.perf_counter()
        data = bytearray()
        async with aclosing(a.request_stream(b.peer_id, FetchResult(execution_id="e"))) as chunks:
            async for chunk in chunks:
                data += chunk
        print(f"5 MiB stream: {(time.perf_counter() - t0) * 1000:.0f} ms")
        assert data == (bytes(range(256)) * 4096) * 5
        with pytest.raises(TransportError, match="no such result"):
            async with aclosing(a.request_stream(b.peer_id, FetchResult(execution_id="missing"))) as chunks:
                async for _ in chunks:
                    pass
        # The host still serves after an error frame.
        assert (await a.request(b.peer_id, NodeInfoRequest())).ok


async def test_gossip_reaches_two_peers_and_a_burst_of_100_all_arrives(tmp_path):
    async with running(tmp_path, "a", "b", "c") as nodes:
        (a, ha), (b, hb), (c, hc) = nodes["a"], nodes["b"], nodes["c"]
        await b.connect(a.addresses[0])
        await c.connect(a.addresses[0])
        # Publish right after connect, long before the first mesh heartbeat:
        # connect() waits for the (fast) subscription exchange.
        t0 = time.perf_counter()
        await a.publish(JobAnnounce(job_id="first", requester_id=a.peer_id))
        await wait_until(lambda: hb.gossip and hc.gossip)
        print(f"gossip to 2 peers: {(time.perf_counter() - t0) * 1000:.1f} ms")
        assert hb.gossip == hc.gossip == [(a.peer_id, JobAnnounce(job_id="first", requester_id=a.peer_id))]
        assert ha.gossip == hb.gossip  # the publisher hears itself, once
        t0 = time.perf_counter()
        for i in range(100):
            await a.publish(JobAnnounce(job_id=str(i), requester_id=a.peer_id))
        await wait_until(lambda: len(hb.gossip) == len(hc.gossip) == 101, timeout=60)
        print(f"burst of 100 delivered to 2 peers in {(time.perf_counter() - t0) * 1000:.0f} ms")
        for h in (ha, hb, hc):
            assert [m.job_id for _, m in h.gossip[1:]] == [str(i) for i in range(100)]


async def test_forged_and_garbage_envelopes_are_dropped_and_the_host_keeps_serving(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bacalhau_py.transport")
    async with running(tmp_path, "a", "b") as nodes:
        (a, ha), (b, _) = nodes["a"], nodes["b"]
        await b.connect(a.addresses[0])
        raw_host = b._host
        from libp2p.peer.id import ID

        other = create_new_key_pair()
        ok_from_other = envelope.seal(NodeInfoRequest(), other)
        claims_b = json.loads(ok_from_other)
        claims_b["sender"] = b.peer_id  # signed by `other`, claims to be b
        resigned = dict(claims_b)  # signed by `other` over b's ID: pubkey does not derive b
        resigned["sig"] = base64.b64encode(
            other.private_key.sign(envelope._signing_bytes(1, resigned["kind"], b.peer_id, resigned["payload"]))
        ).decode()
        attacks = {
            "garbage": b"\x00\x00\x00\x05hello",
            "huge length": (envelope.MAX_FRAME_SIZE + 1).to_bytes(4, "big"),
            "claims another sender": envelope.encode_frame(json.dumps(claims_b).encode()),
            "pubkey does not derive sender": envelope.encode_frame(json.dumps(resigned).encode()),
            "valid envelope replayed by another peer": envelope.encode_frame(ok_from_other),
        }
        for protocol in (REQUEST_PROTOCOL, SESSION_PROTOCOL, STREAM_PROTOCOL):
            for name, frame in attacks.items():
                stream = await raw_host.new_stream(ID.from_base58(a.peer_id), [protocol])
                await stream.write(frame)
                with trio.fail_after(5):
                    try:
                        answer = await stream.read(100)
                    except Exception:  # reset by the host: what we expect
                        answer = b""
                assert answer == b"", name
                await stream.close()
                assert (await b.request(a.peer_id, NodeInfoRequest(), timeout=5)).ok, name
        # Nothing invalid reached the handler; each drop was logged in one line.
        assert ha.requests == [(b.peer_id, NodeInfoRequest())] * 15
        # Forged gossip: published through libp2p (so pubsub's own signature
        # is b's and valid) but carrying an envelope made by another key.
        await b._pubsub.publish(ANNOUNCE_TOPIC, envelope.seal(JobAnnounce(job_id="x", requester_id="x"), other))
        await wait_until(lambda: any("dropped gossip" in r.getMessage() for r in caplog.records))
        drops = [r.getMessage() for r in caplog.records if r.name == "bacalhau_py.transport"]
        assert len(drops) == 16, drops
        assert all("\n" not in d for d in drops)
        assert ha.gossip == []
        print("\n".join(drops))


async def test_stable_peer_id_across_restart(tmp_path):
    first = Libp2pTransport(tmp_path / "node")
    async with trio.open_nursery() as nursery:
        await nursery.start(first.serve, Recorder())
        addrs = first.addresses
        nursery.cancel_scope.cancel()
    second = Libp2pTransport(tmp_path / "node")
    assert second.peer_id == first.peer_id
    assert Libp2pTransport(tmp_path / "other").peer_id != first.peer_id
    async with trio.open_nursery() as nursery:
        await nursery.start(second.serve, Recorder())
        assert second.addresses[0].endswith(f"/p2p/{first.peer_id}")
        nursery.cancel_scope.cancel()
    assert addrs


async def test_cancellation_leaves_no_tasks(tmp_path):
    before = all_tasks()
    t0 = time.perf_counter()
    async with running(tmp_path, "a", "b") as nodes:
        (a, _), (b, _) = nodes["a"], nodes["b"]
        await b.connect(a.addresses[0])
        assert (await b.request(a.peer_id, NodeInfoRequest())).ok
        await b.publish(JobAnnounce(job_id="j", requester_id=b.peer_id))
        port = int(a.addresses[0].split("/tcp/")[1].split("/")[0])
        cancelled_at = time.perf_counter()
    assert time.perf_counter() - cancelled_at < 5.0
    assert all_tasks() == before
    with pytest.raises(OSError):  # the listener is really closed
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert a.addresses == [] and a.connected_peers() == []
    with pytest.raises(TransportError):
        await a.request(b.peer_id, NodeInfoRequest())
    assert time.perf_counter() - t0 < 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_request_retries_until_the_peer_comes_up(tmp_path):
    port = free_port()
    late = Libp2pTransport(tmp_path / "late", listen_port=port)
    late_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{late.peer_id}"
    async with running(tmp_path, "a") as nodes:
        a, _ = nodes["a"]
        with pytest.raises(TransportError):
            await a.connect(late_addr)  # not up yet; the address is remembered
        async with trio.open_nursery() as nursery:

            async def start_late():
                await trio.sleep(0.8)
                await nursery.start(late.serve, Recorder())

            nursery.start_soon(start_late)
            t0 = time.perf_counter()
            reply = await a.request(late.peer_id, NodeInfoRequest(), timeout=10)
            assert reply.ok and time.perf_counter() - t0 >= 0.7
            nursery.cancel_scope.cancel()
        # A peer that never comes up fails within the timeout.
        t0 = time.perf_counter()
        with pytest.raises(TransportError):
            await a.request(late.peer_id, NodeInfoRequest(), timeout=1.5)
        assert time.perf_counter() - t0 < 6


async def test_bootstrap_connects_at_start(tmp_path):
    async with running(tmp_path, "a") as nodes:
        a, _ = nodes["a"]
        b = Libp2pTransport(tmp_path / "b", bootstrap=[a.addresses[0]])
        async with trio.open_nursery() as nursery:
            await nursery.start(b.serve, Recorder())
            await wait_until(lambda: a.peer_id in b.connected_peers())
            nursery.cancel_scope.cancel()


async def test_a_node_listening_everywhere_advertises_dialable_addresses(tmp_path):
    everywhere = Libp2pTransport(tmp_path / "vm", host="0.0.0.0")
    async with trio.open_nursery() as nursery:
        await nursery.start(everywhere.serve, Recorder())
        assert everywhere.addresses and not any("/0.0.0.0/" in a for a in everywhere.addresses)
        loopback = next(a for a in everywhere.addresses if a.startswith("/ip4/127.0.0.1/"))
        async with running(tmp_path, "client") as nodes:
            client, _ = nodes["client"]
            assert await client.connect(loopback) == everywhere.peer_id
            assert (await client.request(everywhere.peer_id, NodeInfoRequest(), timeout=10)).ok
            nursery.cancel_scope.cancel()
