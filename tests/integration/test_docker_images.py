"""Images by content against the REAL docker engine and embedded IPFS: archives, verified
references, and the admission policy's check right before a run."""

from __future__ import annotations

import subprocess
import uuid

import pytest
import trio

from bacalhau_py.compute.bidding import BidPolicy, BidStrategy
from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.compute.service import ComputeService
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.docker import DockerExecutor
from bacalhau_py.models import ExecutionState, JobSpec
from bacalhau_py.models.messages import Ack, AskBid, BidDecision, ExecutionUpdate
from bacalhau_py.policy import Policy, Rules
from bacalhau_py.transport import MemoryNetwork, MemoryTransport

from images import built_images, exists, remove, save, tags_of


@pytest.fixture
def images():
    with built_images() as make:
        yield make


@pytest.fixture
async def executor(provider_ctx):
    executor = DockerExecutor(provider_ctx)
    yield executor
    await executor.aclose()


def _name() -> str:
    return f"bacalhau-py-test/images:{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("gzipped", [False, True])
async def test_an_ipfs_archive_is_loaded_once_without_its_names(executor, embedded_ipfs, images, tmp_path, gzipped):
    name = _name()
    image_id = images(name)
    archive = save(name, tmp_path / "image.tar", gzipped=gzipped)
    cid = await embedded_ipfs.add(archive)
    remove(image_id)  # the node never had it
    assert not exists(image_id)

    identity = await executor.prepare_image(f"ipfs://{cid}")

    assert identity.id == image_id
    # The archive named the image; loading it must not re-point any name on the node.
    assert tags_of(image_id) == [] and not exists(name)
    assert await executor.image_identity(f"ipfs://{cid}") == identity
    assert await executor.prepare_image(f"ipfs://{cid}") == identity


async def test_an_archive_holding_two_images_is_refused(executor, embedded_ipfs, images, tmp_path):
    first, second = _name(), _name()
    images(first)
    images(second)
    subprocess.run(["docker", "save", "-o", str(tmp_path / "two.tar"), first, second], check=True)
    cid = await embedded_ipfs.add(tmp_path / "two.tar")
    with pytest.raises(ExecutorError, match="the archive holds 2 images; expected exactly one"):
        await executor.prepare_image(f"ipfs://{cid}")


async def test_a_file_that_is_no_archive_gets_one_line(executor, embedded_ipfs, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    cid = await embedded_ipfs.add(tmp_path / "notes.txt")
    with pytest.raises(ExecutorError) as error:
        await executor.prepare_image(f"ipfs://{cid}")
    assert error.value.message.startswith(f"image ipfs://{cid}: not an archive written by docker save")
    assert "\n" not in error.value.message


async def test_a_reference_runs_only_if_its_digest_is_the_local_image(executor, images):
    name = _name()
    image_id = images(name)
    repository = name.split(":")[0]
    identity = await executor.prepare_image(f"{repository}@{image_id}")
    assert identity.id == image_id

    wrong = "sha256:" + "0" * 64
    with pytest.raises(ExecutorError) as error:
        await executor.prepare_image(f"{name}@{wrong}")
    assert error.value.message == (
        f"image {name}@{wrong} is not on this node: no local image has ID or repo digest {wrong} "
        f"(the local {name} is {image_id})"
    )


class _Requester:
    """Records what the compute node reports."""

    def __init__(self) -> None:
        self.updates: list[ExecutionUpdate] = []
        self.failed = trio.Event()

    async def on_request(self, sender, message):
        if isinstance(message, ExecutionUpdate):
            self.updates.append(message)
            if message.state is ExecutionState.FAILED:
                self.failed.set()
        return Ack()

    async def on_gossip(self, sender, message):
        pass

    async def on_stream_request(self, sender, message):
        yield b""


async def test_the_image_is_checked_again_right_before_running(executor, images, tmp_path, nursery):
    """The node bid while the tag named an approved image; by the run it names another: refused."""
    tag = _name()
    approved = images(tag)
    policy = Policy(allow=Rules(images=(approved,)))
    capacity = CapacityTracker(Capacity(cpu=2, memory=1 << 30, gpu=0))
    network = MemoryNetwork()
    requester, compute_transport = _Requester(), MemoryTransport(network, "compute")
    compute = ComputeService(
        transport=compute_transport,
        work_dir=tmp_path,
        strategy=BidStrategy(
            BidPolicy(labels={}), capacity, {"docker"}, {}, admission_policy=policy,
            image_identity=executor.image_identity,
        ),
        capacity=capacity,
        executors={"docker": executor},
        storages={},
        publishers={},
    )
    await nursery.start(MemoryTransport(network, "requester").serve, requester)
    await nursery.start(compute_transport.serve, _Requester())
    await nursery.start(compute.serve)
    spec = JobSpec.model_validate({"task": {"engine": "docker", "image": tag, "command": ["true"]}})

    bid = await compute.on_ask_bid("requester", AskBid(job_id="job-1", execution_id="exec-1", spec=spec))
    assert bid.accepted, bid.reason
    other = images(tag)  # re-tagged between the bid and the run
    await compute.on_bid_decision("requester", BidDecision(job_id="job-1", execution_id="exec-1", accepted=True))
    with trio.fail_after(30):
        await requester.failed.wait()

    assert requester.updates[-1].message == (
        f"refused before running: image {tag} = {other} is not approved on this node"
    )
    # Refused before any container existed.
    import docker

    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": "bacalhau-py.execution=exec-1"}) == []
    finally:
        client.close()
    # And the strategy now refuses to bid at all.
    refusal = await compute.strategy.refusal(spec)
    assert refusal.reason == f"image {tag} = {other} is not approved on this node"
