"""PostgreSQL's errors translated into Conduit's, at the engine's boundary. Free of I/O."""

from __future__ import annotations

import psycopg
import psycopg.errors

from conduit.backends.postgres.policy import lost_server
from conduit.errors import BackendError, ConduitError, SchemaError, StoreUnavailable, StreamDeleted
from conduit.masking import hide_passwords

__all__ = ["CONDITION_FAILED", "STREAM_DELETED", "UNIQUE_VIOLATION", "WRONG_VERSION", "translate"]

WRONG_VERSION = "CD409"
"""Raised by the append functions, with the stream's actual version as its detail."""

CONDITION_FAILED = "CD412"
"""Raised by ``append_conditional``, with the first matching event's position as its
detail."""

READ_ONLY = "25006"
"""A write on a hot standby (or a primary being demoted)."""
STREAM_DELETED = "CD404"
"""Raised by the streams row's trigger when an append would move a hard-deleted stream,
with the stream id as its detail."""

UNIQUE_VIOLATION = "23505"
"""An event id already recorded."""


def translate(
    exc: psycopg.Error, schema: str, conninfo: str = "", *, broken: bool = False
) -> ConduitError:
    """The Conduit error a driver error stands for (the caller raises it ``from exc``).

    ``broken``: the connection it ran on broke. A server that went away (or
    cannot serve yet: starting up, shutting down, a standby) is a
    :class:`~conduit.errors.StoreUnavailable`.

    The driver's message may quote the connection string (libpq does, for a
    malformed one): the password of ``conninfo`` never reaches the message.
    """
    text = hide_passwords(str(exc), [conninfo]) if conninfo else str(exc)
    if exc.sqlstate == STREAM_DELETED:
        return StreamDeleted(exc.diag.message_detail)
    if isinstance(
        exc,
        psycopg.errors.UndefinedTable
        | psycopg.errors.UndefinedFunction
        | psycopg.errors.InvalidSchemaName,
    ):
        return SchemaError(
            f"the Conduit schema {schema!r} is missing or incomplete ({text}); "
            "create it with `conduit init URL` or EventStore.setup()"
        )
    if lost_server(exc, broken=broken):
        if exc.sqlstate == READ_ONLY:
            return StoreUnavailable(
                "the store is unavailable: the server is a read-only standby (name every "
                f"node with target_session_attrs=read-write to follow a failover): {text}"
            )
        return StoreUnavailable(f"the store is unavailable: PostgreSQL went away: {text}")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return BackendError(f"PostgreSQL cancelled the statement (statement_timeout): {text}")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return BackendError(f"the stream stayed locked longer than lock_timeout: {text}")
    return BackendError(f"PostgreSQL failed: {text}")
