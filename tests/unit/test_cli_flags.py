"""CLI flags -> JobSpec (through --dry-run, no node needed) and every bad-input exit.

The CLI contract (shared/CLI.md): bad input exits 2 with one line "Error: ..."
naming the problem and the expected form; an unreachable node exits 1 naming
the address; no expected error shows a traceback.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest
import yaml

from bacalhau_py.cli.main import main

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def dry_run(capsys, *args: str) -> dict:
    """The spec `bacalhau ARGS` would submit; --dry-run goes right after the command's name."""
    split = 2 if args[0] in ("docker", "wasm") else 1
    code, out, err = cli(capsys, *args[:split], "--dry-run", *args[split:])
    assert code == 0, err
    return yaml.safe_load(out)


def test_bash_c_keeps_its_flag(capsys):
    spec = dry_run(
        capsys, "run", "-v", f"{CID}:/file.txt", "-o", "apples:/output_folder",
        "ubuntu", "bash", "-c", "cat /file.txt > /output_folder/file.txt",
    )
    assert spec["task"]["image"] == "ubuntu"
    assert spec["task"]["command"] == ["bash", "-c", "cat /file.txt > /output_folder/file.txt"]
    assert spec["inputs"] == [{"source": "ipfs", "path": "/file.txt", "cid": CID, "url": None, "content": None, "local_path": None}]
    assert [(o["name"], o["path"]) for o in spec["outputs"]] == [("outputs", "/outputs"), ("apples", "/output_folder")]


def test_flags_after_image_belong_to_the_job(capsys):
    spec = dry_run(capsys, "docker", "run", "busybox", "ls", "-v", "--wait", "-e", "X=1")
    assert spec["task"]["command"] == ["ls", "-v", "--wait", "-e", "X=1"]
    assert spec["inputs"] == [] and spec["task"]["env"] == {}


def test_double_dash_before_the_command_is_accepted(capsys):
    spec = dry_run(capsys, "run", "busybox", "--", "echo", "-n", "hi")
    assert spec["task"]["command"] == ["echo", "-n", "hi"]


def test_every_docker_flag_reaches_the_spec(capsys):
    spec = dry_run(
        capsys, "docker", "run",
        "-v", f"{CID}:/data",
        "-u", "https://example.com/a.csv:/inputs/a.csv",
        "-i", f"ipfs://{CID}",
        "-i", "http://example.com:8080/b.txt:/b",
        "-o", "results:/results",
        "-e", "GREETING=hello=world", "-e", "EMPTY=",
        "-w", "/work", "--entrypoint", "/bin/sh",
        "--cpu", "500m", "--memory", "64Mb", "--gpu", "1", "--disk", "2Gb", "--timeout", "90",
        "-c", "3", "--confidence", "2", "--min-bids", "3",
        "--verifier", "deterministic", "--publisher", "local",
        "-l", "team-a", "-l", "batch", "-s", "region=eu,disk=ssd", "-s", "gpu=yes",
        "--network", "full",
        "busybox:1.36", "sh", "-c", "echo $GREETING",
    )
    task = spec["task"]
    assert task == {
        "engine": "docker", "image": "busybox:1.36", "entrypoint": ["/bin/sh"],
        "command": ["sh", "-c", "echo $GREETING"], "module": None, "entry_point": "_start",
        "env": {"GREETING": "hello=world", "EMPTY": ""}, "workdir": "/work", "network": "full", "imports": [],
    }
    assert [(i["source"], i["cid"] or i["url"], i["path"]) for i in spec["inputs"]] == [
        ("ipfs", CID, "/data"),
        ("url", "https://example.com/a.csv", "/inputs/a.csv"),
        ("ipfs", CID, "/inputs"),
        ("url", "http://example.com:8080/b.txt", "/b"),
    ]
    assert spec["outputs"][-1] == {"name": "results", "path": "/results"}
    assert spec["resources"] == {"cpu": 0.5, "memory": 64 * 1024 * 1024, "gpu": 1, "disk": 2 << 30}
    assert spec["deal"] == {"concurrency": 3, "confidence": 2, "min_bids": 3}
    assert spec["timeout"] == 90
    assert (spec["verifier"], spec["publisher"]) == ("deterministic", "local")
    assert spec["labels"] == ["team-a", "batch"]
    assert spec["selector"] == {"region": "eu", "disk": "ssd", "gpu": "yes"}


def test_defaults(capsys):
    spec = dry_run(capsys, "run", "busybox")
    assert spec["task"]["command"] == [] and spec["task"]["network"] == "none"
    assert spec["outputs"] == [{"name": "outputs", "path": "/outputs"}]
    assert (spec["verifier"], spec["publisher"], spec["deal"]["concurrency"]) == ("noop", "ipfs", 1)
    assert spec["retries"] == 2


