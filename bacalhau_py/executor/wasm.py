"""The wasm executor: runs a WASI (preview 1) command module with wasmtime.

wasmtime is imported only here; its errors become `ExecutorError` where they
can arise (`_load_module`, preopens, `_instantiate`) and a program's traps
become exit codes (`_Run._call`).

What a job sees
---------------
- argv: ``[basename of spec.task.module.path, *spec.task.command]``. The name
  comes from the spec, not from the host file, so that it is the same on every
  node.
- env: exactly ``job_environment(execution)``: ``spec.task.env`` and the
  ``BACALHAU_*`` job variables (nothing is inherited from the node).
- stdout / stderr: ``result_dir/stdout`` and ``result_dir/stderr`` (written by
  wasmtime itself), each cut to `MAX_LOG_BYTES` after the run. A program whose
  output passes `MAX_OUTPUT_BYTES` in all is stopped (exit 134), so a program
  printing without end cannot fill the disk before its timeout.
- Filesystem: only the mounts. Inputs are read-only preopens, outputs writable
  preopens. WASI preopens are folders, so an input that is a single FILE is
  linked (or copied, across filesystems) into a staging folder under
  ``ctx.work_dir/wasm-stage/<execution>`` which is preopened at the file
  target's parent: ``/inputs/data.csv`` appears at exactly that path. Nested
  preopens work because wasi-libc resolves a path by its longest preopen.
- Working dir: wasi-libc's cwd always starts at ``/`` and cannot be set by the
  host. When ``spec.task.workdir`` is set, the host folder behind it (it must
  lie inside a mount) is also preopened as ``.``, which wasi-libc uses as the
  fallback for every path no other preopen claims: relative paths then resolve
  inside the workdir. ``getcwd()`` still answers ``/``.
- Imports: each of ``spec.task.imports`` is instantiated in order (with the
  same WASI, so it shares the job's files and output) and its exports are
  defined under its name; the main module, and later imports, import from it
  by that name (as Bacalhau's ImportModules: a CID, a URL or a given name).
- Entry point: ``spec.task.entry_point`` (default ``_start``). Another export
  is called with no arguments after ``_initialize`` (reactor modules), if the
  module has one; its return values are ignored.
- Exit code: ``proc_exit(n)`` -> n & 255 (wasmtime's own proc_exit refuses
  126 and above, so ours replaces it); a normal return -> 0; a wasm trap
  (``unreachable``, out-of-bounds access, stack overflow; C's ``abort()`` is
  one) -> 134, the code a native program killed by SIGABRT reports, with
  ``wasm trap: <message>`` appended to stderr and in `RunResult.message`.
- Memory: ``spec.resources.memory`` caps each linear memory (``memory.grow``
  fails, so ``malloc`` returns NULL); a module whose initial memory is already
  over the limit cannot run (`ExecutorError`). The compute node sets it for
  every job (its ``--default-job-memory`` when the job names none): the
  module runs inside the node's own process. A run that then fails (a trap,
  or a non-zero exit) with a memory grown past `OUT_OF_MEMORY_FRACTION` of
  the limit ran out of it: `ExecutorError` "killed for using more than N of
  memory", as a docker job over its limit, with its output kept. (wasmtime's
  C API can only refuse a grow, not trap on it, so the failure is what
  tells; a program that copes with a NULL from malloc and exits 0 succeeds.)
- Timeout / cancel: the runner's trio cancel scope. The module runs with
  epoch interruption in a worker thread; on cancellation a watcher bumps the
  epoch of this run's own engine (one engine per run, so other runs are not
  interrupted), the thread traps at its next loop back-edge or call, and then
  `Cancelled` propagates. A program blocked inside a host call (a long
  ``sleep``) is interrupted when that call returns.

Determinism
-----------
By default a run is a pure function of (module, argv, env, inputs, job ID)
(env includes BACALHAU_EXECUTION_ID and BACALHAU_PARTITION_INDEX, which differ
between a job's executions; a program that prints them differs too):
``clock_time_get`` returns a virtual clock (every clock starts at the fixed
instant `VIRTUAL_EPOCH_NS` (realtime) / 0 (monotonic, cpu time) and advances by
`VIRTUAL_TICK_NS` on each read, so "wait until t+1s" loops still end), and
``random_get`` returns a SHA-256 counter-mode stream seeded by the job ID.
The same job on three nodes therefore prints byte-identical output, which the
deterministic verifier relies on; different jobs get different random
streams. What still leaks from the host: file mtimes and inode numbers of
mounted inputs (as stored on the node) and directory listing order, and real
time passes during ``sleep`` (its duration is not observable through the
clock).

Compiled-module cache
---------------------
Compilation (25-75 ms for small modules, seconds for big ones) is cached in
``ctx.work_dir/wasm-cache/<sha256 of the module>-<wasmtime version>.cwasm``
via `Module.serialize` / `Module.deserialize` (0.1-1 ms). Only this
executor writes there, so deserializing (which trusts its input) is safe; an
unreadable entry is recompiled and replaced.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import outcome
import trio
import wasmtime

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import (
    MAX_LOG_BYTES,
    Mount,
    PreparedExecution,
    RunResult,
    job_environment,
    over_memory,
)

WASI = "wasi_snapshot_preview1"

# The exit code of a run that ended in a wasm trap: what a native program
# that calls abort() (SIGABRT, 128 + 6) reports.
TRAP_EXIT_CODE = 134

# A program whose stdout + stderr pass this is stopped (exit TRAP_EXIT_CODE);
# what it printed is still cut to MAX_LOG_BYTES each.
MAX_OUTPUT_BYTES = 64 * MAX_LOG_BYTES
OUTPUT_POLL_SECONDS = 0.05

# A run that fails with a memory past this share of its limit ran out of
# memory: malloc grows memory by what it needs at once (a 1 MiB block is 16
# pages or more), so a refused grow leaves it short of the limit by up to that.
OUT_OF_MEMORY_FRACTION = 7 / 8

# 2022-01-01T00:00:00Z: the virtual wall clock's start.
VIRTUAL_EPOCH_NS = 1_640_995_200 * 1_000_000_000
VIRTUAL_TICK_NS = 1_000_000  # each clock read advances the virtual clock 1 ms

# Bumped when anything changes what a cached artifact depends on (engine
# config): old entries are then simply not found.
_CACHE_FORMAT = "1"

_WASMTIME_VERSION = getattr(wasmtime, "__version__", "unknown")

_INTERRUPTED = "interrupted"

_ERRNO_SUCCESS = 0
_ERRNO_FAULT = 21
_ERRNO_INVAL = 28
_CLOCK_IDS = (0, 1, 2, 3)  # realtime, monotonic, process cpu, thread cpu


def _engine() -> wasmtime.Engine:
    """One engine per run: epoch interruption is engine-wide."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def _first_line(error: BaseException) -> str:
    """wasmtime's one-line cause: its messages start with a backtrace and end
    with "Caused by:" and the reason."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1 :]
    lines = [line for line in lines if line]
    if not lines:
        return type(error).__name__
    return ": ".join(lines).removeprefix("wasm trap: ")


class _ProcExit(Exception):
    """Unwinds the wasm stack from our proc_exit; the code is kept on the run."""


class _ExitStatus:
    """Our own `proc_exit`: wasmtime's rejects codes of 126 and above (they
    are reserved on Windows), but a job may exit with any 0-255 code like a
    container does. The code is recorded here, per run, rather than read
    back from the exception: wasmtime-py passes host exceptions through a
    process-global slot that concurrent runs in other threads could swap.
    """

    def __init__(self) -> None:
        self.code: int | None = None

    def define(self, linker: wasmtime.Linker) -> None:
        linker.allow_shadowing = True
        linker.define_func(WASI, "proc_exit", wasmtime.FuncType([wasmtime.ValType.i32()], []), self.proc_exit)

    def proc_exit(self, code: int) -> None:
        # POSIX keeps the low 8 bits of an exit status (exit(256) is 0).
        self.code = code & 0xFF
        raise _ProcExit(code)


def _cap_file(path: Path, limit: int) -> bool:
    """Cut `path` to its first `limit` bytes; True if it was longer."""
    try:
        if path.stat().st_size <= limit:
            return False
        os.truncate(path, limit)
    except FileNotFoundError:
        path.write_bytes(b"")
        return False
    return True


class _DeterministicWasi:
    """Fixed replacements for the WASI calls that read clocks and entropy."""

    def __init__(self, job_id: str) -> None:
        self._seed = hashlib.sha256(b"bacalhau-py random_get\0" + job_id.encode()).digest()
        self._counter = 0
        self._pool = b""
        self._ticks = 0

    def define(self, linker: wasmtime.Linker) -> None:
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        linker.allow_shadowing = True
        linker.define_func(
            WASI, "clock_time_get", wasmtime.FuncType([i32, i64, i32], [i32]),
            self.clock_time_get, access_caller=True,
        )
        linker.define_func(
            WASI, "clock_res_get", wasmtime.FuncType([i32, i32], [i32]),
            self.clock_res_get, access_caller=True,
        )
        linker.define_func(
            WASI, "random_get", wasmtime.FuncType([i32, i32], [i32]),
            self.random_get, access_caller=True,
        )

    @staticmethod
    def _write(caller: wasmtime.Caller, pointer: int, data: bytes) -> int:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return _ERRNO_FAULT
        try:
            memory.write(caller, data, pointer)
        except IndexError:
            return _ERRNO_FAULT
        return _ERRNO_SUCCESS

    def clock_time_get(self, caller: wasmtime.Caller, clock_id: int, _precision: int, pointer: int) -> int:
        if clock_id not in _CLOCK_IDS:
            return _ERRNO_INVAL
        self._ticks += 1
        now = self._ticks * VIRTUAL_TICK_NS + (VIRTUAL_EPOCH_NS if clock_id == 0 else 0)
        return self._write(caller, pointer, struct.pack("<Q", now))

    def clock_res_get(self, caller: wasmtime.Caller, clock_id: int, pointer: int) -> int:
        if clock_id not in _CLOCK_IDS:
            return _ERRNO_INVAL
        return self._write(caller, pointer, struct.pack("<Q", VIRTUAL_TICK_NS))

    def random_bytes(self, length: int) -> bytes:
        while len(self._pool) < length:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "little")).digest()
            self._counter += 1
            self._pool += block
        data, self._pool = self._pool[:length], self._pool[length:]
        return data

    def random_get(self, caller: wasmtime.Caller, pointer: int, length: int) -> int:
        return self._write(caller, pointer, self.random_bytes(length))


@dataclass(frozen=True)
class _Preopen:
    host: Path
    guest: str
    writable: bool


def plan_preopens(
    inputs: list[Mount], outputs: list[Mount], workdir: str | None, stage_dir: Path
) -> tuple[list[_Preopen], list[tuple[Path, Path]]]:
    """Turn mounts into WASI preopens (pure: touches no files).

    Returns the preopens and the (source file, staged path) links to create:
    each input that is a file lands in a staging folder per guest parent
    folder, preopened read-only at that parent.
    """
    preopens: list[_Preopen] = []
    links: list[tuple[Path, Path]] = []
    folder_targets = {m.target for m in [*inputs, *outputs] if not m.source.is_file()}
    staged_parents: dict[str, Path] = {}
    for mount in inputs:
        if mount.source.is_file():
            parent, name = posixpath.split(mount.target)
            if parent in folder_targets:
                raise ExecutorError(
                    f"input file {mount.target} would hide the folder mounted at {parent}; "
                    "mount it at another path"
                )
            if parent not in staged_parents:
                staged_parents[parent] = stage_dir / str(len(staged_parents))
                # "/" is no preopen of its own: wasi-libc matches it as the fallback.
                preopens.append(_Preopen(staged_parents[parent], parent, writable=False))
            links.append((mount.source, staged_parents[parent] / name))
        else:
            preopens.append(_Preopen(mount.source, mount.target, writable=False))
    for mount in outputs:
        preopens.append(_Preopen(mount.source, mount.target, writable=not mount.read_only))
    if workdir:
        preopens.append(_workdir_preopen(preopens, workdir))
    return preopens, links


def _workdir_preopen(preopens: list[_Preopen], workdir: str) -> _Preopen:
    workdir = posixpath.normpath(workdir)
    best: _Preopen | None = None
    for preopen in preopens:
        guest = preopen.guest.rstrip("/") or "/"
        if workdir == guest or workdir.startswith(guest.rstrip("/") + "/"):
            if best is None or len(guest) > len(best.guest):
                best = preopen
    if best is None:
        raise ExecutorError(
            f"wasm workdir {workdir} is not inside an input or output mount "
            "(a wasm job sees only its mounts)"
        )
    relative = posixpath.relpath(workdir, best.guest)
    host = best.host if relative == "." else best.host / relative
    return _Preopen(host, ".", best.writable)


class WasmExecutor:
    """Runs WASI modules with wasmtime (see the module docstring for semantics)."""

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.cache_dir = ctx.work_dir / "wasm-cache"
        self.stage_root = ctx.work_dir / "wasm-stage"
        self.max_log_bytes = MAX_LOG_BYTES
        self.max_output_bytes = MAX_OUTPUT_BYTES
        self.deterministic = True
        # Last load's outcome, for tests and metrics: "hit", "miss", "recompiled".
        self.last_cache_result: str | None = None
        self.last_compile_seconds: float | None = None

    async def is_installed(self) -> bool:
        try:
            await trio.to_thread.run_sync(_engine)
        except Exception:  # noqa: BLE001 - any failure means "cannot run wasm here"
            return False
        return True

    async def run(self, execution: PreparedExecution) -> RunResult:
        if execution.module is None:
            raise ExecutorError("wasm job has no module file prepared")
        engine = _engine()
        run = _Run(self, execution, engine)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, run)
            # Not abandoned on cancel: the thread owns the store and open files,
            # so we wait for it; the watcher makes it stop within moments.
            # Captured, then unwrapped outside the nursery: callers catch a
            # plain ExecutorError, not an ExceptionGroup around it.
            captured = await outcome.acapture(
                trio.to_thread.run_sync, run.execute, abandon_on_cancel=False
            )
            nursery.cancel_scope.cancel()
        result = captured.unwrap()
        # If the runner's scope was cancelled while the thread ran, this raises
        # Cancelled: an interrupted run never turns into a RunResult.
        await trio.lowlevel.checkpoint()
        if result.message == _INTERRUPTED:
            raise ExecutorError("the wasm run was interrupted")  # not reached: see above
        return result

    async def _watch(self, run: "_Run") -> None:
        """Interrupt the run on cancellation, or when its output passes `max_output_bytes`.

        stdout/stderr go straight to files (wasmtime writes them natively) and
        are cut to `max_log_bytes` after the run; this ceiling only keeps a
        program that prints without end from filling the disk before its
        timeout.
        """
        logs = [run.execution.result_dir / "stdout", run.execution.result_dir / "stderr"]
        try:
            while True:
                await trio.sleep(OUTPUT_POLL_SECONDS)
                if sum(_size(path) for path in logs) > self.max_output_bytes:
                    run.interrupt(overflow=True)
                    await trio.sleep_forever()
        finally:
            # On cancellation, and also after a normal finish (harmless then).
            run.interrupt()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Run:
    """One execution, run entirely in a worker thread."""

    def __init__(self, executor: WasmExecutor, execution: PreparedExecution, engine: wasmtime.Engine) -> None:
        self.executor = executor
        self.execution = execution
        self.engine = engine
        self.interrupted = threading.Event()
        self.overflow = False
        self.exit_status = _ExitStatus()
        self.memories: list[wasmtime.Memory] = []
        """The linear memories the modules export: what `_at_memory_limit` looks at."""
        self.out_of_memory = False

    def interrupt(self, overflow: bool = False) -> None:
        """(From the trio thread.) Make the running wasm trap at its next check."""
        if self.interrupted.is_set():
            return
        self.overflow = overflow
        # The flag first: the thread looks at it after arming its deadline, so
        # an increment that lands before the deadline is armed is not lost.
        self.interrupted.set()
        self.engine.increment_epoch()

    def execute(self) -> RunResult:
        execution = self.execution
        stage_dir = self.executor.stage_root / execution.execution_id
        execution.result_dir.mkdir(parents=True, exist_ok=True)
        stdout, stderr = execution.result_dir / "stdout", execution.result_dir / "stderr"
        try:
            result, note = self._run_module(stage_dir, stdout, stderr)
        finally:
            shutil.rmtree(stage_dir, ignore_errors=True)
        # The store is gone by now (it was local to _run_module), so wasmtime
        # has closed both files.
        limit = self.executor.max_log_bytes
        cut = [path.name for path in (stdout, stderr) if _cap_file(path, limit)]
        if note:
            with open(stderr, "ab") as out:
                out.write(f"\n{note}\n".encode())
        if self.out_of_memory:
            # After the logs are kept: they show what the job did up to then.
            raise ExecutorError(over_memory(execution.spec.resources.memory))
        if cut:
            result = RunResult(
                result.exit_code,
                "; ".join(filter(None, [result.message, f"{' and '.join(cut)} cut at {limit} bytes"])),
            )
        return result

    def _run_module(self, stage_dir: Path, stdout: Path, stderr: Path) -> tuple[RunResult, str]:
        """Run to the end; the result and a note for stderr (a trap's message)."""
        execution = self.execution
        spec = execution.spec
        module = self._load_module(execution.module)
        preopens, links = plan_preopens(execution.inputs, execution.outputs, spec.task.workdir, stage_dir)
        _stage(links)

        wasi = wasmtime.WasiConfig()
        module_name = posixpath.basename(spec.task.module.path) if spec.task.module else ""
        wasi.argv = [module_name or "main.wasm", *spec.task.command]
        wasi.env = sorted(job_environment(execution).items())
        # Files written by wasmtime itself, not a Python callback: a callback
        # runs on wasmtime's own (tokio) threads, and one that fires while the
        # interpreter exits aborts the whole process.
        wasi.stdout_file = str(stdout)
        wasi.stderr_file = str(stderr)
        for preopen in preopens:
            try:
                wasi.preopen_dir(str(preopen.host), preopen.guest, fs_mutable=preopen.writable)
            except wasmtime.WasmtimeError as error:
                raise ExecutorError(
                    f"cannot mount {preopen.host} at {preopen.guest}: {_first_line(error)}"
                ) from None

        store = wasmtime.Store(self.engine)
        store.set_wasi(wasi)
        if spec.resources.memory:
            store.set_limits(memory_size=spec.resources.memory)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self.exit_status.define(linker)
        if self.executor.deterministic:
            _DeterministicWasi(execution.job_id).define(linker)

        # Arm the deadline, then look at the flag (see `interrupt`).
        store.set_epoch_deadline(1)
        if self.interrupted.is_set():
            return RunResult(exit_code=TRAP_EXIT_CODE, message=_INTERRUPTED), ""
        self._link_imports(linker, store)
        entries = self._instantiate(linker, store, module, spec.task.entry_point)
        result, note = self._call(store, entries)
        if result.exit_code != 0 and result.message != _INTERRUPTED and not self.overflow:
            self.out_of_memory = self._at_memory_limit(store)
        return result, note

    def _at_memory_limit(self, store: wasmtime.Store) -> bool:
        limit = self.execution.spec.resources.memory
        if not limit:
            return False
        for memory in self.memories:
            kind = memory.type(store)
            if kind.limits.max is not None and kind.limits.max * kind.page_size < limit:
                continue  # the module's own maximum stops it first, not the job's limit
            if memory.data_len(store) > limit * OUT_OF_MEMORY_FRACTION:
                return True
        return False

    def _keep_memories(self, store: wasmtime.Store, instance: wasmtime.Instance) -> None:
        self.memories += [item for item in instance.exports(store).values() if isinstance(item, wasmtime.Memory)]

    def _link_imports(self, linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        """Instantiate each imported module, in order, and define its exports
        under its name, so later modules (and the main one) import from it."""
        for spec_import, path in zip(self.execution.spec.task.imports, self.execution.imports, strict=True):
            module = self._load_module(path)
            try:
                instance = linker.instantiate(store, module)
                self._keep_memories(store, instance)
                linker.define_instance(store, spec_import.name, instance)
                # A reactor (a library built with `-mexec-model=reactor`) sets itself up here.
                initialize = instance.exports(store).get("_initialize")
                if isinstance(initialize, wasmtime.Func):
                    initialize(store)
            except (_ProcExit, wasmtime.WasmtimeError, wasmtime.Trap) as error:
                raise ExecutorError(
                    f"cannot start the imported wasm module {spec_import.name!r}: {_first_line(error)}"
                ) from None

    def _load_module(self, path: Path) -> wasmtime.Module:
        try:
            wasm = path.read_bytes()
        except OSError as error:
            raise ExecutorError(f"cannot read the wasm module {path}: {error.strerror}") from None
        digest = hashlib.sha256(wasm).hexdigest()
        cache_dir = self.executor.cache_dir
        cached = cache_dir / f"{digest}-{_WASMTIME_VERSION}-{_CACHE_FORMAT}.cwasm"
        executor = self.executor
        if cached.exists():
            try:
                # Read into memory, not deserialize_file: that one mmaps the
                # file, and a truncated file under a live mapping is a SIGBUS
                # that kills the whole node.
                module = wasmtime.Module.deserialize(self.engine, cached.read_bytes())
            except (OSError, wasmtime.WasmtimeError):
                executor.last_cache_result = "recompiled"
            else:
                executor.last_cache_result = "hit"
                return module
        else:
            executor.last_cache_result = "miss"
        started = time.perf_counter()
        try:
            module = wasmtime.Module(self.engine, bytes(wasm))
        except wasmtime.WasmtimeError as error:
            raise ExecutorError(f"the wasm module is not valid WebAssembly: {_first_line(error)}") from None
        executor.last_compile_seconds = time.perf_counter() - started
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(module.serialize())
            # Atomic: a concurrent run never deserializes a half-written file.
            partial.replace(cached)
        except OSError:
            pass  # the cache is an optimisation; a full disk must not fail the job
        return module

    def _instantiate(
        self, linker: wasmtime.Linker, store: wasmtime.Store, module: wasmtime.Module, entry_point: str
    ) -> list[wasmtime.Func]:
        """The functions to call in order: `_initialize` (reactors) then the entry point."""
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.ExitTrap as error:
            raise ExecutorError(f"the wasm module exited with {error.code} while starting") from None
        except (wasmtime.WasmtimeError, wasmtime.Trap) as error:
            raise ExecutorError(f"cannot start the wasm module: {_first_line(error)}") from None
        self._keep_memories(store, instance)
        exports = instance.exports(store)
        entry = exports.get(entry_point)
        if not isinstance(entry, wasmtime.Func):
            raise ExecutorError(f"the wasm module has no exported function {entry_point!r}")
        if entry.type(store).params:
            raise ExecutorError(f"the wasm entry point {entry_point!r} must take no arguments")
        initialize = exports.get("_initialize") if entry_point != "_start" else None
        if isinstance(initialize, wasmtime.Func):
            return [initialize, entry]
        return [entry]

    def _call(self, store: wasmtime.Store, entries: list[wasmtime.Func]) -> tuple[RunResult, str]:
        try:
            for func in entries:
                func(store)
        except (_ProcExit, wasmtime.Trap, wasmtime.WasmtimeError) as trap:
            if self.exit_status.code is not None:
                return RunResult(exit_code=self.exit_status.code), ""
            if isinstance(trap, wasmtime.ExitTrap):
                return RunResult(exit_code=trap.code), ""
            if self.interrupted.is_set():
                if self.overflow:
                    message = f"stopped: stdout and stderr passed {self.executor.max_output_bytes} bytes"
                    return RunResult(exit_code=TRAP_EXIT_CODE, message=message), message
                # The epoch interrupt of a cancellation: the caller raises Cancelled.
                return RunResult(exit_code=TRAP_EXIT_CODE, message=_INTERRUPTED), ""
            message = f"wasm trap: {_first_line(trap)}"
            return RunResult(exit_code=TRAP_EXIT_CODE, message=message), message
        return RunResult(exit_code=0), ""


def _stage(links: list[tuple[Path, Path]]) -> None:
    """Make each input file visible in its staging folder (hard link, else copy)."""
    for source, staged in links:
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, staged)
        except OSError:
            try:
                shutil.copyfile(source, staged)
            except OSError as error:
                raise ExecutorError(f"cannot mount input file {source}: {error.strerror}") from None
