"""Bacalhau's classic end-to-end cases and the verifier matrix, on real devstacks."""

from __future__ import annotations

import pytest

from scenario import Scenario, Stack, docker, execution_states, ipfs_input, message_contains, run_scenario, wasm

TEXT = b"apple\nbanana\ncherry\napricot\n"
CSV = b"name,a,b\nx,1,2\ny,10,20\n"

SCENARIOS = [
    Scenario("cat file to stdout", docker(["cat", "/inputs/file.txt"], inputs=[ipfs_input(0, "/inputs/file.txt")]),
             inputs=(TEXT,), stdout=TEXT.decode()),
    Scenario("cat file to an output volume",
             docker(["sh", "-c", "cat /inputs/file.txt > /output_folder/file.txt"],
                    inputs=[ipfs_input(0, "/inputs/file.txt")],
                    outputs=[{"name": "apples", "path": "/output_folder"}]),
             inputs=(TEXT,), outputs={"apples/file.txt": TEXT}),
    Scenario("grep", docker(["grep", "ap", "/inputs/file.txt"], inputs=[ipfs_input(0, "/inputs/file.txt")]),
             inputs=(TEXT,), stdout="apple\napricot\n"),
    Scenario("sed", docker(["sed", "-n", "2p", "/inputs/file.txt"], inputs=[ipfs_input(0, "/inputs/file.txt")]),
             inputs=(TEXT,), stdout="banana\n"),
    Scenario("awk", docker(["awk", "-F,", "NR>1 {s += $2 + $3} END {print s}", "/inputs/data.csv"],
                           inputs=[ipfs_input(0, "/inputs/data.csv")]),
             inputs=(CSV,), stdout="33\n"),
    Scenario("several CIDs",
             docker(["sh", "-c", "cat /a/x /b/y > /outputs/both"],
                    inputs=[ipfs_input(0, "/a/x"), ipfs_input(1, "/b/y")]),
             inputs=(b"one\n", b"two\n"), outputs={"outputs/both": b"one\ntwo\n"}),
    Scenario("inputs have normalised timestamps", docker(["stat", "-c", "%Y", "/data/sub/deep.txt", "/data/sub"],
                                                        inputs=[ipfs_input(0, "/data")]),
             inputs=({"sub/deep.txt": b"deep\n"},), stdout="0\n0\n"),
    Scenario("a folder CID",
             docker(["sh", "-c", "cd /data && find . -type f | sort && cat sub/deep.txt"],
                    inputs=[ipfs_input(0, "/data")]),
             inputs=({"top.txt": b"t\n", "sub/deep.txt": b"deep\n"},),
             stdout="./sub/deep.txt\n./top.txt\ndeep\n"),
    Scenario("data added on another node",
             docker(["wc", "-l", "/inputs/file.txt"], inputs=[ipfs_input(0, "/inputs/file.txt")]),
             inputs=(TEXT,), input_node=2, stdout="4 /inputs/file.txt\n"),
    Scenario("exit code is recorded, job still completes", docker(["sh", "-c", "echo oops >&2; exit 3"]),
             exit_code=3, outputs={"stderr": b"oops\n"}),
    Scenario("missing image fails the job", docker(["true"], task={"image": "no-such-image:1"}),
             state="Failed", job_checkers=(message_contains("no-such-image"), execution_states("Failed"))),
    Scenario("URL input", docker(["cat", "/inputs/remote.txt"],
                                 inputs=[{"source": "url", "url": "{http}/remote.txt", "path": "/inputs"}]),
             stdout="served over http\n"),
    Scenario("local publisher: results fetched from the compute node",
             docker(["sh", "-c", "echo kept local; echo x > /outputs/f"], publisher="local"),
             stdout="kept local\n", outputs={"outputs/f": b"x\n"}),
    Scenario("local publisher with 3 executions: raw folder per node",
             docker(["echo", "three"], publisher="local", verifier="deterministic", deal={"concurrency": 3}),
             stdout="three\n", verdicts=(3, 0),
             check=lambda results, job: _raw_folders_match(results, job)),
    Scenario("wasm hello world", wasm(), wasm="hello", stdout="hello world\n"),
    Scenario("wasm env vars", wasm(["GREETING", "OTHER"], task={"env": {"GREETING": "hi"}}), wasm="env",
             stdout="GREETING=hi\nOTHER unset\n"),
    Scenario("wasm exit code", wasm(["7"]), wasm="exit_code", exit_code=7),
    Scenario("wasm CSV transform",
             wasm(["/inputs/data.csv", "/outputs/sums.csv"], inputs=[ipfs_input(0, "/inputs/data.csv")]),
             wasm="csv_transform", inputs=(CSV,),
             outputs={"outputs/sums.csv": b"name,a,b,sum\nx,1,2,3\ny,10,20,30\n"}),
]


def matrix_case(nodes: int, bad: int, confidence: int, accepted: int, rejected: int) -> Scenario:
    return Scenario(
        f"deterministic {nodes} nodes, {bad} bad, confidence {confidence}",
        # The input's mtime is printed too: honest nodes agree only if inputs are normalised.
        docker(["sh", "-c", "echo deterministic; wc -c /inputs/file.txt; stat -c %Y /inputs/file.txt"],
               inputs=[ipfs_input(0, "/inputs/file.txt")],
               verifier="deterministic", deal={"concurrency": nodes, "confidence": confidence}),
        stack=Stack(nodes=nodes, bad_actors=bad),
        inputs=(TEXT,),
        state="Completed" if accepted else "Failed",
        verdicts=(accepted, rejected),
        check=_no_bad_actor_accepted,
    )


def _raw_folders_match(results, job):
    assert {p.name for p in (results / "raw").iterdir()} == {e["node_id"] for e in job["executions"]}
    for folder in (results / "raw").iterdir():
        assert (folder / "stdout").read_text() == "three\n"


def _no_bad_actor_accepted(results, job):
    assert "forged" not in (results / "stdout").read_text()


# Bacalhau's matrix: nodes / bad actors / confidence -> accepted / rejected.
MATRIX = [matrix_case(*case) for case in [(1, 0, 0, 0, 1), (3, 0, 0, 3, 0), (3, 1, 0, 2, 1), (2, 1, 0, 0, 2),
                                           (5, 2, 4, 0, 5)]]

MATRIX.append(Scenario(
    "wasm is deterministic across 3 honest nodes",
    wasm(["/inputs/file.txt"], inputs=[ipfs_input(0, "/inputs/file.txt")], verifier="deterministic",
         deal={"concurrency": 3}),
    wasm="cat", inputs=(TEXT,), stdout=TEXT.decode(), verdicts=(3, 0),
))
MATRIX.append(Scenario(
    "ipfs verifier accepts results whose CID holds the proposed content",
    docker(["echo", "checked"], verifier="ipfs", deal={"concurrency": 2}),
    stdout="checked\n", verdicts=(2, 0),
))


@pytest.mark.parametrize("scenario", SCENARIOS + MATRIX, ids=lambda s: s.name)
def test_scenario(scenario, devstacks, wasm_modules, http_files, tmp_path):
    http_files["remote.txt"] = b"served over http\n"
    run_scenario(scenario, devstacks(scenario.stack), wasm_modules, tmp_path, {"http": http_files.base})
