"""Bacalhau v1's job model to ours and back (api/v1/translate.py): pure translation, no node."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from bacalhau_py.api.v1.translate import (
    execution_to_v1,
    history_to_v1,
    job_from_v1,
    job_state,
    job_to_v1,
    results_to_v1,
    spec_to_v1,
)
from bacalhau_py.errors import UserInputError
from bacalhau_py.models import Constraint, Event, Execution, ExecutionState, Job, JobState

CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def docker_job(**task_extra) -> dict:
    task = {
        "Name": "main",
        "Engine": {"Type": "docker", "Params": {
            "Image": "busybox", "Entrypoint": ["sh", "-c"], "Parameters": ["echo hi > /outputs/a"],
            "EnvironmentVariables": ["A=1", "B=x=y"], "WorkingDirectory": "/work",
        }},
        "Publisher": {"Type": "ipfs"},
        **task_extra,
    }
    return {"Name": "hello", "Namespace": "team", "Type": "batch", "Count": 1, "Tasks": [task]}


def test_docker_job_fields_become_our_spec():
    job = docker_job(
        Env={"C": "3"},
        InputSources=[
            {"Source": {"Type": "ipfs", "Params": {"CID": CID}}, "Target": "/inputs"},
            {"Source": {"Type": "urlDownload", "Params": {"URL": "http://example.org/f.csv"}}, "Target": "/data/f.csv"},
            {"Source": {"Type": "inline", "Params": {"URL": "data:text/plain;base64," + base64.b64encode(b"hey").decode()}},
             "Target": "/note.txt"},
        ],
        ResultPaths=[{"Name": "results", "Path": "/results"}],
        Resources={"CPU": "500m", "Memory": "64Mb", "GPU": "0"},
        Network={"Type": "Full"},
        Timeouts={"ExecutionTimeout": 90},
    )
    job.update(Labels={"team": "a"}, Meta={"owner": "me"}, Constraints=[{"Key": "zone", "Operator": "in", "Values": ["x", "y"]}])
    spec = job_from_v1(job).spec
    assert spec.task.image == "busybox"
    assert spec.task.entrypoint == ["sh", "-c"]
    assert spec.task.command == ["echo hi > /outputs/a"]
    assert spec.task.env == {"C": "3", "A": "1", "B": "x=y"}
    assert spec.task.workdir == "/work"
    assert spec.task.network == "full"
    assert [(i.source, i.path) for i in spec.inputs] == [("ipfs", "/inputs"), ("url", "/data/f.csv"), ("inline", "/note.txt")]
    assert spec.inputs[2].inline_bytes() == b"hey"
    assert {(o.name, o.path) for o in spec.outputs} == {("outputs", "/outputs"), ("results", "/results")}
    assert spec.resources.cpu == 0.5 and spec.resources.memory == 64 << 20
    assert spec.timeout == 90
    assert spec.publisher == "ipfs"
    assert spec.labels == ["team=a"] and spec.meta == {"owner": "me"}
    assert spec.constraints == [Constraint(key="zone", operator="in", values=["x", "y"])]
    assert (spec.name, spec.namespace, spec.job_type, spec.deal.concurrency) == ("hello", "team", "batch", 1)


def test_wasm_job_module_and_entry_point():
    job = {"Type": "batch", "Tasks": [{"Engine": {"Type": "wasm", "Params": {
        "EntryModule": {"Source": {"Type": "ipfs", "Params": {"CID": CID}}},
        "EntryPoint": "_start", "Parameters": ["a"], "EnvironmentVariables": {"K": "v"},
    }}}]}
    spec = job_from_v1(job).spec
    assert spec.task.engine.value == "wasm"
    assert spec.task.module.cid == CID and spec.task.module.path == "/module.wasm"
    assert spec.task.command == ["a"] and spec.task.env == {"K": "v"}


def wasm_job(*imports: dict) -> dict:
    return {"Name": "linked", "Namespace": "team", "Type": "batch", "Tasks": [{"Engine": {"Type": "wasm", "Params": {
        "EntryModule": {"Source": {"Type": "ipfs", "Params": {"CID": CID}}},
        "ImportModules": list(imports),
    }}}]}


def test_wasm_import_modules_are_named_by_alias_or_by_cid_or_url():
    spec = job_from_v1(wasm_job(
        {"Source": {"Type": "ipfs", "Params": {"CID": CID}}},
        {"Source": {"Type": "urlDownload", "Params": {"URL": "http://example.org/lib.wasm"}}},
        {"Source": {"Type": "inline", "Params": {"URL": "data:;base64,AGFzbQEAAAA="}}, "Alias": "env", "Target": "/lib/env.wasm"},
    )).spec
    assert [i.name for i in spec.task.imports] == [CID, "http://example.org/lib.wasm", "env"]
    assert [i.module.source for i in spec.task.imports] == ["ipfs", "url", "inline"]
    assert [i.module.path for i in spec.task.imports] == ["/imports/0.wasm", "/imports/1.wasm", "/lib/env.wasm"]
    assert job_from_v1(spec_to_v1(spec)).spec == spec


def test_wasm_import_modules_read_back_with_an_alias_only_when_named_otherwise():
    spec = job_from_v1(wasm_job(
        {"Source": {"Type": "ipfs", "Params": {"CID": CID}}},
        {"Source": {"Type": "ipfs", "Params": {"CID": CID}}, "Alias": "lib"},
    )).spec
    modules = spec_to_v1(spec)["Tasks"][0]["Engine"]["Params"]["ImportModules"]
    assert ["Alias" in m for m in modules] == [False, True] and modules[1]["Alias"] == "lib"
    assert modules[0]["Source"] == {"Type": "ipfs", "Params": {"CID": CID}}


@pytest.mark.parametrize(
    "module, field",
    [
        ({"Source": {"Type": "inline", "Params": {"URL": "data:;base64,AGFzbQEAAAA="}}},
         "Job.Tasks[0].Engine.Params.ImportModules[0].Alias"),
        ({"Source": {"Type": "ipfs", "Params": {"CID": CID}}, "Alias": 7}, "Job.Tasks[0].Engine.Params.ImportModules[0].Alias"),
        ({"Source": {"Type": "ipfs", "Params": {"CID": "nope"}}}, "Job.Tasks[0].Engine.Params.ImportModules[0].module.cid"),
    ],
)
def test_a_wasm_import_we_cannot_link_is_an_error_naming_it(module, field):
    with pytest.raises(UserInputError) as caught:
        job_from_v1(wasm_job(module))
    assert str(caught.value).startswith(field), str(caught.value)


def test_wasm_import_names_must_be_unique():
    same = {"Source": {"Type": "ipfs", "Params": {"CID": CID}}}
    with pytest.raises(UserInputError, match="unique"):
        job_from_v1(wasm_job(same, same))


@pytest.mark.parametrize("kind", ["localDirectory", "local"])
def test_local_inputs_become_allow_listed_local_paths(kind):
    job = docker_job(InputSources=[
        {"Source": {"Type": kind, "Params": {"SourcePath": "/data/private/", "ReadWrite": False}}, "Target": "/inputs"}])
    spec = job_from_v1(job).spec
    assert [(i.source, i.local_path, i.path) for i in spec.inputs] == [("local", "/data/private", "/inputs")]
    source = spec_to_v1(spec)["Tasks"][0]["InputSources"][0]
    assert source == {"Source": {"Type": "localDirectory", "Params": {"SourcePath": "/data/private", "ReadWrite": False}},
                      "Target": "/inputs"}
    assert job_from_v1(spec_to_v1(spec)).spec == spec


def test_disk_limit_maps_both_ways():
    spec = job_from_v1(docker_job(Resources={"CPU": "1", "Disk": "2Gb"})).spec
    assert spec.resources.disk == 2 << 30
    assert spec_to_v1(spec)["Tasks"][0]["Resources"] == {"CPU": "1", "Disk": str(2 << 30)}
    assert job_from_v1(spec_to_v1(spec)).spec == spec


def test_what_the_sdk_sends_is_accepted():
    # The SDK's README example: no Publisher type, server-set keys absent or null-free.
    job = {"Name": "A Simple Docker Job", "Type": "batch", "Count": 1, "Tasks": [{
        "Name": "My Main task", "Engine": {"Type": "docker", "Params": {"Image": "busybox"}}, "Publisher": {}}]}
    submission = job_from_v1(job)
    assert submission.spec.publisher == "ipfs" and submission.warnings == []


def test_noop_publisher_keeps_results_local_with_a_warning():
    submission = job_from_v1(docker_job(Publisher={"Type": "noop"}))
    assert submission.spec.publisher == "local"
    assert "noop" in submission.warnings[0]


def test_ops_job_runs_on_every_matching_node():
    job = docker_job()
    job.pop("Count")
    job["Type"] = "ops"
    spec = job_from_v1(job, matching_nodes=3).spec
    assert (spec.job_type, spec.deal.concurrency, spec.deal.min_bids) == ("ops", 3, 3)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda j: j.update(Type="service"), "Job.Type"),
        (lambda j: j.update(Priority=5), "Job.Priority"),
        (lambda j: j.update(Surprise=1), "Job.Surprise"),
        (lambda j: j["Tasks"].append(j["Tasks"][0]), "Job.Tasks"),
        (lambda j: j["Tasks"][0]["Engine"].update(Type="python"), "Job.Tasks[0].Engine.Type"),
        (lambda j: j["Tasks"][0]["Engine"]["Params"].update(Volumes=[]), "Job.Tasks[0].Engine.Params.Volumes"),
        (lambda j: j["Tasks"][0].update(Resources={"Disk": "lots"}), "Job.Tasks[0].Resources.Disk"),
        (lambda j: j["Tasks"][0].update(Timeouts={"QueueTimeout": 10}), "Job.Tasks[0].Timeouts.QueueTimeout"),
        (lambda j: j["Tasks"][0].update(Network={"Type": "HTTP", "Domains": ["a.org"]}), "Job.Tasks[0].Network.Domains"),
        (lambda j: j["Tasks"][0].update(Publisher={"Type": "s3"}), "Job.Tasks[0].Publisher.Type"),
        (lambda j: j["Tasks"][0].update(InputSources=[
            {"Source": {"Type": "localDirectory", "Params": {"SourcePath": "/x", "ReadWrite": True}}, "Target": "/in"}]),
         "Job.Tasks[0].InputSources[0].Source.Params.ReadWrite"),
        (lambda j: j["Tasks"][0].update(InputSources=[
            {"Source": {"Type": "local", "Params": {"SourcePath": "data"}}, "Target": "/in"}]),
         "Job.Tasks[0].InputSources[0].local_path"),
        (lambda j: j["Tasks"][0].update(InputSources=[
            {"Source": {"Type": "s3", "Params": {}}, "Target": "/in"}]),
         "Job.Tasks[0].InputSources[0].Source.Type"),
        (lambda j: j["Tasks"][0].update(InputSources=[
            {"Source": {"Type": "ipfs", "Params": {"CID": "nope"}}, "Target": "/in"}]), "Job.Tasks[0].InputSources[0].cid"),
        (lambda j: j["Tasks"][0].update(ResultPaths=[{"Name": "stdout", "Path": "/o"}]), "Job.Tasks[0].ResultPaths[0].name"),
        (lambda j: j["Tasks"][0].update(Resources={"Memory": "lots"}), "Job.Tasks[0].Resources.Memory"),
        (lambda j: j.update(Count=1000), "Job.Count"),
        (lambda j: j.update(Constraints=[{"Key": "a", "Operator": "gt", "Values": ["x"]}]), "Job.Constraints[0]"),
        (lambda j: j.update(Constraints=[{"Key": "a", "Operator": "~", "Values": []}]), "Job.Constraints[0].operator"),
    ],
)
def test_what_we_cannot_honour_is_an_error_naming_the_field(change, field):
    job = docker_job()
    change(job)
    with pytest.raises(UserInputError) as caught:
        job_from_v1(job)
    assert str(caught.value).startswith(field), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "operator, values, labels, matches",
    [
        ("=", ["a"], {"k": "a"}, True),
        ("=", ["a"], {"k": "b"}, False),
        ("!=", ["a"], {}, True),
        ("exists", [], {"k": ""}, True),
        ("exists", [], {}, False),
        ("!", [], {}, True),
        ("in", ["a", "b"], {"k": "b"}, True),
        ("notin", ["a", "b"], {"k": "b"}, False),
        ("gt", ["4"], {"k": "8"}, True),
        ("gt", ["4"], {"k": "two"}, False),
        ("lt", ["4"], {"k": "2"}, True),
        ("lt", ["4"], {}, False),
    ],
)
def test_constraints_match_node_labels(operator, values, labels, matches):
    assert Constraint(key="k", operator=operator, values=values).matches(labels) is matches


def make_job(state: JobState = JobState.COMPLETED, executions=(), events=()) -> Job:
    spec = job_from_v1(docker_job(ResultPaths=[{"Name": "results", "Path": "/results"}])).spec
    return Job(id="j-1234567890", state=state, spec=spec, requester_id="QmRequester", created_at=AT, updated_at=AT,
               executions=list(executions), events=list(events))


def test_a_submitted_job_reads_back_as_the_same_v1_job():
    job = docker_job(ResultPaths=[{"Name": "results", "Path": "/results"}], Timeouts={"ExecutionTimeout": 60})
    spec = job_from_v1(job).spec
    again = job_from_v1(spec_to_v1(spec, job_id="j-1")).spec
    assert again == spec


def test_job_record_in_v1_shape():
    out = job_to_v1(make_job())
    assert out["ID"] == "j-1234567890" and out["Name"] == "hello" and out["Namespace"] == "team"
    assert out["State"] == {"StateType": "Completed"}
    assert out["CreateTime"] == int(AT.timestamp()) * 10**9
    assert out["Meta"]["bacalhau.org/requester.id"] == "QmRequester"
    assert out["Tasks"][0]["Engine"]["Params"]["EnvironmentVariables"] == ["A=1", "B=x=y"]


@pytest.mark.parametrize(
    "state, executions, name",
    [
        (JobState.PENDING, [], "Pending"),
        (JobState.PENDING, [ExecutionState.BID_REJECTED], "Queued"),
        (JobState.RUNNING, [ExecutionState.RUNNING], "Running"),
        (JobState.FAILED, [], "Failed"),
        (JobState.CANCELLED, [], "Stopped"),
    ],
)
def test_job_state_names(state, executions, name):
    job = make_job(state, [execution(s) for s in executions])
    assert job_state(job) == name


def execution(state: ExecutionState, cid: str | None = None, exit_code: int | None = None) -> Execution:
    return Execution(id="e-1", job_id="j-1234567890", node_id="QmNode", state=state, result_cid=cid,
                     exit_code=exit_code, publisher="ipfs" if cid else None, created_at=AT, updated_at=AT)


def test_a_lost_execution_reads_as_failed_and_stopped():
    # v1 has no Lost: its clients see the execution failed (the message says why) and nothing more will run there.
    lost = execution(ExecutionState.LOST).model_copy(update={"message": "node QmNode lost"})
    events = [
        Event(at=AT, execution_id="e-1", node_id="QmNode", execution_state=ExecutionState.BID_ACCEPTED),
        Event(at=AT, execution_id="e-1", node_id="QmNode", execution_state=ExecutionState.LOST),
    ]
    job = make_job(JobState.RUNNING, [lost], events)
    out = execution_to_v1(job, lost)
    assert out["ComputeState"] == {"StateType": 8, "Message": "node QmNode lost"}
    assert out["DesiredState"]["StateType"] == 2
    assert history_to_v1(job)[1]["ExecutionState"] == {"Previous": 5, "New": 8}


def test_every_execution_state_has_a_v1_state():
    for state in ExecutionState:
        assert execution_to_v1(make_job(), execution(state))["ComputeState"]["StateType"] in range(1, 10)


def test_execution_results_and_history():
    done = execution(ExecutionState.RESULT_ACCEPTED, cid=CID, exit_code=0)
    events = [
        Event(at=AT, job_state=JobState.PENDING, message="submitted"),
        Event(at=AT, execution_id="e-1", node_id="QmNode", execution_state=ExecutionState.BID_ACCEPTED),
        Event(at=AT, job_state=JobState.RUNNING),
        Event(at=AT, execution_id="e-1", node_id="QmNode", execution_state=ExecutionState.RESULT_ACCEPTED),
        Event(at=AT, job_state=JobState.COMPLETED),
    ]
    job = make_job(JobState.COMPLETED, [done], events)
    out = execution_to_v1(job, done)
    assert out["ComputeState"]["StateType"] == 7 and out["DesiredState"]["StateType"] == 2
    assert out["PublishedResult"] == {"Type": "ipfs", "Params": {"CID": CID}}
    assert out["RunOutput"]["ExitCode"] == 0
    assert results_to_v1(job) == [{"Type": "ipfs", "Params": {"CID": CID}}]
    history = history_to_v1(job)
    assert [h["Type"] for h in history] == ["JobLevel", "ExecutionLevel", "JobLevel", "ExecutionLevel", "JobLevel"]
    assert history[2]["JobState"] == {"Previous": "Pending", "New": "Running"}
    assert history[3]["ExecutionState"] == {"Previous": 5, "New": 7}
    assert history[0]["Comment"] == "submitted"
