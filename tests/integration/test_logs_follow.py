"""`bacalhau logs -f` shows output while the job runs, across nodes."""

import subprocess
import sys

import httpx
import trio

from bacalhau_py.devstack.stack import devstack
from jobs_api import Signed

TICKER = {
    "task": {"engine": "docker", "image": "busybox",
             "command": ["sh", "-c", "echo one; echo err >&2; sleep 3; echo two"]},
    "selector": {"zone": "far"},
}


async def test_logs_follow_streams_a_remote_job_while_it_runs(tmp_path):
    async with devstack(tmp_path, 2, node_args=[[], ["--labels", "zone=far"]]) as (near, far):
        async with httpx.AsyncClient(base_url=f"{near.api}/api/v1", timeout=30, auth=Signed()) as api:
            job_id = (await api.post("/jobs", json=TICKER)).json()["id"]
            follower = await trio.lowlevel.open_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", "logs", "-f", job_id,
                 "--api-host", near.api_host, "--api-port", str(near.api_port)],
                stdout=subprocess.PIPE,
            )
            try:
                with trio.fail_after(30):
                    first = await follower.stdout.receive_some(100)
                assert first.startswith(b"one\n")
                # The first line arrived while the program was still sleeping.
                job = (await api.get(f"/jobs/{job_id}")).json()
                assert job["state"] == "Running"
                assert job["executions"][0]["node_id"] == far.peer_id
                rest = b""
                with trio.fail_after(30):
                    while chunk := await follower.stdout.receive_some(100):
                        rest += chunk
                assert (first + rest) == b"one\ntwo\n"
                assert await follower.wait() == 0
            finally:
                if follower.returncode is None:
                    follower.kill()
                    await follower.wait()
