"""The receipt book over an in-memory network: asked of other nodes, and forged receipts dropped."""

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.models.messages import NodeInfo, ReceiptAnnounce, ReceiptRequest
from bacalhau_py.transport import MemoryNetwork, MemoryTransport
from bacalhau_py.workflow.memo import ReceiptBook
from bacalhau_py.workflow.receipts import issue
from test_receipts import _job


class _Answers:
    def __init__(self, book: ReceiptBook) -> None:
        self.book = book

    async def on_request(self, sender, message):
        assert isinstance(message, ReceiptRequest)
        return await self.book.on_request(message)

    async def on_gossip(self, sender, message):
        pass

    def on_stream_request(self, sender, message):
        raise AssertionError("no streams here")


def _book(network: MemoryNetwork, peer_id: str, others: list[str]) -> ReceiptBook:
    directory = NodeDirectory(lambda: NodeInfo(peer_id=peer_id, node_types=["requester"]))
    for other in others:
        directory.update(NodeInfo(peer_id=other, node_types=["requester"]))
    return ReceiptBook(transport=MemoryTransport(network, peer_id), store=WorkflowStore.open(None),
                       directory=directory, key_pair=create_new_key_pair())


async def test_a_receipt_is_asked_of_other_nodes_and_kept():
    network = MemoryNetwork()
    issuer, asker = _book(network, "issuer", []), _book(network, "asker", ["issuer"])
    receipt = issue(_job(), issuer.key_pair)
    await issuer.store.keep_receipt(receipt)
    async with trio.open_nursery() as nursery:
        for book in (issuer, asker):
            await nursery.start(book.transport.serve, _Answers(book))
        assert await asker.local(receipt.ran) is None
        assert await asker.find(receipt.ran) == receipt
        assert await asker.local(receipt.ran) == receipt
        assert await asker.find("bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae") is None
        nursery.cancel_scope.cancel()


async def test_a_forged_receipt_from_a_peer_is_not_taken(caplog):
    network = MemoryNetwork()
    liar, asker = _book(network, "liar", []), _book(network, "asker", ["liar"])
    genuine = issue(_job(), liar.key_pair)
    forged = genuine.model_copy(update={"out": genuine.out.model_copy(update={"result_cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"})})
    await liar.store.keep_receipt(forged)
    async with trio.open_nursery() as nursery:
        for book in (liar, asker):
            await nursery.start(book.transport.serve, _Answers(book))
        assert await asker.find(forged.ran) is None
        await asker.on_announce("liar", ReceiptAnnounce(receipt=forged))
        assert await asker.local(forged.ran) is None
        nursery.cancel_scope.cancel()
    assert "dropped a receipt for" in caplog.text and "its signature does not verify" in caplog.text
