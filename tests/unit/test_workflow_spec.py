"""Reading workflow files: promises, instruction CIDs, and the errors `validate` gives."""

import json

import pytest

from bacalhau_py.errors import UserInputError
from bacalhau_py.workflow.spec import read_workflow

CID = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"


def _build(**extra):
    return {"name": "build", "with": "busybox", "do": "docker/run",
            "inputs": {"args": ["sh", "-c", "cp /inputs/m.wasm /outputs/"], "mounts": {"/inputs": {"/": CID}}}, **extra}


def _run(target):
    return {"name": "run", "with": {"await/ok": target, "path": "outputs/m.wasm"}, "do": "wasm32-wasi/run"}


def test_a_promise_by_name_or_by_instruction_cid_is_the_same_instruction():
    by_name = read_workflow({"tasks": [_build(), _run("build")]})
    build, run = by_name
    assert run.awaits() == {"build"}
    (promise,) = run.promises.values()
    assert promise.task == "build" and promise.path == "outputs/m.wasm"
    # The placeholder stands where the module goes until the result is known.
    assert run.spec.task.module.cid in run.promises
    by_cid = read_workflow({"tasks": [_run({"/": build.instruction_cid}), _build()]})
    assert by_cid[0].instruction_cid == run.instruction_cid


def test_a_task_awaiting_a_changed_task_gets_a_new_cid():
    first = read_workflow({"tasks": [_build(), _run("build")]})
    changed = read_workflow({"tasks": [_build(nnc="2"), _run("build")]})
    assert first[0].instruction_cid != changed[0].instruction_cid
    assert first[1].instruction_cid != changed[1].instruction_cid


def test_a_mount_may_await_and_names_default_to_the_index():
    tasks = read_workflow({"tasks": [
        {"with": "busybox", "do": "docker/run"},
        {"with": "busybox", "do": "docker/run", "inputs": {"mounts": {"/in": {"await/ok": "task-0"}}}},
    ]})
    assert [t.name for t in tasks] == ["task-0", "task-1"]
    assert tasks[1].spec.inputs[0].cid in tasks[1].promises


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([_build(), _run("nothing")], "workflow task 'run': awaits 'nothing', which names no task of the workflow"),
        ([_run({"/": "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"})],
         "workflow task 'run': awaits instruction bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae,"
         " which no task of the workflow has"),
        ([{**_run("b"), "name": "a"}, {**_run("a"), "name": "b"}], "workflow tasks form a cycle: a -> b -> a"),
        ([_build(), _build()], "workflow.tasks.1.name: 'build' names two tasks"),
        ([{**_run("build"), "with": {"await/ok": "build", "path": "../../etc/passwd"}}, _build()],
         "workflow task 'run': with: path '../../etc/passwd' must be relative, inside the awaited result"),
        ([{**_build(), "do": "k8s/run"}], "workflow task 'build': ipvm.do: 'k8s/run' is not supported"),
        ([{**_build(), "inputs": ["not", "a", "mapping"]}], "workflow task 'build': ipvm.inputs: expected a mapping"),
        ([{**_run("build"), "with": {"await/ok": 7}}, _build()],
         "workflow task 'run': with: 'await/ok' takes a task name or {'/': INSTRUCTION_CID}"),
    ],
)
def test_errors_name_the_task(tasks, message):
    with pytest.raises(UserInputError) as error:
        read_workflow({"tasks": tasks})
    assert error.value.message.startswith(message)


def test_validate_shows_each_task_and_its_cid(tmp_path, capsys):
    from bacalhau_py.cli.main import main

    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"tasks": [_build(), _run("build")]}))
    with pytest.raises(SystemExit) as exit:
        main(["validate", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert exit.value.code == 0
    tasks = read_workflow({"tasks": [_build(), _run("build")]})
    assert out == [
        f"{path}: valid workflow of 2 task(s)",
        f"  build: docker, instruction {tasks[0].instruction_cid}",
        f"  run: wasm, instruction {tasks[1].instruction_cid} (awaits build)",
    ]


def test_validate_of_a_cycle_is_one_line_and_exit_2(tmp_path, capsys):
    from bacalhau_py.cli.main import main

    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"tasks": [{**_run("b"), "name": "a"}, {**_run("a"), "name": "b"}]}))
    with pytest.raises(SystemExit) as exit:
        main(["validate", str(path)])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "Error: workflow tasks form a cycle: a -> b -> a\n"
