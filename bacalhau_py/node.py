"""One node: IPFS, transport, job store, compute and requester roles, HTTP API.

`Node.serve` starts every service in one nursery, in dependency order, and
reports ready only when the API really listens. Cancelling it stops them all:
running executions are cancelled (their containers removed) before it returns.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import trio

from bacalhau_py import __version__, httpclient
from bacalhau_py import __version__
from bacalhau_py.auth.access import AccessControl
from bacalhau_py.auth.api_keys import APIKeys
from bacalhau_py.auth.approvals import FILE_NAME as APPROVALS_FILE
from bacalhau_py.auth.approvals import Approval, Approvals
from bacalhau_py.compute.bidding import BidPolicy, BidStrategy
from bacalhau_py.compute.capacity import ZERO, Capacity, CapacityTracker
from bacalhau_py.compute.limits import JobLimits
from bacalhau_py.compute.service import DEFAULT_RETENTION_SECONDS, ComputeService
from bacalhau_py.concurrency import watch_stalls
from bacalhau_py.context import ProviderContext
from bacalhau_py.directory import LOST_AFTER_SECONDS, NodeDirectory
from bacalhau_py.errors import BacalhauError, InvalidMessage, NotFound, UserInputError
from bacalhau_py.executor import EXECUTORS
from bacalhau_py.ipfs.base import IPFSClient, IPFSIdentity
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore.retention import JobRetention
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.membership import Membership
from bacalhau_py.models import Job, JobSpec
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    CancelExecution,
    DirectoryRequest,
    ExecutionStatusRequest,
    ExecutionUpdate,
    FetchResult,
    FollowLogs,
    JobAnnounce,
    Message,
    NodeInfo,
    NodeInfoRequest,
    ReceiptAnnounce,
    ReceiptRequest,
    ResultProposal,
    ResultVerdict,
    RevealRequest,
)
from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.models.workflow import Workflow, WorkflowTask
from bacalhau_py.policy import Policy
from bacalhau_py.publisher import PUBLISHERS
from bacalhau_py.publisher.retention import ResultPins
from bacalhau_py.requester.results import ResultFetcher
from bacalhau_py.requester.service import RequesterService, RequesterTimeouts
from bacalhau_py.results import STDERR, STDOUT, decode_log_frames
from bacalhau_py.storage import STORAGES
from bacalhau_py.transport.base import Transport
from bacalhau_py.workflow.memo import ReceiptBook
from bacalhau_py.workflow.runner import WorkflowRunner

log = logging.getLogger("bacalhau_py.node")

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class NodeConfig:
    repo: Path
    node_types: frozenset[str] = frozenset({"requester", "compute"})
    api_host: str = "127.0.0.1"
    api_port: int = 1234
    swarm_host: str = "127.0.0.1"
    swarm_port: int = 0
    ipfs_swarm_port: int = 0
    peers: tuple[str, ...] = ()
    ipfs_connect: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    limit_total: Capacity | None = None
    limit_job: Capacity | None = None
    data_locality: Literal["local", "anywhere"] = "anywhere"
    bad_actor: bool = False
    engines: tuple[str, ...] | None = None
    """Restrict the executors this node offers (default: every installed one)."""
    fetch_timeout: float = 120.0
    timeouts: RequesterTimeouts = RequesterTimeouts()
    api_keys: APIKeys | None = None
    """Keys every API request must carry (None: the API is open, as on loopback)."""
    operators: frozenset[str] = frozenset()
    """Client IDs that may list, cancel and read every job and approve or reject nodes."""
    node_approval: Literal["auto", "manual"] = "auto"
    policy: Policy | None = None
    """The admission policy (serve --policy): what this compute node runs, on which data."""
    allowed_local_paths: tuple[Path, ...] = ()
    """Host paths jobs may mount read-only (serve --allow-listed-local-paths)."""
    job_limits: JobLimits = JobLimits()
    """Default memory and cpu, output quota and free-disk watermark of this node's jobs."""
    retention: float = DEFAULT_RETENTION_SECONDS
    """How long results stay (pinned in IPFS, or on this compute node with the local publisher),
    and how long this requester keeps a finished job's record."""
    node_lost_after: float = LOST_AFTER_SECONDS
    """A node silent this long is lost (its running executions are rescheduled)."""
    allow_private_urls: bool = False
    """URL inputs may reach loopback and private addresses (refused by default)."""
    max_upload_bytes: int = 1 << 30
    """Largest `ipfs add` upload the API accepts (job specs have their own, smaller limit)."""


