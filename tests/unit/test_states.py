import pytest

from bacalhau_py.errors import BacalhauError, IllegalTransition
from bacalhau_py.models.states import (
    EXECUTION_TRANSITIONS,
    ExecutionState,
    JobState,
    advance_execution,
    advance_job,
)


def test_job_lifecycle_follows_the_table():
    state = advance_job(JobState.PENDING, JobState.RUNNING)
    assert advance_job(state, JobState.COMPLETED) is JobState.COMPLETED


@pytest.mark.parametrize("terminal", [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED])
def test_terminal_job_states_go_nowhere(terminal):
    assert terminal.terminal
    for state in JobState:
        with pytest.raises(IllegalTransition):
            advance_job(terminal, state)


def test_a_pending_job_may_complete_at_once_but_never_go_back():
    # Memoized: it takes a receipt's result and never runs.
    assert advance_job(JobState.PENDING, JobState.COMPLETED) is JobState.COMPLETED
    with pytest.raises(IllegalTransition, match="Running to Pending"):
        advance_job(JobState.RUNNING, JobState.PENDING)


def test_execution_verdicts_are_terminal_and_only_follow_a_proposal():
    assert ExecutionState.RESULT_ACCEPTED.terminal and ExecutionState.RESULT_REJECTED.terminal
    with pytest.raises(IllegalTransition):
        advance_execution(ExecutionState.RUNNING, ExecutionState.RESULT_ACCEPTED)
    assert advance_execution(ExecutionState.RESULT_PROPOSED, ExecutionState.RESULT_ACCEPTED)


def test_every_non_terminal_execution_state_can_be_cancelled_or_failed():
    for state, following in EXECUTION_TRANSITIONS.items():
        if following:
            assert ExecutionState.CANCELLED in following and ExecutionState.FAILED in following


def test_only_an_execution_under_way_can_be_lost():
    assert ExecutionState.LOST.terminal
    assert advance_execution(ExecutionState.RUNNING, ExecutionState.LOST) is ExecutionState.LOST
    assert advance_execution(ExecutionState.BID_ACCEPTED, ExecutionState.LOST) is ExecutionState.LOST
    for state in (ExecutionState.ASKED_FOR_BID, ExecutionState.RESULT_PROPOSED, ExecutionState.FAILED):
        with pytest.raises(IllegalTransition):
            advance_execution(state, ExecutionState.LOST)


def test_an_illegal_transition_is_a_bug_not_a_user_error():
    # No handler that turns BacalhauErrors into failed jobs or refusals may catch it.
    assert not issubclass(IllegalTransition, BacalhauError)
    assert issubclass(IllegalTransition, AssertionError)
