"""What the HTTP API needs from a node. `bacalhau_py.node.Node` implements it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal, Protocol

from bacalhau_py.auth.access import AccessControl
from bacalhau_py.auth.approvals import Approval
from bacalhau_py.models import Job, JobSpec
from bacalhau_py.models.messages import NodeInfo
from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.workflow import Workflow, WorkflowTask


class NodeService(Protocol):
    peer_id: str
    access: AccessControl
    """API keys and operators: the API's dependencies (api/access.py) ask it who may do what."""

    async def submit(
        self, spec: JobSpec, *, client_id: str | None = None, client_request: SignedRequest | None = None
    ) -> Job:
        """Validate, store (Pending) and start the job; return its record.

        `client_request` is the client's signed submit request: it travels with the job."""

    async def list_jobs(self, limit: int = 20, *, client_id: str | None = None) -> list[Job]:
        """Newest first; with `client_id`, only that client's jobs."""

    async def get_job(self, job_id: str) -> Job:
        """By full ID or a unique prefix of 8+ characters.

        Raises NotFound (unknown), UserInputError (prefix < 8 or ambiguous).
        """

    async def wait_for_change(self, job_id: str, since_updated_at: str | None, timeout: float) -> Job:
        """Return the job as soon as it changed after `since_updated_at` (ISO) or at timeout."""

    async def cancel(self, job_id: str) -> Job:
        """Cancel; the compute nodes stop its containers/wasm instances. Terminal jobs: unchanged."""

    def logs(self, job_id: str, follow: bool) -> AsyncIterator[tuple[str, bytes]]:
        """("stdout" | "stderr", chunk) of the first accepted (else first finished) execution.

        With follow, waits while the job runs and ends when it is terminal.
        """

    def results(self, job_id: str) -> AsyncIterator[bytes]:
        """A tar stream in the results layout of shared/CLI.md.

        Top level: the accepted execution's stdout, stderr, exitCode and output
        folders; plus raw/<node-id>/... for every execution when more than one ran.
        Raises NotFound if the job has no published result yet.
        """

    async def ipfs_add(self, path: Path) -> str:
        """Add a file or folder (already on the node's disk) to IPFS; return the CID."""

    async def info(self) -> NodeInfo:
        """This node: peer ID, addresses, types, labels, capacity."""

    async def known_nodes(self) -> list[NodeInfo]:
        """Every node this node knows, itself included."""

    def approval(self, peer_id: str) -> Approval:
        """Whether this node, as a requester, may send jobs to `peer_id`."""

    async def set_approval(self, peer_id: str, decision: Literal["approved", "rejected"]) -> Approval:
        """An operator's decision on a known node; it persists across restarts."""
    async def receipt(self, ran: str) -> Receipt:
        """A verified receipt for instruction CID `ran`: this node's, else a reachable node's. NotFound if none."""

    async def submit_workflow(self, tasks: list[WorkflowTask], *, client_id: str | None = None) -> Workflow:
        """Store the workflow and start its tasks in dependency order."""

    async def get_workflow(self, workflow_id: str) -> Workflow:
        """By full ID or a unique prefix of 8+ characters."""

    async def wait_workflow(self, workflow_id: str, timeout: float) -> Workflow:
        """The workflow once it is finished, or as it is after `timeout` seconds."""
