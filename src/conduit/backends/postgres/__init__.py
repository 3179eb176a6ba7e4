"""The PostgreSQL engine: many concurrent writers, a gap-free global log.

:class:`PostgresBackend` serves ``EventStore`` (psycopg's ConnectionPool),
:class:`~conduit.backends.postgres.aio.AsyncPostgresBackend` serves
``AsyncEventStore`` (its AsyncConnectionPool); both run the same operations
(:mod:`conduit.backends.postgres.engine`).
"""

from conduit.backends.postgres.sync import PostgresBackend

__all__ = ["PostgresBackend"]
