"""Bacalhau's own Python SDK (bacalhau-sdk 1.4.2), used exactly as its README does.

Run by tests/integration/test_v1_sdk.py with the SDK's venv (.venv-sdk), never
imported by pytest. The node is found through BACALHAU_API_HOST and
BACALHAU_API_PORT, as the SDK reads them. One step per run; each prints one
JSON object of what the SDK returned. The SDK prints and swallows API errors
(returning None), so a None answer exits 1 with what was asked.

    sdk_client.py submit COMMAND        -> {"job_id", "warnings"}
    sdk_client.py read JOB_ID           -> the job, its executions, history, results and the job list
    sdk_client.py stop JOB_ID           -> {"evaluation_id"}
"""

import json
import sys

from bacalhau_apiclient.models.all_of_execution_published_result import SpecConfig
from bacalhau_apiclient.models.api_put_job_request import ApiPutJobRequest as PutJobRequest
from bacalhau_apiclient.models.job import Job
from bacalhau_apiclient.models.task import Task
from bacalhau_sdk.jobs import Jobs


def answer(value, what):
    if value is None:
        print(f"the SDK got no answer for {what}", file=sys.stderr)
        sys.exit(1)
    return value


def submit(jobs, command):
    task = Task(
        name="My Main task",
        engine=SpecConfig(type="docker", params=dict(Image="busybox:latest", Entrypoint=["sh", "-c"], Parameters=[command])),
        publisher=SpecConfig(),
    )
    job = Job(name="A Simple Docker Job", type="batch", count=1, tasks=[task])
    response = answer(jobs.put(PutJobRequest(job=job)), "put")
    return {"job_id": response.job_id, "warnings": response.warnings}


def read(jobs, job_id):
    got = answer(jobs.get(job_id, include="executions,history"), "get")
    executions = answer(jobs.executions(job_id), "executions")
    history = answer(jobs.history(job_id, event_type="all"), "history")
    results = answer(jobs.results(job_id), "results")
    listed = answer(jobs.list(limit=10), "list")
    return {
        "job": {"id": got.job.id, "name": got.job.name, "type": got.job.type, "state": got.job.state.state_type,
                "image": got.job.tasks[0].engine.params["Image"]},
        "included_executions": len(got.executions.items),
        "included_history": len(got.history.items),
        "executions": [
            {"id": e.id, "job_id": e.job_id, "node_id": e.node_id, "state": e.compute_state.state_type,
             "exit_code": e.run_output.exit_code if e.run_output else None}
            for e in executions.items
        ],
        "history": [
            {"type": h.type, "job_state": h.job_state and h.job_state.to_dict(),
             "execution_state": h.execution_state and h.execution_state.to_dict()}
            for h in history.items
        ],
        "results": [{"type": r.type, "params": r.params} for r in results.items],
        "listed": [j.id for j in listed.items],
    }


def stop(jobs, job_id):
    return {"evaluation_id": answer(jobs.stop(job_id, reason="the SDK test is done with it"), "stop").evaluation_id}


if __name__ == "__main__":
    step, argument = sys.argv[1], sys.argv[2]
    print(json.dumps({"submit": submit, "read": read, "stop": stop}[step](Jobs(), argument)))
