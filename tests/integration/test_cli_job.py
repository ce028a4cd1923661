"""`bacalhau job ...` (Bacalhau v1's job commands) as users run them, against a REAL 2-node devstack."""

from __future__ import annotations

import json
import os
import sys

import httpx
import pytest
import trio
import yaml

from bacalhau_py.devstack.stack import devstack

pytestmark = pytest.mark.devstack

JOB_YAML = """\
Name: partitions
Type: batch
Count: {count}
Labels:
  team: blue
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params:
        Image: busybox:latest
        Entrypoint: [sh, -c]
        Parameters:
          - {command}
    Publisher:
      Type: ipfs
    ResultPaths:
      - Name: results
        Path: /results
    Resources:
      CPU: 250m
      Memory: 64Mb
    Timeouts:
      ExecutionTimeout: 120
"""


@pytest.fixture
async def stack(tmp_path):
    async with devstack(tmp_path / "stack", 2, node_args=[["--labels", "zone=eu"], ["--labels", "zone=us"]]) as nodes:
        yield nodes


@pytest.fixture
def bacalhau(stack, tmp_path):
    """Run the CLI in `tmp_path` against the first node: (exit code, stdout, stderr)."""
    env = {**os.environ, "BACALHAU_API_HOST": stack[0].api_host, "BACALHAU_API_PORT": str(httpx.URL(stack[0].api).port)}

    async def run(*args: str, stdin: str = "", timeout: float = 150) -> tuple[int, str, str]:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", *args], stdin=stdin.encode(), cwd=tmp_path, env=env,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        assert "Traceback" not in stderr, stderr
        return result.returncode, stdout, stderr

    return run


async def test_run_a_job_file_and_read_everything_back(bacalhau, stack, tmp_path):
    command = '"echo part $BACALHAU_PARTITION_INDEX of $BACALHAU_PARTITION_COUNT > /results/part; echo hello from $BACALHAU_JOB_ID"'
    (tmp_path / "job.yaml").write_text(JOB_YAML.format(count=2, command=command))
    code, out, err = await bacalhau("job", "validate", "job.yaml")
    assert (code, out) == (0, "The Job is valid\n"), err

    code, out, err = await bacalhau("job", "run", "job.yaml", "--wait")
    assert code == 0, err
    assert out.startswith("Job successfully submitted. Job ID: ")
    job_id = out.splitlines()[0].rsplit(" ", 1)[1]
    assert f"Job {job_id} Completed" in out

    code, out, err = await bacalhau("job", "describe", job_id, "--output", "json")
    assert code == 0, err
    described = json.loads(out)
    assert described["Job"]["ID"] == job_id and described["Job"]["Labels"] == {"team": "blue"}
    assert described["Job"]["State"]["StateType"] == "Completed" and described["Job"]["Count"] == 2
    assert sorted(e["NodeID"] for e in described["Executions"]) == sorted(n.peer_id for n in stack)
    assert described["History"][-1]["JobState"]["New"] == "Completed"
    code, out, err = await bacalhau("job", "describe", job_id[:8], "--output", "yaml")
    assert code == 0 and yaml.safe_load(out)["Job"]["ID"] == job_id, err
    code, out, err = await bacalhau("job", "describe", job_id)
    assert code == 0 and "State         = Completed" in out and stack[1].peer_id in out, err

    # Each execution got its own partition index (0 and 1) of 2.
    code, out, err = await bacalhau("job", "get", job_id, "--output-dir", "results")
    assert code == 0, err
    parts = sorted((tmp_path / "results" / "raw" / node.peer_id / "results" / "part").read_text() for node in stack)
    assert parts == ["part 0 of 2\n", "part 1 of 2\n"]
    assert (tmp_path / "results" / "stdout").read_text() == f"hello from {job_id}\n"

    code, out, err = await bacalhau("job", "logs", job_id)
    assert (code, out) == (0, f"hello from {job_id}\n"), err

    code, out, err = await bacalhau("job", "list", "--output", "json")
    assert code == 0 and job_id in [j["ID"] for j in json.loads(out)["Items"]], err
    code, out, err = await bacalhau("job", "list")
    assert code == 0 and out.split("\n")[0].split() == ["CREATED", "ID", "JOB", "TYPE", "STATE"], out
    assert job_id in out and "Completed" in out

    code, out, err = await bacalhau("job", "executions", job_id)
    assert code == 0 and out.count("Completed") == 2 and stack[0].peer_id in out, out
    code, out, err = await bacalhau("job", "history", job_id, "--event-type", "job", "--output", "json")
    assert code == 0 and [h["JobState"]["New"] for h in json.loads(out)][-2:] == ["Running", "Completed"], out
    code, out, err = await bacalhau("job", "history", job_id)
    assert code == 0 and "Execution" in out and "BidAccepted" in out, out


async def test_ops_stop_id_only_stdin_and_errors(bacalhau, stack):
    code, out, err = await bacalhau("job", "run", "-", "--id-only", stdin=JOB_YAML.format(count=1, command="sleep 120"))
    assert code == 0, err
    job_id = out.strip()
    assert "\n" not in job_id and len(job_id) >= 8

    code, out, err = await bacalhau("job", "stop", job_id)
    assert (code, out) == (0, f"Job successfully stopped. Job ID: {job_id}\n"), err
    code, out, err = await bacalhau("job", "describe", job_id, "--output", "json")
    assert json.loads(out)["Job"]["State"]["StateType"] == "Stopped"
    code, out, err = await bacalhau("job", "stop", job_id)
    assert code == 0 and "already Stopped" in err

    # ops: once on every node that meets the constraints.
    ops = JOB_YAML.format(count=1, command="echo ops").replace("Type: batch\nCount: 1\n", "Type: ops\n")
    for constraints, expected in (("", stack), ("Constraints:\n  - {Key: zone, Operator: '=', Values: [us]}\n", stack[1:])):
        code, out, err = await bacalhau("job", "run", "-", "--wait", "--id-only", stdin=constraints + ops)
        assert code == 0, err
        code, out, err = await bacalhau("job", "executions", out.strip(), "--output", "json")
        assert sorted(e["NodeID"] for e in json.loads(out)) == sorted(n.peer_id for n in expected)

    code, out, err = await bacalhau("job", "describe", "00000000-no-such-job")
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, err
    code, out, err = await bacalhau("job", "run", "-", stdin=JOB_YAML.format(count=1, command="echo never").replace("Type: ipfs", "Type: s3"))
    assert code == 2 and "Job.Tasks[0].Publisher.Type: 's3' is not available" in err, err
    code, out, err = await bacalhau("job", "run", "-", "--wait", stdin=JOB_YAML.format(count=1, command="exit 3"))
    assert code == 0, err  # the job's own exit code does not fail the job, as in Bacalhau
