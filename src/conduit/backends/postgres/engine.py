"""The PostgreSQL engine's operations: what to run and what it means, free of I/O.

Writers to different streams never wait for each other; the global log stays
gap-free without serializing them (docs/design.md, docs/postgresql.md):

- an append is one call of the schema's ``append_event`` (one event),
  ``append_batch`` (a batch of one stream) or ``append_groups`` (several
  appends combined, group commit and multi-stream appends) function, in one
  autocommitted statement: it takes the streams' transaction-scoped advisory
  locks, sorted, before anything gives the transaction an id, checks the
  expected versions, then inserts; an event's position is
  ``(transaction id << 20) | ordinal``;
- a reader of the global log returns only positions below the oldest
  transaction still running (``pg_snapshot_xmin(pg_current_snapshot())``), so
  nothing can commit behind it later;
- right after a push, the same engine waits (bounded) for that horizon to pass
  its own last transaction, so that a caller reads its own writes;
- reads (:mod:`~conduit.backends.postgres.reads`) may run on read replicas,
  writes never (:mod:`~conduit.backends.postgres.routing`).

Each method returns an operation (:mod:`conduit.core.effects`) whose
statements an executor runs: :mod:`~conduit.backends.postgres.sync` for
``EventStore``, :mod:`~conduit.backends.postgres.aio` for ``AsyncEventStore``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from conduit.backends.base import AppendRequest, EventRewrite, GroupOutcome, StreamAppend
from conduit.backends.common import resolve_retry
from conduit.backends.postgres import rows
from conduit.backends.postgres.config import PostgresConfig
from conduit.backends.postgres.effects import Atomic, Query
from conduit.backends.postgres.errors import CONDITION_FAILED, UNIQUE_VIOLATION, WRONG_VERSION
from conduit.backends.postgres.keys import condition_keys, condition_params, tagged_params
from conduit.backends.postgres.lifecycle_ops import LifecycleOps
from conduit.backends.postgres.reads import Reads
from conduit.backends.postgres.sql import MAX_KEYS, SCHEMA_VERSION, Statements, migrations
from conduit.backends.postgres.subject_key_ops import SubjectKeyOps
from conduit.backends.postgres.subscription_ops import SubscriptionOps
from conduit.core.effects import Op
from conduit.dcb import AppendCondition
from conduit.errors import (
    AppendConditionFailed,
    BackendError,
    ConduitError,
    DuplicateEvent,
    SchemaError,
    StreamDeleted,
    WrongExpectedVersion,
)
from conduit.events import Event, NewEvent, Snapshot, StreamKey

__all__ = ["PostgresEngine"]

log = logging.getLogger("conduit.postgres")


class PostgresEngine(LifecycleOps, SubscriptionOps, Reads, SubjectKeyOps):
    """The operations of a store in one PostgreSQL schema (see the module docstring).

    One engine serves one face (``EventStore`` or ``AsyncEventStore``); its
    state (this store's newest transaction, the horizon seen) is guarded by a
    lock, so that threads may share it.
    """

    scheme = "postgresql"
    partitioned_reads = True
    """``read_all`` and ``count_after`` take ``partition=`` (filtered in SQL)."""

    def __init__(self, config: PostgresConfig) -> None:
        SubscriptionOps.__init__(self, config.schema)
        Reads.__init__(self, config)
        self.config = config
        self.schema = config.schema
        self.sql = Statements(config.schema)
        self.ready = False
        """True once the schema was found at this release's version (or made)."""

    def __repr__(self) -> str:
        return f"<PostgresEngine schema={self.schema!r}>"

    # -- the schema ----------------------------------------------------------

    def check_schema(self) -> Op[None]:
        """Make sure the schema exists at this release's version.

        Raises:
            SchemaError: it is missing, older (migrate it) or newer (upgrade).
        """
        exists = yield Query(self.sql.schema_exists, (self.sql.version_table,), check=False)
        if not exists or not exists[0]:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} does not exist in this database; "
                "create it with `conduit init URL` or EventStore.setup()"
            )
        row = yield Query(self.sql.applied_versions, check=False)
        applied = set(row[0] or ()) if row else set()
        found = max(applied, default=0)
        missing = {version for version, _ in migrations(self.schema)} - applied
        if missing:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} is at version {found}, older than this "
                f"release's {SCHEMA_VERSION}; migrate it with `conduit init URL` or "
                "EventStore.setup()"
            )
        self._refuse_newer(found)
        self.ready = True

    def _refuse_newer(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"the Conduit schema {self.schema!r} is at version {found}, newer than this "
                f"release knows ({SCHEMA_VERSION}); upgrade Conduit"
            )

    def setup(self) -> Op[None]:
        """Create the schema or migrate it, in one transaction; safe to repeat and to
        run from several processes at once (a lock serializes them)."""
        yield Atomic(self._migrate())
        self.ready = True

    def _migrate(self) -> Op[None]:
        yield Query("SET LOCAL statement_timeout = 0", fetch="none", check=False, binary=False)
        yield Query(self.sql.setup_lock, (f"setup:{self.schema}",), check=False)
        yield Query(self.sql.create_version_table, fetch="none", check=False, binary=False)
        row = yield Query(self.sql.applied_versions, check=False)
        applied = set(row[0] or ()) if row else set()
        self._refuse_newer(max(applied, default=0))
        # Every migration not applied yet, even one numbered below the newest
        # applied (branches merged out of order each bring their own).
        for version, text in migrations(self.schema):
            if version not in applied:
                yield Query(text, fetch="none", check=False, binary=False)
                yield Query(self.sql.record_version, (version,), fetch="none", check=False)

    # -- appending -----------------------------------------------------------

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> Op[list[Event]]:
        """Append a batch to one stream (see :class:`~conduit.backends.base.Backend`)."""
        if any(new.tags for new in events):  # tags: append_tagged or append_groups
            if len(events) == 1:
                lean = yield from self._append_tagged(stream, events[0], expected_version, None)
                if lean is not None:
                    return lean
            part = StreamAppend(stream, tuple(events), expected_version)
            return (yield from self._append_request((part,)))[0]
        first = events[0]
        notify = self.config.notify
        if len(events) == 1 and first.recorded_at is None:
            sql = self.sql.append_one
            params: tuple[Any, ...] = (
                stream.text,
                stream.is_uuid,
                expected_version,
                first.id,
                first.name,
                first.data,
                first.metadata,
                notify,
            )
        else:
            sql = self.sql.append_batch
            params = (
                stream.text,
                stream.is_uuid,
                expected_version,
                [new.id for new in events],
                [new.name for new in events],
                [new.data for new in events],
                [new.metadata for new in events],
                notify,
                [new.recorded_at for new in events]
                if any(new.recorded_at for new in events)
                else None,
            )
        try:
            row = yield Query(sql, params, expect=(WRONG_VERSION, UNIQUE_VIOLATION))
        except psycopg.DatabaseError as exc:
            actual = exc.diag.message_detail if exc.sqlstate == WRONG_VERSION else None
            return (yield from self._conflict(stream, events, expected_version, actual))
        self._remember_xid(row[0] >> 20)
        return rows.recorded(stream, events, row)

    def append_group(self, requests: Sequence[AppendRequest]) -> Op[list[GroupOutcome]]:
        """Several appends in one transaction (group commit, several streams at once);
        see :class:`~conduit.backends.base.Backend`."""
        if len(requests) == 1 and len(requests[0]) == 1 and not _tagged(requests[0]):
            part = requests[0][0]
            try:
                return [[(yield from self.append(part.stream, part.events, part.expected))]]
            except ConduitError as exc:
                return [exc]
        params = rows.group_params(requests, self.config.notify)
        try:
            found = yield Query(self.sql.append_groups, params, "all", expect=(UNIQUE_VIOLATION,))
        except StreamDeleted as exc:
            if len(requests) == 1:  # this request's own stream is a tombstone
                return [exc]
            # A stream of one of them is a tombstone: nothing was written; take
            # the requests one by one, each with its own outcome.
            return (yield from self._one_by_one(requests))
        except psycopg.DatabaseError:
            # An id recorded meanwhile by another call (a retry racing its
            # first try): nothing was written; take the requests one by one.
            return (yield from self._one_by_one(requests))
        self._remember_xid(found[0][5] >> 20)
        outcomes: list[GroupOutcome] = []
        for request, own, settled in rows.group_outcomes(requests, found):
            if settled is None:  # a retry or a conflict: resolved alone
                try:
                    outcomes.append((yield from self._refused_request(request, own)))
                except ConduitError as exc:
                    outcomes.append(exc)
            else:
                outcomes.append(settled)
        return outcomes

    def _one_by_one(self, requests: Sequence[AppendRequest]) -> Op[list[GroupOutcome]]:
        outcomes: list[GroupOutcome] = []
        for request in requests:
            try:
                outcomes.append((yield from self._append_request(request)))
            except ConduitError as exc:
                outcomes.append(exc)
        return outcomes

    def append_request(
        self, request: AppendRequest, condition: AppendCondition | None = None
    ) -> Op[list[list[Event]]]:
        """One append of one or several streams under ``condition`` (see
        :class:`~conduit.backends.base.Backend`): one call of ``append_conditional``,
        which takes the streams' locks, then the condition's and the events' keys,
        then checks, then inserts (migration 007)."""
        if condition is None:
            return (yield from self._append_request(request))
        if len(request) == 1 and len(request[0].events) == 1:
            part = request[0]
            lean = yield from self._append_tagged(
                part.stream, part.events[0], part.expected, condition
            )
            if lean is not None:
                return [lean]
        group = rows.group_params([request], self.config.notify)
        exclusive, table = condition_keys(condition)
        bulk = bool(group[-1]) or len(exclusive) + len(group[-2] or ()) > MAX_KEYS
        keys = group[-2]
        if bulk:
            exclusive, keys = set(), None
        params = (
            *condition_params(condition),
            table or condition.fail_if_events_match.matches_all,
            sorted(exclusive) if exclusive else None,
            *group[:-2],
            keys,
            bulk,
        )
        try:
            found = yield Query(
                self.sql.append_conditional,
                params,
                "all",
                expect=(UNIQUE_VIOLATION, CONDITION_FAILED),
            )
        except psycopg.DatabaseError as exc:
            if exc.sqlstate == CONDITION_FAILED:
                raise AppendConditionFailed(
                    int(exc.diag.message_detail or 0), condition.after
                ) from None
            # An id recorded meanwhile (a retry racing its first try): nothing written.
            return (yield from self._refused_request(request, ()))
        self._remember_xid(found[0][5] >> 20)
        _, own, settled = next(rows.group_outcomes([request], found))
        if settled is None:
            return (yield from self._refused_request(request, own))
        return settled

    def _append_tagged(
        self,
        stream: StreamKey,
        new: NewEvent,
        expected: int | None,
        condition: AppendCondition | None,
    ) -> Op[list[Event] | None]:
        """One event with tags, under ``condition`` or not, in one call of
        ``append_tagged`` (migration 011); ``None`` when that call cannot take it."""
        params = tagged_params(stream, new, expected, self.config.notify, condition, MAX_KEYS)
        if params is None:
            return None
        try:
            row = yield Query(
                self.sql.append_tagged,
                params,
                expect=(WRONG_VERSION, UNIQUE_VIOLATION, CONDITION_FAILED),
            )
        except psycopg.DatabaseError as exc:
            if exc.sqlstate == CONDITION_FAILED:
                assert condition is not None
                raise AppendConditionFailed(
                    int(exc.diag.message_detail or 0), condition.after
                ) from None
            actual = exc.diag.message_detail if exc.sqlstate == WRONG_VERSION else None
            return (yield from self._conflict(stream, (new,), expected, actual))
        self._remember_xid(row[0] >> 20)
        return rows.recorded(stream, (new,), row)

    def _append_request(self, request: AppendRequest) -> Op[list[list[Event]]]:
        if len(request) == 1 and not _tagged(request):
            part = request[0]
            return [(yield from self.append(part.stream, part.events, part.expected))]
        outcome = (yield from self.append_group([request]))[0]
        if isinstance(outcome, ConduitError):
            raise outcome
        return outcome

    def _refused_request(
        self, request: AppendRequest, own: Sequence[Sequence[Any]]
    ) -> Op[list[list[Event]]]:
        """A request of a group left out: a retry of events already recorded, or a
        wrong expected version."""
        recorded: list[list[Event]] = []
        for part in request:
            ids = [new.id for new in part.events]
            known = yield Query(self.sql.by_ids, (ids,), "all", fresh=True)
            retried = resolve_retry(part.stream, part.events, rows.events(known))
            if retried is None:
                break
            recorded.append(retried)
        else:
            return recorded
        conflicts = rows.conflicts(request, own) if own else []
        if conflicts:
            raise WrongExpectedVersion.of(conflicts)
        if not own:
            raise DuplicateEvent(
                request[0].events[0].id,
                request[0].stream.stream_id(),
                reason="while other ids of the append are new",
            )
        raise BackendError("an append was refused for a reason this release does not know")

    def _conflict(
        self,
        stream: StreamKey,
        events: Sequence[NewEvent],
        expected_version: int | None,
        actual: str | None,
    ) -> Op[list[Event]]:
        """A refused append: a retry of a batch already recorded, or an error."""
        ids = [new.id for new in events]
        found = yield Query(self.sql.by_ids, (ids,), "all", fresh=True)
        retried = resolve_retry(stream, events, rows.events(found))
        if retried is not None:
            self._remember_xid(max(event.position for event in retried) >> 20)
            return retried
        if actual is not None:
            assert expected_version is not None
            state = yield Query(self.lifecycle_sql.state, (stream.text,))
            if state is not None and state[1] == 2:
                raise StreamDeleted(stream.stream_id())
            raise WrongExpectedVersion(stream.stream_id(), expected_version, int(actual or 0))
        raise BackendError(
            f"an append to stream {stream.text!r} broke a unique constraint, "
            "yet none of its event ids is recorded"
        )

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> Op[int]:
        """Replace recorded events' name, data and metadata, atomically (migrate-events)."""
        if not changes:
            return 0
        params = (
            [change.id for change in changes],
            [change.name for change in changes],
            [change.data for change in changes],
            [change.metadata for change in changes],
        )
        count: int = yield Query(self.sql.rewrite_events, params, "rowcount")
        self._wrote()
        return count

    # -- snapshots -----------------------------------------------------------

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> Op[None]:
        """Keep a snapshot, unless a newer one of its class is kept."""
        params = (
            stream.text,
            snapshot.class_name,
            snapshot.version,
            snapshot.snapshot_version,
            snapshot.data,
        )
        yield Query(self.sql.save_snapshot, params, "none")
        self._wrote()


def _tagged(request: AppendRequest) -> bool:
    """Whether an event of the request carries tags (only append_groups writes them)."""
    return any(new.tags for part in request for new in part.events)
