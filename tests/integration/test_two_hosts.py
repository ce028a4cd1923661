"""Two nodes on two "machines": network namespaces joined by a veth pair.

What a user gets on two VMs: libp2p and the embedded IPFS listen on every
interface, advertise their machine address, and a job on host 2 reads data
added on host 1 and returns its results to host 1, with no loopback shortcut.
The namespaces and their 10.231.x addresses exist only inside this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.231.{}".format(os.getpid() % 250)


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def hosts():
    names = [f"bacpy{os.getpid()}h{i}" for i in (1, 2)]
    veth = [f"bp{os.getpid() % 100000}v{i}" for i in (1, 2)]
    sh("ip", "netns", "add", names[0])
    sh("ip", "netns", "add", names[1])
    try:
        sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for index, (name, dev) in enumerate(zip(names, veth), start=1):
            sh("ip", "link", "set", dev, "netns", name)
            sh("ip", "-n", name, "addr", "add", f"{SUBNET}.{index}/24", "dev", dev)
            sh("ip", "-n", name, "link", "set", dev, "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def start_node(namespace: str, repo: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    # --api-insecure: the API listens on every interface, but they exist only in the test's namespaces.
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "bacalhau_py.cli.main", "serve",
         "--repo", str(repo), "--swarm-host", "0.0.0.0", "--api-host", "0.0.0.0", "--api-insecure",
         "--exit-on-stdin-eof", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(repo.parent / f"{repo.name}.log", "wb"),
        cwd=REPO, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("ready "), f"node in {namespace} did not start: {line!r}"
    return process, line


def cli(namespace: str, *args: str) -> str:
    return sh("ip", "netns", "exec", namespace, str(REPO / "cmd" / "bacalhau"), *args)


def test_a_job_on_one_host_reads_data_from_the_other_and_returns_results(hosts, tmp_path):
    h1, h2 = hosts
    nodes = []
    try:
        first, ready = start_node(h1, tmp_path / "h1", "--peer", "none", "--labels", "host=h1")
        nodes.append(first)
        peer_id = ready.split("peer_id=")[1].split()[0]
        # Advertised: the machine address, never 0.0.0.0.
        assert f"/ip4/{SUBNET}.1/tcp/1235/p2p/{peer_id}" in ready and "0.0.0.0/tcp" not in ready
        second, _ = start_node(h2, tmp_path / "h2", "--peer", f"/ip4/{SUBNET}.1/tcp/1235/p2p/{peer_id}",
                               "--labels", "host=h2")
        nodes.append(second)
        deadline = time.monotonic() + 60
        while cli(h1, "node", "list").count("host=h") < 2:
            assert time.monotonic() < deadline, "the two hosts never saw each other"
            time.sleep(0.5)

        (tmp_path / "input.txt").write_text("data on host one\n")
        cid = cli(h1, "ipfs", "add", str(tmp_path / "input.txt")).strip()
        job_id = cli(h1, "run", "--wait", "--id-only", "-s", "host=h2", "-v", f"{cid}:/inputs/f",
                     "busybox", "--", "sh", "-c", "cat /inputs/f; echo made on host two > /outputs/o").strip()
        cli(h1, "get", job_id, "--output-dir", str(tmp_path / "results"))
        assert (tmp_path / "results" / "stdout").read_text() == "data on host one\n"
        assert (tmp_path / "results" / "outputs" / "o").read_text() == "made on host two\n"
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=60)
