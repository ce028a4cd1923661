"""`ipfs.cid` offline: known kubo CIDs, exact block bytes, CIDv1, murmur3, errors.

The comparison with the real kubo is tests/integration/test_cid_offline.py.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import aleph_cid
import pytest

from bacalhau_py.errors import StorageError
from bacalhau_py.ipfs import cid
from bacalhau_py.ipfs.cid import CHUNK_SIZE, bytes_cid, local_cid, matches, path_cid

HELLO = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # kubo: b"hello world\n"
EMPTY_FILE = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
EMPTY_DIR = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def cidv0(block: bytes) -> str:
    return cid._base58btc(b"\x12\x20" + hashlib.sha256(block).digest())


async def test_known_kubo_cids(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello world\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    assert await local_cid(tmp_path / "hello") == HELLO
    assert await local_cid(tmp_path / "empty") == EMPTY_FILE
    assert await local_cid(tmp_path / "dir") == EMPTY_DIR
    assert await matches(tmp_path / "hello", HELLO)
    assert not await matches(tmp_path / "hello", EMPTY_FILE)
    assert bytes_cid(b"hello world\n") == HELLO
    assert bytes_cid(b"") == EMPTY_FILE


def test_block_bytes_are_kubos():
    # leaf: Data{Type=File, Data, filesize}; empty file: no Data field
    assert cidv0(bytes.fromhex("0a12080212" "0c") + b"hello world\n" + bytes.fromhex("180c")) == HELLO
    assert cidv0(bytes.fromhex("0a0408021800")) == EMPTY_FILE
    assert cidv0(bytes.fromhex("0a020801")) == EMPTY_DIR
    # a folder holding the empty folder "e": Links (Hash, Name, Tsize=4) before Data
    link = b"\x0a\x22\x12\x20" + hashlib.sha256(bytes.fromhex("0a020801")).digest() + b"\x12\x01e\x18\x04"
    block = b"\x12" + bytes([len(link)]) + link + bytes.fromhex("0a020801")
    assert cid._dag_pb(cid._Flavour(0), [(b"e", cid._Flavour(0).cid(0x70, bytes.fromhex("0a020801")), 4)],
                       cid._unixfs(cid._DIRECTORY)).cid == b"\x12\x20" + hashlib.sha256(block).digest()
    # a symlink: Data{Type=Symlink, Data=target}, no filesize
    assert cid._unixfs(cid._SYMLINK, data=b"t") == bytes.fromhex("08041201") + b"t"
    # an inner file node: blocksizes repeated, not packed
    assert cid._unixfs(cid._FILE, filesize=3, blocksizes=[1, 2]) == bytes.fromhex("0802180320012002")


def test_files_agree_with_aleph_cid_at_chunk_boundaries():
    for size in (1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7):
        data = os.urandom(size)
        assert bytes_cid(data) == aleph_cid.compute_cid(data), size


def test_balanced_layout_past_174_leaves_without_reading_real_data():
    # 175 chunks need a second level of the balanced DAG. Zero chunks are
    # cheap, and aleph-cid (which matches kubo on files) is the reference.
    for chunks in (174, 175):
        data = bytes(chunks * CHUNK_SIZE)
        hasher = aleph_cid.CidHasher.for_ipfs()
        hasher.update(data)
        assert bytes_cid(data) == hasher.finalize(), chunks


def test_short_reads_are_filled_to_whole_chunks():
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.data.read(min(n, 1000))

    data = os.urandom(CHUNK_SIZE + 5000)
    flavour = cid._Flavour(0)
    assert flavour.text(cid._file(flavour, Trickle(data)).cid) == bytes_cid(data)


def test_cidv1_follows_the_expected_cid_and_agrees_with_aleph_cid(tmp_path):
    for size in (0, 12, CHUNK_SIZE, CHUNK_SIZE + 1):
        data = os.urandom(size)
        hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
        hasher.update(data)
        expected = hasher.finalize()
        assert bytes_cid(data, like=expected) == expected, size
    folder = tmp_path / "v1"
    (folder / "sub").mkdir(parents=True)
    (folder / "a").write_bytes(b"a")
    (folder / "sub" / "big").write_bytes(os.urandom(600_000))
    expected = aleph_cid.hash_folder(folder, cid_version=1)
    assert expected.startswith("bafy")
    assert path_cid(folder, like=expected) == expected
    assert path_cid(folder, like="z" + "x" * 10).startswith("zdj7")  # base58btc CIDv1


def test_murmur3_64_is_the_first_half_of_murmur3_x64_128():
    import mmh3  # installed with libp2p

    for key in (b"", b"a", b"hello", b"x" * 15, b"x" * 16, b"x" * 17, b"\xff" * 40, "日本".encode()):
        assert cid._murmur3_64(key) == mmh3.hash64(key, signed=False)[0].to_bytes(8, "big"), key


async def test_missing_and_special_paths_are_storage_errors(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        await local_cid(tmp_path / "nope")
    fifo = tmp_path / "folder" / "fifo"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="neither a file"):
        await local_cid(fifo.parent)


async def test_a_dangling_symlink_is_hashed_not_followed(tmp_path):
    (tmp_path / "link").symlink_to("nowhere")
    block = b"\x0a\x0b" + bytes.fromhex("08041207") + b"nowhere"
    assert await local_cid(tmp_path / "link") == cidv0(block)


def test_base58btc():
    assert cid._base58btc(b"\0\0\x01") == "112"
    assert cid._base58btc(b"hello world") == "StV1DL6CwTryKyV"
