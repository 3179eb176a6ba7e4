"""What the PostgreSQL executors decide about a failed statement, free of I/O.

Both executors (:mod:`~conduit.backends.postgres.sync`, :mod:`~conduit.backends.postgres.aio`)
ask these functions, so that a driver error means the same under either face.
"""

from __future__ import annotations

from typing import Literal

import psycopg

from conduit.backends.postgres.effects import Query
from conduit.masking import mask_password

__all__ = ["after_failure", "no_connection"]

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


def no_connection(
    conninfo: str, pool_size: int, timeout: Exception, connect_error: Exception | None
) -> str:
    """The message of a pool that timed out: the server's own error when a direct
    connection fails too (``connect_error``), else a full pool."""
    if connect_error is not None:
        return f"cannot connect to PostgreSQL at {mask_password(conninfo)}: {connect_error}"
    return f"no PostgreSQL connection free in the pool (pool_size {pool_size}): {timeout}"
