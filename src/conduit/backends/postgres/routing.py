"""Where the PostgreSQL engine's reads run, and how long they wait for this store's own
writes. Free of I/O (see :mod:`conduit.core.effects`).

Writes, checkpoints, parked events and leases always run on the primary. Reads
(stream pages, pages of the global log, stream versions, lists of streams,
counts, snapshots) run on a read replica when the store has some, each
operation on the next replica in turn; a replica that does not answer is left
alone for :data:`REPLICA_PAUSE` seconds, and when none answers the read runs
on the primary.

Read-your-writes. After this store wrote, a read through a replica first
waits, bounded by ``read_your_writes_timeout``, until that replica has
replayed the primary's WAL up to a position read after the write returned
(so at or past the write's commit record); when the wait runs out the read
goes to the primary. A read of the global log then also waits for the
replica's reader horizon to pass this store's last transaction, exactly as on
the primary (the horizon holds on a hot standby: docs/design.md §10).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from conduit.backends.postgres.config import PostgresConfig
from conduit.backends.postgres.effects import Query, ReplicaUnavailable
from conduit.backends.postgres.sql import Statements
from conduit.core.effects import Op, Sleep
from conduit.errors import BackendError

__all__ = ["REPLICA_PAUSE", "Routing"]

log = logging.getLogger("conduit.postgres")

T = TypeVar("T")

REPLICA_PAUSE = 5.0
"""Seconds a replica that did not answer is left out of the reads before it is tried again."""

REPLICA_STATE = (
    # A server that is not in recovery (a replica URL that reaches a promoted
    # standby, say) has no replay position: its own WAL position stands in.
    "SELECT (coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn()) - '0/0'::pg_lsn)::bigint,"
    " pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
)
"""How far a replica has replayed the primary's WAL, and its reader horizon."""

WRITTEN_LSN = (
    # With synchronous_commit = off a commit returns before its WAL is flushed:
    # only the insert position is then sure to be past it.
    "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off'"
    " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END"
    " - '0/0'::pg_lsn)::bigint"
)
"""A WAL position of the primary at or past every commit that has returned."""

Target = int | None
"""Where a read runs: a replica's index in the settings' ``replicas``, or ``None``
for the primary."""