def test_retries_after_lost_nodes(capsys):
    assert dry_run(capsys, "run", "--retries", "0", "busybox")["retries"] == 0
    assert dry_run(capsys, "wasm", "run", "--retries", "5", CID)["retries"] == 5


def test_wasm_run_inlines_a_small_local_module(capsys, tmp_path):
    module = tmp_path / "prog.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    spec = dry_run(capsys, "wasm", "run", "-e", "A=1", "--entry-point", "main", str(module), "x", "-v")
    task = spec["task"]
    assert task["engine"] == "wasm" and task["image"] is None
    assert task["module"]["source"] == "inline" and task["module"]["content"] == "AGFzbQEAAAA="
    # The module keeps its name: it is the program's argv[0].
    assert task["module"]["path"] == "/prog.wasm"
    assert (task["command"], task["entry_point"], task["env"]) == (["x", "-v"], "main", {"A": "1"})


def test_wasm_run_with_a_cid(capsys):
    spec = dry_run(capsys, "wasm", "run", f"ipfs://{CID}")
    assert spec["task"]["module"]["cid"] == CID and spec["task"]["module"]["source"] == "ipfs"


def test_wasm_run_large_local_module_shows_its_cid_in_a_dry_run(capsys, tmp_path):
    module = tmp_path / "big.wasm"
    module.write_bytes(b"\0" * (2 << 20))
    spec = dry_run(capsys, "wasm", "run", str(module))
    assert spec["task"]["module"]["source"] == "ipfs" and spec["task"]["module"]["cid"].startswith("Qm")


BAD_INPUTS = [
    (["run", "-v", "notacid:/x", "ubuntu"], ["-v/--input-volumes", "notacid", "CID"]),
    (["run", "-v", CID, "ubuntu"], ["missing :PATH", "CID:PATH"]),
    (["run", "-v", f"{CID}:relative", "ubuntu"], ["absolute path"]),
    (["run", "-v", f"{CID}:/", "ubuntu"], ["/inputs"]),
    (["run", "-u", "https://example.com/a", "ubuntu"], ["missing :PATH", "URL:PATH"]),
    (["run", "-u", "ftp://x/a:/a", "ubuntu"], ["URL:PATH"]),
    (["run", "-i", "s3://bucket/x", "ubuntu"], ["ipfs://CID"]),
    (["run", "-i", "ipfs://notacid", "ubuntu"], ["-i/--input", "not a CID"]),
    (["run", "-o", "results", "ubuntu"], ["NAME:PATH"]),
    (["run", "-o", "stdout:/x", "ubuntu"], ["-o/--output-volumes", "output name"]),
    (["run", "--memory", "lots", "ubuntu"], ["--memory", "64Mb"]),
    (["run", "--cpu", "fast", "ubuntu"], ["--cpu", "500m"]),
    (["run", "--verifier", "nope", "ubuntu"], ["--verifier", "deterministic"]),
    (["run", "--publisher", "s3", "ubuntu"], ["--publisher", "local"]),
    (["run", "--network", "some", "ubuntu"], ["--network", "none"]),
    (["run", "-e", "NOEQUALS", "ubuntu"], ["-e", "K=V"]),
    (["run", "-e", "BAD-NAME=1", "ubuntu"], ["-e/--env", "BAD-NAME"]),
    (["run", "-s", "region", "ubuntu"], ["--selector", "k=v"]),
    (["run", "--concurrency", "0", "ubuntu"], ["--concurrency"]),
    (["run", "--confidence", "2", "ubuntu"], ["--confidence", "concurrency"]),
    (["run", "--timeout", "soon", "ubuntu"], ["--timeout"]),
    (["run", "--retries", "-1", "ubuntu"], ["--retries"]),
    (["serve", "--node-lost-after", "soon"], ["--node-lost-after", "30s"]),
    (["devstack", "--node-lost-after", "0s"], ["--node-lost-after", "positive duration"]),
    (["run", "-v", f"{CID}:/a", "-v", f"{CID}:/a", "ubuntu"], ["mounted at /a"]),
    (["run", "-w", "relative", "ubuntu"], ["-w/--workdir", "absolute"]),
    (["run", "bad image!"], ["IMAGE"]),
    (["run", "--no-such-flag", "ubuntu"], ["--no-such-flag"]),
    (["run"], ["IMAGE", "Usage: bacalhau run"]),
    (["run", "-v"], ["-v", "requires an argument"]),
    (["wasm", "run", "missing.wasm"], ["MODULE", "CID"]),
    (["list", "--limit", "many"], ["--limit"]),
    (["list", "--api-port", "http"], ["--api-port"]),
    (["describe", "x", "--output", "xml"], ["--output", "yaml"]),
    (["no-such-command"], ["no-such-command"]),
]


