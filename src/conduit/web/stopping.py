"""``app.state.stopping``: the signal that the server is stopping, which live tails wait on.

The server sets it when it is told to stop (SIGINT, SIGTERM,
:meth:`~conduit.web.server.BackgroundServer.stop`), before it waits for its
connections to end, so that never-ending responses end first; the
application's lifespan sets it at shutdown too. It may be set from any
thread, and awaited in any event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["Stopping"]


class Stopping:
    """A flag set once, from any thread, that coroutines can wait for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def is_set(self) -> bool:
        """Whether the server is stopping."""
        return self._set

    def set(self) -> None:
        """Tell every waiter, in whatever loop it waits."""
        with self._lock:
            self._set = True
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits there
                loop.call_soon_threadsafe(event.set)

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is)."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._set:
                return
            self._waiters.add(entry)
        try:
            await event.wait()
        finally:
            with self._lock:
                self._waiters.discard(entry)
