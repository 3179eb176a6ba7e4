"""Worker processes: run projections until SIGTERM or SIGINT (``conduit run``)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from conduit.errors import ConfigurationError, ProjectionError
from conduit.importing import import_attribute
from conduit.subscriptions.drivers import MAX_POLL_INTERVAL, POLL_INTERVAL

if TYPE_CHECKING:
    from conduit.store import EventStore
    from conduit.subscriptions.drivers import Subscription

__all__ = ["WorkerFailed", "load_projections", "run_worker"]

log = logging.getLogger("conduit.worker")

CHECK_EVERY = 0.5
"""Seconds between two looks of the worker at its drivers, for one that stopped."""


class WorkerFailed(ProjectionError):
    """A worker's projection stopped for good, and the worker with it.

    ``failures`` holds each stopped projection's name and the error that
    stopped it. The worker stops every other projection and closes the store
    first, so that a supervisor (systemd, Kubernetes) restarts a clean process.
    """

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = tuple(failures)
        told = "; ".join(f"projection {name!r} stopped: {error}" for name, error in self.failures)
        super().__init__(f"{told}; the worker stops")


def load_projections(spec: str) -> list[Any]:
    """Import ``module:attribute``: a projection, a list of them, or a function making them.

    Raises:
        ConfigurationError: the module or attribute cannot be found, or names
            an object without a ``name``.
    """
    target = import_attribute(spec, "myapp.read_models:all")
    if callable(target) and not hasattr(target, "name") and not isinstance(target, type):
        target = target()
    found = list(target) if isinstance(target, list | tuple) else [target]
    for projection in found:
        if not isinstance(getattr(projection, "name", None), str):
            raise ConfigurationError(f"{projection!r} has no name: give it a `name` attribute")
    return found


def run_worker(
    store: EventStore,
    projections: Sequence[Any],
    *,
    stop: threading.Event | None = None,
    poll_interval: float = POLL_INTERVAL,
    max_poll_interval: float = MAX_POLL_INTERVAL,
    lease_ttl: float = 10.0,
    handle_signals: bool = True,
    **options: Any,
) -> list[Subscription]:
    """Drive projections until ``stop`` is set (or SIGTERM/SIGINT arrives).

    Each projection runs in a background thread that holds its lease, so that
    of several workers exactly one drives it; the others wait to take over.
    Each is subscribed under its ``name`` attribute. On stop, each finishes
    the batch at hand, releases its lease, and the store is closed. Returns
    the subscriptions, stopped.

    A projection that cannot go on (``on_failure="stop"`` on a failing event,
    or an unexpected error in its driver) stops the whole worker: the others
    are stopped, the store is closed, and :class:`WorkerFailed` is raised,
    naming it, so that the process ends with an error and its supervisor
    restarts it.

    Raises:
        WorkerFailed: a projection's driver stopped for good.
    """
    stop = stop or threading.Event()
    if handle_signals and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _: FrameType | None) -> None:
            log.info("received signal %d: stopping after the batch at hand", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    subscriptions: list[Subscription] = []
    failures: list[tuple[str, BaseException]] = []
    try:
        for projection in projections:
            subscriptions.append(
                store.subscribe(
                    projection,
                    name=projection.name,
                    mode="background",
                    poll_interval=poll_interval,
                    max_poll_interval=max_poll_interval,
                    lease_ttl=lease_ttl,
                    **options,
                )
            )
        log.info("worker running %s", ", ".join(s.name for s in subscriptions))
        while not failures and not stop.wait(CHECK_EVERY):
            failures = _failures(subscriptions)
    finally:
        for subscription in subscriptions:
            subscription.stop()
        store.close()
    if failures:
        error = WorkerFailed(failures)
        log.error("%s", error)
        raise error
    return subscriptions


def _failures(subscriptions: Sequence[Subscription]) -> list[tuple[str, BaseException]]:
    """The subscriptions whose driver stopped for good, with the error that stopped it."""
    found = []
    for subscription in subscriptions:
        if subscription.error is not None:
            found.append((subscription.name, subscription.error))
    return found
