"""The PostgreSQL engine: many concurrent writers, a gap-free global log."""

from conduit.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
