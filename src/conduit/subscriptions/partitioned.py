"""Driving a subscription split into partitions, as operations both faces run.

A subscription with ``partitions=N`` has N partition drivers
(:class:`~conduit.subscriptions.driving.Driver`), each with its own runner
(reading only its partition's streams), checkpoint and lease.
:class:`PartitionedDriver` drives them in one thread or task of its process:

- **inline**: a push catches up every partition, one after the other;
- **background**: the drivers of every process that runs the subscription
  share the partitions out among themselves. Each takes a *member slot* (a
  lease named ``conduit.members/N/j/name``, ``j`` below N) and looks, about
  once a second, which other slots are held: with W members, the member of
  rank r (in slot order) drives the partitions ``p`` with ``p % W == r``,
  releasing the others between two batches. A driver that starts takes a
  free slot, and the others give it its share; one that dies loses its slot
  and its partitions' leases (PostgreSQL: with its session; other engines:
  after ``lease_ttl``), and the others take its partitions over at their
  next look. Beyond N drivers, the others stand by for a free slot.

The leases keep the promise: at most one driver applies a partition's events
at a time, whatever the members' views of each other; the shares only spread
the work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from conduit.core.effects import Op, Signal, Sleep
from conduit.errors import BackendError, ProjectionError, SchemaError
from conduit.events import Event
from conduit.subscriptions.driving import Driver, Mode, SubscriptionStatus, checkpoint_names
from conduit.subscriptions.partitions import check_partitions, partition_of
from conduit.subscriptions.runner import Runner

__all__ = ["MEMBERS_PREFIX", "TURN", "PartitionedDriver"]

log = logging.getLogger("conduit.subscriptions")

MEMBERS_PREFIX = "conduit.members/"
"""How the leases of a partitioned subscription's member slots are named."""

TURN = 1.0
"""The longest one partition's catch-up runs before the driver's next partition gets
its turn (seconds)."""


