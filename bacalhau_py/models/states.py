"""Job and execution states, and the one table of legal transitions.

Every state change in the project goes through `advance_job` or
`advance_execution`; anything the tables do not list is a bug and raises
`IllegalTransition`.

The requester and the compute node each keep an execution's state through
the same table. On the compute side: AskedForBid (bid held) -> BidAccepted ->
Running -> ResultProposed -> ResultAccepted/ResultRejected (the requester's
verdict, or its refusal of the proposal); Failed and Cancelled from anywhere
unfinished. `Lost` is the requester's: the execution's node went silent.
"""

from __future__ import annotations

from enum import Enum

from bacalhau_py.errors import IllegalTransition


class JobState(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_JOB


class ExecutionState(str, Enum):
    ASKED_FOR_BID = "AskedForBid"
    BID_REJECTED = "BidRejected"
    BID_ACCEPTED = "BidAccepted"
    RUNNING = "Running"
    RESULT_PROPOSED = "ResultProposed"
    RESULT_ACCEPTED = "ResultAccepted"
    RESULT_REJECTED = "ResultRejected"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    LOST = "Lost"

    @property
    def terminal(self) -> bool:
        return not EXECUTION_TRANSITIONS[self]

    @property
    def active(self) -> bool:
        """Accepted by the requester and not finished: it holds a compute slot."""
        return self in (ExecutionState.BID_ACCEPTED, ExecutionState.RUNNING)


J, E = JobState, ExecutionState

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # Pending -> Completed: a memoized job takes a receipt's result and never runs.
    J.PENDING: frozenset({J.RUNNING, J.COMPLETED, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.COMPLETED, J.FAILED, J.CANCELLED}),
    J.COMPLETED: frozenset(),
    J.FAILED: frozenset(),
    J.CANCELLED: frozenset(),
}

EXECUTION_TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    E.ASKED_FOR_BID: frozenset({E.BID_ACCEPTED, E.BID_REJECTED, E.FAILED, E.CANCELLED}),
    E.BID_ACCEPTED: frozenset({E.RUNNING, E.RESULT_PROPOSED, E.FAILED, E.CANCELLED, E.LOST}),
    E.RUNNING: frozenset({E.RESULT_PROPOSED, E.FAILED, E.CANCELLED, E.LOST}),
    E.RESULT_PROPOSED: frozenset({E.RESULT_ACCEPTED, E.RESULT_REJECTED, E.FAILED, E.CANCELLED}),
    E.BID_REJECTED: frozenset(),
    E.RESULT_ACCEPTED: frozenset(),
    E.RESULT_REJECTED: frozenset(),
    E.FAILED: frozenset(),
    E.CANCELLED: frozenset(),
    E.LOST: frozenset(),
}

_TERMINAL_JOB = frozenset(s for s, nxt in JOB_TRANSITIONS.items() if not nxt)


def advance_job(current: JobState, new: JobState) -> JobState:
    if new not in JOB_TRANSITIONS[current]:
        raise IllegalTransition(f"job cannot go from {current.value} to {new.value}")
    return new


def advance_execution(current: ExecutionState, new: ExecutionState) -> ExecutionState:
    if new not in EXECUTION_TRANSITIONS[current]:
        raise IllegalTransition(f"execution cannot go from {current.value} to {new.value}")
    return new
