"""The wasm executor against real wasmtime and real WASI programs (tests/assets/wasm)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import wasmtime

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import MAX_LOG_BYTES, Mount, PreparedExecution
from bacalhau_py.executor.wasm import TRAP_EXIT_CODE, WasmExecutor
from bacalhau_py.models import InputSource, JobSpec, Resources, Task, WasmImport


ASSETS = Path(__file__).resolve().parents[1] / "assets" / "wasm"


@pytest.fixture
def executor(tmp_path: Path) -> WasmExecutor:
    return WasmExecutor(ProviderContext(ipfs=None, work_dir=tmp_path / "node"))  # type: ignore[arg-type]


_counter = 0


def make_execution(
    tmp_path: Path,
    module: Path,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    inputs: list[Mount] | None = None,
    memory: int | None = None,
    workdir: str | None = None,
    entry_point: str = "_start",
    job_id: str = "job-1",
    imports: dict[str, Path] | None = None,
) -> PreparedExecution:
    global _counter
    _counter += 1
    execution_id = f"exec-{_counter}"
    result_dir = tmp_path / execution_id
    outputs_dir = result_dir / "outputs"
    outputs_dir.mkdir(parents=True)
    spec = JobSpec(
        task=Task(
            engine="wasm",
            module=InputSource.inline(b"\0asm", "/app/main.wasm"),
            command=command or [],
            env=env or {},
            workdir=workdir,
            entry_point=entry_point,
            imports=[
                WasmImport(name=name, module=InputSource.inline(b"\0asm", f"/imports/{name}.wasm"))
                for name in imports or {}
            ],
        ),
        resources=Resources(memory=memory),
    )
    return PreparedExecution(
        execution_id=execution_id,
        job_id=job_id,
        spec=spec,
        inputs=inputs or [],
        outputs=[Mount(outputs_dir, "/outputs", read_only=False)],
        result_dir=result_dir,
        module=module,
        imports=tuple((imports or {}).values()),
    )


def out(execution: PreparedExecution, name: str = "stdout") -> str:
    return (execution.result_dir / name).read_text()


async def test_hello(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["hello"])
    result = await executor.run(execution)
    assert result.exit_code == 0
    assert out(execution) == "hello world\n"
    assert out(execution, "stderr") == ""


def wat_module(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm((ASSETS / f"{name}.wat").read_text()))
    return path


async def test_imported_modules_are_linked_before_the_main_one(executor, wasm_modules, tmp_path):
    # Bacalhau's wasm_dynamic_link: the main module calls easter() from the module "easter".
    execution = make_execution(tmp_path, wasm_modules["easter_main"], imports={"easter": wat_module(tmp_path, "easter")})
    result = await executor.run(execution)
    assert (result.exit_code, out(execution)) == (0, "17\n")


async def test_a_missing_import_is_named(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["easter_main"])
    with pytest.raises(ExecutorError, match="easter::easter"):
        await executor.run(execution)


async def test_argv_is_module_name_then_command(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["echo_args"], command=["one", "two words", ""])
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "[0]=main.wasm\n[1]=one\n[2]=two words\n[3]=\n"


async def test_env_is_exactly_the_spec_env(executor, wasm_modules, tmp_path):
    execution = make_execution(
        tmp_path, wasm_modules["env"], command=["GREETING", "EMPTY", "PATH", "HOME"],
        env={"GREETING": "hello there", "EMPTY": ""},
    )
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "GREETING=hello there\nEMPTY=\nPATH unset\nHOME unset\n"


async def test_job_sees_bacalhau_variables(executor, wasm_modules, tmp_path):
    names = ["BACALHAU_JOB_ID", "BACALHAU_EXECUTION_ID", "BACALHAU_PARTITION_INDEX", "BACALHAU_PARTITION_COUNT"]
    execution = make_execution(tmp_path, wasm_modules["env"], command=names, job_id="job-env")
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == (
        f"BACALHAU_JOB_ID=job-env\nBACALHAU_EXECUTION_ID={execution.execution_id}\n"
        "BACALHAU_PARTITION_INDEX=0\nBACALHAU_PARTITION_COUNT=1\n"
    )


@pytest.mark.parametrize("code", [0, 3, 42, 255])
async def test_exit_code(executor, wasm_modules, tmp_path, code):
    execution = make_execution(tmp_path, wasm_modules["exit_code"], command=[str(code)])
    result = await executor.run(execution)
    assert result.exit_code == code
    assert out(execution, "stderr") == "exiting\n"


async def test_trap_is_exit_134_with_message(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["exit_code"], command=["trap"])
    result = await executor.run(execution)
    assert result.exit_code == TRAP_EXIT_CODE
    assert "wasm trap" in result.message
    stderr = out(execution, "stderr")
    assert stderr.startswith("about to abort\n")
    assert "wasm trap:" in stderr


async def test_file_input_and_output(executor, wasm_modules, tmp_path):
    source = tmp_path / "fetched" / "QmSomething"
    source.parent.mkdir()
    source.write_text("line 1\nline 2\n")
    execution = make_execution(
        tmp_path, wasm_modules["cat"], command=["/inputs/data.txt", "/outputs/copy.txt"],
        inputs=[Mount(source, "/inputs/data.txt", read_only=True)],
    )
    assert (await executor.run(execution)).exit_code == 0, out(execution, "stderr")
    assert out(execution) == "line 1\nline 2\n"
    assert (execution.result_dir / "outputs" / "copy.txt").read_text() == "line 1\nline 2\n"
    # The staging folder that made the file visible is gone.
    assert not (executor.stage_root / execution.execution_id).exists()


async def test_folder_input(executor, wasm_modules, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("from a folder\n")
    execution = make_execution(
        tmp_path, wasm_modules["cat"], command=["/data/sub/a.txt"],
        inputs=[Mount(folder, "/data", read_only=True)],
    )
    assert (await executor.run(execution)).exit_code == 0, out(execution, "stderr")
    assert out(execution) == "from a folder\n"


@pytest.mark.parametrize("target", ["/inputs/data.txt", "/data/a.txt", "/data/new.txt"])
async def test_inputs_are_read_only(executor, wasm_modules, tmp_path, target):
    source = tmp_path / "file.txt"
    source.write_text("original")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("original")
    execution = make_execution(
        tmp_path, wasm_modules["write_file"], command=[target, "changed"],
        inputs=[Mount(source, "/inputs/data.txt", True), Mount(folder, "/data", True)],
    )
    result = await executor.run(execution)
    assert result.exit_code == 1
    assert f"cannot write {target}" in out(execution, "stderr")
    assert source.read_text() == "original"
    assert (folder / "a.txt").read_text() == "original"
    assert not (folder / "new.txt").exists()


async def test_csv_transform(executor, wasm_modules, tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_text("name,a,b\nx,1,2\ny,10,-3\n")
    execution = make_execution(
        tmp_path, wasm_modules["csv_transform"], command=["/inputs/in.csv", "/outputs/out.csv"],
        inputs=[Mount(csv, "/inputs/in.csv", True)],
    )
    assert (await executor.run(execution)).exit_code == 0, out(execution, "stderr")
    assert out(execution) == "2 rows\n"
    assert (execution.result_dir / "outputs" / "out.csv").read_text() == (
        "name,a,b,sum\nx,1,2,3\ny,10,-3,7\n"
    )


async def test_workdir_resolves_relative_paths(executor, wasm_modules, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "note.txt").write_text("relative works\n")
    execution = make_execution(
        tmp_path, wasm_modules["relative"], command=["note.txt"], workdir="/data/sub",
        inputs=[Mount(folder, "/data", True)],
    )
    assert (await executor.run(execution)).exit_code == 0, out(execution, "stderr")
    assert out(execution) == "relative works\n"


async def test_workdir_outside_mounts_is_an_error(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["hello"], workdir="/elsewhere")
    with pytest.raises(ExecutorError, match="not inside an input or output mount"):
        await executor.run(execution)


async def test_cancel_interrupts_an_infinite_loop(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["loop"])
    started = time.monotonic()
    with trio.move_on_after(0.5) as scope:
        await executor.run(execution)
        pytest.fail("an infinite loop returned")
    elapsed = time.monotonic() - started
    assert scope.cancelled_caught
    assert elapsed < 5.0
    assert out(execution) == "looping\n"
    # The executor is usable again right away (its engine was per run).
    again = make_execution(tmp_path, wasm_modules["hello"])
    assert (await executor.run(again)).exit_code == 0


async def test_a_run_over_its_memory_limit_fails_naming_the_limit(executor, wasm_modules, tmp_path):
    # malloc returns NULL at the limit; the program says so and exits 3: it ran out of memory.
    limited = make_execution(tmp_path, wasm_modules["alloc"], command=["128"], memory=32 << 20)
    with pytest.raises(ExecutorError, match=r"^killed for using more than 32 MiB of memory \(the job's memory limit\)$"):
        await executor.run(limited)
    assert out(limited, "stderr").startswith("allocation failed after ")
    # memory.grow refused, then a trap (as Rust aborts when an allocation fails).
    grows = make_execution(tmp_path, wat_module(tmp_path, "grow"), memory=2 << 20)
    with pytest.raises(ExecutorError, match=r"^killed for using more than 2 MiB of memory"):
        await executor.run(grows)
    assert out(grows) == "growing\n"
    assert "wasm trap: " in out(grows, "stderr")
    # Within the limit, the same program runs, and a failure far from the limit is the program's own.
    within = make_execution(tmp_path, wasm_modules["alloc"], command=["16"], memory=32 << 20)
    assert (await executor.run(within)).exit_code == 0
    failing = make_execution(tmp_path, wasm_modules["exit_code"], command=["trap"], memory=32 << 20)
    assert (await executor.run(failing)).exit_code == TRAP_EXIT_CODE
    free = make_execution(tmp_path, wasm_modules["alloc"], command=["48"])
    assert (await executor.run(free)).exit_code == 0
    assert out(free) == "allocated 48 MiB\n"


async def test_same_job_gives_identical_output_on_separate_nodes(wasm_modules, tmp_path):
    outputs = []
    for node in ("a", "b", "c"):
        executor = WasmExecutor(ProviderContext(ipfs=None, work_dir=tmp_path / node))  # type: ignore[arg-type]
        execution = make_execution(tmp_path, wasm_modules["time_random"], job_id="job-same")
        assert (await executor.run(execution)).exit_code == 0
        outputs.append(out(execution))
        await trio.sleep(0.01)  # real time passes between runs
    assert outputs[0] == outputs[1] == outputs[2]
    assert "realtime 1640995200." in outputs[0]
    other = make_execution(tmp_path, wasm_modules["time_random"], job_id="job-other")
    await WasmExecutor(ProviderContext(ipfs=None, work_dir=tmp_path / "d")).run(other)  # type: ignore[arg-type]
    random_line = [line for line in outputs[0].splitlines() if line.startswith("random ")]
    assert random_line and random_line[0] not in out(other)


async def test_nondeterministic_mode_uses_real_clock(executor, wasm_modules, tmp_path):
    executor.deterministic = False
    execution = make_execution(tmp_path, wasm_modules["time_random"])
    assert (await executor.run(execution)).exit_code == 0
    seconds = int(out(execution).split()[1].split(".")[0])
    assert abs(seconds - time.time()) < 60


async def test_compiled_module_cache(wasm_modules, tmp_path):
    ctx = ProviderContext(ipfs=None, work_dir=tmp_path / "node")  # type: ignore[arg-type]
    first = WasmExecutor(ctx)
    started = time.perf_counter()
    assert (await first.run(make_execution(tmp_path, wasm_modules["csv_transform"], command=["/x", "/y"]))).exit_code == 1
    cold = time.perf_counter() - started
    assert first.last_cache_result == "miss"
    assert list((ctx.work_dir / "wasm-cache").glob("*.cwasm"))
    second = WasmExecutor(ctx)  # a restarted node keeps its cache
    started = time.perf_counter()
    assert (await second.run(make_execution(tmp_path, wasm_modules["csv_transform"], command=["/x", "/y"]))).exit_code == 1
    warm = time.perf_counter() - started
    assert second.last_cache_result == "hit"
    print(f"csv_transform run: compile+run {cold * 1000:.1f} ms, cached {warm * 1000:.1f} ms "
          f"(compile alone {first.last_compile_seconds * 1000:.1f} ms)")
    # A damaged entry is recompiled, not fatal.
    for entry in (ctx.work_dir / "wasm-cache").glob("*.cwasm"):
        entry.write_bytes(b"garbage")
    third = WasmExecutor(ctx)
    assert (await third.run(make_execution(tmp_path, wasm_modules["hello"]))).exit_code == 0
    assert third.last_cache_result == "miss"
    assert (await third.run(make_execution(tmp_path, wasm_modules["csv_transform"]))).exit_code == 2
    assert third.last_cache_result == "recompiled"


async def test_invalid_module(executor, tmp_path):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0garbage")
    with pytest.raises(ExecutorError, match="not valid WebAssembly"):
        await executor.run(make_execution(tmp_path, bad))
    text = tmp_path / "text.wasm"
    text.write_bytes(b"#!/bin/sh\necho not wasm\n")
    with pytest.raises(ExecutorError, match="not valid WebAssembly"):
        await executor.run(make_execution(tmp_path, text))


async def test_missing_entry_point(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["hello"], entry_point="nope")
    with pytest.raises(ExecutorError, match="no exported function 'nope'"):
        await executor.run(execution)


async def test_stdout_cap(executor, wasm_modules, tmp_path):
    executor.max_log_bytes = 1000
    execution = make_execution(tmp_path, wasm_modules["big_output"], command=["5000"])
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "a" * 1000
    on_stderr = make_execution(tmp_path, wasm_modules["big_output"], command=["5000", "stderr"])
    assert (await executor.run(on_stderr)).exit_code == 0
    assert out(on_stderr, "stderr") == "a" * 1000
    assert out(on_stderr) == ""


async def test_endless_output_is_stopped(executor, wasm_modules, tmp_path):
    executor.max_log_bytes = 1000
    executor.max_output_bytes = 4 << 20
    execution = make_execution(tmp_path, wasm_modules["big_output"], command=["-1"])
    with trio.fail_after(10):
        result = await executor.run(execution)
    assert result.exit_code == TRAP_EXIT_CODE
    assert "passed 4194304 bytes" in result.message
    assert out(execution) == "a" * 1000
    assert "stopped: stdout and stderr passed" in out(execution, "stderr")


async def test_default_cap_is_max_log_bytes(executor, wasm_modules, tmp_path):
    execution = make_execution(tmp_path, wasm_modules["big_output"], command=[str(MAX_LOG_BYTES + 12345)])
    assert (await executor.run(execution)).exit_code == 0
    assert (execution.result_dir / "stdout").stat().st_size == MAX_LOG_BYTES


async def test_is_installed(executor):
    assert await executor.is_installed()


async def test_cancelling_one_run_leaves_concurrent_runs_alone(executor, wasm_modules, tmp_path):
    ended: dict[str, float] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def spin(name: str) -> None:
        with trio.CancelScope() as scope:
            scopes[name] = scope
            await executor.run(make_execution(tmp_path, wasm_modules["loop"]))
        ended[name] = time.monotonic()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(spin, "a")
        nursery.start_soon(spin, "b")
        await trio.sleep(0.2)
        cancelled_a = time.monotonic()
        scopes["a"].cancel()
        await trio.sleep(0.5)
        # a stopped promptly; b (same executor, its own engine) still spins.
        assert "a" in ended and ended["a"] - cancelled_a < 0.4
        assert "b" not in ended
        scopes["b"].cancel()
    assert "b" in ended
