"""The job store: jobs, executions and their history survive restarts."""

from bacalhau_py.jobstore.sqlite import JobStore

__all__ = ["JobStore"]
