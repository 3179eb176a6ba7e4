"""The PostgreSQL engine's reads: pages of streams and of the global log, versions,
counts, snapshots. Free of I/O (see :mod:`conduit.core.effects`).

Each read runs where :meth:`~conduit.backends.postgres.routing.Routing.routed`
sends it: a read replica, or the primary (and waits for this store's own
writes first, bounded). A page of the global log returns only positions below
the reader horizon, on whichever server it runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conduit.backends.postgres import rows
from conduit.backends.postgres.effects import Fetch, Query
from conduit.backends.postgres.routing import Routing, Target
from conduit.core.effects import Op
from conduit.dcb import Query as DcbQuery
from conduit.events import Event, Snapshot, StreamInfo, StreamKey
from conduit.subscriptions.partitions import Partition

__all__ = ["Reads"]


class Reads(Routing):
    """Mixed into :class:`~conduit.backends.postgres.engine.PostgresEngine`."""

    def _fetch(
        self,
        sql: str,
        params: Any,
        fetch: Fetch,
        *,
        wait: bool = True,
        log_read: bool = False,
        fresh: bool = False,
    ) -> Op[Any]:
        fresh = fresh or fetch == "all"  # pages of events, snapshots: see Query

        def run(on: Target) -> Op[Any]:
            return (yield Query(sql, params, fetch, fresh=fresh, replica=on))

        return (yield from self.routed(run, wait=wait, log_read=log_read))

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> Op[list[Event]]:
        """One page of a stream (see :class:`~conduit.backends.base.Backend`)."""
        sql = self.sql.read_stream(
            forwards=not backwards, start=start is not None, since=since is not None
        )
        params: list[Any] = [stream.text]
        if start is not None:
            params.append(start)
        if since is not None:
            params.append(since)
        # The stream's row hides what is truncated, deleted or beyond its limits.
        params.extend((stream.text, stream.text, limit))
        return rows.events((yield from self._fetch(sql, params, "all")))

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
        before: int | None = None,
        backwards: bool = False,
        partition: Partition | None = None,
    ) -> Op[list[Event]]:
        """One page of the global log (see :class:`~conduit.backends.base.Backend`)."""
        sql = self.sql.read_all(
            names=names is not None,
            correlation=correlation_id is not None,
            causation=causation_id is not None,
            before=before is not None,
            backwards=backwards,
            partition=None if partition is None else (partition.index, partition.count),
        )
        params: list[Any] = [after] if before is None else [after, before]
        params.extend(value for value in (correlation_id, causation_id) if value is not None)
        params.append(limit)
        if names is not None:
            params = [list(names), *params, limit]
        found = yield from self._fetch(sql, params, "all", wait=wait, log_read=True)
        return rows.events(found)

    def stream_version(self, stream: StreamKey) -> Op[int]:
        """The version of the stream's last event, 0 when it has none."""
        row = yield from self._fetch(self.sql.stream_version, (stream.text,), "one")
        return int(row[0]) if row else 0

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> Op[list[StreamInfo]]:
        """One page of streams, ordered by their id's text, after ``after``."""
        sql = self.sql.streams(after=after is not None, prefix=prefix is not None)
        params: list[Any] = []
        if after is not None:
            params.append(after)
        if prefix is not None:
            params.extend((prefix, prefix))
        params.append(limit)
        return rows.stream_infos((yield from self._fetch(sql, params, "all")))

    def stream_totals(self) -> Op[tuple[int, int]]:
        """How many streams have events, and the sum of their versions."""
        row = yield from self._fetch(self.sql.stream_totals, None, "one")
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def head_position(self, *, wait: bool = True) -> Op[int]:
        """The position of the last event in the global log (0 when empty)."""
        row = yield from self._fetch(self.sql.head_position, None, "one", wait=wait, log_read=True)
        return int(row[0]) if row else 0

    def count_after(
        self,
        position: int,
        *,
        names: Sequence[str] | None,
        limit: int | None = None,
        wait: bool = True,
        partition: Partition | None = None,
    ) -> Op[int]:
        """How many events of the log come after ``position`` (with those names, of that
        partition; at most ``limit``)."""
        sql = self.sql.count_after(
            names=names is not None,
            limit=limit is not None,
            partition=None if partition is None else (partition.index, partition.count),
        )
        params: tuple[Any, ...] = (position,) if names is None else (list(names), position)
        if limit is not None:
            params = (*params, limit) if names is None else (*params, limit, limit)
        row = yield from self._fetch(sql, params, "one", wait=wait, log_read=True)
        return int(row[0]) if row else 0

    def first_position_since(self, since: datetime) -> Op[int | None]:
        """The position of the first event recorded at or after ``since``, if any."""
        row = yield from self._fetch(self.sql.first_position_since, (since,), "one", log_read=True)
        return None if row is None or row[0] is None else int(row[0])

    def read_event(self, event_id: uuid.UUID) -> Op[Event | None]:
        """One event by its id, or ``None``."""
        events = rows.events((yield from self._fetch(self.sql.by_ids, ([event_id],), "all")))
        return events[0] if events else None

    def read_query(
        self, query: DcbQuery, *, after: int, limit: int, backwards: bool = False
    ) -> Op[list[Event]]:
        """A page of the events ``query`` matches, below the reader horizon (see
        :class:`~conduit.backends.base.Backend`)."""
        sql, params = self.sql.read_query(query, after=after, limit=limit, backwards=backwards)
        return rows.events((yield from self._fetch(sql, params, "all", log_read=True)))

    def load_snapshot(self, stream: StreamKey, class_name: str) -> Op[Snapshot | None]:
        """The snapshot kept for a stream and entity class, or ``None``."""
        row = yield from self._fetch(
            self.sql.load_snapshot, (stream.text, class_name), "one", fresh=True
        )
        if row is None:
            return None
        version, snapshot_version, data, taken_at = row
        return Snapshot(class_name, version, snapshot_version, data, taken_at)
