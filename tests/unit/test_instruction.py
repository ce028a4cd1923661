"""Instruction CIDs: dag-cbor against known vectors, and what does (not) change a task's CID."""

import base58
import pytest

from bacalhau_py.models.codec import spec_from_dict
from bacalhau_py.workflow.instruction import cid_of, content_addressed, dag_cbor, instruction_cid, link, memoized_by_default

CID = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"


def test_known_vectors():
    # The dag-cbor CID of {"hello": "world"} that every IPLD implementation computes.
    assert cid_of({"hello": "world"}) == "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"
    # Map keys: shorter first, then bytewise; a link is tag 42 over 0x00 + the binary CID.
    assert dag_cbor({"b": 1, "aa": [1, 2, "x"], "a": None}).hex() == "a36161f66162016261618301026178"
    assert dag_cbor({"l": link(CID)}) == bytes.fromhex("a1616cd82a582300") + base58.b58decode(CID)


def test_floats_have_no_place():
    with pytest.raises(TypeError):
        dag_cbor({"x": 1.5})


def _task(**meta):
    return {
        "with": "busybox",
        "do": "docker/run",
        "inputs": {"args": ["cat", "/inputs/x"], "mounts": {"/inputs": {"/": CID}}},
        "meta": meta,
    }


def test_meta_does_not_change_the_cid():
    plain = instruction_cid(spec_from_dict(_task()))
    configured = instruction_cid(spec_from_dict(_task(**{"bacalhau/config": {"timeout": 60, "publisher": "local"}})))
    assert plain == configured
    assert plain.startswith("bafyrei")


def test_flags_and_ipvm_give_the_same_cid():
    flags = spec_from_dict(
        {
            "task": {"engine": "docker", "image": "busybox", "command": ["cat", "/inputs/x"]},
            "inputs": [{"source": "ipfs", "cid": CID, "path": "/inputs"}],
            "timeout": 42,
        }
    )
    assert instruction_cid(flags) == instruction_cid(spec_from_dict(_task()))


def test_what_is_computed_changes_the_cid():
    base = instruction_cid(spec_from_dict(_task()))
    other_args = _task()
    other_args["inputs"]["args"] = ["cat", "/inputs/y"]
    assert instruction_cid(spec_from_dict(other_args)) != base
    assert instruction_cid(spec_from_dict({**_task(), "nnc": "again"})) != base


PINNED = "busybox@sha256:" + "ab" * 32


def test_memo_defaults():
    # A tag can move: only an image pinned by its content makes the work content-addressed.
    assert not content_addressed(spec_from_dict(_task()))
    assert content_addressed(spec_from_dict({**_task(), "with": PINNED}))
    assert content_addressed(spec_from_dict({**_task(), "with": "ipfs://" + CID}))
    with_url = _task()
    with_url["inputs"]["mounts"] = {"/inputs": {"url": "https://example.com/x"}}
    assert not memoized_by_default(spec_from_dict(with_url))
    assert memoized_by_default(spec_from_dict({**with_url, "meta": {"memo": True}}))
    assert not memoized_by_default(spec_from_dict(_task(memo=False)))


def test_an_ops_job_runs_on_every_node_unless_it_asks_for_memo():
    ops = spec_from_dict({"task": {"engine": "docker", "image": PINNED, "command": ["echo", "ops"]}, "job_type": "ops"})
    assert content_addressed(ops) and not memoized_by_default(ops)
    assert memoized_by_default(ops.model_copy(update={"memo": True}))


def test_local_inputs_at_different_paths_are_different_work():
    def reading(local_path):
        return spec_from_dict({
            "task": {"engine": "docker", "image": "busybox", "command": ["ls", "/data"]},
            "inputs": [{"source": "local", "local_path": local_path, "path": "/data"}],
        })

    assert instruction_cid(reading("/srv/a")) != instruction_cid(reading("/srv/b"))
    assert not content_addressed(reading("/srv/a"))


def test_memo_flags_set_the_spec(capsys):
    import yaml

    from bacalhau_py.cli.main import main

    for flag, expected in (("--no-memo", False), ("--memo", True)):
        with pytest.raises(SystemExit) as exit:
            main(["run", "--dry-run", flag, "busybox", "echo", "hi"])
        assert exit.value.code == 0
        assert yaml.safe_load(capsys.readouterr().out)["memo"] is expected
