"""Jobs beyond a node's capacity wait (visibly) instead of failing, and never overlap."""

import httpx
import trio

from bacalhau_py.devstack.stack import devstack, restart
from jobs_api import Signed, finished, stdout_of

SLEEPER = {"task": {"engine": "docker", "image": "busybox",
                    "command": ["sh", "-c", "cut -d' ' -f1 /proc/uptime; sleep 1; cut -d' ' -f1 /proc/uptime"]},
           "resources": {"cpu": "1"}}


async def test_jobs_over_capacity_queue_and_run_one_at_a_time(tmp_path):
    async with devstack(tmp_path, 1, node_args=[["--limit-total-cpu", "1"]]) as (node,):
        async with httpx.AsyncClient(timeout=30, auth=Signed()) as api:
            ids = []
            for _ in range(3):
                response = await api.post(f"{node.api}/api/v1/jobs", json=SLEEPER)
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
            jobs = [await finished(api, node.api, job_id, timeout=90) for job_id in ids]
            assert [j["state"] for j in jobs] == ["Completed"] * 3, [j["message"] for j in jobs]
            assert any(e["message"].startswith("queued: ") for j in jobs for e in j["events"])
            spans = []
            for job_id in ids:
                start, end = map(float, (await stdout_of(api, node.api, job_id)).split())
                spans.append((start, end))
            spans.sort()
            # With capacity for one, no two runs overlap.
            assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


async def test_a_queued_job_survives_a_restart_of_its_node(tmp_path):
    long_job = {**SLEEPER, "task": {**SLEEPER["task"], "command": ["sleep", "600"]}}
    async with devstack(tmp_path, 1, node_args=[["--limit-total-cpu", "1"]]) as (node,):
        async with httpx.AsyncClient(timeout=30, auth=Signed()) as api:
            running = (await api.post(f"{node.api}/api/v1/jobs", json=long_job)).json()["id"]
            queued = (await api.post(f"{node.api}/api/v1/jobs", json=SLEEPER)).json()["id"]
            with trio.fail_after(30):
                while not any(e["message"].startswith("queued: ")
                              for e in (await api.get(f"{node.api}/api/v1/jobs/{queued}")).json()["events"]):
                    await trio.sleep(0.2)

            await restart(node)

            job = await finished(api, node.api, queued)
            assert job["state"] == "Completed", job["message"]
            assert any("offering the job again" in e["message"] for e in job["events"])
            interrupted = (await api.get(f"{node.api}/api/v1/jobs/{running}")).json()
            assert interrupted["state"] == "Failed" and interrupted["message"]
