"""The role every relay target plays, and the relay's errors.

A target is one broker stream the relay publishes to. It is driven by one
task of :class:`~conduit.relay.pipeline.Relay` at a time: connected, asked
which position it holds last, given batches of messages in log order (several
in flight), then closed — and connected again after any failure.

Errors::

    ConduitError
    ├── BackendError
    │   └── BrokerError       the broker failed, refused a message, or is away
    └── LeaseLost             another relay of the same name is active
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol, runtime_checkable

from conduit.errors import BackendError, ConduitError
from conduit.relay.messages import Message

__all__ = ["BrokerError", "LeaseLost", "Target"]


class BrokerError(BackendError):
    """The broker failed, refused a message, or cannot be reached.

    The relay closes the target, waits (backing off) and connects again: what
    the broker acknowledged stays, the rest is published again.
    """


class LeaseLost(ConduitError):
    """Another relay of the same name is active: it holds the lease, or moved the checkpoint.

    ``Relay.run`` raises it; ``Relay.run_forever`` stands by instead.
    """


@runtime_checkable
class Target(Protocol):
    """A broker stream that holds each relayed event once, in log order."""

    description: str
    """What the target is, for logs (without passwords)."""

    window: int
    """How many batches may await their acknowledgement at once."""

    async def connect(self) -> None:
        """Connect, and create the broker's stream when it does not exist.

        Raises:
            BrokerError: the broker cannot be reached or refused.
        """
        ...

    async def last_position(self) -> int | None:
        """The position of the last event the broker stream holds; ``None`` if it never held one.

        The relay resumes after it: this is what makes a restart repeat nothing.

        Raises:
            BrokerError: the broker failed.
        """
        ...

    async def publish(self, batch: Sequence[Message]) -> Awaitable[None]:
        """Send a batch (positions increasing, after every earlier batch's).

        Returns once it is sent; what it returns is awaited for the broker's
        acknowledgement of the whole batch. A batch is acknowledged only after
        every earlier batch is.

        Raises:
            BrokerError: (raised or from the awaitable) the broker failed or
                refused a message; the target must be connected again.
        """
        ...

    async def close(self) -> None:
        """Disconnect (never raises)."""
        ...
