"""ipfs: a result is accepted only if its CID resolves and its content is what the node committed to."""

from __future__ import annotations

import trio

from bacalhau_py.errors import BacalhauError
from bacalhau_py.models import JobSpec
from bacalhau_py.results import content_hash
from bacalhau_py.verifier.base import Proposal, ResultReader, Verdict


class IPFSVerifier:
    needs_result_hashes = True
    async def verify(self, spec: JobSpec, proposals: list[Proposal], results: ResultReader) -> Verdict:
        accepted: set[str] = set()
        reasons: list[str] = []

        async def check(proposal: Proposal) -> None:
            if proposal.result_cid is None:
                reasons.append(f"{proposal.node_id[-8:]}: no result CID")
                return
            try:
                folder = await results.fetch(
                    proposal.execution_id, proposal.node_id, proposal.result_cid, proposal.publisher
                )
            except BacalhauError as error:
                reasons.append(f"{proposal.node_id[-8:]}: {proposal.result_cid} does not resolve ({error})")
                return
            if await trio.to_thread.run_sync(content_hash, folder) != proposal.result_hash:
                reasons.append(f"{proposal.node_id[-8:]}: content of {proposal.result_cid} differs from the proposal")
                return
            accepted.add(proposal.execution_id)

        async with trio.open_nursery() as nursery:
            for proposal in proposals:
                nursery.start_soon(check, proposal)
        rejected = {p.execution_id for p in proposals} - accepted
        return Verdict(
            accepted=frozenset(accepted),
            rejected=frozenset(rejected),
            message="ipfs verification failed: " + "; ".join(reasons) if reasons else "",
        )
