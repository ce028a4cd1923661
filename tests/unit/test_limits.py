"""A compute node's limits on each job (compute/limits.py)."""

from __future__ import annotations

from bacalhau_py.compute.capacity import Capacity
from bacalhau_py.compute.limits import JobLimits, bytes_written
from bacalhau_py.models import JobSpec, Resources, Task
from bacalhau_py.models.spec import describe_size


def spec(**resources) -> JobSpec:
    return JobSpec(task=Task(engine="docker", image="busybox"), resources=Resources(**resources))


def test_a_job_that_asks_for_nothing_gets_the_defaults():
    applied = JobLimits(default_memory=512 << 20, default_cpu=0.5).applied(spec()).resources
    assert (applied.memory, applied.cpu, applied.disk) == (512 << 20, 0.5, None)


def test_what_a_job_asks_for_is_kept():
    applied = JobLimits().applied(spec(memory="64Mb", cpu=2)).resources
    assert (applied.memory, applied.cpu) == (64 << 20, 2.0)


def test_defaults_are_never_over_the_per_job_limits():
    limits = JobLimits(default_memory=1 << 30, default_cpu=1.0).within(Capacity(cpu=0.5, memory=256 << 20))
    assert (limits.default_memory, limits.default_cpu) == (256 << 20, 0.5)
    assert JobLimits().within(None) == JobLimits()


def test_the_output_quota_is_the_smaller_of_the_node_limit_and_the_job_disk():
    limits = JobLimits(disk=10 << 30)
    assert limits.applied(spec()).resources.disk == 10 << 30
    assert limits.applied(spec(disk="1Gb")).resources.disk == 1 << 30
    assert JobLimits().applied(spec(disk="1Gb")).resources.disk == 1 << 30


def test_a_job_asking_for_more_disk_than_the_node_allows_gets_no_bid(tmp_path):
    refusal = JobLimits(disk=1 << 30).refusal(spec(disk="2Gb"), tmp_path)
    assert refusal is not None
    assert refusal.reason == "job asks for 2 GiB of disk, over this node's per-job limit of 1 GiB"
    assert JobLimits(disk=1 << 30).refusal(spec(disk="1Gb"), tmp_path) is None


def test_no_bid_under_the_free_disk_watermark(tmp_path):
    refusal = JobLimits(min_free_disk=1 << 60).refusal(spec(), tmp_path)
    assert refusal is not None and "(--min-free-disk)" in refusal.reason
    assert "under this node's minimum of 1048576 TiB" in refusal.reason
    assert JobLimits(min_free_disk=1).refusal(spec(), tmp_path) is None


def test_sizes_are_described_for_humans():
    assert [describe_size(n) for n in (0, 1000, 1024, 1536, 1 << 30, 5 << 40)] == [
        "0 B", "1000 B", "1 KiB", "1.5 KiB", "1 GiB", "5 TiB",
    ]


def test_bytes_written_counts_files_not_symlink_targets(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 50)
    (tmp_path / "link").symlink_to("/dev/zero")
    assert bytes_written([tmp_path]) == 150 + len("/dev/zero")
