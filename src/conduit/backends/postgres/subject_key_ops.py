"""The PostgreSQL engine's operations on subjects' keys (personal data). Free of I/O.

Keys live in a table of their own, ``subject_keys`` (migration 010), apart from
the events and their append functions. Forgetting sets a key to ``NULL`` and
then vacuums the table, so that the row version that held the key is removed
from the table's pages instead of waiting for autovacuum (docs/personal-data.md
says what may remain elsewhere: WAL segments, backups).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conduit.backends.postgres.effects import Atomic, Query
from conduit.backends.postgres.sql import quote_ident
from conduit.core.effects import Op
from conduit.personal import SubjectKey

__all__ = ["SubjectKeyOps", "SubjectKeyStatements"]


@dataclass(frozen=True, slots=True)
class SubjectKeyStatements:
    """The statements on subjects' keys, for one schema."""

    schema: str

    @property
    def table(self) -> str:
        return f"{quote_ident(self.schema)}.subject_keys"

    @property
    def keys(self) -> str:
        return f"SELECT subject, key FROM {self.table} WHERE subject = ANY(%s::text[])"

    @property
    def add(self) -> str:
        return (
            f"INSERT INTO {self.table} AS k (subject, key, created_at, forgotten_at)"
            " SELECT s, k, coalesce(c, clock_timestamp()),"
            " CASE WHEN k IS NULL THEN coalesce(f, clock_timestamp()) END"
            " FROM unnest(%s::text[], %s::bytea[], %s::timestamptz[], %s::timestamptz[])"
            " AS given(s, k, c, f)"
            " ON CONFLICT (subject) DO UPDATE SET key = NULL, forgotten_at = excluded.forgotten_at"
            " WHERE excluded.key IS NULL AND k.key IS NOT NULL"
        )

    @property
    def keep(self) -> str:
        """New keys kept for the subjects without a row, and the keys of all of them, in
        one autocommitted statement that does not wait for the WAL flush (see
        :meth:`SubjectKeyOps._add`). The outer query sees the rows from before the
        statement; the inserted ones come from ``added``; a row another writer
        committed meanwhile is in neither (its subject is looked up again)."""
        return (
            "WITH off AS (SELECT set_config('synchronous_commit', 'off', true)),"
            " given AS (SELECT s, k FROM unnest(%s::text[], %s::bytea[]) AS g(s, k)),"
            f" added AS (INSERT INTO {self.table} (subject, key, created_at)"
            " SELECT given.s, given.k, clock_timestamp() FROM given, off"
            " ON CONFLICT (subject) DO NOTHING RETURNING subject, key)"
            " SELECT subject, key FROM added"
            f" UNION ALL SELECT t.subject, t.key FROM {self.table} AS t"
            " JOIN given ON given.s = t.subject"
        )

    @property
    def lock_key(self) -> str:
        return f"SELECT key IS NOT NULL FROM {self.table} WHERE subject = %s FOR UPDATE"

    @property
    def forget(self) -> str:
        return (
            f"INSERT INTO {self.table} AS k (subject, key, forgotten_at)"
            " VALUES (%s, NULL, clock_timestamp())"
            " ON CONFLICT (subject) DO UPDATE SET key = NULL,"
            " forgotten_at = coalesce(k.forgotten_at, excluded.forgotten_at)"
        )

    @property
    def vacuum(self) -> str:
        return f"VACUUM {self.table}"

    @property
    def page(self) -> str:
        return (
            f"SELECT subject, key, created_at, forgotten_at FROM {self.table}"
            " WHERE subject > %s ORDER BY subject LIMIT %s"
        )


class SubjectKeyOps:
    """Mixed into :class:`~conduit.backends.postgres.engine.PostgresEngine`."""

    schema: str

    @property
    def key_sql(self) -> SubjectKeyStatements:
        return SubjectKeyStatements(self.schema)

    def subject_keys(self, subjects: Sequence[str]) -> Op[dict[str, bytes | None]]:
        """The keys of those subjects that have a row: ``None`` for a forgotten one."""
        found = yield Query(self.key_sql.keys, (list(subjects),), "all")
        return {subject: None if key is None else bytes(key) for subject, key in found}

    def keep_subject_keys(self, keys: Sequence[SubjectKey]) -> Op[dict[str, bytes | None]]:
        """Keep new keys for subjects that have none; the keys of them all, but those
        that lost a race to another writer's first key (one round trip)."""
        params = ([k.subject for k in keys], [k.key for k in keys])
        found = yield Query(self.key_sql.keep, params, "all")
        return {subject: None if key is None else bytes(key) for subject, key in found}

    def add_subject_keys(self, keys: Sequence[SubjectKey]) -> Op[None]:
        """Keep keys of subjects that have none yet; a tombstone also replaces a live key."""
        if not keys:
            return
        params = (
            [k.subject for k in keys],
            [k.key for k in keys],
            [k.created_at for k in keys],
            [k.forgotten_at for k in keys],
        )
        yield Atomic(self._add(params))
        if any(k.key is None for k in keys):
            yield Query(self.key_sql.vacuum, fetch="none", binary=False)

    def _add(self, params: tuple[Any, ...]) -> Op[None]:
        # No WAL flush of its own: the commit of the first event sealed with these keys
        # flushes the WAL up to it, these keys' records included (the WAL is one
        # sequence). A crash before then loses keys nothing was sealed with yet.
        yield Query("SET LOCAL synchronous_commit = off", fetch="none", binary=False)
        yield Query(self.key_sql.add, params, "none")

    def forget_subject(self, subject: str) -> Op[bool]:
        """Destroy a subject's key, keeping a tombstone; True if a key was destroyed."""
        destroyed = yield Atomic(self._forget(subject))
        yield Query(self.key_sql.vacuum, fetch="none", binary=False)
        return bool(destroyed)

    def _forget(self, subject: str) -> Op[bool]:
        row = yield Query(self.key_sql.lock_key, (subject,))
        yield Query(self.key_sql.forget, (subject,), "none")
        return bool(row is not None and row[0])

    def subject_key_page(self, *, after: str | None, limit: int) -> Op[list[SubjectKey]]:
        """A page of keys and tombstones, by subject, after ``after``."""
        found = yield Query(self.key_sql.page, ("" if after is None else after, limit), "all")
        return [
            SubjectKey(subject, None if key is None else bytes(key), created, forgotten)
            for subject, key, created, forgotten in found
        ]
