"""Durable-subscription storage of the in-memory engine (kept as long as the process)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from conduit.events import Event, ParkedEvent, SubscriptionState

__all__ = ["MemorySubscriptions"]


class MemorySubscriptions:
    """Checkpoints, parked events and leases in dicts behind a lock."""

    def __init__(self) -> None:
        self._sub_lock = threading.Lock()
        self._checkpoints: dict[str, int] = {}
        self._parked: dict[int, ParkedEvent] = {}
        self._parked_ids = itertools.count(1)
        self._leases: dict[str, tuple[str, float]] = {}
        self._states: dict[str, SubscriptionState] = {}

    def load_checkpoint(self, name: str) -> int | None:
        with self._sub_lock:
            return self._checkpoints.get(name)

    def save_checkpoint(self, name: str, position: int, *, expected: int | None) -> bool:
        with self._sub_lock:
            if self._checkpoints.get(name) != expected:
                return False
            self._checkpoints[name] = position
            return True

    def checkpoints(self) -> list[tuple[str, int]]:
        with self._sub_lock:
            return sorted(self._checkpoints.items())

    def save_subscription_state(self, name: str, state: str, detail: str | None) -> None:
        with self._sub_lock:
            self._states[name] = SubscriptionState(name, state, detail, datetime.now(UTC))

    def subscription_states(self) -> list[SubscriptionState]:
        with self._sub_lock:
            return [self._states[name] for name in sorted(self._states)]

    def park(
        self, subscription: str, event: Event, *, error: str, traceback: str, attempts: int
    ) -> None:
        with self._sub_lock:
            for key, known in self._parked.items():
                if known.subscription == subscription and known.event_id == event.id:
                    self._parked[key] = replace(
                        known,
                        error=error,
                        traceback=traceback,
                        attempts=attempts,
                        parked_at=datetime.now(UTC),
                        retry_requested=False,
                    )
                    return
            key = next(self._parked_ids)
            self._parked[key] = ParkedEvent(
                key,
                subscription,
                event.id,
                event.position,
                error,
                traceback,
                attempts,
                datetime.now(UTC),
                False,
            )

    def parked(self, *, subscription: str | None, after: int, limit: int) -> list[ParkedEvent]:
        with self._sub_lock:
            found = [
                p
                for key, p in sorted(self._parked.items())
                if key > after and (subscription is None or p.subscription == subscription)
            ]
            return found[:limit]

    def request_retry(self, parked_id: int | None, *, subscription: str | None) -> int:
        with self._sub_lock:
            count = 0
            for key, known in self._parked.items():
                if (parked_id is None or key == parked_id) and (
                    subscription is None or known.subscription == subscription
                ):
                    self._parked[key] = replace(known, retry_requested=True)
                    count += 1
            return count

    def unpark(self, parked_id: int) -> bool:
        with self._sub_lock:
            return self._parked.pop(parked_id, None) is not None

    def try_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._sub_lock:
            holder = self._leases.get(name)
            if holder is None or holder[0] == owner or holder[1] < now:
                self._leases[name] = (owner, now + ttl)
                return True
            return False

    def leases_held(self, names: Sequence[str]) -> set[str]:
        now = time.monotonic()
        with self._sub_lock:
            return {name for name in names if self._leases.get(name, ("", 0.0))[1] >= now}

    def release_lease(self, name: str, owner: str) -> None:
        with self._sub_lock:
            if self._leases.get(name, ("", 0.0))[0] == owner:
                del self._leases[name]
