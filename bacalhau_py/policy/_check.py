"""`check`: does the policy let this node run this job?"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bacalhau_py.models import Engine, JobSpec
from bacalhau_py.models.image import ImageIdentity, parse_image
from bacalhau_py.policy._model import Policy, Rules


@dataclass(frozen=True)
class Refusal:
    """Why the policy refuses a job: one line that names the rule."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def check(policy: Policy, spec: JobSpec, *, client_id: str, image: ImageIdentity | None) -> Refusal | None:
    """None if `policy` lets the job run here, else the first rule it breaks.

    `image` is the local image a docker job would run. None while it is not
    known yet (an `ipfs://` or URL archive not loaded): image rules are then
    left to the check right before running, which always has it.
    """
    for scope, rules in _scopes(policy, spec):
        if rules.clients is not None and client_id not in rules.clients:
            return Refusal(f"client {client_id or '(anonymous)'} is not approved {scope}")
        if rules.network is False and spec.task.network == "full":
            return Refusal(f"network access (--network full) is not allowed {scope}")
        if spec.task.engine is Engine.DOCKER and rules.images is not None and image is not None:
            if not any(_matches(entry, image) for entry in rules.images):
                named = "" if spec.task.image == image.id else f"{spec.task.image} = "
                return Refusal(f"image {named}{image.id} is not approved {scope}")
        if spec.task.engine is Engine.WASM and rules.modules is not None:
            cid = _module_cid(spec)
            if cid not in rules.modules:
                return Refusal(f"module {cid} is not approved {scope}")
    return None


def _scopes(policy: Policy, spec: JobSpec) -> Iterator[tuple[str, Rules]]:
    """The node's own rules, then those of every dataset the job reads."""
    yield "on this node", policy.allow
    for key, rules in policy.datasets.items():
        if any(_reads(key, source) for source in spec.inputs):
            yield f"for dataset {key}", rules


def _reads(key: str, source) -> bool:
    if source.source == "ipfs":
        return source.cid == key
    if source.source == "local" and source.local_path is not None:
        # A path guards everything below it.
        return source.local_path == key or source.local_path.startswith(key.rstrip("/") + "/")
    return False


def _matches(entry: str, image: ImageIdentity) -> bool:
    allowed = parse_image(entry)
    return image.id == allowed.digest or (allowed.kind == "digest" and entry in image.repo_digests)


def _module_cid(spec: JobSpec) -> str:
    """The module's CID; an inline module is known by the CID it would have in IPFS."""
    module = spec.task.module
    if module.source == "inline":
        from bacalhau_py.ipfs.cid import bytes_cid

        return bytes_cid(module.inline_bytes())
    return module.cid or module.url or module.local_path or ""
