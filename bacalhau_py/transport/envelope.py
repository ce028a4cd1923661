"""The wire format: a signed, versioned envelope around one message.

An envelope is a JSON object::

    {"v": 1, "kind": "...", "sender": "<peer id>", "payload": "<message JSON>",
     "pubkey": "<base64 libp2p protobuf public key>", "sig": "<base64>"}

`payload` is the message's JSON *as a string*, so the signature covers the
exact bytes that were sent and no JSON canonicalisation is needed.  The
signature covers a domain prefix, the version, kind, sender and payload, so a
signature made for one purpose cannot be replayed as another.

On streams each envelope (or stream chunk) travels as a frame: a 4-byte
big-endian length followed by that many bytes.  A fixed-size header makes the
size check possible before reading the body, so an attacker cannot make us
buffer more than `MAX_FRAME_SIZE`.

Everything here is pure (apart from `read_frame`, which only awaits the
reader it is given), so it is unit-testable without a network.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Awaitable, Callable
from functools import lru_cache

from pydantic import ValidationError

from libp2p.crypto.keys import KeyPair, PrivateKey, PublicKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID

from bacalhau_py.errors import InvalidMessage
from bacalhau_py.models.messages import MESSAGE, Message

ENVELOPE_VERSION = 1
MAX_FRAME_SIZE = 8 * 1024 * 1024
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
# Domain separation: a node's libp2p key also signs noise handshakes and
# pubsub messages; this prefix keeps those signatures from being valid here.
_SIGNING_PREFIX = b"bacalhau-py/envelope:"
_FIELDS = {"v", "kind", "sender", "payload", "pubkey", "sig"}


def peer_id_of(public_key: PublicKey) -> str:
    """The base58 peer ID a public key derives (identity hash for ed25519)."""
    return ID.from_pubkey(public_key).to_base58()


def _signing_bytes(version: int, kind: str, sender: str, payload: str) -> bytes:
    # Length-prefix every field so that no two distinct tuples serialise alike.
    out = bytearray(_SIGNING_PREFIX)
    for part in (str(version), kind, sender, payload):
        raw = part.encode("utf-8")
        out += _HEADER.pack(len(raw)) + raw
    return bytes(out)


# Peers and keys recur in every message: derive each one's ID and key object
# once (base58 and protobuf in Python: 6% of an idle node's CPU per message).
@lru_cache(maxsize=4096)
def _key_of(pubkey_bytes: bytes) -> tuple[PublicKey, str]:
    public_key = deserialize_public_key(pubkey_bytes)
    return public_key, peer_id_of(public_key)


_SENDERS: dict[int, tuple[PrivateKey, str, str]] = {}


def _sender_of(private_key: PrivateKey) -> tuple[str, str]:
    """(peer ID, base64 public key) of our own key (keys are not hashable: by identity, the key kept alive)."""
    cached = _SENDERS.get(id(private_key))
    if cached is None or cached[0] is not private_key:
        if len(_SENDERS) >= 64:
            _SENDERS.clear()
        public_key = private_key.get_public_key()
        cached = (private_key, peer_id_of(public_key), base64.b64encode(public_key.serialize()).decode("ascii"))
        _SENDERS[id(private_key)] = cached
    return cached[1], cached[2]


def seal(message: Message, key_pair: KeyPair | PrivateKey) -> bytes:
    """Sign `message` with the node's key; return the envelope's JSON bytes."""
    private_key = key_pair.private_key if isinstance(key_pair, KeyPair) else key_pair
    sender, pubkey = _sender_of(private_key)
    payload = MESSAGE.dump_json(message).decode("utf-8")
    kind = message.kind
    sig = private_key.sign(_signing_bytes(ENVELOPE_VERSION, kind, sender, payload))
    envelope = {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "sender": sender,
        "payload": payload,
        "pubkey": pubkey,
        "sig": base64.b64encode(sig).decode("ascii"),
    }
    data = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME_SIZE:
        # Refuse at the sender: the receiver would drop it anyway.
        raise InvalidMessage(f"envelope of {len(data)} bytes exceeds {MAX_FRAME_SIZE}")
    return data


def open_envelope(data: bytes) -> tuple[str, Message]:
    """Verify an envelope; return (sender peer ID, message) or raise `InvalidMessage`.

    Checks, in order: size, JSON shape, version, signature against the carried
    public key, that this public key derives the claimed sender, and the
    payload against the `MESSAGE` schema (including that its kind matches).
    """
    if len(data) > MAX_FRAME_SIZE:
        raise InvalidMessage(f"envelope of {len(data)} bytes exceeds {MAX_FRAME_SIZE}")
    try:
        env = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidMessage(f"envelope is not JSON: {_one_line(e)}") from None
    if not isinstance(env, dict):
        raise InvalidMessage("envelope is not a JSON object")
    if set(env) != _FIELDS:
        raise InvalidMessage(f"envelope fields {sorted(env)} != {sorted(_FIELDS)}")
    version = env["v"]
    if version != ENVELOPE_VERSION or isinstance(version, bool):
        raise InvalidMessage(f"unsupported envelope version {version!r}")
    kind, sender, payload = env["kind"], env["sender"], env["payload"]
    if not all(isinstance(x, str) for x in (kind, sender, payload, env["pubkey"], env["sig"])):
        raise InvalidMessage("envelope fields kind/sender/payload/pubkey/sig must be strings")
    try:
        pubkey_bytes = base64.b64decode(env["pubkey"], validate=True)
        sig = base64.b64decode(env["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage("pubkey or sig is not valid base64") from None
    try:
        public_key, derived = _key_of(pubkey_bytes)
    except Exception as e:  # libp2p raises assorted errors for bad key bytes
        raise InvalidMessage(f"pubkey does not decode: {_one_line(e)}") from None
    try:
        ok = public_key.verify(_signing_bytes(version, kind, sender, payload), sig)
    except Exception:  # some key types raise instead of returning False
        ok = False
    if not ok:
        raise InvalidMessage(f"bad signature on {kind!r} claimed from {sender}")
    if derived != sender:
        raise InvalidMessage(f"pubkey derives {derived}, not the claimed sender {sender}")
    try:
        message = MESSAGE.validate_json(payload)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {"msg": str(e), "loc": ()}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidMessage(f"payload of {kind!r} fails schema at {loc or '<root>'}: {first['msg']}") from None
    if message.kind != kind:
        raise InvalidMessage(f"envelope kind {kind!r} != payload kind {message.kind!r}")
    return sender, message


def encode_frame(body: bytes) -> bytes:
    """Length-prefix `body` for a stream."""
    if len(body) > MAX_FRAME_SIZE:
        raise InvalidMessage(f"frame of {len(body)} bytes exceeds {MAX_FRAME_SIZE}")
    return _HEADER.pack(len(body)) + body


def decode_frame_header(header: bytes, max_size: int = MAX_FRAME_SIZE) -> int:
    """Body length from a 4-byte header; `InvalidMessage` if it is over the limit."""
    if len(header) != HEADER_SIZE:
        raise InvalidMessage(f"frame header of {len(header)} bytes, expected {HEADER_SIZE}")
    (size,) = _HEADER.unpack(header)
    if size > max_size:
        raise InvalidMessage(f"frame of {size} bytes exceeds {max_size}")
    return size


async def read_frame(
    read_exactly: Callable[[int], Awaitable[bytes]], max_size: int = MAX_FRAME_SIZE
) -> bytes:
    """Read one frame with `read_exactly(n)` (which must return exactly n bytes)."""
    size = decode_frame_header(await read_exactly(HEADER_SIZE), max_size)
    return await read_exactly(size) if size else b""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
