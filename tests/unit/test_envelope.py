"""The signed envelope: pure functions, no network."""

from __future__ import annotations

import base64
import json

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from bacalhau_py.errors import InvalidMessage
from bacalhau_py.models.messages import Ack, JobAnnounce
from bacalhau_py.transport import envelope as env
from bacalhau_py.transport.envelope import (
    MAX_FRAME_SIZE,
    decode_frame_header,
    encode_frame,
    open_envelope,
    peer_id_of,
    read_frame,
    seal,
)

KEY = create_new_key_pair(b"a" * 32)
OTHER = create_new_key_pair(b"b" * 32)
MSG = JobAnnounce(job_id="j1", requester_id="r")


def _mutate(data: bytes, **changes) -> bytes:
    d = json.loads(data)
    d.update(changes)
    return json.dumps(d).encode()


def test_seal_and_open_round_trip():
    data = seal(MSG, KEY)
    sender, message = open_envelope(data)
    assert sender == peer_id_of(KEY.public_key)
    assert sender.startswith("12D3KooW")  # ed25519 peer IDs
    assert message == MSG
    fields = json.loads(data)
    assert fields["v"] == 1 and fields["kind"] == "job_announce" and fields["sender"] == sender


def test_tampered_payload_is_rejected():
    data = seal(MSG, KEY)
    payload = json.loads(json.loads(data)["payload"])
    payload["job_id"] = "j2"
    with pytest.raises(InvalidMessage, match="bad signature"):
        open_envelope(_mutate(data, payload=json.dumps(payload)))


def test_tampered_kind_is_rejected():
    with pytest.raises(InvalidMessage, match="bad signature"):
        open_envelope(_mutate(seal(MSG, KEY), kind="ack"))


def test_claiming_another_sender_is_rejected():
    # Signed correctly by OTHER, but claims KEY's peer ID (re-signed so only
    # the key/sender binding is wrong).
    victim = peer_id_of(KEY.public_key)
    data = json.loads(seal(MSG, OTHER))
    sig = OTHER.private_key.sign(env._signing_bytes(1, data["kind"], victim, data["payload"]))
    forged = _mutate(seal(MSG, OTHER), sender=victim, sig=base64.b64encode(sig).decode())
    with pytest.raises(InvalidMessage, match="not the claimed sender"):
        open_envelope(forged)


def test_signature_by_wrong_key_is_rejected():
    # KEY's public key and sender, but OTHER's signature.
    good = json.loads(seal(MSG, KEY))
    sig = OTHER.private_key.sign(env._signing_bytes(1, good["kind"], good["sender"], good["payload"]))
    with pytest.raises(InvalidMessage, match="bad signature"):
        open_envelope(_mutate(seal(MSG, KEY), sig=base64.b64encode(sig).decode()))


def _sealed_raw(payload: str, kind: str, key=KEY) -> bytes:
    sender = peer_id_of(key.public_key)
    sig = key.private_key.sign(env._signing_bytes(1, kind, sender, payload))
    return json.dumps(
        {
            "v": 1,
            "kind": kind,
            "sender": sender,
            "payload": payload,
            "pubkey": base64.b64encode(key.public_key.serialize()).decode(),
            "sig": base64.b64encode(sig).decode(),
        }
    ).encode()


def test_unknown_kind_is_rejected_even_if_signed():
    with pytest.raises(InvalidMessage, match="fails schema"):
        open_envelope(_sealed_raw('{"kind": "launch_missiles"}', "launch_missiles"))


def test_schema_violation_is_rejected():
    with pytest.raises(InvalidMessage, match="fails schema"):
        open_envelope(_sealed_raw('{"kind": "job_announce", "job_id": 5}', "job_announce"))


def test_kind_mismatch_between_envelope_and_payload_is_rejected():
    with pytest.raises(InvalidMessage, match="kind"):
        open_envelope(_sealed_raw(Ack().model_dump_json(), "job_announce"))


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage\x00\xff", b"[1,2]", b'{"v": 1}', _mutate(seal(MSG, KEY), v=2), _mutate(seal(MSG, KEY), pubkey="!!")],
)
def test_malformed_envelopes_are_rejected_with_one_line(data):
    with pytest.raises(InvalidMessage) as info:
        open_envelope(data)
    assert "\n" not in str(info.value)


def test_oversize_is_rejected():
    with pytest.raises(InvalidMessage, match="exceeds"):
        open_envelope(b" " * (MAX_FRAME_SIZE + 1))
    with pytest.raises(InvalidMessage, match="exceeds"):
        encode_frame(b" " * (MAX_FRAME_SIZE + 1))
    with pytest.raises(InvalidMessage, match="exceeds"):
        decode_frame_header((MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
    with pytest.raises(InvalidMessage, match="exceeds"):
        seal(Ack(message="x" * MAX_FRAME_SIZE), KEY)


async def test_frames_round_trip_through_a_reader():
    data = encode_frame(b"one") + encode_frame(b"") + encode_frame(seal(MSG, KEY))
    pos = 0

    async def read_exactly(n: int) -> bytes:
        nonlocal pos
        chunk, pos = data[pos : pos + n], pos + n
        return chunk

    assert await read_frame(read_exactly) == b"one"
    assert await read_frame(read_exactly) == b""
    assert open_envelope(await read_frame(read_exactly))[1] == MSG
