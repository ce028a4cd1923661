"""Publish a result folder by adding it to this node's IPFS; any peer can then fetch the CID."""

from __future__ import annotations

from pathlib import Path

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import IPFSError, PublishError


class IPFSPublisher:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def publish(self, execution_id: str, result_dir: Path) -> str:
        if not Path(result_dir).is_dir():
            raise PublishError(f"execution {execution_id} has no result folder at {result_dir}")
        try:
            cid = await self.ctx.ipfs.add(Path(result_dir))
        except IPFSError as error:
            raise PublishError(f"could not publish the results of {execution_id} to IPFS: {error.message}") from None
        if self.ctx.result_pins is not None:
            await self.ctx.result_pins.keep(cid)
        return cid
