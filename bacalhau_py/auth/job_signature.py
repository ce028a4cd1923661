"""What a compute node checks before it bids: the job is the one its client signed.

The requester forwards the client's signed submit request (`SignedRequest`)
with the job. The compute node verifies the signature, that it is by the
job's client, and that the signed body reads as exactly the spec it is asked
to run: a requester, or anyone on the way, cannot change a job or claim
another client's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bacalhau_py.auth.client_key import verify_signed_request
from bacalhau_py.errors import BacalhauError
from bacalhau_py.models import JobSpec
from bacalhau_py.models.codec import spec_from_dict
from bacalhau_py.models.messages import AskBid

SUBMIT_TARGET = "/api/v1/jobs"

# (method, path) of each API route that submits a job -> how it reads its body into a spec.
SPEC_READERS: dict[tuple[str, str], Callable[[object], JobSpec]] = {
    ("POST", SUBMIT_TARGET): spec_from_dict,
}


def refusal(ask: AskBid) -> str | None:
    """Why `ask` must not run here (forged or altered client signature); None if it is sound or unsigned."""
    signed = ask.client_request
    if signed is None:
        # An unsigned job (Bacalhau's SDK, curl) runs as anonymous: the policy's `clients` rule refuses it.
        return None if ask.client_id is None else f"the job names client {ask.client_id} but carries no signature of it"
    if ask.client_id is None:
        return "the job carries a client signature but names no client"
    try:
        signer = verify_signed_request(signed)
    except BacalhauError as error:
        return f"the job's client signature is invalid: {error}"
    if signer != ask.client_id:
        return f"the job's client signature is by client {signer}, not by its client {ask.client_id}"
    reader = SPEC_READERS.get((signed.method, signed.target))
    if reader is None:
        return f"the job's client signed {signed.method} {signed.target}, which submits no job"
    try:
        spec = reader(json.loads(signed.body))
    except (ValueError, BacalhauError):
        return "the job's signed request holds no valid job spec"
    if spec.model_dump(mode="json") != ask.spec.model_dump(mode="json"):
        return "the job's spec differs from the one its client signed (altered in transit)"
    return None
