"""Who drives a named subscription: the pushing thread, or a thread of its own.

- ``inline``: the thread that pushed, right after the commit, so the caller
  reads its own writes in the read model. Several processes should not drive
  the same inline subscription (use ``background`` or workers).
- ``background``: a daemon thread in this process that holds the
  subscription's lease, so that exactly one driver runs it among every process
  and machine that share the store; woken by this process's pushes, polling
  for the others'. ``conduit run`` (a worker process) runs these threads.
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
from typing import TYPE_CHECKING, Literal

from conduit.errors import BackendError, InvalidArgument, ProjectionError, SchemaError
from conduit.events import Event
from conduit.subscriptions.runner import Runner

if TYPE_CHECKING:
    pass

__all__ = ["POLL_INTERVAL", "Mode", "Subscription", "SubscriptionStatus"]

log = logging.getLogger("conduit.subscriptions")

Mode = Literal["inline", "background"]

POLL_INTERVAL = 0.02
"""Seconds between a background driver's looks for events other processes pushed."""


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """Where a subscription stands: its checkpoint, the log's head, how far behind."""

    name: str
    checkpoint: int
    head: int
    behind: int


class Subscription:
    """A named subscription and its driver. Made by :meth:`EventStore.subscribe`."""

    def __init__(
        self,
        runner: Runner,
        mode: Mode,
        *,
        poll_interval: float = POLL_INTERVAL,
        lease_ttl: float = 10.0,
    ) -> None:
        if mode not in ("inline", "background"):
            raise InvalidArgument(f"mode must be 'inline' or 'background', not {mode!r}")
        self.runner = runner
        self.mode: Mode = mode
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.active = False
        """True while this driver holds the subscription's lease (background)."""
        self._lock = threading.Lock()
        self._owner_thread: int | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_at = 0.0
        self.error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.runner.name

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} {self.mode}>"

    # -- driving -------------------------------------------------------------

    def start(self) -> None:
        """Catch up now (inline) or start the background thread."""
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
        """
        with self._lock:
            self._owner_thread = threading.get_ident()
            try:
                return self.runner.catch_up(keep_going=keep_going)
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
            self.active = backend.try_lease(self.name, self.owner, self.lease_ttl)
            self._renew_at = now + (self.lease_ttl / 3 if self.active else 1.0)
        return self.active

    def _run(self) -> None:
        backend = self.runner.store.backend
        # Engines that can announce appends (PostgreSQL's NOTIFY) wake us early.
        add_waker = getattr(backend, "add_waker", None)
        if add_waker is not None:
            add_waker(self._wake)
        self._renew_at = 0.0
        try:
            failures = 0
            while not self.runner.stopped.is_set():
                try:
                    if self._keep_lease():
                        self._wake.clear()
                        self.catch_up(keep_going=self._keep_lease)
                        self._wake.wait(self.poll_interval)
                    else:
                        self.runner.stopped.wait(min(1.0, self.lease_ttl / 3))
                    failures = 0
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
                backend.release_lease(self.name, self.owner)
                self.active = False

    # -- observing -----------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The position handled up to."""
        return self.runner.projector.load_checkpoint()

    def status(self) -> SubscriptionStatus:
        """The checkpoint, the log's head, and the number of events behind."""
        store = self.runner.store
        checkpoint = self.checkpoint
        head = store.head_position()
        behind = store.backend.count_after(checkpoint, names=self.runner.filter.names)
        return SubscriptionStatus(self.name, checkpoint, head, behind)

    def wait_for(self, target: Event | int, timeout: float = 10.0) -> None:
        """Wait until the subscription has handled an event (or a position).

        While the projection's storage is away (its ``transient_errors``), it
        keeps waiting, as the driver keeps retrying.

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
            except self.runner.projector.transient_errors:
                pass
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
