"""The PostgreSQL engine's durable-subscription operations: checkpoints, parked
events, leases. Free of I/O (see :mod:`conduit.core.effects`).

Checkpoints and parked events are rows of the store's schema. The driver of a
subscription is elected with a session advisory lock: every lease of an
engine lives on one session of its own (:class:`~.effects.Session`), so
standing by costs one small statement a second, not a connection; when that
session ends (the holder died), its locks go with it and another driver takes
over at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from conduit.backends.postgres import rows
from conduit.backends.postgres.effects import Query, Session, SessionLost
from conduit.backends.postgres.sql import SubscriptionStatements
from conduit.core.effects import Op
from conduit.events import Event, ParkedEvent, SubscriptionState

__all__ = ["SubscriptionOps", "lease_key"]

log = logging.getLogger("conduit.postgres")


class SubscriptionOps:
    """Mixed into :class:`~conduit.backends.postgres.engine.PostgresEngine`."""

    def __init__(self, schema: str) -> None:
        self.subs = SubscriptionStatements(schema)
        self._lease_schema = schema
        self._lease_lock = threading.Lock()
        self._lease_holders: dict[str, str] = {}
        """The subscriptions whose lease this engine's session holds, and their owners:
        session locks are re-entrant, so two owners in this process must not both
        get one from the shared session."""

    def load_checkpoint(self, name: str) -> Op[int | None]:
        """The position a subscription has handled up to, ``None`` if it never ran."""
        row = yield Query(self.subs.load_checkpoint, (name,))
        return int(row[0]) if row else None

    def save_checkpoint(self, name: str, position: int, *, expected: int | None) -> Op[bool]:
        """Move a subscription's checkpoint if it is still at ``expected`` (compare-and-set)."""
        params: tuple[Any, ...]
        if expected is None:
            sql, params = self.subs.insert_checkpoint, (name, position)
        else:
            sql, params = self.subs.move_checkpoint, (position, name, expected)
        count = yield Query(sql, params, "rowcount")
        return bool(count == 1)

    def checkpoints(self) -> Op[list[tuple[str, int]]]:
        """Every subscription's name and checkpoint, by name."""
        found = yield Query(self.subs.checkpoints, fetch="all")
        return [(name, int(position)) for name, position in found]

    def save_subscription_state(self, name: str, state: str, detail: str | None) -> Op[None]:
        """Keep what a subscription's driver is doing now, with the time."""
        yield Query(self.subs.save_state, (name, state, detail), "none")

    def subscription_states(self) -> Op[list[SubscriptionState]]:
        """Every subscription state kept, by name."""
        found = yield Query(self.subs.states, fetch="all")
        return [SubscriptionState(*row) for row in found]

    def park(
        self, subscription: str, event: Event, *, error: str, traceback: str, attempts: int
    ) -> Op[None]:
        """Keep an event a subscription gave up on (replacing an earlier parking of it)."""
        params = (subscription, event.id, event.position, error, traceback, attempts)
        yield Query(self.subs.park, params, "none")

    def parked(self, *, subscription: str | None, after: int, limit: int) -> Op[list[ParkedEvent]]:
        """A page of parked events, by id, after ``after``."""
        sql = self.subs.parked(subscription=subscription is not None)
        params: tuple[Any, ...] = (
            (after, limit) if subscription is None else (after, subscription, limit)
        )
        found = yield Query(sql, params, "all", fresh=True)
        return rows.parked(found)

    def request_retry(self, parked_id: int | None, *, subscription: str | None) -> Op[int]:
        """Ask the subscription's driver to try parked events again; returns how many."""
        sql = self.subs.request_retry(
            one=parked_id is not None, subscription=subscription is not None
        )
        params = [value for value in (parked_id, subscription) if value is not None]
        count: int = yield Query(sql, params, "rowcount")
        return count

    def unpark(self, parked_id: int) -> Op[bool]:
        """Forget a parked event; False if unknown."""
        count = yield Query(self.subs.unpark, (parked_id,), "rowcount")
        return bool(count == 1)

    # -- leases ----------------------------------------------------------------

    def try_lease(self, name: str, owner: str, ttl: float) -> Op[bool]:
        """Take or keep a subscription's session lock; False if another driver holds it.

        ``ttl`` does not apply: the lease lasts as long as the session. When the
        session failed, every lease it held is lost (False), and the next
        attempt opens a new one.
        """
        with self._lease_lock:
            holder = self._lease_holders.get(name)
        if holder is not None and holder != owner:
            return False
        try:
            if holder == owner:
                yield Session("SELECT 1")  # still alive: the lock is still ours
                return True
            row = yield Session(self.subs.try_leader_lock, (self._lease_key(name),))
        except SessionLost as lost:
            log.warning("the lease session failed (%s); its leases are lost", lost)
            with self._lease_lock:
                self._lease_holders.clear()
            return False
        if not row or not row[0]:
            return False
        with self._lease_lock:
            raced = self._lease_holders.get(name, owner) != owner
            if not raced:
                self._lease_holders[name] = owner
        if raced:
            # Another owner of this process took it meanwhile, on the same session,
            # which now holds the lock twice: give this hold back.
            try:
                yield Session(self.subs.leader_unlock, (self._lease_key(name),))
            except SessionLost:
                self.lost_session()
            return False
        return True

    def release_lease(self, name: str, owner: str) -> Op[None]:
        """Give up a lease taken with :meth:`try_lease`."""
        with self._lease_lock:
            if self._lease_holders.get(name) != owner:
                return
            del self._lease_holders[name]
        try:
            yield Session(self.subs.leader_unlock, (self._lease_key(name),))
        except SessionLost:
            with self._lease_lock:
                self._lease_holders.clear()  # the session's end released every lock

    def leases_held(self, names: Sequence[str]) -> Op[set[str]]:
        """Those of ``names`` whose session lock some session of the server holds now."""
        rows = yield Query(self.subs.held_leader_locks, fetch="all")
        held = {(int(high) << 32) | int(low) for high, low in rows}
        return {name for name in names if self._lease_key(name) & _KEY_BITS in held}

    def lease_holders(self) -> dict[str, str]:
        """The subscriptions whose lease this engine holds, and their owners."""
        with self._lease_lock:
            return dict(self._lease_holders)

    def lost_session(self) -> None:
        """Called by an executor whose lease session ended: its leases are gone."""
        with self._lease_lock:
            self._lease_holders.clear()

    def _lease_key(self, name: str) -> int:
        return lease_key(self._lease_schema, name)


_KEY_BITS = (1 << 64) - 1
"""A signed lease key as pg_locks shows it: unsigned, in two 32-bit halves."""


def lease_key(schema: str, name: str) -> int:
    """The 64-bit advisory lock key of a subscription's lease in a schema.

    The first eight bytes of the SHA-256 of ``conduit lease``, the schema and
    the name (NUL-separated), as a signed ``bigint``: two names share a key
    with a chance of about 2^-64 per pair, where the 32-bit ``hashtext`` of
    earlier releases let a few tens of thousands of names collide (and the
    projection whose lock another held never ran).
    """
    digest = hashlib.sha256(f"conduit lease\0{schema}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
