"""API keys: `serve --api-keys FILE` (one key per line); each request then sends `Authorization: Bearer KEY`."""

from __future__ import annotations

import hmac
from pathlib import Path

from bacalhau_py.errors import UserInputError


class APIKeys:
    """The keys a node accepts. Never logged, never in an error message."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys]

    @classmethod
    def load(cls, path: Path) -> "APIKeys":
        """One key per line; blank lines and lines starting with # are skipped."""
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UserInputError(f"--api-keys {path}: cannot read it ({type(error).__name__})") from None
        keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise UserInputError(f"--api-keys {path}: no key in it (expected one key per line)")
        return cls(keys)

    def accepts(self, authorization: str | None) -> bool:
        """True if the Authorization header is `Bearer KEY` with one of the keys."""
        scheme, _, given = (authorization or "").partition(" ")
        candidate = given.strip().encode()
        # Every key is compared, each in constant time: the answer's timing
        # says nothing about which key, or how much of one, matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return scheme.lower() == "bearer" and matched
