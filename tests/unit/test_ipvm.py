"""IPVM tasks as the job-spec discussion writes them (tests/assets/ipvm: its examples, verbatim)."""

import json
from pathlib import Path

import pytest

from bacalhau_py.cli.main import main
from bacalhau_py.errors import UserInputError
from bacalhau_py.models.codec import decode_spec, load_spec

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "ipvm"
DOCKER = ASSETS / "docker.jsonc"
WASM = ASSETS / "wasm.jsonc"
CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
DIGEST = "4b1d0c4a2d2aaf63b37111f34eb9fa89fa1bf53dd6e4ca954d47caebca4005c2"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def task(**fields) -> str:
    return json.dumps({"with": "busybox", "do": "docker/run", **fields})


def test_the_docker_example_verbatim_names_the_publisher_this_network_lacks(capsys):
    code, out, err = cli(capsys, "validate", str(DOCKER))
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        "Error: ipvm.meta.bacalhau/config.publisher: 'estuary' is not a publisher this network has"
        " (it has: ipfs, local)"
    )


def test_the_docker_example_with_a_publisher_we_have_shows_what_was_understood(capsys, tmp_path):
    spec = tmp_path / "docker.jsonc"
    spec.write_text(DOCKER.read_text().replace('"estuary"', '"ipfs"'))
    code, out, err = cli(capsys, "validate", str(spec))
    assert code == 0, err
    assert out.splitlines() == [
        f"{spec}: valid docker job spec",
        "  engine:     docker",
        f"  image:      ubuntu@sha256:{DIGEST}",
        "  command:    bash -c echo 'hello, world'",
        "  mount:      /inputs <- ipfs://bafybeih5fo3ggbgkg5ftwzycup4shhcqrjpd7toyvnagwicxzkqekjtqba",
        "  mount:      /more <- https://example.com/data.txt",
        "  output:     /outputs -> outputs/",
        "  resources:  cpu 0.1, memory 1000000000 bytes (953.7 MiB), disk 1000000 bytes, gpu 1",
        "  timeout:    300 s",
        "  verifier:   deterministic",
        "  publisher:  ipfs",
        "  labels:     my-lovely-job",
        "  cid:        bafyreid7cagutkv3lluyh3fzrmol25p2bmgiidzrpsrj7qwphjc6urkofy",
        "  memo:       no",
    ]
    assert err == "Warning: ipvm.meta.bacalhau/config.dnt: accepted and ignored" \
        " (this network keeps no tracking to opt out of)\n"


def test_the_wasm_example_verbatim_validates(capsys):
    code, out, err = cli(capsys, "validate", str(WASM))
    assert code == 0 and err == ""
    assert out.splitlines() == [
        f"{WASM}: valid wasm job spec",
        "  engine:     wasm",
        "  module:     ipfs://Qmajb9T3jBdMSp7xh2JruNrqg3hniCnM6EUVsBocARPJRQ",
        "  import:     ipfs://bafybeih5fo3ggbgkg5ftwzycup4shhcqrjpd7toyvnagwicxzkqekjtqba",
        "  import:     https://example.com/library.wasm",
        "  entrypoint: _start",
        "  command:    /inputs.csv /outputs/uk-tariff-2021-01-01--latest--measures-as-defined.parquet",
        "  mount:      /input.csv <- https://data.api.trade.gov.uk/v1/datasets/uk-tariff-2021-01-01/versions/"
        "latest/tables/measures-as-defined/data?format=csv&download",
        "  output:     /outputs -> outputs/",
        "  output:     /outupts -> outupts/",
        "  resources:  node defaults",
        "  timeout:    1800 s",
        "  verifier:   noop",
        "  publisher:  ipfs",
        "  cid:        bafyreibo4d5r4gza7wituzkcgsl3wkz5lky6tb6p7itwzkzkhck7ljj7ii",
        "  memo:       no",
    ]


def test_wasm_imports_are_known_by_cid_or_url_unless_named():
    spec = load_spec(json.dumps({
        "with": f"ipfs://{CID}", "do": "wasm32-wasi/run",
        "inputs": {"imports": [{"/": CID, "name": "easter"}, {"url": "https://example.com/lib.wasm"}, {"/": CID}]},
    }))
    assert [(i.name, i.module.source) for i in spec.task.imports] == [
        ("easter", "ipfs"), ("https://example.com/lib.wasm", "url"), (CID, "ipfs"),
    ]


