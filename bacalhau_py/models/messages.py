"""Payloads that requester and compute nodes exchange.

Transport wraps each in a signed, versioned envelope (transport/envelope.py);
this module only says what the payloads are. `kind` is the discriminator.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.models.spec import JobSpec, is_cid
from bacalhau_py.models.states import ExecutionState


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ack(_Message):
    kind: Literal["ack"] = "ack"
    ok: bool = True
    message: str = ""


class NodeInfo(_Message):
    """A node describes itself: its heartbeat and introduction (see `membership`), and on request."""

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
    policy: bool = False
    """The node has an admission policy (serve --policy)."""
    default_job_cpu: float | None = None
    """Cores a job that asks for none may use (compute nodes)."""
    default_job_memory: int | None = None
    limit_job_disk: int | None = None
    """The most bytes one job may write to its outputs."""
    min_free_disk: int = 0
    """Below this much free disk the node makes no bids."""
    boot_id: str = ""
    """New at each start of the node's process: a change means it restarted (and forgot what it ran)."""


class NodeInfoRequest(_Message):
    kind: Literal["node_info_request"] = "node_info_request"


class DirectoryRequest(_Message):
    """Asks for the nodes the receiver counts alive, unless its `Directory.digest` is `digest`."""

    kind: Literal["directory_request"] = "directory_request"
    digest: str = Field(default="", max_length=64)


class Directory(_Message):
    """The nodes a node counts alive (itself first); none if the asker's digest matched."""

    MAX_NODES: ClassVar[int] = 2000

    kind: Literal["directory"] = "directory"
    digest: str = Field(max_length=64)
    nodes: list[NodeInfo] = Field(default=[], max_length=MAX_NODES)


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
    client_id: str | None = None
    client_request: SignedRequest | None = None
    """The client's signed submit request; the compute node runs only a spec it signed."""


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
    partition_index: int = 0
    """Which of the job's `deal.concurrency` executions this is (the job sees BACALHAU_PARTITION_INDEX)."""


class ExecutionUpdate(_Message):
    """Compute -> requester: the execution started or failed."""

    kind: Literal["execution_update"] = "execution_update"
    job_id: str
    execution_id: str
    state: ExecutionState
    message: str = ""
    logs_cid: str | None = None
    """A failed run's stdout and stderr, published so that `logs` can show them."""

    @field_validator("logs_cid")
    @classmethod
    def _cid(cls, value: str | None) -> str | None:
        if value is not None and not is_cid(value):
            raise ValueError(f"{value[:80]!r} is not a CID")
        return value


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
    image_id: str | None = None
    """docker: the ID of the image that ran."""


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


class ResultVerdict(_Message):
    """Requester -> compute: the verifier accepted or rejected the execution's result.

    The compute node then forgets the execution (a local publisher's result
    folder stays fetchable).
    """

    kind: Literal["result_verdict"] = "result_verdict"
    job_id: str
    execution_id: str
    accepted: bool
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
        DirectoryRequest,
        Directory,
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
        ResultVerdict,
        ReceiptAnnounce,
        ReceiptRequest,
        ReceiptReply,
    ],
    Field(discriminator="kind"),
]

MESSAGE = TypeAdapter(Message)
