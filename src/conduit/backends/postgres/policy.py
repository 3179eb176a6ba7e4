"""What the PostgreSQL executors decide about a failed statement, free of I/O.

Both executors (:mod:`~conduit.backends.postgres.sync`, :mod:`~conduit.backends.postgres.aio`)
ask these functions, so that a driver error means the same under either face.
"""

from __future__ import annotations

from typing import Literal

import psycopg
from psycopg_pool.base import AttemptWithBackoff

from conduit.backends.postgres.effects import Query
from conduit.errors import BackendError, StoreUnavailable
from conduit.masking import mask_password

__all__ = ["QuickBackoff", "after_failure", "lost_server", "no_connection", "replica_failed"]

_SERVER_AWAY = ("57P01", "57P02", "57P03", "53300", "25006")
"""Shut down by an administrator, crashed, starting up (or in recovery), out of
connection slots; and a read-only transaction: a connection that reached a
standby (a primary being demoted, or promoted too late)."""

_RECOVERY_CONFLICT = "40001"
"""A hot standby cancels a read that conflicts with the WAL it replays."""

Decision = Literal["expected", "retry", "translate"]


def after_failure(exc: psycopg.Error, query: Query, *, broken: bool, attempt: int) -> Decision:
    """What to do when ``query`` raised ``exc`` on its ``attempt``-th try.

    ``expected``: a SQLSTATE the operation handles itself (thrown into it as is);
    ``retry``: the connection broke (a server restart): replace the pool's dead
    connections and try once more — every operation is safe to repeat, appends
    included, since a retried batch carries the same event ids; ``translate``:
    raise the matching Conduit error.
    """
    if exc.sqlstate is not None and exc.sqlstate in query.expect:
        return "expected"
    if attempt == 1 and broken:
        return "retry"
    return "translate"


def lost_server(exc: psycopg.Error, *, broken: bool) -> bool:
    """Whether ``exc`` means the server went away or cannot serve (rather than a
    statement that failed): the store is unavailable, for now."""
    if broken:
        return True
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in _SERVER_AWAY


def replica_failed(exc: psycopg.Error, *, broken: bool) -> bool:
    """Whether a replica's failure sends the read elsewhere (another replica, the
    primary) instead of raising."""
    return lost_server(exc, broken=broken) or exc.sqlstate == _RECOVERY_CONFLICT


def no_connection(
    conninfo: str,
    pool_size: int,
    timeout: Exception,
    connect_error: Exception | None,
    *,
    in_use: int,
) -> BackendError:
    """The error of a pool that timed out: the store is unavailable when a direct
    connection fails too (``connect_error``, the server's own error), or when the
    pool is still reconnecting after an outage (fewer than ``pool_size`` of its
    connections are ``in_use``); else the pool is full."""
    if connect_error is not None:
        return StoreUnavailable(
            f"the store is unavailable: cannot connect to PostgreSQL at "
            f"{mask_password(conninfo)}: {connect_error}"
        )
    if in_use < pool_size:
        return StoreUnavailable(
            f"the store is unavailable: reconnecting to PostgreSQL after an outage ({timeout})"
        )
    return BackendError(
        f"no PostgreSQL connection free in the pool (pool_size {pool_size}): {timeout}"
    )


class QuickBackoff(AttemptWithBackoff):
    """How a pool tries to reconnect after an outage: soon and then every second at most,
    rather than psycopg_pool's doubling delays (1, 2, 4, 8 s...), so that a store
    whose server restarted or failed over takes writes again within a second of it."""

    INITIAL_DELAY = 0.1
    MAX_DELAY = 1.0

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.MAX_DELAY)
