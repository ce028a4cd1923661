"""One error root for the whole project.

Every error carries a message meant for a user. The CLI prints `str(error)`
and exits with `error.exit_code`; it never prints a traceback for these.
Third-party errors are translated into these at the adapter boundary
(transport/, ipfs/, executor/docker.py, executor/wasm.py).
"""

from __future__ import annotations


class BacalhauError(Exception):
    """Root of every expected error. `str(err)` is a one-line user message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserInputError(BacalhauError):
    """A malformed flag, spec field, CID, path or name: the user must fix it."""

    exit_code = 2


class NotFound(BacalhauError):
    """A job, execution or result that does not exist (or an ambiguous prefix)."""


class RequestTooLarge(BacalhauError):
    """A request body over the node's size limit (a job spec, an upload): HTTP 413."""


class NodeUnreachable(BacalhauError):
    """A client could not reach a node's API at the address it tried."""


class StorageError(BacalhauError):
    """An input could not be fetched (unknown CID, unreachable URL, too large)."""


class IPFSError(StorageError):
    """The IPFS node failed or timed out."""


class ExecutorError(BacalhauError):
    """The executor could not run the job (image missing, module invalid)."""


class PublishError(BacalhauError):
    """Results could not be published."""


class TransportError(BacalhauError):
    """A peer could not be reached, or did not acknowledge a message."""


class InvalidMessage(TransportError):
    """A message failed schema validation or its signature did not verify."""


class IllegalTransition(AssertionError):
    """A job or execution state change that the transition table forbids: a bug.

    Deliberately not a `BacalhauError`: it is never a user's error, so no
    handler turns it into a failed job or a refused message; it surfaces
    as the bug it is (a logged traceback).
    """


class NotAuthenticated(BacalhauError):
    """A request without a valid API key or client signature (HTTP 401)."""


class AccessDenied(BacalhauError):
    """The client is known but may not do this: another client's job, an operator's command (HTTP 403)."""


class SpecError(UserInputError):
    """A job spec that is not valid. `field` says where (`("inputs", 0, "cid")`; `()` for the spec as
    a whole) and `problem` what is wrong, apart from the message: a client can then name what its
    user typed instead (`bacalhau run` names the flag: cli/flags.py)."""

    def __init__(self, message: str, field: tuple[str | int, ...] = (), problem: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = message if problem is None else problem
