"""Results and job records kept for the retention, then let go (blocks collected), on a REAL embedded kubo and node."""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

from bacalhau_py.devstack.stack import devstack
from bacalhau_py.errors import IPFSError
from bacalhau_py.models import JobSpec, Task
from bacalhau_py.node import Node, NodeConfig
from bacalhau_py.publisher.retention import ResultPins

IMAGE = "busybox:latest"


def blocks(embedded) -> set[str]:
    return {path.stem for path in (embedded.repo / "blocks").glob("*/*.data")}


async def test_garbage_collection_removes_only_what_no_pin_reaches(embedded, embedded_ipfs, tmp_path):
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    for folder, text in ((kept, "keep me"), (dropped, "drop me")):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "file.txt").write_text(text * 100_000)  # several blocks
    kept_cid, dropped_cid = await embedded_ipfs.add(kept), await embedded_ipfs.add(dropped)
    before = blocks(embedded)
    await embedded_ipfs.unpin(dropped_cid)

    assert await embedded_ipfs.collect_garbage() > 0
    assert blocks(embedded) < before
    got = await embedded_ipfs.get(kept_cid, tmp_path / "got", timeout=30)
    assert (got / "sub" / "file.txt").read_text() == "keep me" * 100_000
    with pytest.raises(IPFSError):
        await embedded_ipfs.get(dropped_cid, tmp_path / "gone", timeout=2)
    # The node runs on after a collection, on the same identity.
    assert (await embedded_ipfs.add(dropped)) == dropped_cid
    assert await embedded_ipfs.is_pinned(dropped_cid)


async def test_results_older_than_the_retention_are_unpinned(embedded_ipfs, tmp_path):
    (tmp_path / "result").mkdir()
    (tmp_path / "result" / "stdout").write_text("old result\n")
    cid = await embedded_ipfs.add(tmp_path / "result")
    fresh = ResultPins(embedded_ipfs, tmp_path / "pins.json", retention=3600)
    await fresh.keep(cid)
    assert await fresh.sweep() == [] and await embedded_ipfs.is_pinned(cid)
    # The record outlives the object (a node that restarts): a zero retention lets it go.
    expired = ResultPins(embedded_ipfs, tmp_path / "pins.json", retention=0)
    assert await expired.sweep() == [cid]
    assert not await embedded_ipfs.is_pinned(cid)
    assert await expired.sweep() == []


async def test_a_node_lets_its_results_go_after_the_retention(nursery, tmp_path):
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0, retention=1.0))
    await nursery.start(node.serve)
    job = await node.submit(JobSpec(task=Task(engine="docker", image=IMAGE, command=["echo", "short-lived"])))
    with trio.fail_after(60):
        while not job.state.terminal:
            job = await node.wait_for_change(job.id, job.updated_at.isoformat(), 10)
    [execution] = job.executions
    assert job.state.value == "Completed" and execution.result_cid
    # The requester's copy (`logs` reads the result through it) is dropped too.
    cached = node.result_fetcher.cache_dir / execution.id
    assert [item async for item in node.logs(job.id, follow=False)] == [("stdout", b"short-lived\n")]
    # The node's own sweeps (every half retention) unpin the result and drop the copy.
    with trio.fail_after(30):
        while await node.ipfs.is_pinned(execution.result_cid) or cached.exists():
            await trio.sleep(0.2)


async def test_local_publisher_results_stay_on_the_compute_node_until_the_retention(nursery, tmp_path):
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0))
    await nursery.start(node.serve)
    spec = JobSpec(task=Task(engine="docker", image=IMAGE, command=["echo", "kept here"]), publisher="local")
    job = await node.submit(spec)
    with trio.fail_after(60):
        while not job.state.terminal:
            job = await node.wait_for_change(job.id, job.updated_at.isoformat(), 10)
    assert job.state.value == "Completed", job.message
    [execution] = job.executions
    folder = tmp_path / "node" / "work" / "executions" / execution.id
    # Within the retention the folder stays: it is the only copy of the result.
    assert (folder / "result" / "stdout").read_text() == "kept here\n"
    node.compute.retention = 0  # as if a week had passed
    with trio.fail_after(30):
        while folder.exists():
            await trio.sleep(0.2)


async def test_a_requester_forgets_finished_jobs_after_the_retention_and_keeps_running_ones(tmp_path):
    """A REAL `serve` (devstack) with a 2 s retention, driven by the `bacalhau` CLI as users run it."""
    async with devstack(tmp_path / "stack", 1, node_args=[["--retention", "2s"]]) as (node,):
        env = {**os.environ, "BACALHAU_API_HOST": node.api_host, "BACALHAU_API_PORT": str(node.api_port)}

        async def bacalhau(*args: str) -> tuple[int, str, str]:
            with trio.fail_after(120):
                done = await trio.run_process(
                    [sys.executable, "-m", "bacalhau_py.cli.main", *args], cwd=tmp_path, env=env,
                    capture_stdout=True, capture_stderr=True, check=False,
                )
            assert "Traceback" not in done.stderr.decode()
            return done.returncode, done.stdout.decode(), done.stderr.decode()

        async def state_of(job_id: str) -> str | None:
            code, out, err = await bacalhau("describe", "--output", "json", job_id)
            if code != 0:
                assert f"job {job_id} not found" in err
                return None
            return json.loads(out)["state"]

        code, running, err = await bacalhau("run", "--id-only", IMAGE, "sleep", "600")
        assert code == 0, err
        running = running.strip()
        with trio.fail_after(60):
            while await state_of(running) != "Running":
                await trio.sleep(0.2)
        code, old, err = await bacalhau("run", "--wait", "--id-only", IMAGE, "echo", "old")
        assert code == 0, err
        old = old.strip()
        assert await state_of(old) == "Completed"

        # The node sweeps every second (a tenth of the retention, at least every second).
        with trio.fail_after(60):
            while await state_of(old) is not None:
                await trio.sleep(0.2)
        code, out, err = await bacalhau("list", "--output", "json")
        assert code == 0, err
        assert [job["id"] for job in json.loads(out)] == [running]
        assert await state_of(running) == "Running"
