"""The admission policy: the YAML a data owner writes, and the rule a refusal names."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from bacalhau_py.errors import UserInputError
from bacalhau_py.ipfs.cid import bytes_cid
from bacalhau_py.models import JobSpec
from bacalhau_py.models.image import ImageIdentity
from bacalhau_py.policy import Policy, check, load_policy

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
DATA = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
OTHER = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB"
MODULE = b"\0asm\1\0\0\0"

POLICY = f"""
allow:
  network: false
datasets:
  {DATA}:
    images: [{A}, "busybox@{B}"]
    clients: [alice]
  /data/private:
    images: [{A}]
    modules: [{bytes_cid(MODULE)}]
"""


@pytest.fixture
def policy(tmp_path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return load_policy(path)


def docker_job(*inputs: dict, image: str = "busybox", network: str = "none") -> JobSpec:
    return JobSpec.model_validate(
        {"task": {"engine": "docker", "image": image, "network": network}, "inputs": list(inputs)}
    )


def ipfs(cid: str) -> dict:
    return {"source": "ipfs", "cid": cid, "path": f"/in/{cid[-4:]}"}


def local(path: str) -> dict:
    return {"source": "local", "local_path": path, "path": "/private"}


def test_an_approved_image_on_a_guarded_dataset_runs(policy):
    assert check(policy, docker_job(ipfs(DATA)), client_id="alice", image=ImageIdentity(A)) is None


def test_an_unapproved_image_is_refused_naming_the_image_and_the_dataset(policy):
    refusal = check(policy, docker_job(ipfs(DATA)), client_id="alice", image=ImageIdentity(C))
    assert refusal.reason == f"image busybox = {C} is not approved for dataset {DATA}"


def test_a_reference_matches_the_image_id_or_a_repo_digest(policy):
    assert check(policy, docker_job(ipfs(DATA)), client_id="alice", image=ImageIdentity(B)) is None
    image = ImageIdentity(C, repo_digests=(f"busybox@{B}",))
    assert check(policy, docker_job(ipfs(DATA)), client_id="alice", image=image) is None


def test_other_datasets_are_not_guarded(policy):
    assert check(policy, docker_job(ipfs(OTHER)), client_id="bob", image=ImageIdentity(B)) is None


def test_every_dataset_a_job_reads_must_allow_it(policy):
    refusal = check(policy, docker_job(ipfs(OTHER), ipfs(DATA)), client_id="bob", image=ImageIdentity(A))
    assert refusal.reason == f"client bob is not approved for dataset {DATA}"


def test_a_local_path_guards_everything_below_it(policy):
    spec = docker_job(local("/data/private/patients.csv"))
    assert check(policy, spec, client_id="", image=ImageIdentity(B)).reason == (
        f"image busybox = {B} is not approved for dataset /data/private"
    )
    assert check(policy, docker_job(local("/data/private-not")), client_id="", image=ImageIdentity(B)) is None


def test_network_is_a_node_wide_rule(policy):
    refusal = check(policy, docker_job(network="full"), client_id="", image=ImageIdentity(A))
    assert refusal.reason == "network access (--network full) is not allowed on this node"


def test_an_image_not_known_yet_is_left_to_the_check_before_running(policy):
    spec = docker_job(ipfs(DATA), image="ipfs://" + OTHER)
    assert check(policy, spec, client_id="alice", image=None) is None
    assert check(policy, spec, client_id="alice", image=ImageIdentity(C)).reason == (
        f"image ipfs://{OTHER} = {C} is not approved for dataset {DATA}"
    )


def test_modules_are_approved_by_cid_inline_ones_too(policy):
    def wasm(module: bytes) -> JobSpec:
        return JobSpec.model_validate({
            "task": {"engine": "wasm", "module": {"source": "inline", "path": "/module.wasm",
                                                  "content": base64.b64encode(module).decode()}},
            "inputs": [local("/data/private")],
        })

    assert check(policy, wasm(MODULE), client_id="", image=None) is None
    changed = MODULE + b"\0"
    refusal = check(policy, wasm(changed), client_id="", image=None)
    assert refusal.reason == f"module {bytes_cid(changed)} is not approved for dataset /data/private"


def test_no_rules_allow_anything():
    assert check(Policy(), docker_job(ipfs(DATA), network="full"), client_id="", image=ImageIdentity(B)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow:\n  imagez: []\n", "unknown key allow.imagez (expected images, modules, clients, network)"),
        ("alow: {}\n", "unknown key alow (expected allow, datasets)"),
        (f"datasets:\n  {DATA}: {{network: false, cpu: 1}}\n",
         f"unknown key datasets.{DATA}.cpu (expected images, modules, clients, network)"),
        ("allow:\n  images: [busybox:latest]\n",
         "allow.images: 'busybox:latest' is not an image ID (expected sha256:HEX or NAME@sha256:HEX)"),
        ("datasets:\n  data: {}\n",
         "datasets: 'data' is not a dataset (expected an input CID or an absolute local path)"),
        ("allow:\n  network: maybe\n", "allow.network: Input should be a valid boolean"),
        ("allow: [\n", "is not YAML"),
    ],
)
def test_a_bad_policy_file_gets_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError) as error:
        load_policy(path)
    assert message in error.value.message
    assert str(path) in error.value.message
    assert "\n" not in error.value.message


def test_the_policy_is_frozen(policy):
    with pytest.raises(ValidationError, match="frozen"):
        policy.allow = None  # type: ignore[misc]


async def test_a_symlinked_alias_of_a_guarded_folder_keeps_its_rules(tmp_path):
    from bacalhau_py.compute.bidding import BidPolicy, BidStrategy
    from bacalhau_py.compute.capacity import Capacity, CapacityTracker
    from bacalhau_py.context import ProviderContext
    from bacalhau_py.storage.local import LocalStorage

    private = tmp_path / "private"
    private.mkdir()
    (private / "records.txt").write_text("secret\n")
    alias = tmp_path / "alias"
    alias.symlink_to(private)
    path = tmp_path / "policy.yaml"
    path.write_text(f"datasets:\n  {private}: {{images: [{A}]}}\n")
    storage = LocalStorage(ProviderContext(ipfs=None, work_dir=tmp_path, allowed_local_paths=(alias,)))  # type: ignore[arg-type]

    async def image_identity(image: str) -> ImageIdentity:
        return ImageIdentity(C)

    strategy = BidStrategy(
        BidPolicy(labels={}), CapacityTracker(Capacity(cpu=1, memory=1 << 30, gpu=0)), {"docker"},
        {"local": storage}, admission_policy=load_policy(path), image_identity=image_identity,
    )
    refusal = await strategy.refusal(docker_job(local(f"{alias}/records.txt")))
    assert refusal.reason == f"image busybox = {C} is not approved for dataset {private}"
