"""The verifier logic on proposals; the end-to-end matrix runs in tests/scenarios."""

import pytest

from bacalhau_py.models import Deal, JobSpec, Task
from bacalhau_py.verifier.base import Proposal
from bacalhau_py.verifier.deterministic import DeterministicVerifier
from bacalhau_py.verifier.noop import NoopVerifier


def proposals(honest: int, bad: int) -> list[Proposal]:
    out = [Proposal(f"h{i}", f"node-h{i}", 0, None, "ipfs", "good") for i in range(honest)]
    # Each bad actor forges its own different result.
    out += [Proposal(f"b{i}", f"node-b{i}", 0, None, "ipfs", f"forged-{i}") for i in range(bad)]
    return out


# Bacalhau's matrix: nodes / bad actors / confidence -> accepted / rejected.
@pytest.mark.parametrize(
    ("nodes", "bad", "confidence", "accepted", "rejected"),
    [(1, 0, 0, 0, 1), (3, 0, 0, 3, 0), (3, 1, 0, 2, 1), (2, 1, 0, 0, 2), (5, 2, 4, 0, 5)],
)
async def test_deterministic_matrix(nodes, bad, confidence, accepted, rejected):
    spec = JobSpec(task=Task(engine="docker", image="b"), deal=Deal(concurrency=nodes, confidence=confidence))
    verdict = await DeterministicVerifier().verify(spec, proposals(nodes - bad, bad), results=None)
    assert (len(verdict.accepted), len(verdict.rejected)) == (accepted, rejected)
    assert not any(p.startswith("b") for p in verdict.accepted)
    if not accepted:
        assert verdict.message


async def test_noop_accepts_everything():
    spec = JobSpec(task=Task(engine="docker", image="b"))
    verdict = await NoopVerifier().verify(spec, proposals(1, 1), results=None)
    assert verdict.accepted == {"h0", "b0"}
