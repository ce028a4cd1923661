import json

import pytest
from pydantic import ValidationError

from bacalhau_py.errors import UserInputError
from bacalhau_py.models import InputSource, parse_cpu, parse_size
from bacalhau_py.models.codec import dump_spec_yaml, load_spec

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def docker_spec(**extra):
    return json.dumps({"task": {"engine": "docker", "image": "busybox", "command": ["echo", "hi"]}, **extra})


def test_outputs_volume_is_always_present():
    spec = load_spec(docker_spec(outputs=[{"name": "apples", "path": "/output_folder"}]))
    assert [(o.name, o.path) for o in spec.outputs] == [("outputs", "/outputs"), ("apples", "/output_folder")]


def test_a_named_volume_at_outputs_replaces_the_default():
    spec = load_spec(docker_spec(outputs=[{"name": "results", "path": "/outputs"}]))
    assert [(o.name, o.path) for o in spec.outputs] == [("results", "/outputs")]


def test_yaml_round_trip_keeps_the_spec():
    spec = load_spec(docker_spec(inputs=[{"source": "ipfs", "cid": CID, "path": "/inputs/file.txt"}]))
    assert load_spec(dump_spec_yaml(spec)) == spec


@pytest.mark.parametrize(
    ("text", "size"), [("64Mb", 64 << 20), ("1Gb", 1 << 30), ("512MiB", 512 << 20), ("1024", 1024), ("2k", 2048)]
)
def test_sizes_parse_like_docker(text, size):
    assert parse_size(text) == size


def test_cpu_accepts_millicores():
    assert parse_cpu("500m") == 0.5 and parse_cpu("2") == 2.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"task": {"engine": "docker"}}, "spec.task: a docker task needs `image`"),
        ({"task": {"engine": "podman", "image": "x"}}, "spec.task.engine"),
        ({"task": {"engine": "wasm"}}, "needs `module`"),
        ({"task": {"engine": "docker", "image": "b"}, "inputs": [{"source": "ipfs", "cid": "notacid", "path": "/x"}]},
         "spec.inputs.0.cid: 'notacid' is not a CID"),
        ({"task": {"engine": "docker", "image": "b"}, "inputs": [{"source": "ipfs", "cid": CID, "path": "rel"}]},
         "is not an absolute path"),
        ({"task": {"engine": "docker", "image": "b"}, "verifier": "magic"}, "unknown verifier 'magic'"),
        ({"task": {"engine": "docker", "image": "b"}, "publisher": "s3"}, "unknown publisher 's3'"),
        ({"task": {"engine": "docker", "image": "b"}, "resources": {"memory": "lots"}}, "spec.resources.memory"),
        ({"task": {"engine": "docker", "image": "b"}, "deal": {"concurrency": 1, "confidence": 3}},
         "confidence 3 is more than concurrency 1"),
        ({"task": {"engine": "docker", "image": "b"}, "colour": "red"}, "spec.colour: unknown field"),
        ({"task": {"engine": "docker", "image": "b"}, "outputs": [{"name": "o", "path": "/inputs"}],
          "inputs": [{"source": "ipfs", "cid": CID, "path": "/inputs"}]}, "two volumes are mounted at /inputs"),
        ({"task": {"engine": "docker", "image": "b"}, "inputs": [{"source": "ipfs", "cid": CID, "path": "/outputs/in"}]},
         "input /outputs/in and output /outputs overlap"),
        ({"task": {"engine": "docker", "image": "b"}, "outputs": [{"name": "o", "path": "/data/out"}],
          "inputs": [{"source": "ipfs", "cid": CID, "path": "/data"}]}, "input /data and output /data/out overlap"),
    ],
)
def test_bad_specs_get_one_line_naming_the_field(spec, message):
    with pytest.raises(UserInputError) as error:
        load_spec(json.dumps(spec))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_not_yaml_says_where():
    with pytest.raises(UserInputError, match="line 1"):
        load_spec("task: [unclosed")


def test_ipvm_docker_task():
    spec = load_spec(json.dumps({
        "with": "busybox",
        "do": "docker/run",
        "inputs": {
            "entrypoint": ["sh", "-c"],
            "args": ["wc -l /inputs/file.txt > /outputs/n"],
            "env": {"A": "1"},
            "mounts": {"/inputs/file.txt": {"/": CID}, "/data": {"url": "https://example.org/x.csv"}},
            "outputs": {"results": "/results"},
        },
        "meta": {"bacalhau/config": {"verifier": "deterministic", "timeout": 30,
                                      "deal": {"concurrency": 3}, "resources": {"memory": "64Mb"}}},
    }))
    assert spec.task.image == "busybox" and spec.task.entrypoint == ["sh", "-c"]
    assert [i.source for i in spec.inputs] == ["ipfs", "url"]
    assert {o.name for o in spec.outputs} == {"outputs", "results"}
    assert spec.verifier == "deterministic" and spec.deal.concurrency == 3 and spec.timeout == 30
    assert spec.resources.memory == 64 << 20


def test_ipvm_wasm_task_takes_the_module_from_with():
    spec = load_spec(json.dumps({"with": f"ipfs://{CID}", "do": "wasm32-wasi/run", "inputs": {"args": ["a"]}}))
    assert spec.task.module.cid == CID and spec.task.command == ["a"]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"with": "busybox", "do": "shell/run"}, "ipvm.do: 'shell/run' is not supported"),
        ({"with": "busybox", "do": "docker/run", "inputs": {"mounts": {"/x": "Qm"}}}, "ipvm.inputs.mounts./x"),
        ({"with": "busybox", "do": "docker/run", "extra": 1}, "ipvm.extra: unknown field"),
    ],
)
def test_bad_ipvm_tasks(task, message):
    with pytest.raises(UserInputError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_spec(json.dumps(task))


@pytest.mark.parametrize("path", ["data/private", "/data/\0private"])
def test_a_local_input_needs_an_absolute_path(path):
    with pytest.raises(ValidationError, match="is not an absolute path"):
        InputSource(source="local", local_path=path, path="/private")
    assert InputSource(source="local", local_path="/data/x/../private", path="/p").local_path == "/data/private"
