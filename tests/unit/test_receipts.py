"""Receipts: signed by the requester's key; any altered field or foreign key is refused."""

from datetime import datetime, timezone

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from bacalhau_py.models import Execution, ExecutionState, Job, JobSpec, JobState
from bacalhau_py.transport.envelope import peer_id_of
from bacalhau_py.workflow.instruction import instruction_cid
from bacalhau_py.workflow.receipts import issue, problem, receipt_cid, serves

RESULT = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"


def _job(exit_code=0, publisher="ipfs") -> Job:
    at = datetime.now(timezone.utc)
    spec = JobSpec.model_validate({"task": {"engine": "docker", "image": "busybox"}, "publisher": publisher})
    execution = Execution(
        id="e1", job_id="j1", node_id="QmComputeNode", state=ExecutionState.RESULT_ACCEPTED,
        exit_code=exit_code, result_cid=RESULT, created_at=at, updated_at=at,
    )
    return Job(
        id="j1", state=JobState.COMPLETED, spec=spec, requester_id="r", created_at=at, updated_at=at,
        executions=[execution], instruction_cid=instruction_cid(spec),
    )


def test_an_issued_receipt_verifies_and_names_what_ran():
    keys = create_new_key_pair()
    receipt = issue(_job(), keys)
    assert problem(receipt) is None and serves(receipt, _job().spec)
    assert receipt.ran == _job().instruction_cid
    assert receipt.out.result_cid == RESULT and receipt.executors == ["QmComputeNode"]
    assert receipt.issuer == peer_id_of(keys.public_key)
    assert receipt_cid(receipt).startswith("bafyrei")


@pytest.mark.parametrize(
    "change",
    [
        {"out": {"result_cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "exit_code": 0}},
        {"ran": "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"},
        {"executors": ["QmSomeoneElse"]},
        {"issued_at": "2020-01-01T00:00:00+00:00"},
    ],
)
def test_an_altered_receipt_does_not_verify(change):
    receipt = issue(_job(), create_new_key_pair())
    tampered = receipt.model_validate({**receipt.model_dump(mode="json"), **change})
    assert problem(tampered) == "its signature does not verify"
    assert not serves(tampered, _job().spec)


def test_a_receipt_signed_by_another_key_than_its_issuers_is_refused():
    receipt = issue(_job(), create_new_key_pair())
    forged = issue(_job(), create_new_key_pair()).model_copy(update={"issuer": receipt.issuer})
    assert problem(forged) == f"its key is not the key of its issuer {receipt.issuer}"


def test_only_exit_code_zero_is_reused_and_only_ipfs_results_are_receipted():
    keys = create_new_key_pair()
    failed = issue(_job(exit_code=3), keys)
    assert problem(failed) is None and not serves(failed, _job().spec)
    assert issue(_job(publisher="local"), keys) is None


def test_a_job_asking_for_verification_takes_only_a_receipt_checked_as_strictly():
    receipt = issue(_job(), create_new_key_pair())
    assert receipt.verifier == "noop"
    stricter = _job().spec.model_copy(update={"verifier": "deterministic"})
    assert not serves(receipt, stricter)