def test_can_is_another_name_for_do():
    assert load_spec(task(can="docker/run", **{"with": "busybox"}).replace('"do": "docker/run", ', "")).task.image \
        == "busybox"
    with pytest.raises(UserInputError, match="not both"):
        load_spec(task(can="docker/run"))


def test_outputs_are_keyed_by_path_and_may_carry_a_name():
    spec = load_spec(task(inputs={"outputs": {"/outputs": {}, "/data/results/": {"name": "r"}, "/x/logs": {}}}))
    assert [(o.name, o.path) for o in spec.outputs] == [
        ("outputs", "/outputs"), ("r", "/data/results"), ("logs", "/x/logs"),
    ]
    # This project's earlier form, name -> path, still reads.
    assert load_spec(task(inputs={"outputs": {"results": "/outputs"}})).outputs[0].name == "results"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"cpu": "100m"}, {"cpu": 0.1}),
        ({"cpu": 2}, {"cpu": 2.0}),
        ({"memory": [1, "giga", "byte"]}, {"memory": 10**9}),
        ({"memory": [2, "mebi", "bytes"]}, {"memory": 2 << 20}),
        ({"memory": [512, "bytes"]}, {"memory": 512}),
        ({"disk": "200GB"}, {"disk": 200 << 30}),
        ({"disk": 4096}, {"disk": 4096}),
        ({"gpu": 1}, {"gpu": 1}),
    ],
)
def test_resources_in_ipvm_units(given, expected):
    resources = load_spec(task(meta={"bacalhau/config": {"resources": given}})).resources
    assert {key: getattr(resources, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [(300, 300), ([500, "milli", "seconds"], 0.5), ([5, "minutes"], 300), ([2, "hours"], 7200)],
)
def test_timeouts_in_ipvm_units(timeout, seconds):
    assert load_spec(task(meta={"ipvm/config": {"timeout": timeout}})).timeout == seconds


def test_annotations_are_kept_as_labels_and_dnt_is_a_warning():
    decoded = decode_spec(task(meta={
        "bacalhau/config": {"annotations": ["a", "b"], "dnt": True},
        "fission/config": {"anything": 1},
    }))
    assert decoded.spec.labels == ["a", "b"]
    assert decoded.warnings == [
        "ipvm.meta.bacalhau/config.dnt: accepted and ignored (this network keeps no tracking to opt out of)",
        "ipvm.meta.fission/config: not read by this network; ignored",
    ]


def test_docker_with_is_kept_as_the_image_reference():
    assert load_spec(task(**{"with": f"ubuntu@sha256:{DIGEST}"})).task.image == f"ubuntu@sha256:{DIGEST}"
    # An image archive in IPFS: the compute node loads it.
    assert load_spec(task(**{"with": f"ipfs://{CID}"})).task.image == f"ipfs://{CID}"


def test_json_with_comments_keeps_comment_marks_inside_strings():
    spec = load_spec("""
    // a task
    {
      "with": "busybox", /* the image */
      "do": "docker/run",
      "inputs": {
        "args": ["echo", "// not a comment", "/* nor this */",],
        "mounts": {"/in": {"url": "https://example.com/a//b"},},
      },
    }
    """)
    assert spec.task.command == ["echo", "// not a comment", "/* nor this */"]
    assert spec.inputs[0].url == "https://example.com/a//b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (task(**{"with": "ubuntu@sha256:abc"}), "ipvm.with: 'ubuntu@sha256:abc' is not NAME@sha256:HEX"),
        (task(**{"with": "ipfs://nope"}), "ipvm.with: 'ipfs://nope' is not ipfs://CID"),
        (json.dumps({"with": "nope", "do": "wasm32-wasi/run"}), "ipvm.with: 'nope' is not a wasm module"),
        (task(inputs={"imports": []}), "ipvm.inputs.imports: unknown field"),
        (json.dumps({"with": CID, "do": "wasm32-wasi/run", "inputs": {"imports": [{"x": 1}]}}),
         "ipvm.inputs.imports.0:"),
        (task(inputs={"outputs": {"/out": {"size": 1}}}), "ipvm.inputs.outputs./out.size: unknown field"),
        (task(inputs={"outputs": {"/bad name": {}}}), "ipvm.outputs.0.name: 'bad name' is not a usable output name"),
        (task(meta={"bacalhau/config": {"resources": {"memory": [1, "lots", "byte"]}}}),
         "ipvm.meta.bacalhau/config.resources.memory: [1, 'lots', 'byte'] is not a size"),
        (task(meta={"bacalhau/config": {"resources": {"ram": 1}}}),
         "ipvm.meta.bacalhau/config.resources.ram: unknown field"),
        (task(meta={"ipvm/config": {"timeout": [1, "fortnight"]}}), "ipvm.meta.ipvm/config.timeout:"),
        (task(meta={"bacalhau/config": {"annotations": "x"}}), "expected a list of strings"),
        (task(meta={"bacalhau/config": {"sharding": 5}}), "ipvm.meta.bacalhau/config.sharding: unknown field"),
        ('{"with": "busybox", "do": "docker/run", "do": "wasm32-wasi/run"}', 'Duplicate key "do"'),
        ('{"with": "busybox", "do": "docker/run", "meta": {"ipvm/config": {"timeout": NaN}}}', "NaN"),
        ('{"with": "busybox",\n "do": "docker/run" "inputs": {}}', "spec: not valid JSON: line 2 Unexpected"),
        ('{"with": ' + "[" * 50_000, "spec: nested too deeply"),
    ],
)
def test_bad_tasks_get_one_line_naming_the_field(text, message):
    with pytest.raises(UserInputError) as error:
        load_spec(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_and_plain_json_specs_still_read():
    assert load_spec("{task: {engine: docker, image: busybox}}").task.image == "busybox"
    assert load_spec('{"task": {"engine": "docker", "image": "busybox"}}').task.image == "busybox"
    assert load_spec("with: busybox\ndo: docker/run\n").task.image == "busybox"


HOSTILE = [
    {"with": "busybox", "do": ["docker/run"]},
    {"with": ["busybox"], "do": "docker/run"},
    {"with": {"/": 5}, "do": "wasm32-wasi/run"},
    {"with": "busybox", "do": "docker/run", "inputs": []},
    {"with": "busybox", "do": "docker/run", "inputs": {"mounts": {"/a": {"url": 5}}}},
    {"with": "busybox", "do": "docker/run", "inputs": {"mounts": {"/a": {"/": [CID]}}}},
    {"with": "busybox", "do": "docker/run", "inputs": {"outputs": {"/a": {"name": ["x"]}}}},
    {"with": "busybox", "do": "docker/run", "inputs": {"entrypoint": {"a": 1}, "env": {"A": 1}}},
    {"with": CID, "do": "wasm32-wasi/run", "inputs": {"imports": [{"/": CID, "name": {"x": 1}}]}},
    {"with": CID, "do": "wasm32-wasi/run", "inputs": {"imports": "x"}},
    {"with": "busybox", "do": "docker/run", "meta": []},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"publisher": ["ipfs"]}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"verifier": {"a": 1}}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"resources": {"memory": [1, ["giga"], "byte"]}}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"resources": {"memory": [1e300, "tera", "byte"]}}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"resources": {"disk": "9" * 400 + "Tb"}}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"resources": {"cpu": [1]}}}},
    {"with": "busybox", "do": "docker/run", "meta": {"ipvm/config": {"timeout": [1, ["milli"], "seconds"]}}},
    {"with": "busybox", "do": "docker/run", "meta": {"ipvm/config": {"timeout": 10**10}}},
    {"with": "busybox", "do": "docker/run", "meta": {"bacalhau/config": {"deal": {"concurrency": "many"}}}},
]


@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_tasks_are_one_line_input_errors(data):
    # The API reads IPVM tasks too: whatever arrives is a 400 with one line, never a crash.
    with pytest.raises(UserInputError) as error:
        load_spec(json.dumps(data))
    assert "\n" not in str(error.value)
