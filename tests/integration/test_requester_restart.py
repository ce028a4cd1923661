"""A requester that dies while its job runs elsewhere picks the job up again after a restart."""

import httpx
import trio

from bacalhau_py.devstack.stack import devstack, restart
from jobs_api import Signed, finished, stdout_of

REMOTE = {
    "task": {"engine": "docker", "image": "busybox", "command": ["sh", "-c", "sleep 1; echo survived"]},
    "selector": {"zone": "far"},
}


async def test_a_killed_requester_follows_its_running_job_again_after_a_restart(tmp_path):
    async with devstack(tmp_path, 2, node_args=[[], ["--labels", "zone=far"]]) as stack:
        requester, far = stack
        async with httpx.AsyncClient(timeout=30, auth=Signed()) as api:
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

            job = await finished(api, requester.api, job_id)
            assert job["state"] == "Completed", job["message"]
            assert job["executions"][0]["node_id"] == far.peer_id
            assert any("following its executions again" in e["message"] for e in job["events"])
            assert await stdout_of(api, requester.api, job_id) == b"survived\n"
