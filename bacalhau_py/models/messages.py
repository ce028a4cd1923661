"""Payloads that requester and compute nodes exchange.

Transport wraps each in a signed, versioned envelope (transport/envelope.py);
this module only says what the payloads are. `kind` is the discriminator.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.spec import JobSpec
from bacalhau_py.models.states import ExecutionState


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ack(_Message):
    kind: Literal["ack"] = "ack"
    ok: bool = True
    message: str = ""


class NodeInfo(_Message):
    """A node describes itself: gossiped periodically and sent on request."""

    kind: Literal["node_info"] = "node_info"
    peer_id: str
    node_types: list[str]
    addresses: list[str] = []
    labels: dict[str, str] = {}
    engines: list[str] = []
    total_cpu: float = 0
    total_memory: int = 0
    total_gpu: int = 0
    free_cpu: float = 0
    free_memory: int = 0
    free_gpu: int = 0
    running: int = 0
    ipfs_peer_id: str | None = None
    ipfs_addresses: list[str] = []
    version: str = ""


class NodeInfoRequest(_Message):
    kind: Literal["node_info_request"] = "node_info_request"


class JobAnnounce(_Message):
    """Gossiped when a job is submitted; compute nodes may bid on it."""

    kind: Literal["job_announce"] = "job_announce"
    job_id: str
    requester_id: str


class AskBid(_Message):
    """Requester -> compute: would you run this? The reply is a `BidReply`."""

    kind: Literal["ask_bid"] = "ask_bid"
    job_id: str
    execution_id: str
    spec: JobSpec


class BidReply(_Message):
    kind: Literal["bid_reply"] = "bid_reply"
    execution_id: str
    accepted: bool
    reason: str = ""
    retry: bool = False
    """A refusal for now only (the node is busy): the requester may ask again."""


class BidDecision(_Message):
    """Requester -> compute: your bid is accepted (run it) or rejected."""

    kind: Literal["bid_decision"] = "bid_decision"
    job_id: str
    execution_id: str
    accepted: bool
    reason: str = ""


class ExecutionUpdate(_Message):
    """Compute -> requester: the execution started or failed."""

    kind: Literal["execution_update"] = "execution_update"
    job_id: str
    execution_id: str
    state: ExecutionState
    message: str = ""


class ResultProposal(_Message):
    """Compute -> requester: the run finished and its results are published.

    `commitment` is sha256(execution_id:salt:result_hash): it binds the node
    to its hash before any hash is revealed, so no node can copy another's.
    """

    kind: Literal["result_proposal"] = "result_proposal"
    job_id: str
    execution_id: str
    exit_code: int | None
    result_cid: str | None
    publisher: str
    commitment: str | None
    """None when the job's verifier does not compare result hashes (noop)."""


class RevealRequest(_Message):
    kind: Literal["reveal_request"] = "reveal_request"
    execution_id: str


class Reveal(_Message):
    kind: Literal["reveal"] = "reveal"
    execution_id: str
    result_hash: str
    salt: str


class CancelExecution(_Message):
    kind: Literal["cancel_execution"] = "cancel_execution"
    job_id: str
    execution_id: str
    reason: str = ""


class FetchResult(_Message):
    """Requester -> compute: send the execution's result folder (local publisher)."""

    kind: Literal["fetch_result"] = "fetch_result"
    execution_id: str


class ExecutionStatusRequest(_Message):
    """Requester -> compute, after the requester restarted: where is this execution?

    The reply is the execution's `ResultProposal` if it has one, an
    `ExecutionUpdate` (Running) while it runs, or `Ack(ok=False)` if the node
    does not know it (any more).
    """

    kind: Literal["execution_status_request"] = "execution_status_request"
    execution_id: str


class FollowLogs(_Message):
    """Requester -> compute: stream the execution's stdout/stderr as it runs (framed chunks)."""

    kind: Literal["follow_logs"] = "follow_logs"
    execution_id: str


class ReceiptAnnounce(_Message):
    """Gossiped by a requester when it issues a receipt."""

    kind: Literal["receipt_announce"] = "receipt_announce"
    receipt: Receipt


class ReceiptRequest(_Message):
    """Any node -> any node: your receipt for this instruction CID? The reply is a `ReceiptReply`."""

    kind: Literal["receipt_request"] = "receipt_request"
    ran: Annotated[str, Field(min_length=1, max_length=128)]


class ReceiptReply(_Message):
    kind: Literal["receipt_reply"] = "receipt_reply"
    receipt: Receipt | None = None


Message = Annotated[
    Union[
        Ack,
        NodeInfo,
        NodeInfoRequest,
        JobAnnounce,
        AskBid,
        BidReply,
        BidDecision,
        ExecutionUpdate,
        ResultProposal,
        RevealRequest,
        Reveal,
        CancelExecution,
        FetchResult,
        FollowLogs,
        ExecutionStatusRequest,
        ReceiptAnnounce,
        ReceiptRequest,
        ReceiptReply,
    ],
    Field(discriminator="kind"),
]

MESSAGE = TypeAdapter(Message)
