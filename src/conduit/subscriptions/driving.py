"""What a subscription's driver does, as operations both faces run.

:class:`Driver` holds a subscription's runner and its lease, and offers:

- :meth:`Driver.inline_catch_up` — an inline subscription's catch-up after a
  push through the store (in the pushing thread or task);
- :meth:`Driver.drive` — the background loop: hold the lease, catch up, wait
  for news (a push here, an engine's announcement, or the next poll), again;
- :meth:`Driver.status` and :meth:`Driver.wait_for`.

A face (:class:`~conduit.subscriptions.drivers.Subscription` for threads,
:class:`~conduit.subscriptions.aio.AsyncSubscription` for asyncio tasks) gives
it the signals of its kind and runs these operations; nothing else differs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from conduit.core.effects import Op, Signal, Sleep
from conduit.errors import BackendError, InvalidArgument, ProjectionError, SchemaError
from conduit.events import Event, SubscriptionState
from conduit.subscriptions.lag import count_behind
from conduit.subscriptions.partitions import check_partitions
from conduit.subscriptions.projector import StoreProjector
from conduit.subscriptions.runner import Runner

if TYPE_CHECKING:
    from conduit.subscriptions.partitioned import PartitionedDriver

__all__ = [
    "MAX_POLL_INTERVAL",
    "POLL_INTERVAL",
    "Driver",
    "DriverView",
    "Mode",
    "SubscriptionStatus",
]

log = logging.getLogger("conduit.subscriptions")

Mode = Literal["inline", "background"]

POLL_INTERVAL = 0.02
"""Seconds between a background driver's looks for events while it finds some."""

MAX_POLL_INTERVAL = 1.0
"""The longest a background driver waits between two looks once the log is quiet."""


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """Where a subscription stands: its checkpoint, the log's head, how far behind."""

    name: str
    checkpoint: int
    head: int
    behind: int
    capped: bool = False
    """True when the count stopped at :data:`~conduit.subscriptions.lag.BEHIND_LIMIT`:
    ``behind`` is then "at least" that many."""
    partition: str | None = None
    """For one partition of a partitioned subscription: which, as ``index/count``
    (``"2/4"``); its checkpoint, head and lag are that partition's."""
    state: SubscriptionState | None = None
    """What its driver last said it was doing (relays say it: ``relaying``,
    ``idle``, ``retrying`` with the error, ``stopped``); ``None`` when none said."""


