"""The raw wasmtime run the wasm benchmark compares with: load, compile and run a WASI module once.

`python -m bench.raw_wasm MODULE [ARG...]` is what a user would do by hand
with the `wasmtime` package: a fresh process, the module compiled from its
bytes, stdout inherited.
"""

from __future__ import annotations

import sys


def run_module(path: str, args: list[str]) -> int:
    import wasmtime

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [path, *args]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as trap:
        return trap.code
    return 0


if __name__ == "__main__":
    sys.exit(run_module(sys.argv[1], sys.argv[2:]))
