"""Keep a result folder on this node; return the CID it WOULD have, so clients can check it.

Nothing is added to IPFS. The CID is computed here exactly as kubo's `add`
would compute it (see `ipfs.cid`).
"""

from __future__ import annotations

from pathlib import Path

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import BacalhauError, PublishError
from bacalhau_py.ipfs.cid import local_cid


class LocalPublisher:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def publish(self, execution_id: str, result_dir: Path) -> str:
        if not Path(result_dir).is_dir():
            raise PublishError(f"execution {execution_id} has no result folder at {result_dir}")
        try:
            return await local_cid(Path(result_dir))
        except BacalhauError as error:
            raise PublishError(f"could not compute the CID of the results of {execution_id}: {error.message}") from None
