"""Result pins kept for the retention, then let go and their blocks collected, on a REAL embedded kubo."""

from __future__ import annotations

import pytest
import trio

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
