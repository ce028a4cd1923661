"""A task's content address: the CIDv1 (dag-cbor, sha2-256) of what it computes.

The instruction is a task's IPVM form without `meta`::

    {"with": IMAGE | LINK, "do": "docker/run" | "wasm32-wasi/run" | "noop",
     "inputs": {"args", "entrypoint", "env", "workdir", "mounts": {PATH: LINK},
                "outputs": {PATH: NAME}, "network", "imports": [{"name", "module": LINK}]},
     "nnc": NONCE}

so the same work has the same CID whatever its timeout, resources, verifier
or publisher. A LINK is a dag-cbor link (tag 42) for a CID, `{"url": URL}` or
`{"inline": BYTES}` (or `{"local": PATH}`, an allow-listed host path). Every job gets one, however it was written: it is
computed from the JobSpec that an IPVM task and flags both become.

dag-cbor is canonical CBOR (RFC 7049 map-key order: shorter keys first, then
bytewise; shortest integers; no indefinite lengths) with links as tag 42 and
no floats in an instruction, which is exactly cbor2's canonical mode.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import base58
import cbor2

from bacalhau_py.errors import UserInputError
from bacalhau_py.models import Engine, InputSource, JobSpec

_DAG_CBOR = 0x71
_SHA2_256 = 0x12
_LINK_TAG = 42
DO = {Engine.DOCKER: "docker/run", Engine.WASM: "wasm32-wasi/run", Engine.NOOP: "noop"}


def dag_cbor(value: Any) -> bytes:
    """The dag-cbor bytes of a value made of dicts (str keys), lists, str, bytes, int, bool, None and links."""
    _check(value)
    return cbor2.dumps(value, canonical=True)


def cid_of(value: Any) -> str:
    """The CIDv1 (base32, dag-cbor, sha2-256) of a value, as `bafyrei...`."""
    digest = hashlib.sha256(dag_cbor(value)).digest()
    raw = bytes([0x01, _DAG_CBOR, _SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def link(cid: str) -> cbor2.CBORTag:
    """A dag-cbor link to `cid` (CIDv0 `Qm...` or base32 CIDv1 `b...`)."""
    return cbor2.CBORTag(_LINK_TAG, b"\x00" + cid_bytes(cid))


def cid_bytes(cid: str) -> bytes:
    try:
        if cid.startswith("Qm"):
            return base58.b58decode(cid)
        if cid.startswith("b"):
            body = cid[1:].upper()
            return base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        pass
    raise UserInputError(f"{cid!r} is not a CID (expected Qm... or bafy...)")


def instruction(spec: JobSpec) -> dict[str, Any]:
    """The job's instruction (its IPVM form without `meta`)."""
    task = spec.task
    inputs: dict[str, Any] = {
        "args": list(task.command),
        "env": dict(task.env),
        "mounts": {source.path: _location(source) for source in spec.inputs},
        "outputs": {output.path: output.name for output in spec.outputs},
        "network": task.network,
    }
    if task.workdir is not None:
        inputs["workdir"] = task.workdir
    target: Any = None
    if task.engine is Engine.DOCKER:
        target = task.image
        if task.entrypoint is not None:
            inputs["entrypoint"] = list(task.entrypoint)
    elif task.engine is Engine.WASM:
        target = _location(task.module)
        inputs["entrypoint"] = task.entry_point
        inputs["imports"] = [{"name": i.name, "module": _location(i.module)} for i in task.imports]
    return {"with": target, "do": DO[task.engine], "inputs": inputs, "nnc": spec.nonce or ""}


def instruction_cid(spec: JobSpec) -> str:
    return cid_of(instruction(spec))


def content_addressed(spec: JobSpec) -> bool:
    """Every input (mounts, module, imports) is a CID or inline, a docker image is pinned by its
    content (an ID, a digest, an ipfs:// or hashed URL archive: a tag can move), and the task has
    no network."""
    from bacalhau_py.models.image import parse_image

    task = spec.task
    sources = [*spec.inputs, *([task.module] if task.module else []), *(i.module for i in task.imports)]
    pinned = task.image is None or parse_image(task.image).kind != "name"
    return pinned and task.network == "none" and all(source.source in ("ipfs", "inline") for source in sources)


def memoized_by_default(spec: JobSpec) -> bool:
    """Whether a job may be served from a receipt: its own `memo`, else whether it is content-addressed.

    An ops job is not memoized unless it asks: it is meant to run on every
    matching node, and a receipt says only that some nodes ran it once."""
    if spec.memo is not None:
        return spec.memo
    return spec.job_type != "ops" and content_addressed(spec)


def _location(source: InputSource) -> Any:
    # The mount path is the key it sits under, not part of the link.
    if source.source == "ipfs":
        return link(source.cid)
    if source.source == "url":
        return {"url": source.url}
    if source.source == "local":
        return {"local": source.local_path}
    return {"inline": source.inline_bytes()}


def _check(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dag-cbor map keys are strings, not {type(key).__name__}")
            _check(item)
    elif isinstance(value, list):
        for item in value:
            _check(item)
    elif isinstance(value, cbor2.CBORTag):
        if value.tag != _LINK_TAG or not isinstance(value.value, bytes):
            raise TypeError("the only dag-cbor tag is 42 (a link)")
    elif not (value is None or isinstance(value, (str, bytes, bool, int))):
        # Floats are left out: cbor2 writes them shortest, dag-cbor wants 64 bits.
        raise TypeError(f"{type(value).__name__} has no place in an instruction")
