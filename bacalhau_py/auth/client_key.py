"""Client identity: one Ed25519 key per client, its client ID, and signed requests.

The key lives at `$BACALHAU_DIR/user_id.key` (`BACALHAU_DIR` defaults to
`~/.bacalhau`), created on first use with mode 0600. It holds one line,
`ed25519:<base64 of the 32-byte private seed>`.

The client ID is the lowercase hex SHA-256 of the 32-byte raw public key:
64 characters anyone can recompute from the key, so a client cannot claim an
ID that is not its own.

A signed API request carries four headers:

    X-Bacalhau-Client-Key      base64 of the raw public key
    X-Bacalhau-Timestamp       Unix seconds when it was signed
    X-Bacalhau-Content-SHA256  hex SHA-256 of the body, or UNSIGNED-PAYLOAD
                               for a streamed upload (as S3's SigV4 does)
    X-Bacalhau-Signature       base64 Ed25519 signature over `signing_bytes`

Only the `ed25519` module of `cryptography` is imported: its serialization
module costs the CLI ~300 ms at start, so the key is stored raw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bacalhau_py.errors import NotAuthenticated, UserInputError

if TYPE_CHECKING:
    from bacalhau_py.models.signature import SignedRequest

KEY_FILE = "user_id.key"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
KEY_HEADER = "X-Bacalhau-Client-Key"
TIMESTAMP_HEADER = "X-Bacalhau-Timestamp"
CONTENT_HEADER = "X-Bacalhau-Content-SHA256"
SIGNATURE_HEADER = "X-Bacalhau-Signature"
_PREFIX = "ed25519:"


def bacalhau_dir() -> Path:
    """The client's folder: `$BACALHAU_DIR`, else `~/.bacalhau`."""
    return Path(os.environ.get("BACALHAU_DIR") or Path.home() / ".bacalhau").expanduser()


def client_id_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def signing_bytes(method: str, target: str, timestamp: int, content_sha256: str) -> bytes:
    """What a client signs: the request's method, path and query, time and body hash."""
    return f"bacalhau-py-request/1\n{method.upper()}\n{target}\n{timestamp}\n{content_sha256}".encode()


class ClientKey:
    """A client's private key. Open with `ClientKey.load_or_create(folder)`."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = private.public_key().public_bytes_raw()
        self.client_id = client_id_of(self.public_key)

    @classmethod
    def generate(cls) -> "ClientKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, folder: Path | None = None) -> "ClientKey":
        """The key in `folder` (default `bacalhau_dir()`), created there (0600) if there is none."""
        path = (folder or bacalhau_dir()) / KEY_FILE
        if not path.exists():
            _create(path)
        text = path.read_text().strip()
        try:
            if not text.startswith(_PREFIX):
                raise ValueError
            seed = base64.b64decode(text[len(_PREFIX):], validate=True)
            return cls(Ed25519PrivateKey.from_private_bytes(seed))
        except (ValueError, binascii.Error):
            raise UserInputError(
                f"{path}: not a client key (expected one line '{_PREFIX}<base64 seed>'; remove it to get a new key)"
            ) from None

    def headers(self, method: str, target: str, body: bytes | None, *, now: int | None = None) -> dict[str, str]:
        """The identity headers for a request; `body=None` for a streamed body left unsigned."""
        timestamp = int(time.time()) if now is None else now
        content = UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()
        signature = self._private.sign(signing_bytes(method, target, timestamp, content))
        return {
            KEY_HEADER: base64.b64encode(self.public_key).decode(),
            TIMESTAMP_HEADER: str(timestamp),
            CONTENT_HEADER: content,
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    # Written under a private name, then linked: two first uses at once
    # end with one key, never a half-written file.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(_PREFIX + base64.b64encode(seed).decode() + "\n")
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
    finally:
        partial.unlink(missing_ok=True)


def verify(public_key_b64: str, signature_b64: str, message: bytes) -> str:
    """The client ID of `public_key_b64` if it signed `message`; else NotAuthenticated."""
    try:
        public_key = base64.b64decode(public_key_b64, validate=True)
        signature = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (ValueError, binascii.Error):
        raise NotAuthenticated(
            "client signature: the key or signature is not valid base64 Ed25519 (expected a 32-byte key)"
        ) from None
    except InvalidSignature:
        raise NotAuthenticated("client signature does not verify for this request") from None
    return client_id_of(public_key)


def verify_signed_request(signed: "SignedRequest") -> str:
    """The client ID that signed `signed` (a job's submit request); else NotAuthenticated."""
    content = hashlib.sha256(signed.body.encode()).hexdigest()
    message = signing_bytes(signed.method, signed.target, signed.timestamp, content)
    return verify(signed.public_key, signed.signature, message)
