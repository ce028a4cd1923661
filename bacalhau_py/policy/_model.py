"""The policy file (`serve --policy FILE`), read into frozen models.

```
allow:                    # what this node runs at all; an absent key allows anything
  images: [sha256:ID, name@sha256:DIGEST]
  modules: [CID]
  clients: [CLIENT_ID]
  network: false          # may jobs ask for --network full
datasets:                 # jobs that read this dataset must also match these
  QmCID...: {images: [...], modules: [...], clients: [...], network: false}
  /data/private: {...}    # an allow-listed local path
```
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bacalhau_py.errors import UserInputError
from bacalhau_py.models import is_cid
from bacalhau_py.models.image import parse_image


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rules(_Frozen):
    """One set of rules; a key left out (None) allows anything."""

    images: tuple[str, ...] | None = None
    """Image IDs (`sha256:HEX`) or verified references (`NAME@sha256:HEX`)."""
    modules: tuple[str, ...] | None = None
    """wasm module CIDs."""
    clients: tuple[str, ...] | None = None
    """Client IDs."""
    network: bool | None = None
    """False: jobs may not ask for `--network full`."""

    @field_validator("images")
    @classmethod
    def _images(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for image in value or ():
            try:
                kind = parse_image(image).kind
            except ValueError:
                kind = None
            if kind not in ("id", "digest"):
                raise ValueError(f"{image!r} is not an image ID (expected sha256:HEX or NAME@sha256:HEX)")
        return value

    @field_validator("modules")
    @classmethod
    def _modules(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for cid in value or ():
            if not is_cid(cid):
                raise ValueError(f"{cid!r} is not a CID (expected Qm... or bafy...)")
        return value


class Policy(_Frozen):
    allow: Rules = Rules()
    datasets: dict[str, Rules] = {}
    """Keyed by input CID or by allow-listed local path (it guards everything below it)."""

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: dict[str, Rules]) -> dict[str, Rules]:
        keyed = {}
        for key, rules in value.items():
            if key.startswith("/"):
                key = posixpath.normpath(key)
            elif not is_cid(key):
                raise ValueError(f"{key!r} is not a dataset (expected an input CID or an absolute local path)")
            keyed[key] = rules
        return keyed


_KEYS = {"": "allow, datasets", "rules": "images, modules, clients, network"}


def load_policy(path: Path) -> Policy:
    """Read a policy file; a problem is a UserInputError naming the file and the key."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UserInputError(f"cannot read the policy {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"the policy {path} is not YAML: {' '.join(str(error).split())}") from None
    try:
        policy = Policy.model_validate(data or {})
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            expected = _KEYS["" if len(first["loc"]) == 1 else "rules"]
            raise UserInputError(f"the policy {path}: unknown key {location} (expected {expected})") from None
        problem = first["msg"].removeprefix("Value error, ")
        raise UserInputError(f"the policy {path}: {location or 'top level'}: {problem}") from None
    # Local inputs are matched by their real path (compute/bidding.py resolves
    # them too): a symlinked alias of a guarded folder must not escape its rules.
    datasets = {
        str(Path(key).resolve()) if key.startswith("/") else key: rules for key, rules in policy.datasets.items()
    }
    return policy.model_copy(update={"datasets": datasets})
