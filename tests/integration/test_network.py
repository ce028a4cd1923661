"""The network, against a REAL 3-node devstack.

Every node is its own `bacalhau serve` OS process with its own libp2p host
(loopback TCP), embedded kubo child process and HTTP API; jobs run in real
docker containers (the local `busybox` image).

One devstack serves the whole module (starting one costs seconds on two
cores): it runs in a thread of its own with its own trio loop, and tests talk
to it through the nodes' HTTP APIs (and, for the forged-message test, through
a libp2p host of their own). The tests that stop or restart a node come last,
and the last one stops the whole devstack and checks that nothing is left.

    A = node 0: --limit-total-memory 50Mb, labels zone=a (no room for a
        default job: those reserve 100 MiB)
    B = node 1: labels zone=b
    C = node 2: labels zone=c
    D = node 3: requester only
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest
import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.devstack.stack import DevNode, devstack, restart
from bacalhau_py.executor.base import CONTAINER_LABEL
from bacalhau_py.jobstore import JobStore
from bacalhau_py.models.messages import CancelExecution, NodeInfo, NodeInfoRequest
from bacalhau_py.transport import Libp2pTransport, envelope
from bacalhau_py.transport.libp2p import ANNOUNCE_TOPIC, REQUEST_PROTOCOL, STREAM_PROTOCOL

pytestmark = pytest.mark.devstack

NODE_ARGS = [
    ["--limit-total-memory", "50Mb", "--labels", "zone=a"],
    ["--labels", "zone=b"],
    ["--labels", "zone=c"],
    ["--node-type", "requester", "--labels", "zone=d"],
]
TERMINAL = {"Completed", "Failed", "Cancelled"}


# -- the shared devstack --------------------------------------------------------


class StackThread:
    """`devstack()` running in its own thread and trio loop until `stop()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[DevNode] = []
        self.processes: dict[int, psutil.Process] = {}
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="devstack", daemon=True)

    def start(self) -> "StackThread":
        self._thread.start()
        self._ready.wait(120)
        if self.error is not None:
            raise self.error
        if not self.nodes:
            raise RuntimeError("the devstack did not start within 120 s")
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            self.error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with devstack(self.root, len(NODE_ARGS), node_args=NODE_ARGS) as nodes:
            self.nodes = nodes
            self.remember_pids()
            self._ready.set()
            await self._stop.wait()

    def remember_pids(self) -> None:
        """Every process of the stack so far: node processes and their children (kubo).

        Kept as `psutil.Process` objects: they know their start time, so a pid
        that another process reuses later does not count as ours.
        """
        for node in self.nodes:
            try:
                root = psutil.Process(node.process.pid)
                for process in [root, *root.children(recursive=True)]:
                    self.processes.setdefault(process.pid, process)
            except psutil.NoSuchProcess:
                pass

    def call(self, async_fn: Callable[..., Any], *args: Any) -> Any:
        """Run `async_fn(*args)` in the devstack's own trio loop (it owns the processes)."""
        return trio.from_thread.run(async_fn, *args, trio_token=self._token)

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(90)
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    started = time.monotonic()
    running = StackThread(tmp_path_factory.mktemp("network")).start()
    print(f"devstack of {len(NODE_ARGS)} up in {time.monotonic() - started:.1f}s")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clients(stack):
    made = [APIClient(n.api_host, n.api_port) for n in stack.nodes]
    yield made
    for client in made:
        client.close()


def client_of(node: DevNode) -> APIClient:
    return APIClient(node.api_host, node.api_port)


# -- helpers ----------------------------------------------------------------------


def docker_job(command: str, **extra: Any) -> dict[str, Any]:
    return {"task": {"engine": "docker", "image": "busybox", "command": ["sh", "-c", command]}, **extra}


def wait_until_state(client: APIClient, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job = client.get_job(job_id)
    while job["state"] not in states:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job.get('message')}")
        job = client.wait(job_id, job["updated_at"], min(left, 5))
    return job


def run_job(client: APIClient, spec: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    job = client.submit(spec)
    return wait_until_state(client, job["id"], TERMINAL, timeout)


def stdout_of(client: APIClient, job_id: str) -> str:
    return b"".join(data for stream, data in client.logs(job_id) if stream == "stdout").decode()


def containers_of(execution_ids: list[str]) -> list[str]:
    """IDs of containers (running or not) labelled with any of these executions."""
    engine = docker.from_env()
    try:
        found = []
        for execution_id in execution_ids:
            # The low-level call: `containers.list` inspects each container and
            # races with its removal.
            found += [c["Id"] for c in engine.api.containers(all=True, filters={"label": f"{CONTAINER_LABEL}={execution_id}"})]
        return found
    finally:
        engine.close()


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def log_tail(node: DevNode, lines: int = 40) -> str:
    """The end of a node's log, for assertion messages."""
    return "\n".join((node.repo / "node.log").read_text(errors="replace").splitlines()[-lines:])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def running_execution(client: APIClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job's execution once its container exists."""

    def started():
        job = client.get_job(job_id)
        assert job["state"] not in TERMINAL, job
        running = [e for e in job["executions"] if e["state"] == "Running"]
        return running and containers_of([running[0]["id"]]) and running[0]

    return wait_for(started, timeout, f"job {job_id} running in a container")


# -- the tests ------------------------------------------------------------------------


def test_the_devstack_is_meshed_and_reports_labels_and_capacity(stack, clients):
    a, b, c, d = stack.nodes
    for client in clients:
        nodes = {n["peer_id"]: n for n in client.nodes()}
        assert set(nodes) == {n.peer_id for n in stack.nodes}
        assert nodes[a.peer_id]["labels"] == {"zone": "a"}
        assert nodes[c.peer_id]["labels"] == {"zone": "c"}
        assert nodes[a.peer_id]["total_memory"] == 50 << 20
        assert nodes[a.peer_id]["node_types"] == ["compute", "requester"]
        assert nodes[d.peer_id]["node_types"] == ["requester"]


def test_a_requester_only_node_sends_its_jobs_to_compute_nodes(stack, clients):
    a, b, c, d = stack.nodes
    job = run_job(clients[3], docker_job("echo from d", resources={"memory": "20Mb"}, deal={"concurrency": 3}))
    assert job["state"] == "Completed", job["message"]
    assert sorted(e["node_id"] for e in job["executions"]) == sorted([a.peer_id, b.peer_id, c.peer_id])
    # Asking it for 4 nodes fails at once, saying why.
    job = run_job(clients[3], docker_job("echo 4", resources={"memory": "20Mb"}, deal={"concurrency": 4}))
    assert job["state"] == "Failed" and "3 compute node(s)" in job["message"], job["message"]


def test_a_job_submitted_to_a_full_node_runs_on_another(stack, clients):
    a, b, c, d = stack.nodes
    job = run_job(clients[0], docker_job("echo elsewhere"))
    assert job["state"] == "Completed", job["message"]
    assert [e["node_id"] for e in job["executions"]] != [a.peer_id]
    assert job["executions"][0]["node_id"] in {b.peer_id, c.peer_id}
    assert stdout_of(clients[0], job["id"]) == "elsewhere\n"
    # A job that fits A's 50 MB may run anywhere, A included: A did not bid above
    # only because of its capacity.
    job = run_job(clients[0], docker_job("echo small", resources={"memory": "20Mb"}, selector={"zone": "a"}))
    assert job["state"] == "Completed", job["message"]
    assert job["executions"][0]["node_id"] == a.peer_id
    # A busy node: a job that can run elsewhere does; one that only it can
    # take waits, visibly queued, and runs once the node has room again.
    sleeper = clients[0].submit(docker_job("sleep 600", resources={"memory": "40Mb"}, selector={"zone": "a"}))
    running_execution(clients[0], sleeper["id"])
    own = clients[0].node_info()
    assert own["free_memory"] == 10 << 20 and own["running"] == 1, own
    job = run_job(clients[0], docker_job("echo elsewhere", resources={"memory": "20Mb"}))
    assert job["state"] == "Completed", job["message"]
    assert job["executions"][0]["node_id"] in {b.peer_id, c.peer_id}
    queued = clients[0].submit(docker_job("echo my turn", resources={"memory": "20Mb"}, selector={"zone": "a"}))
    wait_for(
        lambda: any("queued" in e["message"] and "busy" in e["message"] for e in clients[0].get_job(queued["id"])["events"]),
        10, "the job is queued, saying the node is busy",
    )
    assert clients[0].get_job(queued["id"])["state"] == "Pending"
    assert clients[0].cancel(sleeper["id"])["state"] == "Cancelled"
    job = wait_until_state(clients[0], queued["id"], TERMINAL, 20)
    assert job["state"] == "Completed", job["message"]
    assert job["executions"][0]["node_id"] == a.peer_id
    assert stdout_of(clients[0], queued["id"]) == "my turn\n"
    wait_for(lambda: clients[0].node_info()["free_memory"] == 50 << 20, 10, "A's capacity is released")


def test_concurrency_3_runs_on_3_distinct_nodes(stack, clients):
    started = time.monotonic()
    job = run_job(clients[1], docker_job("echo hi", resources={"memory": "20Mb"}, deal={"concurrency": 3}))
    assert job["state"] == "Completed", job["message"]
    nodes = [e["node_id"] for e in job["executions"]]
    assert sorted(nodes) == sorted(n.peer_id for n in stack.nodes[:3])
    assert all(e["exit_code"] == 0 and e["result_cid"] for e in job["executions"])
    print(f"concurrency 3: {time.monotonic() - started:.1f}s")
    # Concurrency 1 with three bidders: the two bids not taken are released at
    # once (a compute node holds a bid's capacity for a minute otherwise).
    for _ in range(3):
        job = run_job(clients[3], docker_job("echo one", resources={"memory": "20Mb"}, memo=False))
        assert job["state"] == "Completed", job["message"]
    for client in clients[:3]:
        wait_for(lambda: client.node_info()["free_memory"] == client.node_info()["total_memory"], 10,
                 "every compute node's capacity is free again")


def test_a_cid_added_on_b_is_mounted_by_a_job_on_c(stack, clients, tmp_path):
    a, b, c, d = stack.nodes
    data = tmp_path / "greeting.txt"
    data.write_text("hello from B's IPFS\n")
    cid = clients[1].ipfs_add(data)
    spec = docker_job(
        "cat /inputs/f; wc -c < /inputs/f",
        inputs=[{"source": "ipfs", "cid": cid, "path": "/inputs/f"}],
        selector={"zone": "c"},
    )
    job = run_job(clients[0], spec)  # submitted to A, runs on C, data from B
    assert job["state"] == "Completed", job["message"]
    assert [e["node_id"] for e in job["executions"]] == [c.peer_id]
    assert stdout_of(clients[0], job["id"]) == "hello from B's IPFS\n20\n"


def test_cancel_stops_a_container_on_a_remote_node(stack, clients):
    a, b, c, d = stack.nodes
    job = clients[0].submit(docker_job("sleep 600", selector={"zone": "c"}))
    execution = running_execution(clients[0], job["id"])
    assert execution["node_id"] == c.peer_id
    started = time.monotonic()
    cancelled = clients[0].cancel(job["id"])
    assert cancelled["state"] == "Cancelled"
    wait_for(lambda: not containers_of([execution["id"]]), 10, "the container on C is removed")
    print(f"container on C gone {time.monotonic() - started:.1f}s after cancel")
    job = clients[0].get_job(job["id"])
    assert job["state"] == "Cancelled"
    assert [e["state"] for e in job["executions"]] == ["Cancelled"]
    # C's capacity is free again: it runs the next job.
    again = run_job(clients[0], docker_job("echo after", selector={"zone": "c"}))
    assert again["state"] == "Completed", again["message"]


def test_no_bids_fails_promptly_with_a_message(stack, clients):
    started = time.monotonic()
    gpu = run_job(clients[0], docker_job("echo gpu", resources={"gpu": 1}, timeout=600), timeout=30)
    assert gpu["state"] == "Failed"
    assert "gpu" in gpu["message"].lower(), gpu["message"]
    assert gpu["executions"] == []
    nobody = run_job(clients[1], docker_job("echo x", selector={"zone": "nowhere"}, timeout=600), timeout=30)
    assert nobody["state"] == "Failed"
    assert "zone=nowhere" in nobody["message"], nobody["message"]
    wasted = time.monotonic() - started
    print(f"two no-bid jobs failed in {wasted:.1f}s: {gpu['message']!r} / {nobody['message']!r}")
    assert wasted < 20  # the job timeout is 600 s


async def test_forged_and_unsigned_messages_are_rejected_and_the_node_keeps_serving(stack, clients, tmp_path):
    a, b, c, d = stack.nodes
    swarm = a.swarm[0]
    host, port = swarm.split("/")[2], int(swarm.split("/")[4])

    # 1. Not libp2p at all: garbage on the raw TCP port.
    for garbage in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 64):
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(garbage)
            raw.settimeout(5)
            try:
                raw.recv(1024)
            except OSError:
                pass

    # 2. Real libp2p, bad envelopes: our own host (a valid peer) sends them.
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    class Quiet:
        async def on_request(self, sender, message):
            return NodeInfoRequest()

        async def on_gossip(self, sender, message):
            pass

        async def on_stream_request(self, sender, message):
            if False:
                yield b""

    attacker = Libp2pTransport(tmp_path / "attacker")
    other = create_new_key_pair()
    # Signed by another key and claiming to be node B: B's node info with
    # addresses of our choosing, and a cancel of anything B requested.
    b_info = NodeInfo(peer_id=b.peer_id, node_types=["compute"], addresses=["/ip4/127.0.0.1/tcp/9"], labels={})

    def forged(message, claim: str) -> bytes:
        sealed = json.loads(envelope.seal(message, other))
        sealed["sender"] = claim
        return envelope.encode_frame(json.dumps(sealed).encode())

    def resigned(message, claim: str) -> bytes:
        sealed = json.loads(envelope.seal(message, other))
        sealed["sender"] = claim
        sealed["sig"] = base64.b64encode(
            other.private_key.sign(envelope._signing_bytes(1, sealed["kind"], claim, sealed["payload"]))
        ).decode()
        return envelope.encode_frame(json.dumps(sealed).encode())

    unsigned = json.loads(envelope.seal(b_info, other))
    unsigned["sig"] = ""
    attacks = {
        "garbage frame": b"\x00\x00\x00\x05hello",
        "huge length": (envelope.MAX_FRAME_SIZE + 1).to_bytes(4, "big"),
        "unsigned": envelope.encode_frame(json.dumps(unsigned).encode()),
        "forged sender B": forged(b_info, b.peer_id),
        "re-signed by another key as B": resigned(b_info, b.peer_id),
        "cancel claiming B": resigned(CancelExecution(job_id="j", execution_id="e", reason="x"), b.peer_id),
        "valid envelope of another peer, replayed": envelope.encode_frame(envelope.seal(b_info, other)),
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(attacker.serve, Quiet())
        await attacker.connect(swarm)
        for protocol in (REQUEST_PROTOCOL, STREAM_PROTOCOL):
            for name, frame in attacks.items():
                stream = await attacker._host.new_stream(ID.from_base58(a.peer_id), [protocol])
                await stream.write(frame)
                with trio.fail_after(10):
                    try:
                        answer = await stream.read(100)
                    except Exception:  # noqa: BLE001 - reset by the node: what we expect
                        answer = b""
                assert answer == b"", (protocol, name, answer)
                await stream.close()
        # A well-signed message from a real peer lying about who it describes
        # is refused by the node (not by the transport).
        reply = await attacker.request(a.peer_id, b_info, timeout=10)
        assert not reply.ok and "only describe itself" in reply.message, reply
        # Gossip: B's node info signed by the attacker (valid, but not B), and
        # signed by another key inside the attacker's (valid) pubsub message.
        await attacker.publish(b_info)
        await attacker._pubsub.publish(ANNOUNCE_TOPIC, envelope.seal(b_info, other))
        with trio.fail_after(10):
            while (a.repo / "node.log").read_text().count("dropped gossip") < 2:
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()

    # A kept serving and was not fooled: B's entry is B's own.
    def b_entry():
        return next(n for n in clients[0].nodes() if n["peer_id"] == b.peer_id)

    assert all("/tcp/9/" not in addr and not addr.endswith("/tcp/9") for addr in b_entry()["addresses"])
    assert b_entry()["labels"] == {"zone": "b"}
    job = await trio.to_thread.run_sync(run_job, clients[0], docker_job("echo still serving"))
    assert job["state"] == "Completed", job["message"]
    assert a.process.returncode is None
    log = (a.repo / "node.log").read_text()
    assert log.count("dropped request stream") >= len(attacks)


def test_a_compute_node_stopped_mid_job_fails_the_remote_job_promptly(stack, clients):
    a, b, c, d = stack.nodes
    job = clients[0].submit(docker_job("sleep 600", selector={"zone": "b"}))
    execution = running_execution(clients[0], job["id"])
    assert execution["node_id"] == b.peer_id
    started = time.monotonic()
    b.process.send_signal(15)
    stack.call(b.process.wait)
    assert b.process.returncode == 0
    assert not containers_of([execution["id"]])
    # The requester hears of it at once, not after the job's 30 min timeout.
    job = wait_until_state(clients[0], job["id"], TERMINAL, timeout=15)
    print(f"remote job failed {time.monotonic() - started:.1f}s after its node got SIGTERM: {job['message']!r}")
    assert job["state"] == "Failed"
    assert job["executions"][0]["state"] == "Failed"
    assert job["message"]
    stack.call(restart, b, stack.nodes)
    stack.remember_pids()
    job = run_job(clients[0], docker_job("echo b is back", selector={"zone": "b"}))
    assert job["state"] == "Completed", job["message"]


def test_sigterm_while_running_removes_the_container_and_a_restart_keeps_identity_and_history(stack):
    a, b, c, d = stack.nodes
    client_c = client_of(c)
    try:
        # History on C as a requester: one finished job, one that runs on C itself.
        done = run_job(client_c, docker_job("echo before restart", selector={"zone": "b"}))
        assert done["state"] == "Completed", done["message"]
        sleeping = client_c.submit(docker_job("sleep 600", selector={"zone": "c"}))
        execution = running_execution(client_c, sleeping["id"])
        # And one it requested that runs on B.
        remote = client_c.submit(docker_job("sleep 600", selector={"zone": "b"}))
        remote_execution = running_execution(client_c, remote["id"])
        old_peer_id, old_process = c.peer_id, psutil.Process(c.process.pid)
        old_children = old_process.children(recursive=True)
    finally:
        client_c.close()

    # SIGTERM while the container runs: the node removes it and exits cleanly.
    started = time.monotonic()
    c.process.send_signal(15)
    stack.call(c.process.wait)
    print(f"node C stopped in {time.monotonic() - started:.1f}s (exit {c.process.returncode})")
    assert c.process.returncode == 0, log_tail(c)
    assert not containers_of([execution["id"]]), log_tail(c)
    # The container it asked B to run stops too: nobody would get its result.
    wait_for(lambda: not containers_of([remote_execution["id"]]), 10, "C's remote container on B is removed")
    assert not alive(old_process) and old_children and not any(alive(p) for p in old_children)

    # Its store is consistent: it opens, and every job reads back whole.
    db = sqlite3.connect(c.repo / "jobs.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()

    async def read_store() -> list:
        store = JobStore.open(c.repo / "jobs.sqlite")
        try:
            return [await store.get(j.id) for j in await store.list(100)]
        finally:
            store.close()

    jobs = {j.id: j for j in trio.run(read_store)}
    assert jobs[done["id"]].state.value == "Completed"
    # Jobs it was requesting failed as it stopped, saying why.
    for job_id in (sleeping["id"], remote["id"]):
        interrupted = jobs[job_id]
        assert interrupted.state.value == "Failed", (interrupted, log_tail(c))
        assert "node stopped" in interrupted.message, interrupted.message
        assert [e.state.value for e in interrupted.executions] == ["Failed"]
        assert all(e.result_cid is None for e in interrupted.executions)

    # Restart on the same repo: same peer ID, same history.
    stack.call(restart, c, stack.nodes)
    stack.remember_pids()
    client_c = client_of(c)
    try:
        assert c.peer_id == old_peer_id
        assert client_c.node_info()["peer_id"] == old_peer_id
        again = client_c.get_job(done["id"])
        assert again["state"] == "Completed"
        assert again["events"] == done["events"]
        assert again["executions"] == done["executions"]
        interrupted = client_c.get_job(sleeping["id"])
        assert interrupted["state"] == "Failed" and "node stopped" in interrupted["message"]
        assert interrupted["events"] == [e.model_dump(mode="json") for e in jobs[sleeping["id"]].events]
        # And it is a working member of the network again.
        job = run_job(client_c, docker_job("echo back", selector={"zone": "c"}))
        assert job["state"] == "Completed", job["message"]
        job = run_job(client_c, docker_job("echo via b", selector={"zone": "b"}))
        assert job["state"] == "Completed", job["message"]
    finally:
        client_c.close()


def test_devstack_shutdown_leaves_no_process_and_no_container(stack, clients):
    a, b, c, d = stack.nodes
    # Leave work in flight: a container running on B for a job requested by A.
    job = clients[0].submit(docker_job("sleep 600", selector={"zone": "b"}))
    execution = running_execution(clients[0], job["id"])
    stack.remember_pids()
    processes = list(stack.processes.values())
    assert len(processes) >= 8  # 4 nodes + 4 kubo children (+ the restarted ones)
    started = time.monotonic()
    stack.stop()
    print(f"devstack stopped in {time.monotonic() - started:.1f}s")
    left = [p for p in processes if alive(p)]
    assert left == [], [p.cmdline() for p in left]
    assert all(n.process.returncode == 0 for n in stack.nodes), [n.process.returncode for n in stack.nodes]
    assert not containers_of([execution["id"]])
