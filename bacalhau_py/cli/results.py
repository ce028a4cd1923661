"""Downloading a job's results (`get`, `run --download`) and checking them against their CIDs.

The node sends a tar in the layout of shared/CLI.md. It is unpacked into a
hidden folder beside the destination, every folder is checked against the
result CID its execution published, and only then renamed into place: a
destination folder that exists holds results that were checked.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from bacalhau_py.errors import BacalhauError, IPFSError, UserInputError
from bacalhau_py.results import RAW


def default_output_dir(job_id: str) -> Path:
    return Path(f"job-{job_id[:8]}")


def download(client, job: dict[str, Any], dest: Path) -> Path:
    """Download `job`'s results into `dest` (new, or an empty folder) and check them."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserInputError(f"{dest} already exists and is not empty (choose another --output-dir)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        client.download_results(job["id"], staging)
        check(staging, job)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def check(folder: Path, job: dict[str, Any]) -> None:
    """Compare the downloaded folders with the executions' result CIDs.

    Top level: the accepted execution's results. raw/<node-id>: each node's own.
    A mismatch in what was accepted is an error; one in a rejected execution's
    folder only a warning (a rejected result may well be forged).
    """
    memoized = job.get("memoized_from")
    if memoized:
        # Nothing ran: the result is the receipt's.
        _expect(folder, {memoized["out"]["result_cid"]}, "results", fatal=True)
        return
    executions = [e for e in job.get("executions", []) if e.get("result_cid")]
    accepted = {e["result_cid"] for e in executions if e.get("verification") == "accepted"}
    if not executions:
        _warn(f"job {job['id']} published no result CID: the download is not checked")
        return
    raw = folder / RAW
    # raw/ is not part of any execution's result folder: set it aside while hashing the top level.
    aside = folder.parent / f"{folder.name}.raw"
    if raw.is_dir():
        raw.rename(aside)
    try:
        _expect(folder, accepted or {e["result_cid"] for e in executions}, "results", fatal=True)
    finally:
        if aside.is_dir():
            aside.rename(raw)
    if raw.is_dir():
        for node_folder in sorted(raw.iterdir()):
            mine = [e for e in executions if e["node_id"] == node_folder.name]
            fatal = any(e["result_cid"] in accepted for e in mine)
            _expect(node_folder, {e["result_cid"] for e in mine}, f"{RAW}/{node_folder.name}", fatal=fatal)


def _expect(folder: Path, cids: set[str], what: str, *, fatal: bool) -> None:
    if not cids:
        _warn(f"{what}: no execution published a CID for it; not checked")
        return
    like = sorted(cids)[0]
    try:
        actual = _folder_cid(folder, like)
    except IPFSError as error:
        _warn(f"{what}: not checked against {like}: {error}")
        return
    if actual not in cids:
        message = f"{what}: downloaded content has CID {actual}, expected {' or '.join(sorted(cids))}"
        if fatal:
            raise BacalhauError(message)
        _warn(message)


def _folder_cid(folder: Path, like: str) -> str:
    """The CID kubo would give `folder`, computed offline: no IPFS node is needed."""
    from bacalhau_py.ipfs.cid import path_cid

    try:
        return path_cid(folder, like=like)
    except BacalhauError as error:
        raise IPFSError(str(error)) from None


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)
