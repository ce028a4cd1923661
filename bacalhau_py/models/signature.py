"""A client's signed API request, as it travels with a job to the compute nodes.

Only data: signing and verifying live in `bacalhau_py.auth.client_key`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SignedRequest(BaseModel):
    """The request a client signed to submit a job: enough for anyone to verify it again.

    `body` is the request body exactly as sent (the job spec JSON), so a
    compute node checks that the spec it is asked to run is the one the
    client signed, whatever the requester in between.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    public_key: str
    """The client's Ed25519 public key: 32 bytes, base64."""
    timestamp: int
    method: str
    target: str
    """The path and query the client sent, e.g. /api/v1/jobs."""
    body: str
    signature: str
    """Ed25519 signature (base64) over `auth.client_key.signing_bytes(...)`."""
