"""What a docker task's IMAGE names, and what a node knows of an image it holds.

IMAGE is one of:
- a name, optionally with a tag (`busybox`, `ubuntu:22.04`): whatever the
  node's engine holds under that name;
- an image ID (`sha256:HEX`) or a verified reference (`name@sha256:HEX`: runs
  only if HEX is the local image's ID or one of its repo digests);
- a content-addressed archive written by `docker save` (plain or gzipped):
  `ipfs://CID`, or `http(s)://HOST/PATH#sha256=HEX` with the archive's SHA-256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_NAME = re.compile(r"^[\w][\w.\-/:]*$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    kind: Literal["name", "id", "digest", "ipfs", "url"]
    text: str
    """IMAGE as written."""
    name: str = ""
    """name and digest: the repository (and tag)."""
    digest: str = ""
    """id, digest: `sha256:HEX`; url: the archive's `sha256:HEX`."""
    cid: str = ""
    url: str = ""
    """url: without its `#sha256=` fragment."""

    @property
    def archive(self) -> bool:
        """An archive the node fetches and loads itself (ipfs:// or a URL)."""
        return self.kind in ("ipfs", "url")


@dataclass(frozen=True)
class ImageIdentity:
    """An image the node's engine holds: its ID and repo digests."""

    id: str
    repo_digests: tuple[str, ...] = ()


def _sha256(hex_digest: str, text: str) -> str:
    if not _HEX.match(hex_digest):
        raise ValueError(f"{text!r}: {hex_digest!r} is not a SHA-256 (expected 64 lowercase hex digits)")
    return f"sha256:{hex_digest}"


def parse_image(text: str) -> ImageRef:
    """Parse IMAGE; a ValueError says what is wrong and the expected forms."""
    from bacalhau_py.models.spec import is_cid

    if text.startswith("ipfs://"):
        cid = text.removeprefix("ipfs://")
        if not is_cid(cid):
            raise ValueError(f"{text!r}: {cid!r} is not a CID (expected ipfs://Qm... or ipfs://bafy...)")
        return ImageRef(kind="ipfs", text=text, cid=cid)
    if text.startswith(("http://", "https://")):
        url, _, fragment = text.partition("#")
        if not fragment.startswith("sha256=") or not re.match(r"^https?://[^/\s#]+", url):
            raise ValueError(f"{text!r}: an image URL needs the archive's hash (expected http(s)://HOST/PATH#sha256=HEX)")
        return ImageRef(kind="url", text=text, url=url, digest=_sha256(fragment.removeprefix("sha256="), text))
    if text.startswith("sha256:"):
        return ImageRef(kind="id", text=text, digest=_sha256(text.removeprefix("sha256:"), text))
    name, at, digest = text.partition("@")
    if not _NAME.match(name):
        raise ValueError(
            f"{text!r} is not an image (expected e.g. busybox, ubuntu:22.04, NAME@sha256:HEX, sha256:HEX, "
            "ipfs://CID or https://HOST/PATH#sha256=HEX)"
        )
    if not at:
        return ImageRef(kind="name", text=text, name=name)
    if not digest.startswith("sha256:"):
        raise ValueError(f"{text!r}: expected NAME@sha256:HEX")
    return ImageRef(kind="digest", text=text, name=name, digest=_sha256(digest.removeprefix("sha256:"), text))
