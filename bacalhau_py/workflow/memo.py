"""Receipts on the network: issued when a result is accepted, kept, announced, asked for.

`ReceiptBook` is the one place that decides whether a receipt is taken: it
must verify (workflow/receipts.py) and be for the instruction asked about.
A receipt that does not verify is dropped with one log line, wherever it
came from.
"""

from __future__ import annotations

import logging

import trio
from libp2p.crypto.keys import KeyPair

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.errors import BacalhauError
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.models import Job
from bacalhau_py.models.messages import ReceiptAnnounce, ReceiptReply, ReceiptRequest
from bacalhau_py.models.receipt import Receipt
from bacalhau_py.transport.base import Transport
from bacalhau_py.workflow import receipts

log = logging.getLogger("bacalhau_py.receipts")

ASK_TIMEOUT = 3.0
"""How long a memoized job waits for other nodes' receipts: beyond it, it runs."""


class ReceiptBook:
    def __init__(self, *, transport: Transport, store: WorkflowStore, directory: NodeDirectory, key_pair: KeyPair) -> None:
        self.transport = transport
        self.store = store
        self.directory = directory
        self.key_pair = key_pair

    async def issue(self, job: Job) -> Receipt | None:
        """Sign, keep and announce the receipt of a Completed job (None if it has nothing to receipt)."""
        receipt = receipts.issue(job, self.key_pair)
        if receipt is None:
            return None
        await self.store.keep_receipt(receipt)
        try:
            await self.transport.publish(ReceiptAnnounce(receipt=receipt))
        except BacalhauError as error:
            log.info("receipt for %s: announce failed: %s", receipt.ran, error)
        return receipt

    async def local(self, ran: str) -> Receipt | None:
        return await self.store.receipt(ran)

    async def find(self, ran: str) -> Receipt | None:
        """A verified receipt for the instruction: this node's, else the first reachable node's."""
        receipt = await self.store.receipt(ran)
        if receipt is not None:
            return receipt
        found: list[Receipt] = []
        own = self.transport.peer_id
        peers = [info.peer_id for info in self.directory.all() if info.peer_id != own]

        async def ask(peer_id: str, cancel_scope: trio.CancelScope) -> None:
            try:
                reply = await self.transport.request(peer_id, ReceiptRequest(ran=ran), timeout=ASK_TIMEOUT)
            except BacalhauError as error:
                log.debug("receipt for %s: %s did not answer: %s", ran, peer_id, error)
                return
            if isinstance(reply, ReceiptReply) and reply.receipt is not None and self._acceptable(reply.receipt, ran, peer_id):
                found.append(reply.receipt)
                cancel_scope.cancel()

        with trio.move_on_after(ASK_TIMEOUT + 1):
            async with trio.open_nursery() as nursery:
                for peer_id in peers:
                    nursery.start_soon(ask, peer_id, nursery.cancel_scope)
        if not found:
            return None
        await self.store.keep_receipt(found[0])
        return found[0]

    async def on_request(self, message: ReceiptRequest) -> ReceiptReply:
        return ReceiptReply(receipt=await self.store.receipt(message.ran))

    async def on_announce(self, sender: str, message: ReceiptAnnounce) -> None:
        if self._acceptable(message.receipt, message.receipt.ran, sender):
            await self.store.keep_receipt(message.receipt)

    def _acceptable(self, receipt: Receipt, ran: str, sender: str) -> bool:
        why = receipts.problem(receipt) if receipt.ran == ran else f"it is for {receipt.ran}, not {ran}"
        if why is not None:
            log.warning("dropped a receipt for %s from %s: %s", ran, sender, why)
        return why is None
