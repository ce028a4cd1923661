"""Outputs that hold symlinks: published as UnixFS symlinks, downloaded as links, checked against their CID."""

from __future__ import annotations

import os
import sys

import trio

from bacalhau_py.ipfs.cid import path_cid
from bacalhau_py.node import Node, NodeConfig

IMAGE = "busybox:latest"


async def test_get_of_outputs_with_symlinks_passes_the_cid_check(nursery, tmp_path):
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0))
    await nursery.start(node.serve)
    host, port = node.api_address
    # BACALHAU_IPFS_API set: `get` checks every folder against its CID.
    env = {**os.environ, "BACALHAU_API_HOST": host, "BACALHAU_API_PORT": str(port),
           "BACALHAU_IPFS_API": node.ipfs_api}
    script = (
        "echo hi > /outputs/target.txt; mkdir /outputs/dir; ln -s target.txt /outputs/link; "
        "ln -s ../target.txt /outputs/dir/up; ln -s /etc/passwd /outputs/absolute; ln -s nowhere /outputs/dangling"
    )

    async def bacalhau(*args: str) -> tuple[int, str, str]:
        with trio.fail_after(120):
            result = await trio.run_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", *args], cwd=tmp_path, env=env,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    code, job_id, err = await bacalhau("run", "--wait", "--id-only", IMAGE, "sh", "-c", script)
    assert code == 0, err
    code, _, err = await bacalhau("get", "--output-dir", "results", job_id.strip())
    assert code == 0, err
    assert "Warning" not in err and "Traceback" not in err
    outputs = tmp_path / "results" / "outputs"
    assert os.readlink(outputs / "link") == "target.txt" and (outputs / "link").read_text() == "hi\n"
    assert os.readlink(outputs / "dir" / "up") == "../target.txt"
    # Links are kept as written: an absolute one is not followed into the client's machine.
    assert os.readlink(outputs / "absolute") == "/etc/passwd"
    assert os.readlink(outputs / "dangling") == "nowhere"


async def test_the_embedded_kubo_gives_back_symlinks_as_links(embedded_ipfs, tmp_path):
    folder = tmp_path / "folder"
    (folder / "dir").mkdir(parents=True)
    (folder / "target.txt").write_text("hi\n")
    (folder / "link").symlink_to("target.txt")
    (folder / "dir" / "up").symlink_to("../target.txt")
    (folder / "absolute").symlink_to("/etc/passwd")
    cid = await embedded_ipfs.add(folder)
    got = await embedded_ipfs.get(cid, tmp_path / "got", timeout=30)
    assert os.readlink(got / "link") == "target.txt"
    assert os.readlink(got / "dir" / "up") == "../target.txt"
    assert os.readlink(got / "absolute") == "/etc/passwd"
    assert path_cid(got, like=cid) == cid
