"""The effects the PostgreSQL engine's operations yield, performed by its executors.

The operations (:mod:`conduit.backends.postgres.engine`) say *what* to run; an
executor (:mod:`~conduit.backends.postgres.sync` with psycopg's
``ConnectionPool``, :mod:`~conduit.backends.postgres.aio` with its
``AsyncConnectionPool``) runs it and hands back the rows. Both executors
translate a driver error into a Conduit error (:func:`~.errors.translate`),
except the SQLSTATEs a statement ``expects``, which are thrown into the
operation as psycopg raised them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from conduit.core.effects import Effect, Op

__all__ = ["Atomic", "Fetch", "Query", "ReplicaUnavailable", "Session", "SessionLost"]

Fetch = Literal["one", "all", "rowcount", "none"]
"""What a statement's outcome is: its first row, every row, the rows it touched, nothing."""


class Query(Effect):
    """Run one statement (autocommitted) on a pooled connection.

    ``fresh``: on a cursor of its own, released with its rows (pages of events
    and snapshots: a kept cursor would hold them in an idle connection).
    ``expect``: SQLSTATEs thrown into the operation untranslated.
    ``check``: make sure the schema exists at this release's version first.
    ``binary``: results in binary format (every statement but scripts of
    several statements, which the simple query protocol runs).
    ``replica``: run it on that read replica (its index in the settings'
    ``replicas``) instead of the primary; a replica that cannot answer is
    thrown into the operation as :class:`ReplicaUnavailable`.
    """

    __slots__ = ("binary", "check", "expect", "fetch", "fresh", "params", "replica", "sql")

    def __init__(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        fetch: Fetch = "one",
        *,
        fresh: bool = False,
        expect: tuple[str, ...] = (),
        check: bool = True,
        binary: bool = True,
        replica: int | None = None,
    ) -> None:
        self.binary = binary
        self.replica = replica
        self.sql = sql
        self.params = params
        self.fetch = fetch
        self.fresh = fresh
        self.expect = expect
        self.check = check


class Atomic(Effect):
    """Run an operation's statements in one transaction, on one connection.

    The operation's :class:`Query` effects run inside the transaction, which
    commits when the operation returns and rolls back when it raises.
    """

    __slots__ = ("op",)

    def __init__(self, op: Op[Any]) -> None:
        self.op = op


class Session(Effect):
    """Run a statement on the engine's own session (the one holding its leases).

    A driver error ends that session (its advisory locks go with it) and is
    thrown into the operation as :class:`SessionLost`.
    """

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.sql = sql
        self.params = params


class SessionLost(Exception):
    """The engine's lease session failed; every lease it held is gone."""


class ReplicaUnavailable(Exception):
    """A read replica did not answer (unreachable, restarting, or it cancelled the
    statement in a conflict with its recovery): the read goes elsewhere."""

    def __init__(self, replica: int, why: str) -> None:
        super().__init__(why)
        self.replica = replica