class Routing:
    """Mixed into :class:`~conduit.backends.postgres.engine.PostgresEngine`: the state
    of its reads (this store's writes, the horizons seen, the replicas' health)."""

    config: PostgresConfig
    sql: Statements

    def __init__(self, config: PostgresConfig) -> None:
        count = len(config.replicas)
        self._route_lock = threading.Lock()
        self._turn = 0
        self._down_until = [0.0] * count
        self._replayed = [0] * count  # the highest replay position seen, per replica
        self._lsn_gave_up = [0] * count  # the newest target a replay wait ran out for
        self._writes = 0  # how many writes this store made (with replicas only)
        self._lsn_writes = 0  # how many of them ``_lsn_target`` covers
        self._lsn_target = 0
        self._last_xid = 0  # the newest transaction of this store's own pushes
        self._horizon_seen: dict[Target, int] = {}  # the highest horizon seen (it only grows)
        self._gave_up_xid: dict[Target, int] = {}  # the newest own push a horizon wait ran out for

    # -- this store's writes ---------------------------------------------------

    def _remember_xid(self, xid: int) -> None:
        """Note this store's newest transaction: its reads wait for it."""
        with self._route_lock:
            self._last_xid = max(self._last_xid, xid)
            self._writes += 1

    def _wrote(self) -> None:
        """Note a write that is not a push (a snapshot, a rewrite): replica reads wait for it."""
        with self._route_lock:
            self._writes += 1

    # -- choosing where a read runs --------------------------------------------

    def routed(self, read: Callable[[Target], Op[T]], *, wait: bool, log_read: bool) -> Op[T]:
        """Run ``read`` on a replica, or on the primary when none answers or has replayed
        this store's writes in time.

        ``wait``: wait (bounded) for this store's own writes first; ``log_read``: it
        reads the global log, so this store's last transaction must also be below
        the reader horizon.
        """
        deadline = time.monotonic() + self.config.read_your_writes_timeout
        for replica in self._replica_order():
            try:
                if wait and not (yield from self._replica_caught_up(replica, log_read, deadline)):
                    break  # behind: the primary has this store's writes
                return (yield from read(replica))
            except ReplicaUnavailable as exc:
                self._leave_out(replica, exc)
        if wait and log_read:
            yield from self._wait_for_horizon(None, deadline)
        return (yield from read(None))

    def _replica_order(self) -> list[int]:
        """The replicas to try, the next in turn first; those left out are skipped."""
        count = len(self._down_until)
        if not count:
            return []
        now = time.monotonic()
        with self._route_lock:
            first = self._turn
            self._turn = (first + 1) % count
            down = list(self._down_until)
        order = [(first + step) % count for step in range(count)]
        return [replica for replica in order if down[replica] <= now]

    def _leave_out(self, replica: int, exc: ReplicaUnavailable) -> None:
        with self._route_lock:
            self._down_until[replica] = time.monotonic() + REPLICA_PAUSE
        log.warning(
            "replica %d did not answer (%s); reads go elsewhere for %.0f s",
            replica + 1,
            exc,
            REPLICA_PAUSE,
        )

    # -- read-your-writes ------------------------------------------------------

    def _own_lsn(self) -> Op[int | None]:
        """A WAL position of the primary past this store's writes; ``None`` when the
        primary cannot say (it is away: the replica is all there is)."""
        with self._route_lock:
            writes = self._writes
            if self._lsn_writes >= writes:
                return self._lsn_target
        try:
            row = yield Query(WRITTEN_LSN)
        except BackendError as exc:
            log.info("cannot read the primary's WAL position (%s); reading a replica", exc)
            return None
        lsn = int(row[0])
        with self._route_lock:
            if writes > self._lsn_writes:
                self._lsn_writes = writes
            self._lsn_target = max(self._lsn_target, lsn)
            return self._lsn_target

    def _replica_caught_up(self, replica: int, log_read: bool, deadline: float) -> Op[bool]:
        """Wait until ``replica`` has replayed this store's writes (False: it has not
        within the deadline, or a wait for them ran out before)."""
        if not self._writes:
            return True
        target = yield from self._own_lsn()
        if target is None:
            return True
        with self._route_lock:
            replayed = self._replayed[replica]
            hopeless = target <= self._lsn_gave_up[replica]
        delay = 0.0005
        while replayed < target:
            row = yield Query(REPLICA_STATE, replica=replica)
            replayed, horizon = int(row[0]), int(row[1])
            with self._route_lock:
                self._replayed[replica] = max(self._replayed[replica], replayed)
                seen = self._horizon_seen.get(replica, 0)
                self._horizon_seen[replica] = max(seen, horizon)
            if replayed >= target:
                break
            if hopeless or time.monotonic() >= deadline:
                with self._route_lock:
                    self._lsn_gave_up[replica] = max(self._lsn_gave_up[replica], target)
                if not hopeless:
                    log.warning(
                        "replica %d has not replayed this store's last write after %.1f s; "
                        "reading the primary",
                        replica + 1,
                        self.config.read_your_writes_timeout,
                    )
                return False
            yield Sleep(delay)
            delay = min(delay * 2, 0.05)
        if log_read:
            yield from self._wait_for_horizon(replica, deadline)
        return True

    def _wait_for_horizon(self, on: Target, deadline: float | None = None) -> Op[None]:
        """Wait, bounded, until the reader horizon of ``on`` has passed this store's
        last push.

        Once a wait has run out for a push (a transaction open elsewhere on the
        server holds the horizon back), later reads do not wait for that push
        again: only a newer push of this store makes them wait, so that a long
        transaction costs one bounded wait per push, not one per read.
        """
        own = self._last_xid
        if own < self._horizon_seen.get(on, 0) or own <= self._gave_up_xid.get(on, 0):
            return
        if deadline is None:
            deadline = time.monotonic() + self.config.read_your_writes_timeout
        delay = 0.0005
        while True:
            row = yield Query(self.sql.horizon, replica=on)
            horizon = int(row[0]) if row else 0
            with self._route_lock:
                self._horizon_seen[on] = max(self._horizon_seen.get(on, 0), horizon)
            if own < horizon:
                return
            if time.monotonic() >= deadline:
                with self._route_lock:
                    self._gave_up_xid[on] = max(self._gave_up_xid.get(on, 0), own)
                log.warning(
                    "the global log's reader horizon has not passed this store's last push "
                    "after %.1f s: a transaction is open elsewhere on the server "
                    "(see idle_in_transaction_session_timeout)",
                    self.config.read_your_writes_timeout,
                )
                return
            yield Sleep(delay)
            delay = min(delay * 2, 0.05)

    def replicas_state(self) -> dict[str, Any]:
        """For tools and tests: the replicas left out (seconds until they are tried again)
        and the replay positions seen."""
        now = time.monotonic()
        with self._route_lock:
            return {
                "left_out": [max(0.0, until - now) for until in self._down_until],
                "replayed": list(self._replayed),
            }
