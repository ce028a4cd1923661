"""Client keys, signed requests, API keys, ownership, node approvals and the job signature (pure logic)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import datetime, timezone

import pytest

from bacalhau_py.auth import job_signature
from bacalhau_py.auth.access import ANONYMOUS, AccessControl, Caller, key_client_id
from bacalhau_py.auth.api_keys import APIKeys
from bacalhau_py.auth.approvals import Approvals
from bacalhau_py.auth.client_key import KEY_FILE, TIMESTAMP_HEADER, ClientKey, client_id_of
from bacalhau_py.errors import AccessDenied, NotAuthenticated, UserInputError
from bacalhau_py.models import Job, JobState
from bacalhau_py.models.codec import spec_from_dict
from bacalhau_py.models.messages import AskBid

SPEC = {"task": {"engine": "docker", "image": "busybox", "command": ["echo", "hi"]}}
NOW = 1_800_000_000


def signed_submit(key: ClientKey, spec: dict = SPEC, *, now: int = NOW):
    body = json.dumps(spec).encode()
    return body, key.headers("POST", "/api/v1/jobs", body, now=now)


def job_of(client_id: str | None) -> Job:
    at = datetime.now(timezone.utc)
    return Job(id="j1", state=JobState.PENDING, spec=spec_from_dict(SPEC), requester_id="r", created_at=at,
               updated_at=at, client_id=client_id)


def test_the_client_key_is_created_once_private_and_named_by_its_public_key(tmp_path):
    key = ClientKey.load_or_create(tmp_path / "client")
    path = tmp_path / "client" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.client_id == hashlib.sha256(key.public_key).hexdigest() == client_id_of(key.public_key)
    assert ClientKey.load_or_create(tmp_path / "client").client_id == key.client_id


def test_a_broken_key_file_is_one_line_naming_it(tmp_path):
    (tmp_path / KEY_FILE).write_text("-----BEGIN SOMETHING-----\n")
    with pytest.raises(UserInputError, match=f"{KEY_FILE}: not a client key") as error:
        ClientKey.load_or_create(tmp_path)
    assert "\n" not in str(error.value)


def test_a_signed_request_names_its_client_and_keeps_the_body():
    key = ClientKey.generate()
    body, headers = signed_submit(key)
    caller = AccessControl().authenticate("POST", "/api/v1/jobs", headers, body, now=NOW + 5)
    assert caller.client_id == key.client_id and not caller.operator
    assert caller.request is not None and caller.request.body == body.decode()


@pytest.mark.parametrize(
    "method, target, body, now, problem",
    [
        ("POST", "/api/v1/jobs", b'{"task": "other"}', NOW, "does not match the request body"),
        ("POST", "/api/v1/jobs/x/cancel", None, NOW, "expected the body's SHA-256"),
        ("GET", "/api/v1/jobs", json.dumps(SPEC).encode(), NOW, "does not verify"),
        ("POST", "/api/v1/jobs", json.dumps(SPEC).encode(), NOW + 3600, "away from the node's clock"),
    ],
)
def test_altered_or_stale_requests_are_refused(method, target, body, now, problem):
    _, headers = signed_submit(ClientKey.generate())
    with pytest.raises(NotAuthenticated, match=problem):
        AccessControl().authenticate(method, target, headers, body, now=now)


def test_another_key_cannot_sign_for_a_client():
    body, headers = signed_submit(ClientKey.generate())
    forger = ClientKey.generate()
    _, forged = signed_submit(forger, {"task": {"engine": "docker", "image": "evil"}})
    headers = {**headers, "X-Bacalhau-Signature": forged["X-Bacalhau-Signature"]}
    with pytest.raises(NotAuthenticated, match="does not verify"):
        AccessControl().authenticate("POST", "/api/v1/jobs", headers, body, now=NOW)
    with pytest.raises(NotAuthenticated, match=TIMESTAMP_HEADER):
        AccessControl().authenticate("POST", "/api/v1/jobs", {**headers, TIMESTAMP_HEADER: "soon"}, body, now=NOW)


def test_no_identity_headers_is_the_anonymous_client_who_owns_only_anonymous_jobs():
    access = AccessControl()
    caller = access.authenticate("GET", "/api/v1/jobs", {}, None)
    assert caller == Caller(client_id=ANONYMOUS, signed=False) and caller.request is None
    access.check_owner(caller, job_of(ANONYMOUS))
    with pytest.raises(AccessDenied, match="belongs to another client"):
        access.check_owner(caller, job_of(client_id_of(b"\x01" * 32)))
    with pytest.raises(AccessDenied, match="not an unsigned request"):
        access.check_operator(caller, "listing every job")


def test_unsigned_requests_with_an_api_key_belong_to_that_key(tmp_path):
    file = tmp_path / "keys"
    file.write_text("first-key\nsecond-key\n")
    access = AccessControl(APIKeys.load(file))
    first = access.authenticate("GET", "/api/v1/jobs", {"authorization": "Bearer first-key"}, None)
    second = access.authenticate("GET", "/api/v1/jobs", {"authorization": "Bearer second-key"}, None)
    assert first.client_id == key_client_id("first-key") and not first.signed
    assert "first-key" not in first.client_id
    access.check_owner(first, job_of(first.client_id))
    with pytest.raises(AccessDenied, match="belongs to another client"):
        access.check_owner(second, job_of(first.client_id))


def test_an_unsigned_job_runs_as_anonymous_and_may_not_claim_a_client():
    spec = spec_from_dict(SPEC)
    assert job_signature.refusal(AskBid(job_id="j", execution_id="e", spec=spec)) is None
    claimed = AskBid(job_id="j", execution_id="e", spec=spec, client_id=client_id_of(b"\x02" * 32))
    assert "carries no signature" in job_signature.refusal(claimed)


def test_api_keys_are_required_and_compared_whole(tmp_path):
    file = tmp_path / "keys"
    file.write_text("# ops team\nfirst-key\n\n  second-key  \n")
    access = AccessControl(APIKeys.load(file))
    for authorization in (None, "Bearer", "Bearer first", "Bearer first-key-and-more", "Basic first-key"):
        headers = {} if authorization is None else {"authorization": authorization}
        with pytest.raises(NotAuthenticated, match="BACALHAU_API_KEY") as error:
            access.authenticate("GET", "/api/v1/jobs", headers, None)
        assert "first-key" not in str(error.value)
    for key in ("first-key", "second-key"):
        assert access.authenticate("GET", "/api/v1/jobs", {"authorization": f"Bearer {key}"}, None).client_id == (
            key_client_id(key)
        )
    file.write_text("# nothing yet\n")
    with pytest.raises(UserInputError, match="no key in it"):
        APIKeys.load(file)


def test_only_the_owner_or_an_operator_may_touch_a_job():
    owner, other, operator = ClientKey.generate(), ClientKey.generate(), ClientKey.generate()
    access = AccessControl(operators=frozenset({operator.client_id}))
    job = job_of(owner.client_id)
    access.check_owner(Caller(client_id=owner.client_id), job)
    access.check_owner(Caller(client_id=operator.client_id, operator=True), job)
    with pytest.raises(AccessDenied, match="job j1 belongs to another client"):
        access.check_owner(Caller(client_id=other.client_id), job)
    with pytest.raises(AccessDenied, match="operators"):
        access.check_operator(Caller(client_id=other.client_id), "listing every job")
    body, headers = signed_submit(operator)
    assert access.authenticate("POST", "/api/v1/jobs", headers, body, now=NOW).operator


def test_approvals_default_by_mode_and_survive_a_restart(tmp_path):
    path = tmp_path / "node_approvals.json"
    manual = Approvals(path, "manual")
    assert manual.of("peer-a") == "pending" and not manual.decided("peer-a")
    manual.set("peer-a", "approved")
    manual.set("peer-b", "rejected")
    again = Approvals(path, "manual")
    assert (again.of("peer-a"), again.of("peer-b"), again.of("peer-c")) == ("approved", "rejected", "pending")
    auto = Approvals(path, "auto")
    assert (auto.of("peer-b"), auto.of("peer-c")) == ("rejected", "approved")


def ask_for(key: ClientKey, signed_spec: dict = SPEC, **changes) -> AskBid:
    body, headers = signed_submit(key, signed_spec)
    caller = AccessControl().authenticate("POST", "/api/v1/jobs", headers, body, now=NOW)
    fields = {"job_id": "j1", "execution_id": "e1", "spec": spec_from_dict(signed_spec), "client_id": caller.client_id,
              "client_request": caller.request, **changes}
    return AskBid(**fields)


def test_a_compute_node_runs_only_the_spec_its_client_signed():
    key = ClientKey.generate()
    assert job_signature.refusal(ask_for(key)) is None
    ipvm = {"with": "busybox", "do": "docker/run", "inputs": {"args": ["echo", "hi"]}}
    assert job_signature.refusal(ask_for(key, ipvm)) is None  # the signed body may be any accepted form

    altered = ask_for(key, spec=spec_from_dict({"task": {**SPEC["task"], "image": "evil"}}))
    assert "differs from the one its client signed" in job_signature.refusal(altered)
    stolen = ask_for(key, client_id=ClientKey.generate().client_id)
    assert "not by its client" in job_signature.refusal(stolen)
    resigned = ask_for(key).client_request.model_copy(update={"body": json.dumps({"task": {}})})
    assert "invalid" in job_signature.refusal(ask_for(key, client_request=resigned))
    bad_key = ask_for(key).client_request.model_copy(update={"public_key": base64.b64encode(b"short").decode()})
    assert "invalid" in job_signature.refusal(ask_for(key, client_request=bad_key))
    stripped = ask_for(key, client_request=None)
    assert "carries no signature" in job_signature.refusal(stripped)
    assert "names no client" in job_signature.refusal(ask_for(key, client_id=None))


async def test_a_requester_offers_jobs_only_to_approved_compute_nodes(tmp_path):
    from bacalhau_py.directory import NodeDirectory
    from bacalhau_py.models.messages import NodeInfo

    directory = NodeDirectory(
        lambda: NodeInfo(peer_id="me", node_types=["requester", "compute"]),
        Approvals(tmp_path / "approvals.json", "manual"),
    )
    for peer in ("approved-one", "pending-one", "rejected-one"):
        directory.update(NodeInfo(peer_id=peer, node_types=["compute"]))
    directory.approvals.set("approved-one", "approved")
    directory.approvals.set("rejected-one", "rejected")
    assert [n.peer_id for n in directory.compute_nodes()] == ["me", "approved-one"]
    assert directory.awaiting_approval() == ["pending-one", "rejected-one"]
    assert directory.approval("me") == "approved" and directory.approval("pending-one") == "pending"
