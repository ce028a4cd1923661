"""A receipt: a requester's signed statement that an instruction ran and what came out.

Written when a job's result is accepted (workflow/receipts.py signs and
checks them); stored, gossiped and asked for by instruction CID.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_ID = Annotated[str, Field(min_length=1, max_length=128)]


class ReceiptOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    result_cid: _ID
    exit_code: int


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ran: _ID
    """The instruction CID."""
    out: ReceiptOut
    verifier: _ID
    verdict: Literal["accepted"]
    executors: Annotated[list[_ID], Field(min_length=1, max_length=100)]
    """The peer IDs whose executions were accepted."""
    issuer: _ID
    """The requester's peer ID; `pubkey` must derive it."""
    issued_at: Annotated[str, Field(max_length=64)]
    job_id: _ID
    pubkey: Annotated[str, Field(max_length=1024)]
    """base64 of the issuer's libp2p protobuf public key."""
    sig: Annotated[str, Field(max_length=1024)]
    """base64 signature over the receipt's other fields (workflow/receipts.py)."""
