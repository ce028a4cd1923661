"""Messages a job cannot go on without: sent again until acknowledged.

A direct request gets one reply, its acknowledgement. A request or its reply
lost on the way (a stalled stream, a node killed as it answered) leaves the
sender waiting for its timeout, and nothing sends that message again: the
job then waits for its own timeout. For a bid acceptance, an execution's
report and its result proposal (and the verdict) the sender sends again:
a short wait for the acknowledgement first, longer ones after, a bounded
number of times.

Receivers take a repeat as the message they already had: same execution,
same state, acknowledged again and changed no further.
"""

from __future__ import annotations

import logging

import trio

from bacalhau_py.errors import InvalidMessage, TransportError
from bacalhau_py.models.messages import Message
from bacalhau_py.transport.base import Transport

log = logging.getLogger("bacalhau_py.transport")

# The wait for an acknowledgement at each attempt. A live peer answers within
# milliseconds; a busy one gets a longer wait at each attempt (and the repeat,
# which it acknowledges again). 23 s in all: within the grace a job has
# beyond its own timeout, and under the 30 s after which a silent node is lost.
ATTEMPT_TIMEOUTS = (1.0, 2.0, 4.0, 8.0, 8.0)


async def deliver(
    transport: Transport, peer_id: str, message: Message, *, timeouts: tuple[float, ...] = ATTEMPT_TIMEOUTS
) -> Message:
    """The peer's reply to `message`, sent up to `len(timeouts)` times; raises `TransportError` if none came.

    A reply is an acknowledgement even when it refuses (`Ack(ok=False)`):
    the peer heard the message, and sending it again would not change its answer.
    """
    for attempt, timeout in enumerate(timeouts, 1):
        # A refused connection fails at once: the next attempt still waits for its turn (backoff).
        turn_ends = trio.current_time() + timeout
        try:
            return await transport.request(peer_id, message, timeout=timeout)
        except InvalidMessage:
            raise  # the peer answered with garbage: the same message again will not help
        except TransportError as error:
            if attempt == len(timeouts):
                raise TransportError(f"not acknowledged after {attempt} attempts: {error.message}") from error
            log.debug("%s to %s, attempt %d: %s", message.kind, peer_id, attempt, error.message)
        await trio.sleep_until(turn_ends)
    raise ValueError("deliver needs at least one attempt")
