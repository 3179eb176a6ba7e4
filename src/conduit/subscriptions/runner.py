"""The catch-up loop every driver shares: read after the checkpoint, apply, retry, park.

Drivers (inline, background, worker; threads or asyncio tasks) differ only in
who runs :meth:`Runner.catch_up` and when. It is an operation
(:mod:`conduit.core.effects`): its waits are :class:`~conduit.core.effects.Sleep`
effects that the runner's ``stopped`` signal interrupts.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from conduit.core.effects import Op, Signal, Sleep
from conduit.errors import ProjectionError
from conduit.events import Event, event_name
from conduit.subscriptions.partitions import Partition
from conduit.subscriptions.projector import (
    CheckpointConflict,
    HandlerFailed,
    Projector,
    StoreProjector,
    is_transient,
)

__all__ = ["Filter", "KeepGoing", "RetryPolicy", "Runner", "reads_partitions"]

log = logging.getLogger("conduit.subscriptions")

PAGE_SIZE = 500
"""Events read from the log at a time; applied ``batch_size`` per transaction."""

BACKOFF_STEP = 0.05
"""Seconds between two questions to ``keep_going`` while a retry waits."""

MAX_CONFLICTS = 100
"""The most lost compare-and-sets in a row one catch-up goes on after (see
:meth:`Runner.catch_up`), so that a projector whose checkpoint never moves
cannot hold a push forever."""

KeepGoing = Callable[[], Op[bool]]
"""Asked after each batch and while a retry waits: an operation (a driver renews
its lease there) whose False ends the catch-up."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What a subscription does when a handler raises.

    The event is tried ``max_attempts`` times in all, waiting ``backoff``
    seconds after the first failure and twice as long after each next one (at
    most ``max_backoff``). Then it is parked and the subscription goes on
    (``on_failure="park"``), or the subscription stops (``"stop"``).
    """

    max_attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 5.0
    on_failure: Literal["park", "stop"] = "park"

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, failures - 1)))


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a subscription reads: by name, by stream id prefix, and by partition."""

    names: tuple[str, ...] | None = None
    stream_prefix: str | None = None
    partition: Partition | None = None

    @classmethod
    def of(cls, names: Sequence[str] | None, stream_prefix: str | None) -> Filter:
        return cls(
            None if names is None else tuple(sorted({event_name(n) for n in names})),
            stream_prefix,
        )

    def keeps(self, event: Event) -> bool:
        return (
            self.stream_prefix is None or str(event.stream_id).startswith(self.stream_prefix)
        ) and (self.partition is None or self.partition.keeps(event.stream_id))


def reads_partitions(engine: Any) -> bool:
    """Whether an engine's ``read_all`` and ``count_after`` take ``partition=``."""
    return bool(getattr(engine, "partitioned_reads", False))