class Driver:
    """One named subscription's driving, free of the face's threads or tasks.

    Args:
        runner: the catch-up loop (its ``stopped`` signal stops the driver).
        mode: ``inline`` or ``background``.
        wake: the signal a push through this store (or an engine's
            announcement) sets to wake a background driver.
        poll_interval, max_poll_interval, lease_ttl: see
            :meth:`conduit.EventStore.subscribe`.

    Raises:
        InvalidArgument: a bad mode or interval.
    """

    def __init__(
        self,
        runner: Runner,
        mode: Mode,
        *,
        wake: Signal,
        poll_interval: float = POLL_INTERVAL,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        lease_ttl: float = 10.0,
    ) -> None:
        if mode not in ("inline", "background"):
            raise InvalidArgument(f"mode must be 'inline' or 'background', not {mode!r}")
        for field, value in (
            ("poll_interval", poll_interval),
            ("max_poll_interval", max_poll_interval),
            ("lease_ttl", lease_ttl),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"{field} must be a number of seconds above 0", field=field)
        self.runner = runner
        self.engine = runner.engine
        self.mode: Mode = mode
        self.wake = wake
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.lease_ttl = float(lease_ttl)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.active = False
        """True while this driver holds the subscription's lease (background)."""
        self.error: BaseException | None = None
        """Why the background driver stopped for good (``None`` while it runs)."""
        self._renew_at = 0.0
        self._standing_by = False
        self._checked = False

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def subscription(self) -> str:
        """The subscription's name (a partition's driver has a name of its own)."""
        return self.runner.subscription

    def checkpoint(self) -> Op[int]:
        """The position handled up to (0 when it never ran)."""
        found: int = yield from self.runner.checkpoint()
        return found

    def check_partitions(self) -> Op[None]:
        """Refuse to run when the checkpoints were kept for partitions (once).

        Raises:
            PartitionsChanged: see :func:`~conduit.subscriptions.partitions.check_partitions`.
        """
        if self._checked or self.runner.filter.partition is not None:
            return
        names = yield from checkpoint_names(self.engine, self.runner.projector)
        check_partitions(self.name, 1, names)
        self._checked = True

    # -- inline ----------------------------------------------------------------

    def catch_up(self, *, keep_going: Callable[[], Op[bool]] | None = None) -> Op[int]:
        """Apply every event after the checkpoint.

        An inline driver that loses the checkpoint's compare-and-set to another
        driver reads the checkpoint again and goes on.
        """
        yield from self.check_partitions()
        read: int = yield from self.runner.catch_up(
            keep_going=keep_going, reread_on_conflict=self.mode == "inline"
        )
        return read

    # -- background ------------------------------------------------------------

    def keep_lease(self) -> Op[bool]:
        """Take or renew the lease when due; True while this driver holds it.

        Asked between batches too: a catch-up longer than ``lease_ttl`` must
        renew its lease, or another driver would take over while it runs.
        """
        now = time.monotonic()
        if now >= self._renew_at:
            was_active = self.active
            self.active = yield from self.engine.try_lease(self.name, self.owner, self.lease_ttl)
            self._renew_at = now + (self.lease_ttl / 3 if self.active else 1.0)
            if self.active and not was_active:
                self._standing_by = False
                log.info("subscription %r: driving it (%s)", self.name, self.owner)
            elif not self.active and not self._standing_by:
                self._standing_by = True
                log.info("subscription %r: standing by, another driver holds it", self.name)
        return self.active

    def drive(self) -> Op[None]:
        """The background loop, until the runner is stopped; releases the lease at the end.

        A failure that ends it is kept in :attr:`error` (and logged), not raised.
        """
        self._renew_at = 0.0
        try:
            yield from self._loop()
        except ProjectionError as exc:
            self.error = exc
            log.error("subscription %r stopped: %s", self.name, exc)
        except Exception as exc:  # the driver must not die silently
            self.error = exc
            log.exception("subscription %r failed", self.name)
        finally:
            if self.active:
                self.active = False
                try:
                    yield from self.engine.release_lease(self.name, self.owner)
                except BackendError as exc:  # it lapses after lease_ttl instead
                    log.warning("subscription %r: cannot release its lease: %s", self.name, exc)

    def _loop(self) -> Op[None]:
        stopped = self.runner.stopped
        failures = 0
        idle_wait = self.poll_interval
        while not stopped.is_set():
            try:
                if not (yield from self.keep_lease()):
                    yield Sleep(min(1.0, self.lease_ttl / 3), stopped)
                    continue
                self.wake.clear()
                if not (yield from self._checked_partitions()):
                    continue
                read = yield from self.catch_up(keep_going=self.keep_lease)
                failures = 0
                if self.runner.conflicted:  # another driver took over? ask the lease now
                    self._renew_at = 0.0
                if read:
                    wait, idle_wait = self.poll_interval, self.poll_interval
                else:  # a quiet log: look less and less often
                    wait, idle_wait = idle_wait, min(idle_wait * 2, self.max_poll_interval)
                if (yield Sleep(wait, self.wake)):  # a push here, or a NOTIFY: look now
                    idle_wait = self.poll_interval
            except SchemaError:
                raise
            except BackendError as exc:
                # The store's database is away (restarting, say): keep trying.
                failures += 1
                delay = self.runner.policy.delay(failures)
                log.warning(
                    "subscription %r: the store failed (%s); retrying in %.2f s",
                    self.name,
                    exc,
                    delay,
                )
                yield Sleep(delay, stopped)

    def _checked_partitions(self) -> Op[bool]:
        """:meth:`check_partitions`, waiting out an outage of the projection's storage."""
        try:
            yield from self.check_partitions()
        except Exception as exc:
            if not self.runner.transient(exc):
                raise
            log.warning("subscription %r: storage unavailable (%r)", self.name, exc)
            yield Sleep(1.0, self.runner.stopped)
            return False
        return True

    # -- observing -------------------------------------------------------------

    def status(self) -> Op[SubscriptionStatus]:
        """The checkpoint, the log's head, and the number of events behind.

        It looks: it never waits for this store's own last push to be readable.
        """
        checkpoint = yield from self.runner.checkpoint()
        head = yield from self.runner.core.head_position(wait=False)
        behind, capped = yield from count_behind(self.runner.core, checkpoint, self.runner.filter)
        partition = self.runner.filter.partition
        return SubscriptionStatus(
            self.subscription,
            checkpoint,
            head,
            behind,
            capped,
            None if partition is None else str(partition),
        )

    def statuses(self) -> Op[list[SubscriptionStatus]]:
        """:meth:`status`, as a list (a partitioned driver has one per partition)."""
        return [(yield from self.status())]

    def wait_for(self, target: Event | int, timeout: float) -> Op[None]:
        """Wait until the subscription has handled an event (or a position).

        While the projection's storage is away, it keeps waiting, as the driver
        keeps retrying.

        Raises:
            TimeoutError: not handled within ``timeout`` seconds.
            ProjectionError: the subscription stopped on a failing event.
        """
        position = target.position if isinstance(target, Event) else target
        deadline = time.monotonic() + timeout
        delay = 0.001
        checkpoint: Any = "unknown: the projection's storage is unavailable"
        while True:
            try:
                checkpoint = yield from self.runner.checkpoint()
            except Exception as exc:
                if not self.runner.transient(exc):
                    raise
            else:
                if checkpoint >= position:
                    return
            failure = self.error or self.runner.failed
            if failure is not None:
                raise ProjectionError(f"subscription {self.name!r} stopped: {failure}")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"subscription {self.name!r} has not reached position {position} "
                    f"within {timeout} s (checkpoint {checkpoint})"
                )
            yield Sleep(delay)
            delay = min(delay * 2, 0.05)


def checkpoint_names(engine: Any, projector: Any) -> Op[list[str]]:
    """The names of the checkpoints a projector keeps: in its read model (a projector
    with ``checkpoint_names_op``, as ``SQLProjection``), or in the store."""
    own = getattr(getattr(projector, "origin", projector), "checkpoint_names_op", None)
    if callable(own):
        found: list[str] = yield from own()
        return found
    if isinstance(projector, StoreProjector):
        stored = yield from engine.checkpoints()
        return [name for name, _ in stored]
    return []


class DriverView:
    """What both faces' subscriptions show of their driver."""

    driver: Driver | PartitionedDriver

    @property
    def runner(self) -> Runner:
        return self.driver.runner

    @property
    def name(self) -> str:
        return self.driver.name

    @property
    def mode(self) -> Mode:
        return self.driver.mode

    @property
    def active(self) -> bool:
        """True while this driver holds the subscription's lease (background)."""
        return self.driver.active

    @property
    def error(self) -> BaseException | None:
        """Why the background driver stopped for good (``None`` while it runs)."""
        return self.driver.error

    @property
    def owner(self) -> str:
        """Who this driver is, for its lease: host, process and a random part."""
        return self.driver.owner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.mode}>"
