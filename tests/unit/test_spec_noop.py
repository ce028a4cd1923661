"""The noop engine: a task that runs nothing, for measuring the network alone."""

import json

import pytest

from bacalhau_py.errors import UserInputError
from bacalhau_py.executor import EXECUTORS
from bacalhau_py.models import Engine
from bacalhau_py.models.codec import load_spec


def test_noop_task_needs_no_image_or_module():
    spec = load_spec(json.dumps({"task": {"engine": "noop"}}))
    assert spec.task.engine is Engine.NOOP
    # The compute node looks the executor up by the engine's value.
    assert spec.task.engine.value in EXECUTORS


@pytest.mark.parametrize("extra", [{"image": "busybox"}, {"module": {"source": "ipfs", "path": "/m.wasm",
                                                                     "cid": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"}}])
def test_noop_task_refuses_an_image_or_a_module(extra):
    with pytest.raises(UserInputError, match="noop task runs nothing"):
        load_spec(json.dumps({"task": {"engine": "noop", **extra}}))
