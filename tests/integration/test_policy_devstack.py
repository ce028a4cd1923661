"""A data owner's admission policy, content-addressed images and allow-listed local paths,
on a REAL 2-node devstack (`serve` processes, embedded IPFS, docker).

Both nodes have the same policy (as `devstack --policy` gives it); only the
second allow-lists the private folder.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from bacalhau_py.devstack.stack import devstack
from bacalhau_py.ipfs.cid import bytes_cid
from bacalhau_py.ipfs.client import KuboRPC

from images import built_images, exists, remove, save
from jobs_api import Signed, stdout_of

GUARDED = b"rows only approved programs may read\n"
SECRET = b"patient records that never leave this machine\n"


@contextmanager
def http_file(path: Path):
    """Serve one file over HTTP on 127.0.0.1; yield its URL."""
    data = path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _submit(api: httpx.AsyncClient, node, spec: dict) -> dict:
    response = await api.post(f"{node.api}/api/v1/jobs", json=spec)
    assert response.status_code == 200, response.text
    job_id = response.json()["id"]
    response = await api.get(
        f"{node.api}/api/v1/jobs/{job_id}/wait", params={"terminal": "true", "timeout": 60}, timeout=70
    )
    job = response.json()
    assert job["state"] in ("Completed", "Failed"), job
    return job


async def _cli(node, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BACALHAU_API_HOST": node.api_host, "BACALHAU_API_PORT": str(node.api_port)}
    with trio.fail_after(120):
        result = await trio.run_process(
            [sys.executable, "-m", "bacalhau_py.cli.main", *args], env=env,
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert "Traceback" not in result.stderr.decode()
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.fixture
def images():
    with built_images() as make:
        yield make


async def test_policy_images_and_private_data_on_a_devstack(tmp_path, images):
    approved_tag, unapproved_tag, archived_tag = (f"bacalhau-py-test/policy:{n}" for n in ("ok", "no", "archived"))
    approved, unapproved = images(approved_tag), images(unapproved_tag)
    archived = images(archived_tag)
    archive = save(archived_tag, tmp_path / "archived.tar.gz", gzipped=True)
    remove(archived)  # no node has it, under any name

    private = tmp_path / "private"
    private.mkdir()
    (private / "records.txt").write_bytes(SECRET)
    (tmp_path / "guarded.txt").write_bytes(GUARDED)
    guarded_cid = bytes_cid(GUARDED)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "allow:\n  network: false\n"
        f"datasets:\n  {guarded_cid}: {{images: [{approved}]}}\n  {private}: {{images: [{approved}]}}\n"
    )
    node_args = [["--policy", str(policy)], ["--policy", str(policy), "--allow-listed-local-paths", str(private)]]

    async with devstack(tmp_path / "stack", 2, node_args=node_args) as (first, second):
        async with httpx.AsyncClient(timeout=30, auth=Signed()) as api:
            code, out, err = await _cli(first, "ipfs", "add", str(tmp_path / "guarded.txt"))
            assert code == 0 and out.strip() == guarded_cid, err
            reads_guarded = [{"source": "ipfs", "cid": guarded_cid, "path": "/data/guarded.txt"}]

            # An approved image reads the guarded dataset; the execution records the image it ran.
            job = await _submit(api, first, {
                "task": {"engine": "docker", "image": approved_tag, "command": ["cat", "/data/guarded.txt"]},
                "inputs": reads_guarded,
            })
            assert job["state"] == "Completed", job["message"]
            assert await stdout_of(api, first.api, job["id"]) == GUARDED
            assert [e["image_id"] for e in job["executions"]] == [approved]

            # Another image may not touch it: no node bids, the job fails at once with every node's reason.
            job = await _submit(api, first, {
                "task": {"engine": "docker", "image": unapproved_tag, "command": ["cat", "/data/guarded.txt"]},
                "inputs": reads_guarded,
            })
            assert job["state"] == "Failed"
            assert job["executions"] == []
            for node in (first, second):
                reason = f"{node.peer_id[-8:]}: image {unapproved_tag} = {unapproved} is not approved for dataset {guarded_cid}"
                assert reason in job["message"], job["message"]

            # An image archive from IPFS runs on nodes that never had it, and names nothing on them.
            code, archive_cid, err = await _cli(first, "ipfs", "add", str(archive))
            assert code == 0, err
            job = await _submit(api, first, {
                "task": {"engine": "docker", "image": f"ipfs://{archive_cid.strip()}", "command": ["echo", "from ipfs"]},
            })
            assert job["state"] == "Completed", job["message"]
            assert await stdout_of(api, first.api, job["id"]) == b"from ipfs\n"
            assert [e["image_id"] for e in job["executions"]] == [archived]
            assert not exists(archived_tag)

            # An archive at a URL whose hash is not the one the job gives: the job fails naming both.
            claimed = "0" * 64
            actual = hashlib.sha256(archive.read_bytes()).hexdigest()
            with http_file(archive) as url:
                job = await _submit(api, first, {
                    "task": {"engine": "docker", "image": f"{url}#sha256={claimed}", "command": ["true"]},
                })
            assert job["state"] == "Failed"
            assert f"sha256:{actual}" in job["message"] and f"sha256:{claimed}" in job["message"], job["message"]

            # Private data: runs only where it is allow-listed; only the outputs leave.
            code, job_id, err = await _cli(
                first, "run", "--wait", "--id-only", "-i", f"file://{private}:/private",
                approved_tag, "sh", "-c", "wc -c < /private/records.txt; sha256sum /private/records.txt > /outputs/sum",
            )
            assert code == 0, err
            job = (await api.get(f"{first.api}/api/v1/jobs/{job_id.strip()}")).json()
            assert [e["node_id"] for e in job["executions"]] == [second.peer_id]
            assert (await stdout_of(api, first.api, job["id"])).strip() == str(len(SECRET)).encode()
            results = (await api.get(f"{first.api}/api/v1/jobs/{job['id']}/results")).content
            with tarfile.open(fileobj=io.BytesIO(results)) as tar:
                contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
            assert hashlib.sha256(SECRET).hexdigest().encode() in contents
            assert SECRET not in contents
            for node in (first, second):
                async with KuboRPC(node.ipfs_api) as ipfs:
                    assert not await ipfs.is_pinned(bytes_cid(SECRET))
            assert (private / "records.txt").stat().st_mtime != 0  # the owner's files are left as they are

            # A path no node allow-lists: every node says so.
            elsewhere = tmp_path / "guarded.txt"
            job = await _submit(api, first, {
                "task": {"engine": "docker", "image": approved_tag, "command": ["true"]},
                "inputs": [{"source": "local", "local_path": str(elsewhere), "path": "/data.txt"}],
            })
            assert job["state"] == "Failed"
            for node in (first, second):
                assert f"{node.peer_id[-8:]}: local path {elsewhere} is not allow-listed on this node" in job["message"]

            code, out, err = await _cli(first, "node", "list")
            assert code == 0, err
            assert "POLICY" in out.splitlines()[0].split()
            code, out, err = await _cli(first, "node", "list", "--output", "json")
            assert code == 0, err
            assert [node["policy"] for node in json.loads(out)] == [True, True]
