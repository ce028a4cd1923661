"""Executors run a job's task: docker containers, WASI modules, or nothing (noop)."""

from bacalhau_py.registry import ProviderRegistry

EXECUTORS = ProviderRegistry(
    "engine",
    {
        "docker": "bacalhau_py.executor.docker:DockerExecutor",
        "wasm": "bacalhau_py.executor.wasm:WasmExecutor",
        "noop": "bacalhau_py.executor.noop:NoopExecutor",
    },
)
