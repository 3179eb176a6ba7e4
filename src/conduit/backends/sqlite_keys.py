"""Subjects' keys of the SQLite engine (personal data, :mod:`conduit.personal`).

A table of its own, ``subject_keys``: a subject's AES key, or ``NULL`` once
it was forgotten (the row stays as a tombstone). Forgetting overwrites the
freed bytes (``PRAGMA secure_delete``) and then checkpoints the WAL into the
database file and truncates it, so that no copy of the key is left in either
file once no other connection holds an old snapshot of it (docs/personal-data.md).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conduit.backends.common import from_micros, to_micros
from conduit.personal import SubjectKey

__all__ = ["SCHEMA_V7", "SQLiteSubjectKeys"]

SCHEMA_V7 = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject      TEXT    PRIMARY KEY,
    key          BLOB,
    created_at   INTEGER NOT NULL,
    forgotten_at INTEGER
) WITHOUT ROWID;
"""

_ADD = (
    "INSERT INTO subject_keys (subject, key, created_at, forgotten_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (subject) DO UPDATE SET key = NULL, forgotten_at = excluded.forgotten_at"
    " WHERE excluded.key IS NULL AND subject_keys.key IS NOT NULL"
)


def _now() -> int:
    return to_micros(datetime.now(UTC))


class SQLiteSubjectKeys:
    """Mixed into the SQLite engine, whose connection helpers it uses."""

    if TYPE_CHECKING:  # provided by SQLiteBackend

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        def _connection(self) -> sqlite3.Connection: ...

        _synchronous: str

    def subject_keys(self, subjects: Sequence[str]) -> dict[str, bytes | None]:
        """The keys of those subjects that have a row: ``None`` for a forgotten one."""
        found: dict[str, bytes | None] = {}
        wanted = list(subjects)
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = self._query(
                f"SELECT subject, key FROM subject_keys WHERE subject IN ({marks})", part
            )
            found.update((subject, None if key is None else bytes(key)) for subject, key in rows)
        return found

    def keep_subject_keys(self, keys: Sequence[SubjectKey]) -> dict[str, bytes | None]:
        """Keep new keys for subjects that have none; the keys of all of them (one
        writer at a time: no race to lose)."""
        self.add_subject_keys(keys)
        return self.subject_keys([given.subject for given in keys])

    def add_subject_keys(self, keys: Sequence[SubjectKey]) -> None:
        """Keep keys of subjects that have none yet; a tombstone also replaces a live key."""
        now = _now()
        rows = [
            (
                k.subject,
                k.key,
                now if k.created_at is None else to_micros(k.created_at),
                None
                if k.key is not None
                else (now if k.forgotten_at is None else to_micros(k.forgotten_at)),
            )
            for k in keys
        ]
        if not rows:
            return
        conn = self._connection()
        # No fsync of its own: in WAL mode, the commit of the first event sealed with
        # these keys syncs the log up to it, these keys' frames included. A crash
        # before then loses keys nothing was sealed with yet.
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._write() as conn:
                conn.executemany(_ADD, rows)
        finally:
            conn.execute(f"PRAGMA synchronous = {self._synchronous_mode}")
        if any(k.key is None for k in keys):
            self._scrub()

    @property
    def _synchronous_mode(self) -> str:
        return self._synchronous.upper()

    def forget_subject(self, subject: str) -> bool:
        """Destroy a subject's key, keeping a tombstone; True if a key was destroyed."""
        now = _now()
        with self._write() as conn:
            conn.execute("PRAGMA secure_delete = ON")
            try:
                row = conn.execute(
                    "SELECT key FROM subject_keys WHERE subject = ?", (subject,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO subject_keys (subject, key, created_at, forgotten_at)"
                    " VALUES (?, NULL, ?, ?) ON CONFLICT (subject) DO UPDATE SET key = NULL,"
                    " forgotten_at = coalesce(subject_keys.forgotten_at, excluded.forgotten_at)",
                    (subject, now, now),
                )
            finally:
                conn.execute("PRAGMA secure_delete = OFF")
        self._scrub()
        return row is not None and row[0] is not None

    def _scrub(self) -> None:
        """Copy the WAL into the database file and truncate it: the WAL's frames still
        hold the key's bytes. Best effort: a reader holding an old snapshot stops the
        checkpoint short, and a later one (SQLite's own, every 1000 pages) finishes it."""
        with contextlib.suppress(sqlite3.Error):
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def subject_key_page(self, *, after: str | None, limit: int) -> list[SubjectKey]:
        """A page of keys and tombstones, by subject, after ``after``."""
        rows = self._query(
            "SELECT subject, key, created_at, forgotten_at FROM subject_keys"
            " WHERE subject > ? ORDER BY subject LIMIT ?",
            ("" if after is None else after, limit),
        )
        return [
            SubjectKey(
                subject,
                None if key is None else bytes(key),
                from_micros(created),
                None if forgotten is None else from_micros(forgotten),
            )
            for subject, key, created, forgotten in rows
        ]
