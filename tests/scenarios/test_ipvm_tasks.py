"""The job-spec discussion's docker and wasm examples, submitted with `bacalhau create` to a real devstack.

Each example is the verbatim file of tests/assets/ipvm with only what this
machine needs changed, each change spelled out: the local busybox image (no
registry is reachable), real CIDs and a local URL for its inputs, a publisher
this network has (the example's estuary is refused: tests/unit/test_ipvm.py),
no GPU, and for the deterministic verifier three nodes to compare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

sys.path.insert(0, str(Path(__file__).parent))

from scenario import BACALHAU, Stack  # noqa: E402

from bacalhau_py.api.client import APIClient  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DIGEST = "4b1d0c4a2d2aaf63b37111f34eb9fa89fa1bf53dd6e4ca954d47caebca4005c2"


def adapt(example: str, changes: list[tuple[str, str]]) -> str:
    text = (ASSETS / "ipvm" / example).read_text()
    for old, new in changes:
        assert old in text, f"{example} no longer has {old!r}"
        text = text.replace(old, new)
    return text


def create(host: str, port: int, task: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BACALHAU, "create", "--id-only", "--download", "--output-dir", str(results), str(task),
         "--api-host", host, "--api-port", str(port)],
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def stack(devstacks):
    return devstacks(Stack())


def test_the_docker_example_runs(stack, http_files, tmp_path):
    host, port = stack[0]
    client = APIClient(host, port)
    data = tmp_path / "data.txt"
    data.write_bytes(b"from ipfs\n")
    cid = client.ipfs_add(data)
    http_files["data.txt"] = b"from a URL\n"
    task = tmp_path / "docker.jsonc"
    task.write_text(adapt("docker.jsonc", [
        (f"ubuntu@sha256:{DIGEST}", "busybox"),
        ('["bash", "-c", "echo", "hello, world"]',
         '["sh", "-c", "cat /inputs /more/data.txt > /outputs/both; echo hello, world"]'),
        ("bafybeih5fo3ggbgkg5ftwzycup4shhcqrjpd7toyvnagwicxzkqekjtqba", cid),
        # A URL mount is a folder holding the file named after the URL, as `-u URL:PATH`.
        ("https://example.com/data.txt", f"{http_files.base}/data.txt"),
        ('"estuary"', '"ipfs"'),
        ('"gpu": 1', '"gpu": 0'),
        ('"verifier": "deterministic",', '"verifier": "deterministic", "deal": {"concurrency": 3},'),
    ]))

    done = create(host, port, task, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    assert "Warning: ipvm.meta.bacalhau/config.dnt: accepted and ignored" in done.stderr
    results = tmp_path / "results"
    assert (results / "stdout").read_text() == "hello, world\n"
    assert (results / "outputs" / "both").read_text() == "from ipfs\nfrom a URL\n"
    job = client.get_job(done.stdout.strip())
    assert job["spec"]["labels"] == ["my-lovely-job"]
    assert job["spec"]["resources"] == {"cpu": 0.1, "memory": 10**9, "gpu": 0, "disk": 10**6}
    assert job["spec"]["timeout"] == 300
    assert sorted(e["verification"] for e in job["executions"]) == ["accepted"] * 3


def test_the_wasm_example_links_its_imports(stack, wasm_modules, http_files, tmp_path):
    host, port = stack[0]
    client = APIClient(host, port)
    main_cid = client.ipfs_add(wasm_modules["easter_main"])
    library = tmp_path / "easter.wasm"
    library.write_bytes(wasmtime.wat2wasm((ASSETS / "wasm" / "easter.wat").read_text()))
    library_cid = client.ipfs_add(library)
    http_files["input.csv"] = b"a,b\n1,2\n"
    task = tmp_path / "wasm.jsonc"
    task.write_text(adapt("wasm.jsonc", [
        ('"Qmajb9T3jBdMSp7xh2JruNrqg3hniCnM6EUVsBocARPJRQ"', f'"ipfs://{main_cid}"'),
        ('{"/": "bafybeih5fo3ggbgkg5ftwzycup4shhcqrjpd7toyvnagwicxzkqekjtqba"},\n',
         f'{{"/": "{library_cid}", "name": "easter"}},\n'),
        ('{"url": "https://example.com/library.wasm"}\n', ""),
        ("https://data.api.trade.gov.uk/v1/datasets/uk-tariff-2021-01-01/versions/latest/tables/"
         "measures-as-defined/data?format=csv&download", f"{http_files.base}/input.csv"),
    ]))

    done = create(host, port, task, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results" / "stdout").read_text() == "17\n"
