"""Reading a workflow file: `{"tasks": [TASK, ...]}` of IPVM tasks (Homestar's shape).

A task may have a `"name"` (default `task-N`, N its index). Where a CID may
stand (a mount, `with`), a task may write a promise::

    {"await/ok": "NAME"}  or  {"await/ok": {"/": INSTRUCTION_CID}},  optionally with "path": "outputs/x.wasm"

It stands for the awaited task's accepted result folder (or the file or
folder at `path` inside it). A promise is itself content-addressed: its
placeholder is the CID of `{"await/ok": LINK(awaited instruction), "path"}`,
so a task's instruction CID covers what it awaits, and is known before
anything runs (as in Homestar, where an instruction's CID names its promises).
"""

from __future__ import annotations

import copy
import posixpath
import re
from typing import Any

from bacalhau_py.errors import UserInputError
from bacalhau_py.models.codec import decode_dict, parse_document
from bacalhau_py.models.workflow import Promise, WorkflowTask
from bacalhau_py.workflow.instruction import cid_of, instruction_cid, link

MAX_TASKS = 100
# A task's name is its results folder in `workflow get`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
AWAIT = "await/ok"


def is_workflow(data: Any) -> bool:
    return isinstance(data, dict) and "tasks" in data


def read_workflow_text(text: str) -> list[WorkflowTask]:
    return read_workflow(parse_document(text))


def read_workflow(data: Any) -> list[WorkflowTask]:
    """The workflow's tasks, each with its instruction CID; UserInputError naming the task if it is wrong."""
    if not is_workflow(data) or set(data) != {"tasks"}:
        raise UserInputError('workflow: expected {"tasks": [TASK, ...]} and nothing else')
    raw_tasks = data["tasks"]
    if not isinstance(raw_tasks, list) or not 1 <= len(raw_tasks) <= MAX_TASKS:
        raise UserInputError(f"workflow.tasks: expected a list of 1 to {MAX_TASKS} tasks")
    named: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict):
            raise UserInputError(f"workflow.tasks.{index}: expected a task (a mapping)")
        name = raw.get("name", f"task-{index}")
        if not isinstance(name, str) or not _NAME.match(name) or name in ("stdout", "stderr", "exitCode", "raw"):
            raise UserInputError(f"workflow.tasks.{index}.name: {name!r} is not a usable name (letters, digits, _ . -)")
        if name in named:
            raise UserInputError(f"workflow.tasks.{index}.name: {name!r} names two tasks")
        named[name] = {k: v for k, v in raw.items() if k != "name"}

    awaits = {name: _promises(name, task) for name, task in named.items()}
    for name, found in awaits.items():
        for target, _ in found:
            if isinstance(target, str) and target not in named:
                raise UserInputError(f"workflow task {name!r}: awaits {target!r}, which names no task of the workflow")

    done: dict[str, WorkflowTask] = {}
    while len(done) < len(named):
        progress = False
        for name, task in named.items():
            if name in done:
                continue
            targets = [_awaited(target, done) for target, _ in awaits[name]]
            if all(t is not None for t in targets):
                done[name] = _read(name, task, [(t, path) for t, (_, path) in zip(targets, awaits[name])])
                progress = True
        if not progress:
            raise UserInputError(_stuck(named, awaits, done))
    return [done[name] for name in named]


def _promises(name: str, task: dict[str, Any]) -> list[tuple[str | dict, str]]:
    """(target, path) of each promise in the task's `with` and mounts, in order."""
    found = []
    inputs = task.get("inputs")
    mounts = inputs.get("mounts") if isinstance(inputs, dict) else None
    places = [("with", task.get("with"))]
    if isinstance(mounts, dict):
        places += [(f"inputs.mounts.{path}", value) for path, value in mounts.items()]
    for where, value in places:
        if isinstance(value, dict) and AWAIT in value:
            found.append(_promise(name, where, value))
    return found


def _promise(name: str, where: str, value: dict) -> tuple[str | dict, str]:
    at = f"workflow task {name!r}: {where}"
    if set(value) - {AWAIT, "path"}:
        raise UserInputError(f"{at}: a promise has only {AWAIT!r} and 'path'")
    target = value[AWAIT]
    if not (isinstance(target, str) or (isinstance(target, dict) and set(target) == {"/"} and isinstance(target["/"], str))):
        raise UserInputError(f"{at}: {AWAIT!r} takes a task name or {{'/': INSTRUCTION_CID}}")
    path = value.get("path", "")
    if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
        raise UserInputError(f"{at}: path {path!r} must be relative, inside the awaited result (e.g. outputs/x.wasm)")
    return target, posixpath.normpath(path) if path else ""


def _awaited(target: str | dict, done: dict[str, WorkflowTask]) -> WorkflowTask | None:
    if isinstance(target, str):
        return done.get(target)
    return next((t for t in done.values() if t.instruction_cid == target["/"]), None)


def _read(name: str, task: dict[str, Any], awaited: list[tuple[WorkflowTask, str]]) -> WorkflowTask:
    task = copy.deepcopy(task)
    placeholders = [cid_of({AWAIT: link(t.instruction_cid), "path": path}) for t, path in awaited]
    promises = {p: Promise(task=t.name, path=path) for p, (t, path) in zip(placeholders, awaited)}
    remaining = iter(placeholders)
    engine_docker = task.get("do", task.get("can")) == "docker/run"
    if isinstance(task.get("with"), dict) and AWAIT in task["with"]:
        # A docker image from a result is an image archive (ipfs://CID); a wasm module is a CID.
        placeholder = next(remaining)
        task["with"] = f"ipfs://{placeholder}" if engine_docker else {"/": placeholder}
    inputs = task.get("inputs")
    mounts = inputs.get("mounts") if isinstance(inputs, dict) else None
    for path, value in list(mounts.items()) if isinstance(mounts, dict) else []:
        if isinstance(value, dict) and AWAIT in value:
            mounts[path] = {"/": next(remaining)}
    try:
        spec = decode_dict(task).spec
    except UserInputError as error:
        raise UserInputError(f"workflow task {name!r}: {error.message}") from None
    return WorkflowTask(name=name, instruction_cid=instruction_cid(spec), spec=spec, promises=promises)


def _stuck(named: dict, awaits: dict, done: dict) -> str:
    """Why the tasks left cannot be read: a cycle of awaits, else an await of an instruction no task has."""
    waiting = [n for n in named if n not in done]
    for name in waiting:
        cycle = _cycle(name, awaits)
        if cycle:
            return f"workflow tasks form a cycle: {' -> '.join(cycle)}"
    known = {t.instruction_cid for t in done.values()}
    for name in waiting:
        for target, _ in awaits[name]:
            if isinstance(target, dict) and target["/"] not in known:
                return f"workflow task {name!r}: awaits instruction {target['/']}, which no task of the workflow has"
    return f"workflow tasks {', '.join(waiting)} cannot be read"


def _cycle(start: str, awaits: dict) -> list[str] | None:
    """A cycle of name awaits through `start`, as names (first repeated last), if there is one."""
    path = [start]
    seen = {start}

    def visit(name: str) -> list[str] | None:
        for target, _ in awaits[name]:
            if not isinstance(target, str):
                continue
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                path.append(target)
                found = visit(target)
                if found:
                    return found
                path.pop()
        return None

    return visit(start)
