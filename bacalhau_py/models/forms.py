"""The textual forms of spec values (CIDs, sizes, CPU amounts) and the inline limit.

Plain functions, no pydantic: the submitting CLI parses its flags with them
and leaves the spec's validation to the node, so it never imports the models
(pydantic and the models are most of a command's start; BENCHMARKS.md).
"""

from __future__ import annotations

import re

MAX_INLINE_BYTES = 1 << 20

_CID_V0 = re.compile(r"^Qm[1-9A-HJ-NP-Za-km-z]{44}$")
_CID_V1 = re.compile(r"^b[a-z2-7]{20,}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def is_cid(text: str) -> bool:
    """True for a CIDv0 (`Qm...`) or a base32 CIDv1 (`b...`)."""
    return bool(_CID_V0.match(text) or _CID_V1.match(text))


def parse_size(text: str | int) -> int:
    """Parse `64Mb`, `1Gb`, `512MiB`, `1024` into bytes (units of 1024, as docker's `-m`)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("must not be negative")
        return text
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a size (expected e.g. 64Mb, 1Gb, 512MiB)")
    number, unit = match.groups()
    letter = (unit or "b")[0].lower()
    size = float(number) * 1024 ** "bkmgt".index(letter)
    if size >= 2**63:
        raise ValueError(f"{text!r} is too large")
    return int(size)


def parse_cpu(text: str | float) -> float:
    """Parse `0.5`, `2`, `500m` (millicores) into cores."""
    if isinstance(text, (int, float)):
        value = float(text)
    elif not isinstance(text, str):
        raise ValueError(f"{text!r} is not a CPU amount (expected e.g. 0.5, 2, 500m)")
    else:
        raw = text.strip().lower()
        try:
            value = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
        except ValueError:
            raise ValueError(f"{text!r} is not a CPU amount (expected e.g. 0.5, 2, 500m)") from None
    if value <= 0:
        raise ValueError("must be more than 0")
    return value
