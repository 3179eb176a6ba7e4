"""Who drives a named subscription: the pushing thread, or a thread of its own.

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
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from conduit.errors import BackendError, InvalidArgument, ProjectionError, SchemaError
from conduit.events import Event
from conduit.subscriptions.lag import count_behind
from conduit.subscriptions.runner import Runner

__all__ = ["MAX_POLL_INTERVAL", "POLL_INTERVAL", "Mode", "Subscription", "SubscriptionStatus"]

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


class Subscription:
    """A named subscription and its driver. Made by :meth:`EventStore.subscribe`."""

    def __init__(
        self,
        runner: Runner,
        mode: Mode,
        *,
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
            if not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"{field} must be a number of seconds above 0", field=field)
        self.runner = runner
        self.mode: Mode = mode
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.lease_ttl = lease_ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.active = False
        """True while this driver holds the subscription's lease (background)."""
        self._lock = threading.Lock()
        self._owner_thread: int | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_at = 0.0
        self._standing_by = False
        self.error: BaseException | None = None
        """Why the background driver stopped for good (``None`` while it runs)."""

    @property
    def name(self) -> str:
        return self.runner.name

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} {self.mode}>"

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

    def notify(self) -> None:
        """Called after each push through the store: new events are there."""
        if self.mode == "inline":
            if self._owner_thread == threading.get_ident():
                return  # a handler pushed: the running catch-up will see it
            self.catch_up()
        else:
            self._wake.set()

    def catch_up(self, *, keep_going: Callable[[], bool] | None = None) -> int:
        """Apply every event after the checkpoint, in this thread.

        ``keep_going`` is asked after each batch; False ends the catch-up early.
        An inline driver that loses the checkpoint's compare-and-set to another
        driver reads the checkpoint again and goes on.
        """
        with self._lock:
            self._owner_thread = threading.get_ident()
            try:
                return self.runner.catch_up(
                    keep_going=keep_going, reread_on_conflict=self.mode == "inline"
                )
            finally:
                self._owner_thread = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop driving, after the event at hand; releases the lease."""
        self.runner.stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _keep_lease(self) -> bool:
        """Take or renew the lease when due; True while this driver holds it.

        Asked between batches too: a catch-up longer than ``lease_ttl`` must
        renew its lease, or another driver would take over while it runs.
        """
        now = time.monotonic()
        if now >= self._renew_at:
            backend = self.runner.store.backend
            was_active = self.active
            self.active = backend.try_lease(self.name, self.owner, self.lease_ttl)
            self._renew_at = now + (self.lease_ttl / 3 if self.active else 1.0)
            if self.active and not was_active:
                self._standing_by = False
                log.info("subscription %r: driving it (%s)", self.name, self.owner)
            elif not self.active and not self._standing_by:
                self._standing_by = True
                log.info("subscription %r: standing by, another driver holds it", self.name)
        return self.active

    def _run(self) -> None:
        backend = self.runner.store.backend
        # Engines that can announce appends (PostgreSQL's NOTIFY) wake us early.
        add_waker = getattr(backend, "add_waker", None)
        if add_waker is not None:
            add_waker(self._wake)
        self._renew_at = 0.0
        try:
            self._drive()
        except ProjectionError as exc:
            self.error = exc
            log.error("subscription %r stopped: %s", self.name, exc)
        except Exception as exc:  # the thread must not die silently
            self.error = exc
            log.exception("subscription %r failed", self.name)
        finally:
            remove_waker = getattr(backend, "remove_waker", None)
            if remove_waker is not None:
                remove_waker(self._wake)
            if self.active:
                self.active = False
                try:
                    backend.release_lease(self.name, self.owner)
                except BackendError as exc:  # it lapses after lease_ttl instead
                    log.warning("subscription %r: cannot release its lease: %s", self.name, exc)

    def _drive(self) -> None:
        """The background loop: hold the lease, catch up, wait for news, again."""
        failures = 0
        idle_wait = self.poll_interval
        while not self.runner.stopped.is_set():
            try:
                if not self._keep_lease():
                    self.runner.stopped.wait(min(1.0, self.lease_ttl / 3))
                    continue
                self._wake.clear()
                read = self.catch_up(keep_going=self._keep_lease)
                failures = 0
                if self.runner.conflicted:  # another driver took over? ask the lease now
                    self._renew_at = 0.0
                if read:
                    wait, idle_wait = self.poll_interval, self.poll_interval
                else:  # a quiet log: look less and less often
                    wait, idle_wait = idle_wait, min(idle_wait * 2, self.max_poll_interval)
                if self._wake.wait(wait):  # a push here, or a NOTIFY: look now
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
                self.runner.stopped.wait(delay)

    # -- observing -----------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The position handled up to."""
        return self.runner.projector.load_checkpoint()

    def status(self) -> SubscriptionStatus:
        """The checkpoint, the log's head, and the number of events behind."""
        store = self.runner.store
        checkpoint = self.checkpoint
        head = store.backend.head_position(wait=False)
        behind, capped = count_behind(store, checkpoint, self.runner.filter)
        return SubscriptionStatus(self.name, checkpoint, head, behind, capped)

    def wait_for(self, target: Event | int, timeout: float = 10.0) -> None:
        """Wait until the subscription has handled an event (or a position).

        While the projection's storage is away (its ``is_transient`` errors),
        it keeps waiting, as the driver keeps retrying.

        Raises:
            TimeoutError: not handled within ``timeout`` seconds.
            ProjectionError: the subscription stopped on a failing event.
        """
        position = target.position if isinstance(target, Event) else target
        deadline = time.monotonic() + timeout
        delay = 0.001
        checkpoint: int | str = "unknown: the projection's storage is unavailable"
        while True:
            try:
                checkpoint = self.checkpoint
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
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
