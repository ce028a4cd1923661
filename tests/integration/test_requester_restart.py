"""A requester that dies while its job runs elsewhere picks the job up again after a restart."""

import base64
import json

import httpx
import trio

from bacalhau_py.devstack.stack import devstack, restart

REMOTE = {
    "task": {"engine": "docker", "image": "busybox", "command": ["sh", "-c", "sleep 1; echo survived"]},
    "selector": {"zone": "far"},
}


async def test_a_killed_requester_follows_its_running_job_again_after_a_restart(tmp_path):
    async with devstack(tmp_path, 2, node_args=[[], ["--labels", "zone=far"]]) as stack:
        requester, far = stack
        async with httpx.AsyncClient(timeout=30) as api:
            job_id = (await api.post(f"{requester.api}/api/v1/jobs", json=REMOTE)).json()["id"]
            with trio.fail_after(30):
                while (await api.get(f"{requester.api}/api/v1/jobs/{job_id}")).json()["state"] != "Running":
                    await trio.sleep(0.1)

            # Killed, not stopped: no drain, the job stays Running in its store.
            requester.process.kill()
            await requester.process.wait()
            # Long enough for the compute node to give up reporting the result.
            await trio.sleep(12)
            await restart(requester, stack)

            with trio.fail_after(60):
                while True:
                    job = (await api.get(f"{requester.api}/api/v1/jobs/{job_id}")).json()
                    if job["state"] in ("Completed", "Failed", "Cancelled"):
                        break
                    await trio.sleep(0.2)
            assert job["state"] == "Completed", job["message"]
            assert job["executions"][0]["node_id"] == far.peer_id
            assert any("following its executions again" in e["message"] for e in job["events"])
            logs = (await api.get(f"{requester.api}/api/v1/jobs/{job_id}/logs")).text
            stdout = b"".join(base64.b64decode(json.loads(line)["data"]) for line in logs.splitlines()
                              if json.loads(line).get("stream") == "stdout")
            assert stdout == b"survived\n"