@pytest.mark.parametrize("args, words", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for word in words:
        assert word in lines[0]


def test_bad_spec_file_names_the_field(capsys, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("task:\n  engine: docker\n  image: busybox\ndeal:\n  concurrency: 0\n")
    code, _, err = cli(capsys, "validate", str(spec))
    assert code == 2 and err.startswith("Error: spec.deal.concurrency:")
    spec.write_text('{"with": "busybox", "do": "docker/run", "inputs": {"args": ["echo", "hi"]}}')
    code, out, _ = cli(capsys, "validate", str(spec))
    assert code == 0 and "valid docker job spec" in out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command, args", [
    ("list", []), ("describe", ["abcdefgh"]), ("run", ["busybox", "echo"]), ("ipfs add", ["."]),
    ("node list", []), ("id", []), ("version", []), ("logs", ["abcdefgh"]), ("get", ["abcdefgh"]),
    ("cancel", ["abcdefgh"]), ("wasm run", [CID]), ("create", ["-"]),
])
def test_unreachable_node_exits_1_naming_the_address(capsys, monkeypatch, command, args):
    port = free_port()
    monkeypatch.setattr("sys.stdin", io.StringIO("task: {engine: docker, image: busybox}\n"))
    # Options first: after IMAGE everything belongs to the job.
    code, _, err = cli(capsys, *command.split(), "--api-port", str(port), *args)
    assert code == 1
    assert err.strip() == f"Error: cannot reach the node at http://127.0.0.1:{port}: [Errno 111] Connection refused"


def test_the_environment_names_the_node(capsys, monkeypatch):
    port = free_port()
    monkeypatch.setenv("BACALHAU_API_HOST", "127.0.0.2")
    monkeypatch.setenv("BACALHAU_API_PORT", str(port))
    code, _, err = cli(capsys, "list")
    assert code == 1 and f"http://127.0.0.2:{port}" in err


def test_console_entry_point_runs_as_a_module_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "bacalhau_py.cli.main", "run", "-v", "notacid:/x", "ubuntu"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ")
    help_text = subprocess.run(
        [sys.executable, "-m", "bacalhau_py.cli.main", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    for command in ("serve", "devstack", "run", "docker", "wasm", "create", "validate", "list", "describe",
                    "logs", "get", "cancel", "ipfs", "node", "id", "version"):
        assert f"  {command} " in help_text


def test_a_local_input_names_a_host_path_and_a_target(capsys):
    spec = dry_run(capsys, "run", "-i", "file:///data/private:/private", "-i", "file:///data/other.csv", "busybox")
    assert [(i["source"], i["local_path"], i["path"]) for i in spec["inputs"]] == [
        ("local", "/data/private", "/private"),
        ("local", "/data/other.csv", "/inputs"),
    ]


def test_a_bad_policy_stops_serve_and_devstack_with_one_line(capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow:\n  imagez: []\n")
    for command in (["serve", "--repo", str(tmp_path / "repo")], ["devstack", "--repo-dir", str(tmp_path / "stack")]):
        code, _, err = cli(capsys, *command, "--policy", str(policy))
        assert code == 2
        assert err.strip() == (
            f"Error: the policy {policy}: unknown key allow.imagez (expected images, modules, clients, network)"
        )
    assert not (tmp_path / "repo").exists() and not (tmp_path / "stack").exists()


def test_a_field_the_cli_never_sent_is_named_as_the_node_wrote_it():
    """The node's answer is network input: an item index out of range names the field, no traceback."""
    from bacalhau_py.cli.flags import FlagSpec
    from bacalhau_py.errors import SpecError

    spec = FlagSpec({}, {"task": "IMAGE", "inputs": [f"-v/--input-volumes '{CID}:/a'"], "outputs": []})
    assert str(spec.flag_error(SpecError("m", ("inputs", 0, "path"), "bad"))) == f"-v/--input-volumes '{CID}:/a': bad"
    for index in (1, -1):
        assert str(spec.flag_error(SpecError("m", ("inputs", index, "path"), "bad"))) == f"inputs.{index}.path: bad"
    assert str(spec.flag_error(SpecError("m", ("task",), "bad"))) == "IMAGE: bad"
    assert str(spec.flag_error(SpecError("m", (), "two volumes"))) == "two volumes"
