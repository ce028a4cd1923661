"""Who may do what through a node's API: API keys, client identity, operators, ownership.

- With API keys (`serve --api-keys`), every request needs one; else 401.
- A request signed with a client key (see `client_key`) comes from that
  client. Its timestamp must be within `MAX_CLOCK_SKEW_SECONDS` of the node's
  clock: an old captured request cannot be replayed later.
- A request without identity headers (plain curl, Bacalhau's own SDK) is
  unsigned: it comes from the API key it carries (client `key-<hash of the
  key>`), or on an open node from the one `anonymous` client. Such a client
  may submit and owns what it submitted, shared by everyone who sends the same
  key (or none). Its jobs travel unsigned: compute nodes run them as
  anonymous, and an admission policy that names `clients` refuses them. The
  bacalhau CLI always signs, so its jobs are its own client's alone.
- A job's own client, or an operator (`serve --operator CLIENT_ID`), may
  cancel it, read its logs and download its results. Operators also list
  every job and approve or reject nodes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bacalhau_py.auth.api_keys import APIKeys
from bacalhau_py.auth.client_key import (
    CONTENT_HEADER,
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UNSIGNED_PAYLOAD,
    signing_bytes,
    verify,
)
from bacalhau_py.errors import AccessDenied, NotAuthenticated, UserInputError
from bacalhau_py.models import Job
from bacalhau_py.models.signature import SignedRequest

MAX_CLOCK_SKEW_SECONDS = 300
API_KEY_MISSING = "missing or wrong API key: send 'Authorization: Bearer KEY' (the CLI reads BACALHAU_API_KEY)"


ANONYMOUS = "anonymous"
"""The client of unsigned requests to a node without API keys."""


def key_client_id(api_key: str) -> str:
    """The client of unsigned requests that carry `api_key` (a hash: the key itself is never shown)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a signed client, or an unsigned one (`request` None, `signed` False)."""

    client_id: str = ANONYMOUS
    signed: bool = False
    operator: bool = False
    request: SignedRequest | None = None
    """The signed request with its body, when the body was signed (a submit keeps it with the job)."""


class AccessControl:
    """A node's rules: its API keys (None: open) and its operators' client IDs."""

    def __init__(self, api_keys: APIKeys | None = None, operators: frozenset[str] = frozenset()) -> None:
        self.api_keys = api_keys
        self.operators = operators

    def authenticate(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None, *, now: float | None = None
    ) -> Caller:
        """The caller of one request. `body` is None when the client left it unsigned (a streamed upload)."""
        self.check_api_key(headers)
        public_key = headers.get(KEY_HEADER)
        if public_key is None:
            authorization = headers.get("authorization")
            if self.api_keys is None or authorization is None:
                return Caller()
            return Caller(client_id=key_client_id(authorization.removeprefix("Bearer ").strip()))
        content = headers.get(CONTENT_HEADER, "")
        try:
            timestamp = int(headers.get(TIMESTAMP_HEADER, ""))
        except ValueError:
            raise NotAuthenticated(f"{TIMESTAMP_HEADER}: expected Unix seconds") from None
        skew = abs((time.time() if now is None else now) - timestamp)
        if skew > MAX_CLOCK_SKEW_SECONDS:
            raise NotAuthenticated(
                f"request signed {skew:.0f}s away from the node's clock (allowed {MAX_CLOCK_SKEW_SECONDS}s): "
                "check the client's clock"
            )
        if (content == UNSIGNED_PAYLOAD) != (body is None):
            raise NotAuthenticated(f"{CONTENT_HEADER}: expected the body's SHA-256 (hex)")
        if body is not None and hashlib.sha256(body).hexdigest() != content:
            raise NotAuthenticated(f"{CONTENT_HEADER} does not match the request body")
        signature = headers.get(SIGNATURE_HEADER, "")
        client_id = verify(public_key, signature, signing_bytes(method, target, timestamp, content))
        signed = None
        if body is not None:
            try:
                text = body.decode()
            except UnicodeDecodeError:
                raise UserInputError("request body: not UTF-8 (expected JSON)") from None
            signed = SignedRequest(
                public_key=public_key, timestamp=timestamp, method=method.upper(), target=target, body=text,
                signature=signature,
            )
        return Caller(client_id=client_id, signed=True, operator=client_id in self.operators, request=signed)

    def check_api_key(self, headers: Mapping[str, str]) -> None:
        """NotAuthenticated unless the node is open or the request carries one of its keys."""
        if self.api_keys is not None and not self.api_keys.accepts(headers.get("authorization")):
            raise NotAuthenticated(API_KEY_MISSING)

    def check_owner(self, caller: Caller, job: Job) -> None:
        """Only the job's own client or an operator may steer or read it; else AccessDenied."""
        if caller.operator or caller.client_id == job.client_id:
            return
        raise AccessDenied(f"job {job.id} belongs to another client")

    def check_operator(self, caller: Caller, action: str) -> None:
        if not caller.operator:
            who = f"client {caller.client_id}" if caller.signed else "an unsigned request"
            raise AccessDenied(f"{action} is for this node's operators (serve --operator CLIENT_ID), not {who}")
