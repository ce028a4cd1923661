"""Workflows of tasks (IPVM): instruction CIDs, signed receipts, memoization, the workflow runner."""
