"""Who may do what, against REAL `bacalhau serve` processes (devstacks) and the CLI as users run it.

Clients are told apart by their `BACALHAU_DIR` (each holds its own key):
A and B are ordinary clients, OP is the node's operator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from bacalhau_py.auth.access import AccessControl
from bacalhau_py.auth.client_key import ClientKey
from bacalhau_py.devstack.stack import devstack, restart
from bacalhau_py.models.codec import spec_from_dict
from bacalhau_py.models.messages import AskBid, BidDecision, BidReply
from bacalhau_py.node import Node, NodeConfig
from bacalhau_py.transport import Libp2pTransport
from jobs_api import Signed

pytestmark = pytest.mark.devstack


class Clients:
    """The CLI run as one of several clients (one BACALHAU_DIR each) against one API address."""

    def __init__(self, root: Path, api_host: str, api_port: int) -> None:
        self.root = root
        self.api = (api_host, api_port)
        self.keys = {name: ClientKey.load_or_create(root / name) for name in ("a", "b", "op")}

    async def __call__(self, who: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        environment = {
            **os.environ, "BACALHAU_DIR": str(self.root / who), "BACALHAU_API_HOST": self.api[0],
            "BACALHAU_API_PORT": str(self.api[1]), **(env or {}),
        }
        with trio.fail_after(120):
            result = await trio.run_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", *args], cwd=self.root, env=environment,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        assert "Traceback" not in stderr, stderr
        return result.returncode, stdout, stderr

    async def job(self, who: str, job_id: str) -> dict:
        code, out, err = await self(who, "describe", job_id, "--output", "json")
        assert code == 0, err
        return json.loads(out)


def one_line(err: str) -> str:
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


async def test_only_a_jobs_client_or_an_operator_may_cancel_read_or_download_it(tmp_path):
    operator = ClientKey.load_or_create(tmp_path / "clients" / "op").client_id
    async with devstack(tmp_path / "stack", 1, node_args=[["--operator", operator]]) as (node,):
        clients = Clients(tmp_path / "clients", node.api_host, node.api_port)
        a_id, b_id = clients.keys["a"].client_id, clients.keys["b"].client_id
        code, out, err = await clients("a", "run", "--wait", "busybox", "echo", "from A")
        assert code == 0, err
        done = out.strip()
        code, out, err = await clients("a", "run", "busybox", "sleep", "120")
        assert code == 0, err
        running = out.strip()
        with trio.fail_after(60):
            while (await clients.job("a", running))["state"] != "Running":
                await trio.sleep(0.2)

        # B: one line, exit 1, and the jobs are untouched.
        for args in (["cancel", running], ["logs", done], ["get", done, "--output-dir", "b-results"]):
            code, out, err = await clients("b", *args)
            job_id = args[1]
            assert code == 1 and one_line(err) == f"Error: job {job_id} belongs to another client", err
        assert not (clients.root / "b-results").exists()
        assert (await clients.job("b", running))["state"] == "Running"
        described = await clients.job("b", done)
        assert described["client_id"] == a_id and described["state"] == "Completed"
        # describe shows what A signed; lists leave that copy of the spec out.
        assert json.loads(described["client_request"]["body"])["task"]["command"] == ["echo", "from A"]
        # The API says 403 to B, whatever the route.
        async with httpx.AsyncClient(base_url=f"{node.api}/api/v1", auth=Signed(clients.keys["b"])) as api:
            for method, path in (("POST", "cancel"), ("GET", "logs"), ("GET", "results")):
                response = await api.request(method, f"/jobs/{running}/{path}")
                assert response.status_code == 403, (path, response.text)

        # Each client lists its own jobs; only the operator lists them all.
        def listed(out: str) -> set[str]:
            return {job["id"] for job in json.loads(out)}

        code, out, _ = await clients("a", "list", "--output", "json")
        assert code == 0 and listed(out) == {done, running}
        assert all("client_request" not in job for job in json.loads(out))
        code, out, _ = await clients("b", "list", "--output", "json")
        assert code == 0 and listed(out) == set()
        code, _, err = await clients("b", "list", "--all")
        assert code == 1 and "operators" in one_line(err)
        code, out, _ = await clients("op", "list", "--all", "--output", "json")
        assert code == 0 and {done, running} <= listed(out)
        assert b_id not in out

        # The operator may read and stop anyone's job.
        code, out, err = await clients("op", "logs", done)
        assert code == 0 and out == "from A\n", err
        code, _, err = await clients("op", "get", done, "--output-dir", "op-results")
        assert code == 0, err
        assert (clients.root / "op-results" / "stdout").read_text() == "from A\n"
        code, _, err = await clients("op", "cancel", running)
        assert code == 0, err
        assert (await clients.job("a", running))["state"] == "Cancelled"


@asynccontextmanager
async def serving(repo: Path, *args: str):
    """One `bacalhau serve` process on free ports: yields its API port once it is ready; stops it on exit."""
    repo.mkdir(parents=True)
    command = [
        sys.executable, "-m", "bacalhau_py.cli.main", "serve", "--repo", str(repo), "--api-port", "0",
        "--swarm-port", "0", "--ipfs-swarm-port", "0", "--peer", "none", "--exit-on-stdin-eof", *args,
    ]
    with open(repo / "node.log", "wb") as log:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
    try:
        line = b""
        with trio.fail_after(90):
            while b"\n" not in line:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"serve stopped: {(repo / 'node.log').read_text()[-2000:]}"
                line += chunk
        fields = dict(part.split("=", 1) for part in line.decode().split()[1:])
        yield int(fields["api"].rsplit(":", 1)[1])
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_node_on_a_public_address_needs_api_keys(tmp_path):
    bacalhau = [sys.executable, "-m", "bacalhau_py.cli.main"]
    refused = await trio.run_process(
        [*bacalhau, "serve", "--api-host", "0.0.0.0", "--repo", str(tmp_path / "refused")],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    err = refused.stderr.decode()
    assert refused.returncode != 0 and "--api-keys" in one_line(err) and "0.0.0.0" in err

    secret = "s3cret-key-for-the-test"
    keys = tmp_path / "api-keys"
    keys.write_text(f"# one key per line\n{secret}\n")
    async with serving(tmp_path / "node", "--api-host", "0.0.0.0", "--api-keys", str(keys)) as port:
        clients = Clients(tmp_path / "clients", "127.0.0.1", port)
        address = f"http://127.0.0.1:{port}"
        for env in ({}, {"BACALHAU_API_KEY": "wrong"}):
            code, _, err = await clients("a", "list", env=env)
            assert code == 1 and address in one_line(err) and "BACALHAU_API_KEY" in err, err
        async with httpx.AsyncClient(base_url=f"{address}/api/v1", auth=Signed(clients.keys["a"])) as api:
            refused = await api.get("/jobs")
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            assert (await api.get("/jobs", headers={"Authorization": f"Bearer {secret}"})).status_code == 200
        code, out, err = await clients(
            "a", "run", "--wait", "busybox", "echo", "with a key", env={"BACALHAU_API_KEY": secret}
        )
        assert code == 0, err
        code, out, err = await clients("a", "logs", out.strip(), env={"BACALHAU_API_KEY": secret})
        assert code == 0 and out == "with a key\n", err
    assert secret not in (tmp_path / "node" / "node.log").read_text()


async def test_manual_approval_sends_no_job_to_a_node_until_an_operator_approves_it(tmp_path):
    operator = ClientKey.load_or_create(tmp_path / "clients" / "op").client_id
    node_args = [
        ["--node-type", "requester", "--node-approval", "manual", "--operator", operator],
        ["--node-type", "compute"],
    ]
    async with devstack(tmp_path / "stack", 2, node_args=node_args) as stack:
        requester, compute = stack
        clients = Clients(tmp_path / "clients", requester.api_host, requester.api_port)

        async def approval() -> str:
            code, out, err = await clients("op", "node", "list", "--output", "json")
            assert code == 0, err
            return next(n["approval"] for n in json.loads(out) if n["peer_id"] == compute.peer_id)

        async def run_echo() -> dict:
            code, out, err = await clients("a", "run", "--id-only", "busybox", "echo", "approved")
            assert code == 0, err
            job = await clients.job("a", out.strip())
            with trio.fail_after(60):
                while job["state"] not in ("Completed", "Failed", "Cancelled"):
                    await trio.sleep(0.2)
                    job = await clients.job("a", job["id"])
            return job

        assert await approval() == "pending"
        code, out, _ = await clients("op", "node", "list")
        assert "APPROVAL" in out and "pending" in out
        job = await run_echo()
        # Not one execution: the compute node was never asked to bid.
        assert job["state"] == "Failed" and job["executions"] == [], job
        assert "1 more not approved" in job["message"], job["message"]
        assert job["id"] not in (compute.repo / "node.log").read_text()

        code, _, err = await clients("a", "node", "approve", compute.peer_id)
        assert code == 1 and "operators" in one_line(err)
        code, _, err = await clients("op", "node", "approve", compute.peer_id)
        assert code == 0 and "approved" in err, err
        job = await run_echo()
        assert job["state"] == "Completed", job
        assert [e["node_id"] for e in job["executions"]] == [compute.peer_id]

        # The decision survives the requester's restart; a rejection takes it back.
        await restart(requester, stack)
        clients.api = (requester.api_host, requester.api_port)
        assert await approval() == "approved"
        code, _, err = await clients("op", "node", "reject", compute.peer_id)
        assert code == 0 and "rejected" in err, err
        job = await run_echo()
        assert job["state"] == "Failed" and job["executions"] == [], job


async def test_a_job_altered_in_transit_is_refused_by_the_compute_node(nursery, tmp_path, caplog):
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0, node_types=frozenset({"compute"})))
    await nursery.start(node.serve)
    # A requester of our own on the real libp2p transport, forwarding a job its client signed.
    requester = Libp2pTransport(tmp_path / "requester")

    class Quiet:
        async def on_request(self, sender, message):
            raise AssertionError(f"unexpected {message.kind}")

        async def on_gossip(self, sender, message):
            pass

        async def on_stream_request(self, sender, message):
            if False:
                yield b""

    await nursery.start(requester.serve, Quiet())
    await requester.connect(node.transport.addresses[0])
    client = ClientKey.load_or_create(tmp_path / "client")
    spec = {"task": {"engine": "docker", "image": "busybox", "command": ["echo", "hi"]}}
    body = json.dumps(spec).encode()
    caller = AccessControl().authenticate("POST", "/api/v1/jobs", client.headers("POST", "/api/v1/jobs", body), body)

    def ask(execution_id: str, task: dict) -> AskBid:
        return AskBid(job_id="job-1", execution_id=execution_id, spec=spec_from_dict({"task": task}),
                      client_id=client.client_id, client_request=caller.request)

    altered = ask("tampered", {**spec["task"], "command": ["sh", "-c", "cat /etc/shadow"]})
    reply = await requester.request(node.peer_id, altered, timeout=30)
    assert isinstance(reply, BidReply) and not reply.accepted
    assert "altered in transit" in reply.reason
    assert any("refused job job-1" in r.getMessage() and "altered" in r.getMessage() for r in caplog.records)

    reply = await requester.request(node.peer_id, ask("genuine", spec["task"]), timeout=30)
    assert isinstance(reply, BidReply) and reply.accepted, reply.reason
    await requester.request(node.peer_id, BidDecision(job_id="job-1", execution_id="genuine", accepted=False))
