"""Fixtures shared by every test folder.

- ``wasm_modules`` (session): ``dict[str, Path]`` from program name to a
  compiled WASI module, one per ``tests/assets/wasm/<name>.c`` (hello, env,
  exit_code, echo_args, cat, write_file, csv_transform, loop, alloc,
  time_random, big_output, relative, easter_main; each file's header comment says what it
  does). Built with ``clang --target=wasm32-wasi`` into
  ``.state/wasm/<hash of sources and flags>/`` so a rerun reuses them; a
  missing clang fails the tests that use it.
- ``client_dir`` (session, automatic): a fresh ``BACALHAU_DIR`` for the
  session, so the client key the API client and the CLI create on first use
  never lands in the user's ``~/.bacalhau``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WASM_SOURCES = REPO / "tests" / "assets" / "wasm"
WASM_BUILD_ROOT = REPO / ".state" / "wasm"
# Stripped: smaller modules compile faster, and tests do not need names.
CLANG_FLAGS = ["--target=wasm32-wasi", "-O2", "-Wl,--strip-all"]


def _sources_digest(sources: list[Path]) -> str:
    digest = hashlib.sha256(" ".join(CLANG_FLAGS).encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def wasm_modules() -> dict[str, Path]:
    clang = shutil.which("clang")
    if clang is None:
        # In CI a missing toolchain is a failure: `make install` provides it.
        pytest.fail("clang is not installed (make install, or apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)")
    sources = sorted(WASM_SOURCES.glob("*.c"))
    build_dir = WASM_BUILD_ROOT / _sources_digest(sources)
    modules = {source.stem: build_dir / f"{source.stem}.wasm" for source in sources}
    missing = [source for source in sources if not modules[source.stem].exists()]
    if missing:
        build_dir.mkdir(parents=True, exist_ok=True)
        # Compile in parallel, each into a temporary name renamed when done,
        # so concurrent sessions never see a half-written module.
        jobs = []
        for source in missing:
            partial = build_dir / f"{source.stem}.{os.getpid()}.tmp"
            process = subprocess.Popen(
                [clang, *CLANG_FLAGS, str(source), "-o", str(partial)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            jobs.append((source, partial, process))
        failures = []
        for source, partial, process in jobs:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                failures.append(f"{source.name}: {output.decode(errors='replace')}")
            else:
                partial.replace(modules[source.stem])
        if failures:
            pytest.fail("cannot build the wasm test programs:\n" + "\n".join(failures))
    return modules


@pytest.fixture(scope="session", autouse=True)
def client_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    before = os.environ.get("BACALHAU_DIR")
    os.environ["BACALHAU_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("BACALHAU_DIR", None)
    else:
        os.environ["BACALHAU_DIR"] = before
