"""Unpacking tar archives that arrive over a connection, safely, on every Python 3.11.

tarfile's "data" filter (Python 3.11.4 and later) refuses absolute names,
`..`, links that leave the destination and device files, and drops setuid
bits and owners. Debian 12's python3 is 3.11.2 (the node image uses it), so
without the filter the same checks are made here. Imports nothing heavy: the
CLI uses it.

One difference from the filter: a symlink that points outside the destination
(a job's `ln -s /etc/passwd /outputs/x`) is made as it is, a link, because it
is part of the result and of its CID. It is safe because nothing is ever
written through it: every member's path is resolved (symlinks included)
and must stay inside the destination.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeMember(tarfile.TarError):
    """An archive member that would land outside the destination, or is a device."""


def extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, *, set_attrs: bool = True) -> None:
    if member.issym() and _leaves(member, dest):
        _outward_symlink(member, dest)
        return
    if HAS_DATA_FILTER:
        archive.extract(member, path=dest, filter="data", set_attrs=set_attrs)
        return
    archive.extract(_checked(member, dest), path=dest, set_attrs=set_attrs)


def extract_all(archive: tarfile.TarFile, dest: Path) -> None:
    """Every member of `archive` (stream mode is fine: one pass, front to back) into `dest`."""
    for member in archive:
        extract_member(archive, member, dest)


def _leaves(member: tarfile.TarInfo, dest: Path) -> bool:
    """Whether a symlink member points outside `dest` (absolute, or up past it)."""
    root = os.path.realpath(dest)
    where = os.path.join(root, os.path.dirname(member.name), member.linkname)
    return os.path.isabs(member.linkname) or os.path.commonpath([root, os.path.normpath(where)]) != root


def _outward_symlink(member: tarfile.TarInfo, dest: Path) -> None:
    root = os.path.realpath(dest)
    name = member.name
    if os.path.isabs(name) or ".." in name.split("/"):
        raise UnsafeMember(f"{name!r} is outside the destination")
    path = os.path.join(root, name)
    # Its folder, resolved, must be inside: a link is never made through another link.
    if os.path.commonpath([root, os.path.realpath(os.path.dirname(path))]) != root:
        raise UnsafeMember(f"{name!r} is outside the destination")
    if os.path.lexists(path) and not os.path.isdir(path):
        os.unlink(path)
    os.symlink(member.linkname, path)


def _checked(member: tarfile.TarInfo, dest: Path) -> tarfile.TarInfo:
    """The "data" filter's checks, for Pythons that lack it."""
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    name = member.name
    if os.path.isabs(name) or ".." in name.split("/"):
        raise UnsafeMember(f"{name!r} is outside the destination")
    target = os.path.join(root, name)
    if not inside(target):
        raise UnsafeMember(f"{name!r} is outside the destination")
    if member.isdev():
        raise UnsafeMember(f"{name!r} is a device or a pipe")
    if member.issym():
        if os.path.isabs(member.linkname) or not inside(os.path.join(os.path.dirname(target), member.linkname)):
            raise UnsafeMember(f"symlink {name!r} points outside the destination")
    if member.islnk() and not inside(os.path.join(root, member.linkname)):
        raise UnsafeMember(f"hard link {name!r} points outside the destination")
    # No owners from the archive, no setuid/setgid/sticky, no group/other write.
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    if member.isfile() or member.isdir():
        member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
    return member
