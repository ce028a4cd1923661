"""deterministic: run on N nodes, group by result hash, accept the clear majority.

The largest group is accepted if it has at least `confidence` members and no
other group is as large; everything else is rejected. One result alone proves
nothing, so it is rejected too. Hashes were committed before any was revealed
(see requester), so a node cannot copy another's.
"""

from __future__ import annotations

from collections import defaultdict

from bacalhau_py.models import JobSpec
from bacalhau_py.verifier.base import Proposal, ResultReader, Verdict


class DeterministicVerifier:
    needs_result_hashes = True
    async def verify(self, spec: JobSpec, proposals: list[Proposal], results: ResultReader) -> Verdict:
        everyone = frozenset(p.execution_id for p in proposals)
        if len(proposals) < 2:
            return Verdict(frozenset(), everyone, "deterministic verification needs 2 or more results; got "
                           f"{len(proposals)} (raise --concurrency)")
        groups: defaultdict[str, set[str]] = defaultdict(set)
        for proposal in proposals:
            groups[proposal.result_hash].add(proposal.execution_id)
        sizes = sorted((len(members) for members in groups.values()), reverse=True)
        largest = max(groups.values(), key=len)
        if len(sizes) > 1 and sizes[0] == sizes[1]:
            return Verdict(frozenset(), everyone, f"no majority: results split {sizes} between different hashes")
        if len(largest) < spec.deal.confidence:
            return Verdict(
                frozenset(),
                everyone,
                f"only {len(largest)} of {len(proposals)} results agree; confidence {spec.deal.confidence} needed",
            )
        return Verdict(frozenset(largest), everyone - largest)
