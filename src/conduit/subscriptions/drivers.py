"""Who drives a named subscription under ``EventStore``: the pushing thread, or a
thread of its own. (Under ``AsyncEventStore``: :mod:`conduit.subscriptions.aio`.)

- ``inline``: the thread that pushed, right after the commit, so the caller
  reads its own writes in the read model. An inline driver takes no lease:
  every process (every store object) that subscribes it inline drives it on
  its own pushes. The checkpoint's compare-and-set keeps that safe (a batch
  whose checkpoint another driver moved first is given up, and the driver
  reads the checkpoint again), so a SQL read model still applies each event
  once; a plain projection's handlers may then see an event twice
  (at-least-once). For one driver among processes, use ``background``.
- ``background``: a daemon thread in this process that holds the
  subscription's lease, so that exactly one driver runs it among every process
  and machine that share the store. It is woken at once by this store's
  pushes and by the engine's announcements (PostgreSQL ``NOTIFY``, for stores
  opened with ``notify=True``), and polls for the rest: every
  ``poll_interval`` seconds while it finds events, twice as long after each
  look that finds none, up to ``max_poll_interval``.
  ``conduit run`` (a worker process) runs these threads.

What a driver does is :class:`~conduit.subscriptions.driving.Driver`'s, shared
with the asyncio face; this module only gives it threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from conduit.core.effects import Blocking, Op, SyncRuntime
from conduit.events import Event
from conduit.subscriptions.driving import (
    MAX_POLL_INTERVAL,
    POLL_INTERVAL,
    Driver,
    DriverView,
    Mode,
    SubscriptionStatus,
)
from conduit.subscriptions.partitioned import PartitionedDriver

__all__ = ["MAX_POLL_INTERVAL", "POLL_INTERVAL", "Mode", "Subscription", "SubscriptionStatus"]


class Subscription(DriverView):
    """A named subscription and its driver. Made by :meth:`EventStore.subscribe`."""

    def __init__(
        self, driver: Driver | PartitionedDriver, runtime: SyncRuntime, wakers: Any = None
    ) -> None:
        self.driver = driver
        self.runtime = runtime
        self._wakers = wakers
        self._lock = threading.Lock()
        self._owner_thread: int | None = None
        self._thread: threading.Thread | None = None

    # -- driving -------------------------------------------------------------

    def start(self) -> None:
        """Catch up now (inline) or start the background thread.

        Raises:
            ProjectionError: (inline) the first catch-up stopped on a failing
                event (``on_failure="stop"``).
        """
        if self.mode == "inline":
            self.catch_up()
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"conduit-{self.name}", daemon=True
            )
            self._thread.start()

    def after_push(self) -> Op[None]:
        """What a push through the store does: an inline catch-up, or a wake-up."""
        if self.mode == "inline":
            if self._owner_thread != threading.get_ident():  # else a handler pushed
                yield Blocking(self.catch_up)
        else:
            self.driver.wake.set()

    def notify(self) -> None:
        """New events are there (a push through the store): catch up, or wake the driver."""
        self.runtime.run(self.after_push())

    def catch_up(self, *, keep_going: Callable[[], Op[bool]] | None = None) -> int:
        """Apply every event after the checkpoint, in this thread."""
        with self._lock:
            self._owner_thread = threading.get_ident()
            try:
                return self.runtime.run(self.driver.catch_up(keep_going=keep_going))
            finally:
                self._owner_thread = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop driving, after the event at hand; releases the lease."""
        self.runner.stopped.set()
        self.driver.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        wakers = self._wakers
        wake = self.driver.wake
        if wakers is not None:
            wakers.add_waker(wake)
        try:
            self.runtime.run(self.driver.drive())
        finally:
            if wakers is not None:
                wakers.remove_waker(wake)

    # -- observing -----------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The position handled up to."""
        return self.runtime.run(self.driver.checkpoint())

    def status(self) -> SubscriptionStatus:
        """The checkpoint, the log's head, and the number of events behind."""
        return self.runtime.run(self.driver.status())

    def wait_for(self, target: Event | int, timeout: float = 10.0) -> None:
        """Wait until the subscription has handled an event (or a position).

        While the projection's storage is away, it keeps waiting, as the driver
        keeps retrying.

        Raises:
            TimeoutError: not handled within ``timeout`` seconds.
            ProjectionError: the subscription stopped on a failing event.
        """
        self.runtime.run(self.driver.wait_for(target, timeout))