class Runner:
    """Drives one projector over the global log.

    Args:
        core: the store's :class:`~conduit.core.store_ops.StoreCore` (its engine,
            types and log reads).
        projector: what applies the events and keeps the checkpoint.
        stopped: the signal that stops the runner (of the face's kind: a
            ``threading.Event`` or an ``asyncio.Event``).
        mirror_checkpoint: copy the checkpoint of a projector that keeps its
            own (a SQL read model) into the store, where subscription status
            reads it; off for a rebuild's temporary projector.
    """

    def __init__(
        self,
        core: Any,
        projector: Projector,
        *,
        stopped: Signal,
        filter: Filter = Filter(),
        policy: RetryPolicy = RetryPolicy(),
        batch_size: int = 100,
        retry_check_interval: float = 1.0,
        mirror_checkpoint: bool = True,
        subscription: str | None = None,
    ) -> None:
        self.subscription = subscription or projector.name
        """The subscription's name, under which its events are parked (a partition's
        checkpoint and lease have names of their own: the projector's)."""
        self.core = core
        self.engine = core.engine
        self.projector = projector
        self.stopped = stopped
        self.filter = filter
        self.policy = policy
        self.batch_size = batch_size
        self.page_size = max(batch_size, PAGE_SIZE)
        self.retry_check_interval = retry_check_interval
        self._next_retry_check = 0.0
        self._next_mirror = 0.0
        self._mirror_pending = False
        self._mirror = mirror_checkpoint
        self._conflicted = False
        self._known: int | None = None
        self.failed: ProjectionError | None = None

    @property
    def name(self) -> str:
        """The name of the checkpoint and lease: the projector's (a partition's key, for a
        read model split into partitions)."""
        key: str = getattr(self.projector, "checkpoint_key", None) or self.projector.name
        return key

    def check_retries_soon(self) -> None:
        """Look for parked events to retry on the next catch-up."""
        self._next_retry_check = 0.0

    @property
    def conflicted(self) -> bool:
        """Whether the last catch-up gave up a batch to another driver's checkpoint."""
        return self._conflicted

    def transient(self, error: BaseException) -> bool:
        """Whether ``error`` means the projection's storage is away (retry, never park)."""
        return is_transient(self.projector, error)

    def checkpoint(self) -> Op[int]:
        """The position the projector has handled up to (0 when it never ran)."""
        found = yield from self.projector.load_checkpoint_op()
        return found or 0

    def catch_up(
        self, *, keep_going: KeepGoing | None = None, reread_on_conflict: bool = False
    ) -> Op[int]:
        """Apply every event after the checkpoint; returns how many were read.

        ``keep_going`` is asked after each batch, and between the retries of
        a failing one; False ends the catch-up early (a background driver
        renews its lease there, and stops when another driver has it).

        A lost compare-and-set of the checkpoint means another driver applied
        the batch (or moved the checkpoint): the batch is given up, quietly.
        ``reread_on_conflict`` (inline drivers, which share a subscription
        without a lease) then reads the checkpoint again and goes on, so that
        the pushing caller still reads its own writes; otherwise the
        catch-up ends there (a background driver goes back to its lease).

        Raises:
            ProjectionError: the subscription stopped on a failing event
                (``on_failure="stop"``).
        """
        if self.failed is not None:
            raise self.failed
        if time.monotonic() >= self._next_retry_check:
            yield from self._retry_parked()
            self._next_retry_check = time.monotonic() + self.retry_check_interval
        total = 0
        conflicts = 0
        while not self.stopped.is_set():
            self._conflicted = False
            read, go_on = yield from self._step(keep_going)
            total += read
            if self._conflicted and reread_on_conflict and conflicts < MAX_CONFLICTS:
                conflicts += 1
                continue
            if read == 0 or not go_on:
                break
        if (
            (total or self._mirror_pending)
            and self._mirror
            and not isinstance(self.projector, StoreProjector)
        ):
            yield from self._mirror_checkpoint()
        return total

    def _mirror_checkpoint(self) -> Op[None]:
        """Copy a read model's checkpoint into the store, where status and lag are read.

        At most once a second; a copy put off is made by a later catch-up,
        even one that finds nothing new, so that the last one is not lost.
        """
        now = time.monotonic()
        if now < self._next_mirror:
            self._mirror_pending = True
            return
        self._next_mirror = now + 1.0
        self._mirror_pending = False
        try:
            position = yield from self.checkpoint()
            known = yield from self.engine.load_checkpoint(self.name)
            if known != position:
                yield from self.engine.save_checkpoint(self.name, position, expected=known)
        except Exception as exc:  # only a copy for status: it must not stop the projection
            self._mirror_pending = True
            log.warning("subscription %r: cannot copy its checkpoint: %r", self.name, exc)

    def _step(self, keep_going: KeepGoing | None) -> Op[tuple[int, bool]]:
        """Read one page of the log and apply it, ``batch_size`` events per transaction.

        Returns the events read and whether to go on (``keep_going`` is asked
        after each batch).
        """
        stored, keep = self.core.log_filter(self.filter.names)
        partition = self.filter.partition
        by_partition: dict[str, Any] = {}
        if partition is not None and reads_partitions(self.engine):
            by_partition["partition"] = partition  # the engine leaves out the other streams
        try:
            self._known = yield from self.projector.load_checkpoint_op()
            position = self._known or 0
            head = 0
            if stored is not None or by_partition:
                head = yield from self.core.head_position()
            raw: Sequence[Event] = []
            if stored is None or stored:
                raw = yield from self.engine.read_all(
                    after=position, names=stored, limit=self.page_size, **by_partition
                )
                raw = yield from self.core.revealed(raw)
        except Exception as exc:
            if not self.transient(exc):
                raise
            yield from self._pause(exc, 1, keep_going)
            return 0, False
        page = raw if keep is None else keep(raw)
        if len(raw) < self.page_size and head > max(position, raw[-1].position if raw else 0):
            # Everything up to the head was considered, even what the names (or the
            # partition) filter left out.
            up_to = head
        elif raw:
            up_to = raw[-1].position
        else:
            return 0, False
        kept = [event for event in page if self.filter.keeps(event)]
        size = self.batch_size
        for start in range(0, max(len(kept), 1), size):
            chunk = kept[start : start + size]
            last = start + size >= len(kept)
            applied = yield from self._apply(
                chunk, up_to if last else chunk[-1].position, keep_going
            )
            if not applied:
                return max(len(page), 1), False
            if keep_going is not None and not (yield from keep_going()):
                return max(len(page), 1), False
        return max(len(page), 1), True

    def _apply(
        self, events: Sequence[Event], up_to: int, keep_going: KeepGoing | None = None
    ) -> Op[bool]:
        """Apply one batch; False when the rest of the page must not follow it.

        Between retries it asks ``keep_going``, so that a driver renews its
        lease through a long outage or a failing handler's backoff (instead of
        letting it lapse and another driver take over), and gives up when it
        no longer holds it.
        """
        transient_failures = 0
        while not self.stopped.is_set():
            try:
                yield from self.projector.apply_op(events, up_to, self._known)
                self._known = up_to
                return True
            except CheckpointConflict:
                self._lost_checkpoint()
                return False
            except HandlerFailed as failure:
                if failure.index:
                    self._known = events[failure.index - 1].position
                bad = events[failure.index]
                rest = events[failure.index + 1 :]
                if not (yield from self._retry_one(bad, failure.error, keep_going)):
                    return False
                events = rest
                transient_failures = 0
            except Exception as exc:
                if not self.transient(exc):
                    raise
                transient_failures += 1
                if not (yield from self._pause(exc, transient_failures, keep_going)):
                    return False
        return False

    def _lost_checkpoint(self) -> None:
        """Another driver moved the checkpoint: give up the batch, quietly."""
        self._conflicted = True
        log.info("subscription %r: another driver moved the checkpoint", self.name)

    def _retry_one(
        self, event: Event, error: BaseException, keep_going: KeepGoing | None = None
    ) -> Op[bool]:
        """Retry a failing event alone; park it or stop. True to go on with the batch."""
        attempts = 1
        while attempts < self.policy.max_attempts:
            if not (yield from self._backoff(self.policy.delay(attempts), keep_going)):
                return False
            attempts += 1
            try:
                yield from self.projector.apply_op([event], event.position, self._known)
                self._known = event.position
                return True
            except HandlerFailed as failure:
                error = failure.error
            except CheckpointConflict:
                self._lost_checkpoint()
                return False
            except Exception as exc:
                if not self.transient(exc):
                    raise
                attempts -= 1  # the storage is away: not the handler's fault
                if not (yield from self._pause(exc, 1, keep_going)):
                    return False
        details = "".join(traceback.format_exception(error))
        if self.policy.on_failure == "stop":
            self.failed = ProjectionError(
                f"subscription {self.name!r} stopped at event {event.id} ({event.name}, "
                f"position {event.position}) after {attempts} attempts: {error!r}"
            )
            self.stopped.set()
            raise self.failed from error
        log.error(
            "subscription %r parked event %s (%s, position %d) after %d attempts: %r",
            self.name,
            event.id,
            event.name,
            event.position,
            attempts,
            error,
        )
        yield from self.engine.park(
            self.subscription, event, error=repr(error), traceback=details, attempts=attempts
        )
        return (yield from self._move_past(event, keep_going))

    def _move_past(self, event: Event, keep_going: KeepGoing | None) -> Op[bool]:
        """Move the checkpoint past a parked event; True to go on with the batch."""
        failures = 0
        while not self.stopped.is_set():
            try:
                yield from self.projector.apply_op([], event.position, self._known)
                self._known = event.position
                return True
            except CheckpointConflict:
                # Another driver took over meanwhile: it goes on from its own
                # checkpoint (and parks this event too, if it fails there too).
                self._lost_checkpoint()
                return False
            except Exception as exc:
                if not self.transient(exc):
                    raise
                failures += 1
                if not (yield from self._pause(exc, failures, keep_going)):
                    return False
        return False

    def _retry_parked(self) -> Op[None]:
        """Apply the parked events a user asked to retry."""
        engine = self.engine
        after = 0
        while True:
            page = yield from engine.parked(subscription=self.subscription, after=after, limit=100)
            for parked in page:
                if not parked.retry_requested:
                    continue
                event = yield from self.core.read_event(parked.event_id)  # upcast and typed
                if event is None:
                    yield from engine.unpark(parked.id)
                    continue
                partition = self.filter.partition
                if partition is not None and not partition.keeps(event.stream_id):
                    continue  # another partition's: its driver retries it
                try:
                    yield from self.projector.apply_parked_op(event)
                except Exception as exc:
                    yield from engine.park(
                        self.subscription,
                        event,
                        error=repr(exc),
                        traceback="".join(traceback.format_exception(exc)),
                        attempts=parked.attempts + 1,
                    )
                else:
                    yield from engine.unpark(parked.id)
            if len(page) < 100:
                return
            after = page[-1].id

    def _pause(
        self, error: BaseException, failures: int, keep_going: KeepGoing | None = None
    ) -> Op[bool]:
        """Wait before trying the storage again; False to give up (see :meth:`_backoff`)."""
        delay = self.policy.delay(failures)
        log.warning(
            "subscription %r: storage unavailable (%r); retrying in %.2f s",
            self.name,
            error,
            delay,
        )
        return (yield from self._backoff(delay, keep_going))

    def _backoff(self, delay: float, keep_going: KeepGoing | None) -> Op[bool]:
        """Wait ``delay`` seconds before a retry; False once stopped or told not to go on.

        ``keep_going`` is asked every :data:`BACKOFF_STEP` seconds: a driver renews
        its lease there (only when due), so that a backoff longer than the lease
        does not let another driver take over.
        """
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            step = left if keep_going is None else min(left, BACKOFF_STEP)
            if (yield Sleep(step, self.stopped)):
                return False
            if keep_going is not None and not (yield from keep_going()):
                return False
