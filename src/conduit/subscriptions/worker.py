"""Worker processes: run projections until SIGTERM or SIGINT (``conduit run``)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from conduit.errors import ConfigurationError
from conduit.importing import import_attribute
from conduit.subscriptions.drivers import POLL_INTERVAL

if TYPE_CHECKING:
    from conduit.store import EventStore
    from conduit.subscriptions.drivers import Subscription

__all__ = ["load_projections", "run_worker"]

log = logging.getLogger("conduit.worker")


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
    lease_ttl: float = 10.0,
    handle_signals: bool = True,
    **options: Any,
) -> list[Subscription]:
    """Drive projections until ``stop`` is set (or SIGTERM/SIGINT arrives).

    Each projection runs in a background thread that holds its lease, so that
    of several workers exactly one drives it; the others wait to take over.
    On stop, each finishes the batch at hand, releases its lease, and the
    store is closed. Returns the subscriptions, stopped.
    """
    stop = stop or threading.Event()
    if handle_signals and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _: FrameType | None) -> None:
            log.info("received signal %d: stopping after the batch at hand", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    subscriptions: list[Subscription] = [
        store.subscribe(
            projection,
            mode="background",
            poll_interval=poll_interval,
            lease_ttl=lease_ttl,
            **options,
        )
        for projection in projections
    ]
    log.info("worker running %s", ", ".join(s.name for s in subscriptions))
    while not stop.wait(0.5):
        for subscription in subscriptions:
            if subscription.error is not None:
                log.error("projection %r stopped: %s", subscription.name, subscription.error)
    for subscription in subscriptions:
        subscription.stop()
    store.close()
    return subscriptions
