"""Issuing and checking receipts: signed with the requester's libp2p key, as envelopes are.

The signature covers a domain prefix and the dag-cbor encoding of every field
but `sig` (the public key included), so it cannot be replayed as an envelope's
and no field can be changed without breaking it. A receipt's own CID is the
dag-cbor CID of all its fields.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_public_key

from bacalhau_py.models import Job, JobSpec
from bacalhau_py.models.receipt import Receipt, ReceiptOut
from bacalhau_py.transport.envelope import peer_id_of
from bacalhau_py.workflow.instruction import cid_of, dag_cbor

_SIGNING_PREFIX = b"bacalhau-py/receipt:"


def issue(job: Job, key_pair: KeyPair) -> Receipt | None:
    """The signed receipt of a Completed job's accepted result; None if it has nothing to receipt.

    Only results others can fetch by CID (an IPFS result) are receipted.
    """
    accepted = job.accepted_executions()
    if job.instruction_cid is None or not accepted or job.spec.publisher != "ipfs":
        return None
    first = accepted[0]
    if first.result_cid is None or first.exit_code is None:
        return None
    unsigned = {
        "ran": job.instruction_cid,
        "out": {"result_cid": first.result_cid, "exit_code": first.exit_code},
        "verifier": job.spec.verifier,
        "verdict": "accepted",
        "executors": [e.node_id for e in accepted],
        "issuer": peer_id_of(key_pair.public_key),
        "issued_at": datetime.now(timezone.utc).isoformat(),
        "job_id": job.id,
        "pubkey": base64.b64encode(key_pair.public_key.serialize()).decode("ascii"),
    }
    sig = key_pair.private_key.sign(_signing_bytes(unsigned))
    return Receipt(**{**unsigned, "out": ReceiptOut(**unsigned["out"]), "sig": base64.b64encode(sig).decode("ascii")})


def problem(receipt: Receipt) -> str | None:
    """Why the receipt cannot be trusted (bad signature, key not the issuer's), or None if it verifies."""
    try:
        public_key = deserialize_public_key(base64.b64decode(receipt.pubkey, validate=True))
        sig = base64.b64decode(receipt.sig, validate=True)
    except (binascii.Error, ValueError):
        return "its pubkey or sig is not valid base64"
    except Exception:  # libp2p raises assorted errors for bad key bytes
        return "its pubkey does not decode"
    if peer_id_of(public_key) != receipt.issuer:
        return f"its key is not the key of its issuer {receipt.issuer}"
    try:
        ok = public_key.verify(_signing_bytes(_unsigned(receipt)), sig)
    except Exception:  # some key types raise instead of returning False
        ok = False
    return None if ok else "its signature does not verify"


def receipt_cid(receipt: Receipt) -> str:
    return cid_of(receipt.model_dump(mode="json"))


def serves(receipt: Receipt, spec: JobSpec) -> bool:
    """Whether a memoized job may take the receipt's result: it verifies, exit code 0, and it was
    checked at least as the job asks (the same verifier over as many nodes, unless the job asks for none)."""
    if receipt.out.exit_code != 0 or problem(receipt) is not None:
        return False
    return spec.verifier == "noop" or (
        receipt.verifier == spec.verifier and len(receipt.executors) >= spec.deal.concurrency
    )


def _unsigned(receipt: Receipt) -> dict:
    return receipt.model_dump(mode="json", exclude={"sig"})


def _signing_bytes(unsigned: dict) -> bytes:
    return _SIGNING_PREFIX + dag_cbor(unsigned)
