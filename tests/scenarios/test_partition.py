"""A partition between two hosts (network namespaces joined by a veth pair): lost, then healed.

Host 1 takes jobs and runs them; host 2 runs them. A job running on host 2
when the link goes down is rescheduled on host 1 and completes there; once
the link is back, host 2 learns its run was given up and stops it, so the
job completes exactly once. The namespaces exist only inside this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenario import BACALHAU, REPO, check_job, execution_states, history_contains, job_state

pytestmark = pytest.mark.devstack

SUBNET = "10.232.{}".format(os.getpid() % 250)
LOST_AFTER = "3s"
WAIT = 120


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def hosts():
    """Two namespaces and the name of host 2's end of the link between them."""
    names = [f"bacpart{os.getpid()}h{i}" for i in (1, 2)]
    veth = [f"bq{os.getpid() % 100000}v{i}" for i in (1, 2)]
    for name in names:
        sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for index, (name, dev) in enumerate(zip(names, veth), start=1):
            sh("ip", "link", "set", dev, "netns", name)
            sh("ip", "-n", name, "addr", "add", f"{SUBNET}.{index}/24", "dev", dev)
            sh("ip", "-n", name, "link", "set", dev, "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield names, veth[1]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def start_node(namespace: str, repo: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "bacalhau_py.cli.main", "serve",
         # --api-insecure: the API listens on every interface, but they exist only in the test's namespaces.
         "--repo", str(repo), "--swarm-host", "0.0.0.0", "--api-host", "0.0.0.0", "--api-insecure", "--exit-on-stdin-eof",
         "--node-lost-after", LOST_AFTER, *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(repo.parent / f"{repo.name}.log", "wb"),
        cwd=REPO, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("ready "), f"node in {namespace} did not start: {line!r}"
    return process, line


def cli(namespace: str, *args: str) -> str:
    return sh("ip", "netns", "exec", namespace, *BACALHAU, *args)


def describe(namespace: str, job_id: str) -> dict:
    return json.loads(cli(namespace, "describe", job_id, "--output", "json"))


def until(what: str, condition, timeout: float = WAIT):
    """Poll `condition` (a CLI call each time) until it returns something true."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.5)
    return result


def test_a_partitioned_node_s_job_completes_once_elsewhere_and_the_node_stops_it_when_healed(hosts, tmp_path):
    (h1, h2), link = hosts
    nodes = []
    try:
        # One core for jobs on host 1: while another job holds it, host 2 is the only bidder.
        first, ready = start_node(h1, tmp_path / "h1", "--peer", "none", "--labels", "host=h1",
                                  "--limit-total-cpu", "1")
        nodes.append(first)
        peer_id = ready.split("peer_id=")[1].split()[0]
        second, ready2 = start_node(h2, tmp_path / "h2", "--peer", f"/ip4/{SUBNET}.1/tcp/1235/p2p/{peer_id}",
                                    "--labels", "host=h2")
        nodes.append(second)
        h2_peer = ready2.split("peer_id=")[1].split()[0]
        until("the two hosts see each other", lambda: cli(h1, "node", "list").count("host=h") == 2)

        cli(h1, "run", "--id-only", "-s", "host=h1", "--cpu", "1", "busybox", "sleep", "10")
        job_id = cli(h1, "run", "--id-only", "--cpu", "1", "busybox", "--", "sh", "-c", "sleep 5; echo once").strip()
        until("the job runs on host 2", lambda: any(
            e["node_id"] == h2_peer and e["state"] == "Running" for e in describe(h1, job_id)["executions"]))

        sh("ip", "-n", h2, "link", "set", link, "down")
        job = until("the job ends", lambda: (j := describe(h1, job_id))["state"] in ("Completed", "Failed") and j)
        check_job(job, [
            job_state("Completed"),
            execution_states("Lost", "ResultAccepted"),
            history_contains(f"rescheduled: node {h2_peer[-8:]} lost"),
        ])

        sh("ip", "-n", h2, "link", "set", link, "up")
        lost_execution = job["executions"][0]["id"]
        h2_log = tmp_path / "h2.log"
        until("host 2 hears that its run was given up",
              lambda: lost_execution in h2_log.read_text() and "given up" in h2_log.read_text())
        # Nothing changed on host 1: one run completed, the other stays Lost.
        check_job(describe(h1, job_id), [job_state("Completed"), execution_states("Lost", "ResultAccepted")])
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=60)
