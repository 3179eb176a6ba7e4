"""Telling "the read model is unreachable" from "this statement is wrong".

A SQL projection retries an event whose failure means its database is away
(and parks nothing), and parks an event whose handler is wrong after its
retries. SQLAlchemy's classes do not tell the two apart: on SQLite a missing
table is an ``OperationalError``, like a locked database. So the DBAPI error
underneath is asked: SQLite's result code, PostgreSQL's SQLSTATE.

Pure: no I/O, so that the asyncio face shares it.
"""

from __future__ import annotations

import sqlalchemy.exc

__all__ = ["is_outage", "lost_a_race"]

_UNREACHABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

# SQLite primary result codes (the low byte of the extended code) that mean the
# database file cannot be used now, whatever the statement: retrying each event
# until someone mends the storage parks nothing that a handler did not break.
_SQLITE_OUTAGES = frozenset(
    {
        5,  # SQLITE_BUSY: another connection holds the lock
        6,  # SQLITE_LOCKED: a conflict within the same connection or a shared cache
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: the file or its directory cannot be written
        9,  # SQLITE_INTERRUPT
        10,  # SQLITE_IOERR: the disk, or a network file system, failed
        11,  # SQLITE_CORRUPT: the file is damaged
        13,  # SQLITE_FULL: the disk is full
        14,  # SQLITE_CANTOPEN: the file (or its directory) cannot be opened now
        15,  # SQLITE_PROTOCOL: a locking race
        17,  # SQLITE_SCHEMA: the schema changed under a prepared statement
        26,  # SQLITE_NOTADB: the path names something that is not a database
    }
)

# PostgreSQL SQLSTATE classes and codes that mean the server or the
# connection is away, overloaded, or refused this transaction for reasons of
# concurrency; any other SQLSTATE (42P01 undefined table, 23505 unique
# violation, 22P02 invalid text...) is the statement's fault.
_POSTGRES_CLASSES = (
    "08",  # connection exception
    "53",  # insufficient resources: disk full, out of memory, too many connections
    "57P",  # operator intervention: admin or crash shutdown, cannot connect now
)
_POSTGRES_CODES = frozenset(
    {
        "40001",  # serialization failure
        "40P01",  # deadlock detected
        "55P03",  # lock not available (lock_timeout)
        "25006",  # read-only transaction: a standby, during a failover
    }
)


def is_outage(error: BaseException) -> bool:
    """True when ``error`` means the read-model database is unreachable or busy.

    Unreachable: the connection was refused or lost, the server is shutting
    down or out of resources, the database is locked or busy, a transaction
    lost a deadlock or a serialization race. Such an event is retried until
    the database is back, never parked. Anything else (a missing table or
    column, a constraint violation, a bug in the handler) is the event's
    failure: retried, then parked.

    For a DBAPI other than sqlite3 and psycopg, an ``OperationalError`` or
    ``InterfaceError`` counts as an outage, as SQLAlchemy's classes suggest.
    """
    if isinstance(error, sqlalchemy.exc.TimeoutError):  # the pool had no connection to give
        return True
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    if error.connection_invalidated:  # the dialect saw the connection drop
        return True
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_OUTAGES
    if _is_psycopg(original):
        state = getattr(original, "sqlstate", None)
        if state is None:  # raised by the client: no connection, or it broke
            return isinstance(error, _UNREACHABLE)
        return state in _POSTGRES_CODES or state.startswith(_POSTGRES_CLASSES)
    state = getattr(original, "pgcode", None)  # psycopg2
    if isinstance(state, str):
        return state in _POSTGRES_CODES or state.startswith(_POSTGRES_CLASSES)
    return isinstance(error, _UNREACHABLE)


_RACES = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


def lost_a_race(error: BaseException) -> bool:
    """True when PostgreSQL aborted the transaction to resolve a deadlock or a
    serialization race: running the same transaction again may succeed."""
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return state in _RACES


def _is_psycopg(error: object) -> bool:
    return type(error).__module__.split(".", 1)[0] == "psycopg"
