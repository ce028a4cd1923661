"""Small structured-concurrency helpers shared by the node's services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from bacalhau_py.errors import BacalhauError


async def run_all(functions: list[Callable[[], Awaitable[None]]]) -> None:
    """Run all concurrently; on the first BacalhauError cancel the rest and raise it.

    trio wraps child errors in an ExceptionGroup; callers here want the one
    user-facing error that stopped the work, not a group.
    """
    errors: list[BacalhauError] = []

    async with trio.open_nursery() as nursery:

        async def guarded(function: Callable[[], Awaitable[None]]) -> None:
            try:
                await function()
            except BacalhauError as error:
                errors.append(error)
                nursery.cancel_scope.cancel()

        for function in functions:
            nursery.start_soon(guarded, function)
    if errors:
        raise errors[0]


async def watch_stalls(report: Callable[[float], None], every: float = 1.0, threshold: float = 1.0) -> None:
    """Report each time this trio loop ran `threshold` seconds or more late (forever).

    A task that sleeps `every` seconds wakes late only when the loop could
    not run: a blocking call on it, or a machine without free CPU. That is
    the one cause of "no reply" that a node cannot see in its own requests.
    """
    while True:
        start = trio.current_time()
        await trio.sleep(every)
        late = trio.current_time() - start - every
        if late >= threshold:
            report(late)
