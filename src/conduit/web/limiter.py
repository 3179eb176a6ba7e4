"""Limiting attempts at the token: a few failures per client address, then 429.

:class:`LoginLimiter` remembers, per client address, the times of its last
failed attempts (a wrong token in the login form or in an ``Authorization``
header). A client with :data:`ATTEMPTS` failures within :data:`WINDOW`
seconds is refused until the oldest of them is that old; a right token does
not lift the lock, so a locked client cannot go on guessing. Memory is
bounded: at most :data:`MAX_CLIENTS` addresses, the least recently seen
forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["ATTEMPTS", "MAX_CLIENTS", "WINDOW", "LoginLimiter"]

ATTEMPTS = 5
"""Failed attempts a client may make within :data:`WINDOW` seconds."""

WINDOW = 300.0
"""Seconds a failed attempt counts against its client."""

MAX_CLIENTS = 10_000
"""Client addresses remembered at most."""


class LoginLimiter:
    """Counts failed attempts at the token per client address.

    Args:
        attempts: failures allowed within ``window`` seconds.
        window: seconds a failure counts.
        max_clients: addresses remembered at most.
        clock: a monotonic clock in seconds (tests move it).
    """

    def __init__(
        self,
        *,
        attempts: int = ATTEMPTS,
        window: float = WINDOW,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or ``None`` if it may now."""
        now = self.clock()
        with self._lock:
            failures = self._recent(client, now)
            if failures is None or len(failures) < self.attempts:
                return None
            return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str) -> None:
        """Count a failed attempt of ``client``."""
        now = self.clock()
        with self._lock:
            failures = self._recent(client, now)
            if failures is None:
                failures = deque(maxlen=self.attempts)
                self._failures[client] = failures
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            failures.append(now)
            self._failures.move_to_end(client)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