class PartitionedDriver:
    """The drivers of one subscription's partitions, driven together.

    Offers what :class:`~conduit.subscriptions.driving.Driver` offers its face.

    Args:
        parts: one driver per partition, in partition order, sharing the
            ``stopped`` signal of their runners and the ``wake`` signal.
    """

    def __init__(self, parts: Sequence[Driver]) -> None:
        first = parts[0]
        self.parts = tuple(parts)
        self.count = len(parts)
        self.runner: Runner = first.runner
        self.engine = first.engine
        self.mode: Mode = first.mode
        self.wake: Signal = first.wake
        self.poll_interval = first.poll_interval
        self.max_poll_interval = first.max_poll_interval
        self.lease_ttl = first.lease_ttl
        self.owner = first.owner
        for part in self.parts:
            part.owner = self.owner
        self.error: BaseException | None = None
        self.slot: int | None = None
        """The member slot this driver holds (background), ``None`` while standing by."""
        self.mine: frozenset[int] = frozenset()
        """The partitions this driver's share holds (background)."""
        self._look_at = 0.0
        self._checked = False

    @property
    def name(self) -> str:
        return self.runner.subscription

    @property
    def active(self) -> bool:
        """True while this driver holds the lease of one of the partitions at least."""
        return any(part.active for part in self.parts)

    def checkpoint(self) -> Op[int]:
        """The position every partition has handled up to: the least of their checkpoints."""
        found = []
        for part in self.parts:
            found.append((yield from part.checkpoint()))
        return min(found)

    def check_partitions(self) -> Op[None]:
        """Refuse to run when the checkpoints were kept for another number of partitions.

        Raises:
            PartitionsChanged: see :func:`~conduit.subscriptions.partitions.check_partitions`.
        """
        if self._checked:
            return
        names = yield from checkpoint_names(self.engine, self.runner.projector)
        check_partitions(self.name, self.count, names)
        self._checked = True

    # -- inline ----------------------------------------------------------------

    def catch_up(self, *, keep_going: Callable[[], Op[bool]] | None = None) -> Op[int]:
        """Apply every event after each partition's checkpoint, partition after partition."""
        yield from self.check_partitions()
        total = 0
        for part in self.parts:
            total += yield from part.runner.catch_up(
                keep_going=keep_going, reread_on_conflict=self.mode == "inline"
            )
        return total

    # -- background ------------------------------------------------------------

    def drive(self) -> Op[None]:
        """The background loop, until stopped; releases its leases at the end.

        A failure that ends it is kept in :attr:`error` (and logged), not raised.
        """
        try:
            yield from self._loop()
        except ProjectionError as exc:
            self._failed(exc)
            log.error("subscription %r stopped: %s", self.name, exc)
        except Exception as exc:  # the driver must not die silently
            self._failed(exc)
            log.exception("subscription %r failed", self.name)
        finally:
            for part in self.parts:
                yield from self._release(part)
            if self.slot is not None:
                slot, self.slot = self.slot, None
                try:
                    yield from self.engine.release_lease(self._slot_key(slot), self.owner)
                except BackendError as exc:
                    log.warning("subscription %r: cannot release its slot: %s", self.name, exc)

    def _failed(self, error: BaseException) -> None:
        self.error = error
        for part in self.parts:  # so that a wait for one partition sees it
            part.error = error

    def _loop(self) -> Op[None]:
        stopped = self.runner.stopped
        failures = 0
        idle_wait = self.poll_interval
        while not stopped.is_set():
            try:
                yield from self._look()
                if not self._checked:
                    try:
                        yield from self.check_partitions()
                    except Exception as exc:
                        if not self.runner.transient(exc):
                            raise
                        log.warning("subscription %r: storage unavailable (%r)", self.name, exc)
                        yield Sleep(1.0, stopped)
                        continue
                self.wake.clear()
                read = 0
                for index, part in enumerate(self.parts):
                    if stopped.is_set():
                        break
                    if index not in self.mine:
                        yield from self._release(part)
                        continue
                    if not (yield from part.keep_lease()):
                        continue
                    read += yield from part.catch_up(keep_going=self._keep_going(index, part))
                    if part.runner.conflicted:  # another driver took over? ask the lease now
                        part._renew_at = 0.0
                failures = 0
                if not self.mine:
                    wait = min(1.0, self.lease_ttl / 3)
                elif read:
                    wait, idle_wait = self.poll_interval, self.poll_interval
                else:  # a quiet log: look less and less often
                    wait, idle_wait = idle_wait, min(idle_wait * 2, self.max_poll_interval)
                if (yield Sleep(wait, self.wake)):
                    idle_wait = self.poll_interval
            except SchemaError:
                raise
            except BackendError as exc:
                failures += 1
                delay = self.runner.policy.delay(failures)
                log.warning(
                    "subscription %r: the store failed (%s); retrying in %.2f s",
                    self.name,
                    exc,
                    delay,
                )
                yield Sleep(delay, stopped)

    def _keep_going(self, index: int, part: Driver) -> Callable[[], Op[bool]]:
        """Between batches: still this driver's partition, its lease kept, its turn not over."""
        turn_ends = time.monotonic() + TURN

        def keep_going() -> Op[bool]:
            yield from self._look()
            if index not in self.mine:
                return False
            if not (yield from part.keep_lease()):
                return False
            return time.monotonic() < turn_ends or self.count == 1

        return keep_going

    def _release(self, part: Driver) -> Op[None]:
        if not part.active:
            return
        part.active = False
        part._renew_at = 0.0
        try:
            yield from self.engine.release_lease(part.name, self.owner)
        except BackendError as exc:  # it lapses after lease_ttl instead
            log.warning("subscription %r: cannot release its lease: %s", part.name, exc)

    def _slot_key(self, slot: int) -> str:
        return f"{MEMBERS_PREFIX}{self.count}/{slot}/{self.name}"

    def _look(self) -> Op[None]:
        """Keep this driver's member slot (or take a free one), see which others are
        held, and work out this driver's share of the partitions; when due."""
        now = time.monotonic()
        if now < self._look_at:
            return
        self._look_at = now + min(1.0, self.lease_ttl / 3)
        engine, owner, ttl = self.engine, self.owner, self.lease_ttl
        if self.slot is not None and not (
            yield from engine.try_lease(self._slot_key(self.slot), owner, ttl)
        ):
            log.info("subscription %r: lost its member slot %d", self.name, self.slot)
            self.slot = None
        others = []
        for slot in range(self.count):
            if slot == self.slot:
                continue
            key = self._slot_key(slot)
            if not (yield from engine.try_lease(key, owner, ttl)):
                others.append(slot)
            elif self.slot is None:
                self.slot = slot
            else:  # only looking: a free slot is a member fewer
                yield from engine.release_lease(key, owner)
        if self.slot is None:
            mine: frozenset[int] = frozenset()
        else:
            members = sorted([*others, self.slot])
            rank = members.index(self.slot)
            mine = frozenset(p for p in range(self.count) if p % len(members) == rank)
        if mine != self.mine:
            log.info(
                "subscription %r: driving partitions %s of %d (%s)",
                self.name,
                sorted(mine) or "none",
                self.count,
                self.owner,
            )
        self.mine = mine

    # -- observing -------------------------------------------------------------

    def status(self) -> Op[SubscriptionStatus]:
        """All partitions at once: the least checkpoint, and the events behind in all."""
        statuses = yield from self.statuses()
        return SubscriptionStatus(
            self.name,
            min(s.checkpoint for s in statuses),
            max(s.head for s in statuses),
            sum(s.behind for s in statuses),
            any(s.capped for s in statuses),
        )

    def statuses(self) -> Op[list[SubscriptionStatus]]:
        """Each partition's checkpoint, the log's head and its events behind."""
        found = []
        for part in self.parts:
            found.append((yield from part.status()))
        return found

    def wait_for(self, target: Event | int, timeout: float) -> Op[None]:
        """Wait until the subscription has handled an event (its partition has), or a
        position (every partition has).

        Raises:
            TimeoutError: not handled within ``timeout`` seconds.
            ProjectionError: the subscription stopped on a failing event.
        """
        if isinstance(target, Event):
            part = self.parts[partition_of(target.stream_id, self.count)]
            yield from part.wait_for(target, timeout)
            return
        deadline = time.monotonic() + timeout
        for part in self.parts:
            yield from part.wait_for(target, max(0.0, deadline - time.monotonic()))