def _report_stall(late: float) -> None:
    log.warning("the event loop stalled for %.1f s: requests to this node wait meanwhile", late)


class Node:
    """Implements `api.service.NodeService` and `transport.base.MessageHandler`."""

    def __init__(self, config: NodeConfig, *, transport: Transport | None = None) -> None:
        self.config = config
        self._transport = transport
        self.api_address: tuple[str, int] | None = None
        self.ipfs_api: str | None = None
        self.ipfs: IPFSClient | None = None
        self.compute: ComputeService | None = None
        self.requester: RequesterService | None = None
        self.capacity: CapacityTracker | None = None
        self.engines: list[str] = []
        self.access = AccessControl(config.api_keys, config.operators)
        self._boot_id = secrets.token_hex(8)
        self._own_info_cache: tuple[tuple, NodeInfo] | None = None

    @property
    def peer_id(self) -> str:
        return self.transport.peer_id

    # -- lifecycle ------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        repo = config.repo
        try:
            await trio.to_thread.run_sync(lambda: (repo / "work").mkdir(parents=True, exist_ok=True))
        except OSError as error:
            raise BacalhauError(f"cannot use {repo} as the node's repo: {error.strerror}") from None
        self.store = await trio.to_thread.run_sync(JobStore.open, repo / "jobs.sqlite")
        self.workflow_store = await trio.to_thread.run_sync(WorkflowStore.open, repo / "jobs.sqlite")
        self.workflows: WorkflowRunner | None = None
        try:
            async with trio.open_nursery() as nursery:
                self.ipfs = await self._start_ipfs(nursery)
                self.ipfs_identity = await self.ipfs.id()
                if self._transport is None:
                    from bacalhau_py.transport.libp2p import Libp2pTransport

                    self._transport = Libp2pTransport(
                        repo, listen_port=config.swarm_port, host=config.swarm_host
                    )
                self.transport = self._transport
                approvals = await trio.to_thread.run_sync(Approvals, repo / APPROVALS_FILE, config.node_approval)
                self.directory = NodeDirectory(self._own_info, approvals, config.node_lost_after)
                self.membership = Membership(self.transport, self.directory, self._own_info, self.ipfs.connect)
                pins = ResultPins(self.ipfs, repo / "work" / "result-pins.json", config.retention)
                ctx = ProviderContext(
                    ipfs=self.ipfs, work_dir=repo / "work", fetch_timeout=config.fetch_timeout, labels=config.labels,
                    allowed_local_paths=config.allowed_local_paths, result_pins=pins,
                    allow_private_urls=config.allow_private_urls,
                )
                self.result_fetcher = ResultFetcher(
                    ipfs=self.ipfs,
                    transport=self.transport,
                    cache_dir=repo / "work" / "results",
                    timeout=config.fetch_timeout,
                    retention=config.retention,
                )
                self.compute = await self._build_compute(ctx) if "compute" in config.node_types else None
                from bacalhau_py.transport.libp2p import load_or_create_identity

                # The transport's own key (the same file): receipts are signed as envelopes are.
                self.receipts = ReceiptBook(
                    transport=self.transport,
                    store=self.workflow_store,
                    directory=self.directory,
                    key_pair=await trio.to_thread.run_sync(load_or_create_identity, repo),
                )
                self.requester = (
                    RequesterService(
                        transport=self.transport,
                        store=self.store,
                        directory=self.directory,
                        results=self.result_fetcher,
                        timeouts=config.timeouts,
                        receipts=self.receipts,
                    )
                    if "requester" in config.node_types
                    else None
                )
                if self.requester:
                    self.workflows = WorkflowRunner(
                        store=self.workflow_store,
                        jobs=self.store,
                        submit=self.requester.submit,
                        results=self.result_fetcher,
                        ipfs=self.ipfs,
                    )
                await nursery.start(self._serve_transport)
                if self.compute:
                    await nursery.start(self.compute.serve)
                    await nursery.start(pins.serve)
                if self.requester:
                    await nursery.start(self.requester.serve)
                    await nursery.start(self.result_fetcher.serve)
                    await nursery.start(self.workflows.serve)
                    await nursery.start(JobRetention(self.store, self.workflow_store, config.retention).serve)
                await self._join_network(nursery)
                nursery.start_soon(watch_stalls, _report_stall)
                if self.requester:
                    nursery.start_soon(self._resume, self.directory.heartbeat_period())

                from bacalhau_py.api.app import serve_api
                from bacalhau_py.api.limits import RequestLimits

                limits = RequestLimits(max_upload=config.max_upload_bytes)
                self.api_address = await nursery.start(
                    partial(serve_api, scratch_dir=repo / "work" / "uploads", limits=limits),
                    self, config.api_host, config.api_port,
                )
                await self._check_serving()
                log.info("node %s ready: api http://%s:%d", self.peer_id, *self.api_address)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                if self.compute is not None:
                    await self._remove_leftover_containers(self.compute)
                if self.ipfs is not None:
                    await self.ipfs.aclose()
                self.store.close()
                self.workflow_store.close()

    async def _resume(self, settle: float) -> None:
        # Jobs first: the workflows follow them.
        await self.requester.resume(settle)
        await self.workflows.resume()

    async def _check_serving(self) -> None:
        """Ready means serving: the API answers a request over TCP and IPFS answers too.

        Reported ready any earlier, a devstack or script may reach a node
        that is not answering yet (or already failed), under load especially.
        """
        host, port = self.api_address
        loopback = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        url = f"http://[{loopback}]:{port}" if ":" in loopback else f"http://{loopback}:{port}"
        with trio.fail_after(READY_TIMEOUT):
            async with httpclient.AsyncClient(timeout=READY_TIMEOUT) as http:
                with httpclient.translate(f"the node's own API at {url}"):
                    response = await http.get(f"{url}/api/v1/version")
            # Any answer but a server error proves it serves (with API keys, a 401 is the right answer).
            if response.status_code >= 500:
                raise BacalhauError(f"the node's own API at {url} answered HTTP {response.status_code}")
            await self.ipfs.id()

    async def drain(self) -> None:
        """Before stopping, while the network is up (a graceful stop).

        As a requester: fail its unfinished jobs and cancel their executions on
        the compute nodes. As a compute node: stop its running executions and
        tell their requesters, who fail those jobs now rather than at their timeout.
        """
        async with trio.open_nursery() as nursery:
            if self.requester is not None:
                nursery.start_soon(self.requester.stop_all, "the requester node stopped")
            if self.compute is not None:
                log.info("stopping %d running execution(s)", self.compute.running())
                nursery.start_soon(self.compute.stop_all, "the compute node stopped")

    async def _start_ipfs(self, nursery: trio.Nursery) -> IPFSClient:
        from bacalhau_py.ipfs.client import KuboRPC

        if self.config.ipfs_connect:
            self.ipfs_api = self.config.ipfs_connect
        else:
            from bacalhau_py.ipfs.embedded import EmbeddedIPFS

            # The IPFS swarm listens where libp2p does: on a VM, other nodes
            # fetch inputs and results from it.
            embedded = EmbeddedIPFS(
                self.config.repo / "ipfs", swarm_port=self.config.ipfs_swarm_port, swarm_host=self.config.swarm_host
            )
            ready = await nursery.start(embedded.serve)
            self.ipfs_api = ready.api
        return KuboRPC(self.ipfs_api)

    async def _build_compute(self, ctx: ProviderContext) -> ComputeService:
        config = self.config
        names = config.engines if config.engines is not None else tuple(EXECUTORS)
        executors = {name: EXECUTORS.load(name)(ctx) for name in names}
        installed = {name for name, executor in executors.items() if await executor.is_installed()}
        storages = {name: STORAGES.load(name)(ctx) for name in STORAGES}
        publishers = {name: PUBLISHERS.load(name)(ctx) for name in PUBLISHERS}
        self.capacity = CapacityTracker(config.limit_total or Capacity.of_machine(), config.limit_job)
        docker_executor = executors.get("docker")
        strategy = BidStrategy(
            BidPolicy(labels=config.labels, data_locality=config.data_locality),
            self.capacity,
            installed,
            storages,
            admission_policy=config.policy,
            image_identity=docker_executor.image_identity if docker_executor is not None else None,
        )
        self.engines = sorted(installed)
        compute = ComputeService(
            transport=self.transport,
            work_dir=ctx.work_dir,
            strategy=strategy,
            capacity=self.capacity,
            executors=executors,
            storages=storages,
            publishers=publishers,
            bad_actor=config.bad_actor,
            limits=config.job_limits.within(config.limit_job),
            retention=config.retention,
        )
        if "docker" in installed:
            # Containers of executions a previous run of this node left (it
            # crashed): none of them runs here any more.
            await self._remove_leftover_containers(compute)
        return compute

    async def _serve_transport(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.transport.serve(self, task_status=task_status)

    async def _remove_leftover_containers(self, compute: ComputeService) -> None:
        executor = compute.executors.get("docker")
        cleanup = getattr(executor, "cleanup_containers", None)
        if cleanup is not None:
            with trio.move_on_after(20):
                try:
                    await cleanup()
                except BacalhauError as error:
                    log.warning("could not remove leftover containers: %s", error)

    # -- the network ------------------------------------------------------------

    async def _join_network(self, nursery: trio.Nursery) -> None:
        """Join the bootstrap peers, then keep the directory: heartbeats and repair (see `membership`)."""
        await self.membership.join(self.config.peers)
        await nursery.start(self.membership.serve)

    def _own_info(self) -> NodeInfo:
        # Built anew only when what it tells changed: every heartbeat sends it.
        capacity = self.capacity
        free = capacity.free if capacity else ZERO
        running = self.compute.running() if self.compute else 0
        key = (free, running, self.transport.addresses, tuple(self.engines), self.compute is not None)
        if self._own_info_cache is None or self._own_info_cache[0] != key:
            self._own_info_cache = (key, self._describe(free, running))
        return self._own_info_cache[1]

    def _describe(self, free: Capacity, running: int) -> NodeInfo:
        capacity = self.capacity
        total = capacity.total if capacity else ZERO
        return NodeInfo(
            peer_id=self.transport.peer_id,
            node_types=sorted(self.config.node_types),
            addresses=self.transport.addresses,
            labels=self.config.labels,
            engines=self.engines,
            total_cpu=total.cpu,
            total_memory=total.memory,
            total_gpu=total.gpu,
            free_cpu=free.cpu,
            free_memory=free.memory,
            free_gpu=free.gpu,
            running=running,
            ipfs_peer_id=self.ipfs_identity.peer_id,
            # Others dial these in order: loopback last, it only works on this machine.
            ipfs_addresses=sorted(
                (a if "/p2p/" in a else f"{a}/p2p/{self.ipfs_identity.peer_id}" for a in self.ipfs_identity.addresses),
                key=lambda a: a.startswith("/ip4/127."),
            ),
            version=__version__,
            policy=self.config.policy is not None,
            **(
                {
                    "default_job_cpu": self.compute.limits.default_cpu,
                    "default_job_memory": self.compute.limits.default_memory,
                    "limit_job_disk": self.compute.limits.disk,
                    "min_free_disk": self.compute.limits.min_free_disk,
                }
                if self.compute
                else {}
            ),
            boot_id=self._boot_id,
        )

    # -- MessageHandler -----------------------------------------------------------

    async def on_request(self, sender: str, message: Message) -> Message:
        self.directory.heard_from(sender)
        try:
            return await self._dispatch(sender, message)
        except BacalhauError as error:
            log.info("request %s from %s refused: %s", message.kind, sender, error)
            return Ack(ok=False, message=error.message)

    async def _dispatch(self, sender: str, message: Message) -> Message:
        compute, requester = self.compute, self.requester
        match message:
            case NodeInfoRequest():
                return self._own_info()
            case NodeInfo():
                # A heartbeat or an introduction: the reply is this node's own.
                if message.peer_id != sender:
                    raise InvalidMessage("a node may only describe itself")
                await self.membership.heard(message)
                return self._own_info()
            case DirectoryRequest():
                return self.membership.directory_reply(message)
            case AskBid() | BidDecision() | CancelExecution() | RevealRequest() | ExecutionStatusRequest() | (
                ResultVerdict()
            ) if compute is None:
                raise UserInputError("this node is not a compute node")
            case AskBid():
                return await compute.on_ask_bid(sender, message)
            case BidDecision():
                return await compute.on_bid_decision(sender, message)
            case CancelExecution():
                return await compute.on_cancel(sender, message)
            case RevealRequest():
                return await compute.on_reveal_request(sender, message.execution_id)
            case ExecutionStatusRequest():
                return await compute.on_status_request(sender, message.execution_id)
            case ResultVerdict():
                return await compute.on_result_verdict(sender, message)
            case ReceiptRequest():
                return await self.receipts.on_request(message)
            case ExecutionUpdate() | ResultProposal() if requester is None:
                raise UserInputError("this node is not a requester node")
            case ExecutionUpdate():
                return await requester.on_execution_update(sender, message)
            case ResultProposal():
                return await requester.on_result_proposal(sender, message)
        raise InvalidMessage(f"unexpected request {message.kind}")

    async def on_gossip(self, sender: str, message: Message) -> None:
        match message:
            case NodeInfo() if message.peer_id == sender:
                # Older nodes gossiped their info: first-hand (signed), so taken as a heartbeat.
                await self.membership.heard(message)
            case JobAnnounce():
                log.debug("job %s announced by %s", message.job_id, message.requester_id)
            case ReceiptAnnounce():
                await self.receipts.on_announce(sender, message)
            case _:
                log.info("dropped gossip %s from %s", message.kind, sender)

    async def on_stream_request(self, sender: str, message: Message) -> AsyncIterator[bytes]:
        if self.compute is None:
            raise InvalidMessage(f"unexpected stream request {message.kind}: this node is not a compute node")
        match message:
            case FetchResult():
                stream = self.compute.result_stream(sender, message.execution_id)
            case FollowLogs():
                stream = self.compute.log_stream(sender, message.execution_id)
            case _:
                raise InvalidMessage(f"unexpected stream request {message.kind}")
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk

    # -- NodeService (the HTTP API) ---------------------------------------------

    def _requester(self) -> RequesterService:
        if self.requester is None:
            raise UserInputError("this node is not a requester node; submit jobs to a requester")
        return self.requester

    async def submit(
        self, spec: JobSpec, *, client_id: str | None = None, client_request: SignedRequest | None = None
    ) -> Job:
        return await self._requester().submit(spec, client_id=client_id, client_request=client_request)

    async def list_jobs(self, limit: int = 20, *, client_id: str | None = None) -> list[Job]:
        return await self.store.list(limit, client_id=client_id)
    async def receipt(self, ran: str) -> Receipt:
        receipt = await self.receipts.find(ran)
        if receipt is None:
            raise NotFound(f"no receipt for instruction {ran} on this node or any node it reaches")
        return receipt

    def _workflows(self) -> WorkflowRunner:
        if self.workflows is None:
            raise UserInputError("this node is not a requester node; submit workflows to a requester")
        return self.workflows

    async def submit_workflow(self, tasks: list[WorkflowTask], *, client_id: str | None = None) -> Workflow:
        return await self._workflows().submit(tasks, client_id=client_id)

    async def get_workflow(self, workflow_id: str) -> Workflow:
        return await self._workflows().get(workflow_id)

    async def wait_workflow(self, workflow_id: str, timeout: float) -> Workflow:
        return await self._workflows().wait(workflow_id, timeout)


    async def get_job(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    async def wait_for_change(self, job_id: str, since_updated_at: str | None, timeout: float) -> Job:
        job = await self.store.get(job_id)
        with trio.move_on_after(timeout):
            while since_updated_at is not None and job.updated_at.isoformat() == since_updated_at:
                changed = self.store.changed(job.id)
                job = await self.store.get(job.id)
                if job.updated_at.isoformat() != since_updated_at:
                    break
                await changed.wait()
                job = await self.store.get(job.id)
        return job

    async def cancel(self, job_id: str) -> Job:
        return await self._requester().cancel(job_id)

    async def logs(self, job_id: str, follow: bool) -> AsyncIterator[tuple[str, bytes]]:
        job = await self.store.get(job_id)
        if follow:
            execution = await self._first_active_execution(job.id)
            if execution is not None:
                # Live: the compute node streams the output as the program writes it.
                buffer = bytearray()
                streamed = False
                stream = self.transport.request_stream(execution.node_id, FollowLogs(execution_id=execution.id))
                async with aclosing(stream):
                    async for chunk in stream:
                        buffer += chunk
                        for item in decode_log_frames(buffer):
                            streamed = True
                            yield item
                if streamed:
                    return
                # Nothing came: the run had ended and its folder was gone
                # (results published); read them from the results instead.
            job = await self.store.get(job.id)
        folder = await self.result_fetcher.folder_of(job)
        for name in (STDOUT, STDERR):
            data = await trio.to_thread.run_sync((folder / name).read_bytes)
            if data:
                yield name, data

    async def _first_active_execution(self, job_id: str):
        """Wait until an execution of the job is running (or the job is over: None)."""
        while True:
            changed = self.store.changed(job_id)
            job = await self.store.get(job_id)
            if job.state.terminal:
                return None
            active = [e for e in job.executions if e.state.active]
            if active:
                return active[0]
            await changed.wait()

    async def results(self, job_id: str) -> AsyncIterator[bytes]:
        job = await self.store.get(job_id)
        async for chunk in self.result_fetcher.job_tar(job):
            yield chunk

    async def ipfs_add(self, path: Path) -> str:
        return await self.ipfs.add(path)

    async def info(self) -> NodeInfo:
        return self._own_info()

    async def known_nodes(self) -> list[NodeInfo]:
        return self.directory.all()

    def approval(self, peer_id: str) -> Approval:
        return self.directory.approval(peer_id)

    async def set_approval(self, peer_id: str, decision: Literal["approved", "rejected"]) -> Approval:
        if peer_id == self.peer_id:
            raise UserInputError(f"node {peer_id} is this node: it always runs its own jobs")
        if not (self.directory.knows(peer_id) or self.directory.approvals.decided(peer_id)):
            raise NotFound(f"node {peer_id} is not known to this node (see 'bacalhau node list')")
        await trio.to_thread.run_sync(self.directory.approvals.set, peer_id, decision)
        log.info("node %s %s by an operator", peer_id, decision)
        return self.directory.approval(peer_id)
