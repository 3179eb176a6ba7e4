"""Who drives a named subscription under ``AsyncEventStore``: the pushing task, or an
asyncio task of its own in the store's loop.

The modes mean what they mean under ``EventStore`` (see
:mod:`conduit.subscriptions.drivers`); what a driver does is
:class:`~conduit.subscriptions.driving.Driver`'s, shared by both faces. This
module only gives it tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from conduit.core.effects import AsyncRuntime, Call, Op
from conduit.events import Event
from conduit.subscriptions.driving import Driver, DriverView, SubscriptionStatus
from conduit.subscriptions.partitioned import PartitionedDriver

__all__ = ["AsyncSubscription"]


class AsyncSubscription(DriverView):
    """A named subscription and its driver. Made by :meth:`AsyncEventStore.subscribe`."""

    def __init__(
        self, driver: Driver | PartitionedDriver, runtime: AsyncRuntime, wakers: Any = None
    ) -> None:
        self.driver = driver
        self.runtime = runtime
        self._wakers = wakers
        self._lock = asyncio.Lock()
        self._owner_task: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- driving -------------------------------------------------------------

    async def start(self) -> None:
        """Catch up now (inline) or start the background task.

        Raises:
            ProjectionError: (inline) the first catch-up stopped on a failing
                event (``on_failure="stop"``).
        """
        if self.mode == "inline":
            await self.catch_up()
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"conduit-{self.name}"
            )

    def after_push(self) -> Op[None]:
        """What a push through the store does: an inline catch-up, or a wake-up."""
        if self.mode == "inline":
            if self._owner_task is not asyncio.current_task():  # else a handler pushed
                yield Call(self.catch_up)
        else:
            self.driver.wake.set()

    async def catch_up(self, *, keep_going: Callable[[], Op[bool]] | None = None) -> int:
        """Apply every event after the checkpoint, in this task."""
        async with self._lock:
            self._owner_task = asyncio.current_task()
            try:
                return await self.runtime.run(self.driver.catch_up(keep_going=keep_going))
            finally:
                self._owner_task = None

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop driving, after the event at hand; releases the lease."""
        self.runner.stopped.set()
        self.driver.wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        wakers = self._wakers
        wake = self.driver.wake
        if wakers is not None:
            wakers.add_waker(wake)
        try:
            await self.runtime.run(self.driver.drive())
        finally:
            if wakers is not None:
                wakers.remove_waker(wake)

    # -- observing -----------------------------------------------------------

    async def checkpoint(self) -> int:
        """The position handled up to."""
        return await self.runtime.run(self.driver.checkpoint())

    async def status(self) -> SubscriptionStatus:
        """The checkpoint, the log's head, and the number of events behind."""
        return await self.runtime.run(self.driver.status())

    async def wait_for(self, target: Event | int, timeout: float = 10.0) -> None:
        """Wait until the subscription has handled an event (or a position).

        Raises:
            TimeoutError: not handled within ``timeout`` seconds.
            ProjectionError: the subscription stopped on a failing event.
        """
        await self.runtime.run(self.driver.wait_for(target, timeout))
