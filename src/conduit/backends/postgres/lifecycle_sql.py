"""The PostgreSQL engine's statements for deleting, truncating, limiting and scavenging
streams, built for one schema. Free of I/O.

Every statement that removes events is here (:attr:`~LifecycleStatements.remove_stream`,
:attr:`~LifecycleStatements.remove_before`, :attr:`~LifecycleStatements.scavenge`): side
tables whose rows reference events (tags) must be cleaned in the same statements.
"""

from __future__ import annotations

from dataclasses import dataclass

from conduit.backends.postgres.sql import LOCK_CLASS, quote_ident
from conduit.lifecycle import RESERVED_STREAM_PREFIX

__all__ = ["REMOVAL_LOCK_CLASS", "LifecycleStatements"]

REMOVAL_LOCK_CLASS = LOCK_CLASS + 5
"""The class id of the advisory lock that orders removals: a scavenging batch takes it
exclusively (and no stream lock), a delete or truncation shares it after its stream's
lock, before its first write; so removals never wait for each other's rows in a cycle."""

_COLUMNS = "stream_id, is_uuid, version, deleted, truncated_before, max_age, max_count"


@dataclass(frozen=True, slots=True)
class LifecycleStatements:
    """The lifecycle statements, for one schema."""

    schema: str

    @property
    def q(self) -> str:
        return quote_ident(self.schema)

    def removing(self, where: str) -> str:
        """A CTE body removing the events ``where`` says (alias ``e``), returning their
        positions; side tables referencing events are cleaned by the caller's CTEs."""
        return f"DELETE FROM {self.q}.events AS e WHERE {where} RETURNING e.position"

    @property
    def lock_streams(self) -> str:
        """The locks of the stream changed and of the audit stream, in key order, as
        appends to several streams take theirs (so that neither can deadlock the other).

        One parameter: the two stream ids."""
        return (
            f"SELECT count(pg_advisory_xact_lock({LOCK_CLASS}, k)) FROM"
            " (SELECT DISTINCT hashtext(s) AS k FROM unnest(%s::text[]) AS s ORDER BY k) AS keys"
        )

    @property
    def share_removals(self) -> str:
        return f"SELECT pg_advisory_xact_lock_shared({REMOVAL_LOCK_CLASS}, 0)"

    @property
    def lock_removals(self) -> str:
        return f"SELECT pg_advisory_xact_lock({REMOVAL_LOCK_CLASS}, 0)"

    @property
    def state(self) -> str:
        return f"SELECT version, deleted FROM {self.q}.streams WHERE stream_id = %s"

    @property
    def make_row(self) -> str:
        return (
            f"INSERT INTO {self.q}.streams (stream_id, is_uuid, version, recorded_at)"
            " VALUES (%s, %s, 0, clock_timestamp())"
        )

    @property
    def mark_deleted(self) -> str:
        return (
            f"UPDATE {self.q}.streams SET deleted = %s, truncated_before = version + 1"
            " WHERE stream_id = %s"
        )

    @property
    def drop_snapshots(self) -> str:
        return f"DELETE FROM {self.q}.snapshots WHERE stream_id = %s"

    @property
    def remove_stream(self) -> str:
        return f"WITH gone AS ({self.removing('e.stream_id = %s')}) SELECT count(*) FROM gone"

    @property
    def truncate(self) -> str:
        return (
            f"UPDATE {self.q}.streams SET truncated_before = greatest(truncated_before, %s)"
            " WHERE stream_id = %s RETURNING truncated_before"
        )

    @property
    def remove_before(self) -> str:
        gone = self.removing("e.stream_id = %s AND e.version < %s")
        return f"WITH gone AS ({gone}) SELECT count(*) FROM gone"

    @property
    def set_limits(self) -> str:
        return (
            f"UPDATE {self.q}.streams SET max_age = %s::interval, max_count = %s"
            " WHERE stream_id = %s"
        )

    @property
    def metadata(self) -> str:
        return f"SELECT {_COLUMNS} FROM {self.q}.streams WHERE stream_id = %s"

    @property
    def tombstones(self) -> str:
        return (
            f"SELECT {_COLUMNS} FROM {self.q}.streams WHERE deleted <> 0 AND stream_id > %s"
            " ORDER BY stream_id LIMIT %s"
        )

    @property
    def scavenge(self) -> str:
        """One batch: the next ``limit`` positions, and what is expired among them.

        Not bounded by the reader horizon: an event of a lower position that
        commits after the batch passed it is only left for the next pass (a
        finished pass starts again from the beginning), while a horizon held
        back by a long transaction elsewhere would stop the scavenger.

        Parameters: after, limit, after, retention, retention. Returns the last
        position examined, how many were, how many were removed.
        """
        expired = (
            f"e.position > %s AND e.position <= (SELECT upto FROM bounds)"
            " AND s.stream_id = e.stream_id AND ("
            " e.version < s.truncated_before"
            " OR (s.max_count IS NOT NULL AND e.version <= s.version - s.max_count)"
            " OR (s.max_age IS NOT NULL AND e.recorded_at < clock_timestamp() - s.max_age)"
            " OR (%s::interval IS NOT NULL"
            f" AND NOT starts_with(e.stream_id, '{RESERVED_STREAM_PREFIX}')"
            " AND e.recorded_at < clock_timestamp() - %s::interval))"
        )
        return (
            f"WITH window_ AS (SELECT position FROM {self.q}.events"
            " WHERE position > %s ORDER BY position LIMIT %s),"
            " bounds AS (SELECT max(position) AS upto, count(*) AS examined FROM window_),"
            f" gone AS (DELETE FROM {self.q}.events AS e USING {self.q}.streams AS s"
            f" WHERE {expired} RETURNING e.position)"
            " SELECT coalesce(b.upto, 0), b.examined, (SELECT count(*) FROM gone) FROM bounds AS b"
        )
