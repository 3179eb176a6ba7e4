"""The PostgreSQL engine's SQL text, built for one schema. Free of I/O."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from conduit.dcb import Query

__all__ = [
    "BULK_LOCK_CLASS",
    "KEY_LOCK_CLASS",
    "LEADER_LOCK_CLASS",
    "LOCK_CLASS",
    "MAX_KEYS",
    "PARKED_COLUMNS",
    "SCHEMA_VERSION",
    "Statements",
    "SubscriptionStatements",
    "channel",
    "migrations",
    "partition_clause",
    "quote_ident",
    "quote_literal",
    "visible_clause",
]

LOCK_CLASS = 0x436F6E64
"""The class id of Conduit's two-key advisory locks ('Cond'), so that they never
collide with the application's own advisory locks."""

SCHEMA_VERSION = 13
"""The schema version this release creates and uses (no migration 008: a number kept
for partitions, which needed none)."""

KEY_LOCK_CLASS = LOCK_CLASS + 2
"""The class id of the DCB keys' advisory locks (name x tag, docs/dcb.md)."""

BULK_LOCK_CLASS = LOCK_CLASS + 3
"""The class id of the bulk lock: shared by appends that take DCB keys, exclusive for
one with more keys than :data:`MAX_KEYS`."""

MAX_KEYS = 256
"""The most DCB keys one append locks one by one; past it, the bulk lock."""

_COLUMNS = (
    "id, stream_id, stream_is_uuid, name, data::text, metadata::text, version, position,"
    " recorded_at, tags"
)

# Rows below the oldest transaction still running: every transaction below it
# has finished, so no event can ever appear behind a reader that stops there.
_HORIZON = "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"


def visible_clause(q: str) -> str:
    """Conditions of a stream read hiding what its row says is gone or expired.

    One parameter: the stream id, twice.
    """
    return (
        " AND version >= (SELECT greatest(s.truncated_before, CASE WHEN s.max_count IS NULL"
        f" THEN 0 ELSE s.version - s.max_count + 1 END) FROM {q}.streams AS s"
        " WHERE s.stream_id = %s)"
        " AND recorded_at >= coalesce((SELECT clock_timestamp() - s.max_age"
        f" FROM {q}.streams AS s WHERE s.stream_id = %s), '-infinity')"
    )


def quote_ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def partition_clause(index: int, count: int) -> str:
    """The condition that keeps partition ``index`` of ``count``: the first four bytes of
    the MD5 of the stream id's text, unsigned, modulo ``count`` (as
    :func:`conduit.subscriptions.partitions.partition_of` computes it)."""
    # Both numbers are validated integers: written into the SQL, no parameters to order.
    return (
        f"(('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint %% {int(count)}) = {int(index)}"
    )


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which appends to a schema are announced."""
    return f"conduit.{schema}"


def migrations(schema: str) -> list[tuple[int, str]]:
    """Every migration, as (version it leads to, SQL text for this schema)."""
    folder = resources.files("conduit.backends.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            text = (
                entry.read_text(encoding="utf-8")
                .replace("__SCHEMA__", quote_ident(schema))
                .replace("__LOCK_CLASS__", str(LOCK_CLASS))
                .replace("__KEY_CLASS__", str(KEY_LOCK_CLASS))
                .replace("__BULK_CLASS__", str(BULK_LOCK_CLASS))
                .replace("__CHANNEL__", quote_literal(channel(schema)))
            )
            found.append((version, text))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements the engine runs, for one schema."""

    schema: str

    @property
    def q(self) -> str:
        return quote_ident(self.schema)

    @property
    def append_one(self) -> str:
        # Scalars: psycopg sends them far more cheaply than one-element arrays
        # (about 55 us less client CPU per call); text or binary format makes
        # no measurable difference here.
        return (
            f"SELECT * FROM {self.q}.append_event(%s::text, %s::boolean, %s::bigint,"
            " %s::uuid, %s::text, %s::text, %s::text, %s::boolean)"
        )

    @property
    def append_tagged(self) -> str:
        return (
            f"SELECT * FROM {self.q}.append_tagged(%s::text, %s::boolean, %s::bigint,"
            " %s::uuid, %s::text, %s::text, %s::text, %s::boolean, %s::text[], %s::text[],"
            " %s::bigint, %s::text, %s::text[], %s::text[], %s::text[])"
        )

    @property
    def append_batch(self) -> str:
        # Binary parameters: psycopg's text-format array dumper escapes every
        # quote of the JSON with a regex, which cost more than the insert.
        return (
            f"SELECT * FROM {self.q}.append_batch("
            "%b, %b, %b, %b::uuid[], %b::text[], %b::text[], %b::text[], %b, %b::timestamptz[])"
        )

    @property
    def append_groups(self) -> str:
        return (
            f"SELECT * FROM {self.q}.append_groups(%b::text[], %t::boolean[], %t::bigint[],"
            " %t::integer[], %t::integer[], %b::uuid[], %b::text[], %b::text[], %b::text[],"
            " %b::timestamptz[], %t::integer[], %t::integer[], %b, %b::text[], %t::integer[],"
            " %b::text[], %b)"
        )

    @property
    def append_conditional(self) -> str:
        return (
            f"SELECT * FROM {self.q}.append_conditional(%b::bigint, %b::integer, %b::text[],"
            " %b::integer[], %b::text[], %b::integer[], %b, %b, %b::text[],"
            " %b::text[], %b::boolean[], %b::bigint[],"
            " %b::integer[], %b::integer[], %b::uuid[], %b::text[], %b::text[], %b::text[],"
            " %b::timestamptz[], %b::integer[], %b::integer[], %b, %b::text[], %b::integer[],"
            " %b::text[], %b)"
        )

    def read_query(
        self, query: Query, *, after: int, limit: int, backwards: bool
    ) -> tuple[str, list[Any]]:
        """A page of the events ``query`` matches after ``after``, below the reader
        horizon: one index range per item (tag ranges of ``event_tags``, name ranges of
        ``events``), each cut at ``limit``, merged. The statement and its parameters."""
        order = "DESC" if backwards else "ASC"
        visible = f"position < {_HORIZON}"
        if query.matches_all:
            return (
                f"SELECT {_COLUMNS} FROM {self.q}.events WHERE position > %s"
                f" AND {visible} ORDER BY position {order} LIMIT %s",
                [after, limit],
            )
        branches: list[str] = []
        params: list[Any] = []
        for item in query.items:
            if item.tags:
                first, *others = sorted(item.tags)
                where = ["t.tag = %s", "t.position > %s", f"t.{visible}"]
                params.extend((first, after))
                if item.names:
                    where.append("t.name = ANY(%s::text[])")
                    params.append(sorted(item.names))
                if others:
                    where.append(
                        f"EXISTS (SELECT 1 FROM {self.q}.events AS x"
                        " WHERE x.position = t.position AND x.tags @> %s::text[])"
                    )
                    params.append(sorted(item.tags))
                branches.append(
                    f"(SELECT t.position FROM {self.q}.event_tags AS t"
                    f" WHERE {' AND '.join(where)} ORDER BY t.position {order} LIMIT %s)"
                )
                params.append(limit)
            else:
                branches.append(
                    f"(SELECT f.position FROM unnest(%s::text[]) AS n(name) CROSS JOIN LATERAL"
                    f" (SELECT e.position FROM {self.q}.events AS e WHERE e.name = n.name"
                    f" AND e.position > %s AND e.{visible}"
                    f" ORDER BY e.position {order} LIMIT %s) AS f)"
                )
                params.extend((sorted(item.names), after, limit))
        params.append(limit)
        return (
            f"SELECT {_COLUMNS} FROM {self.q}.events WHERE position IN"
            f" (SELECT position FROM ({' UNION '.join(branches)}) AS m(position)"
            f" ORDER BY position {order} LIMIT %s)"
            f" ORDER BY position {order}",
            params,
        )

    @property
    def by_ids(self) -> str:
        return f"SELECT {_COLUMNS} FROM {self.q}.events WHERE id = ANY(%s::uuid[])"

    def read_stream(self, *, forwards: bool, start: bool, since: bool) -> str:
        where = ["stream_id = %s"]
        if start:
            where.append("version >= %s" if forwards else "version <= %s")
        if since:
            where.append("recorded_at >= %s")
        order = "ASC" if forwards else "DESC"
        # What the stream's row says is truncated, deleted or beyond its limits is
        # hidden (docs/lifecycle.md): two more parameters, the stream id twice.
        return (
            f"SELECT {_COLUMNS} FROM {self.q}.events WHERE {' AND '.join(where)}"
            f"{visible_clause(self.q)} ORDER BY version {order} LIMIT %s"
        )

    def read_all(
        self,
        *,
        names: bool,
        correlation: bool = False,
        causation: bool = False,
        before: bool = False,
        backwards: bool = False,
        partition: tuple[int, int] | None = None,
    ) -> str:
        """A page of the log. Parameters: after, [before], [correlation], [causation],
        limit; with ``names``, the names array first and the limit once more at the end.
        ``backwards``: the page nearest ``before`` (or the horizon), newest first.
        ``partition`` (index, count) keeps one partition's streams."""
        top = f"least(%s, {_HORIZON})" if before else _HORIZON
        where = ["position > %s", f"position < {top}"]
        if partition is not None:
            where.append(partition_clause(*partition))
        if correlation:
            where.append("(metadata ->> 'correlation_id') = %s")
        if causation:
            where.append("(metadata ->> 'causation_id') = %s")
        order = " DESC" if backwards else ""
        if not names:
            return (
                f"SELECT {_COLUMNS} FROM {self.q}.events WHERE {' AND '.join(where)}"
                f" ORDER BY position{order} LIMIT %s"
            )
        # One index range per name, each in position order and cut at the limit,
        # then merged: `name = ANY(...)` would sort every match after `after`
        # (millions, for common names) to return one page. The bounds are row
        # comparisons on (name, position), which only events_name_position can
        # serve: with plain `position > %s` the planner, who cannot know a
        # lateral name is rare, walks the primary key and filters by name (the
        # whole log, for a name that has a few events).
        where[:2] = [
            "(e.name, e.position) > (n.name, %s)",
            f"(e.name, e.position) < (n.name, {top})",
        ]
        columns = ", ".join(f"e.{column.strip()}" for column in _COLUMNS.split(","))
        return (
            f"SELECT {columns} FROM unnest(%s::text[]) AS n(name) CROSS JOIN LATERAL"
            f" (SELECT * FROM {self.q}.events AS e WHERE e.name = n.name"
            f" AND {' AND '.join(where)} ORDER BY e.name{order}, e.position{order}"
            f" LIMIT %s) AS e ORDER BY e.position{order} LIMIT %s"
        )

    def count_after(
        self, *, names: bool, limit: bool = False, partition: tuple[int, int] | None = None
    ) -> str:
        """Parameters: after, [limit]; with names: the names, after, [limit, limit].
        ``partition`` (index, count) counts one partition's streams."""
        keep = f" AND {partition_clause(*partition)}" if partition is not None else ""
        if names:
            # One index range of events_name_position per name (see read_all).
            cut = " LIMIT %s" if limit else ""
            counted = (
                f"SELECT 1 FROM unnest(%s::text[]) AS n(name) CROSS JOIN LATERAL"
                f" (SELECT 1 FROM {self.q}.events AS e WHERE e.name = n.name"
                " AND (e.name, e.position) > (n.name, %s)"
                f" AND (e.name, e.position) < (n.name, {_HORIZON}){keep}{cut}) AS e{cut}"
            )
            return f"SELECT count(*) FROM ({counted}) AS counted"
        rows = f"FROM {self.q}.events WHERE position > %s AND position < {_HORIZON}{keep}"
        if limit:  # count at most so many: a bounded index range, never the whole log
            return f"SELECT count(*) FROM (SELECT 1 {rows} LIMIT %s) AS counted"
        return f"SELECT count(*) {rows}"

    @property
    def first_position_since(self) -> str:
        return (
            f"SELECT min(position) FROM {self.q}.events"
            f" WHERE recorded_at >= %s AND position < {_HORIZON}"
        )

    @property
    def horizon(self) -> str:
        return "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

    @property
    def stream_version(self) -> str:
        return f"SELECT version FROM {self.q}.streams WHERE stream_id = %s"

    def streams(self, *, after: bool, prefix: bool) -> str:
        where = ["deleted = 0", "version > 0"]
        if after:
            where.append("stream_id > %s")
        if prefix:
            where.append("stream_id >= %s AND starts_with(stream_id, %s)")
        clause = f" WHERE {' AND '.join(where)}"
        return (
            f"SELECT stream_id, is_uuid, version FROM {self.q}.streams{clause}"
            " ORDER BY stream_id LIMIT %s"
        )

    @property
    def stream_totals(self) -> str:
        return (
            f"SELECT count(*), coalesce(sum(version), 0) FROM {self.q}.streams"
            " WHERE deleted = 0 AND version > 0"
        )

    @property
    def head_position(self) -> str:
        return f"SELECT coalesce(max(position), 0) FROM {self.q}.events WHERE position < {_HORIZON}"

    @property
    def save_snapshot(self) -> str:
        return (
            f"INSERT INTO {self.q}.snapshots"
            " (stream_id, class_name, version, snapshot_version, data)"
            " VALUES (%s, %s, %s, %s, %s::json)"
            " ON CONFLICT (stream_id, class_name) DO UPDATE SET version = excluded.version,"
            " snapshot_version = excluded.snapshot_version, data = excluded.data,"
            " taken_at = excluded.taken_at"
            f" WHERE excluded.version >= {self.q}.snapshots.version"
        )

    @property
    def load_snapshot(self) -> str:
        return (
            f"SELECT version, snapshot_version, data::text, taken_at FROM {self.q}.snapshots"
            " WHERE stream_id = %s AND class_name = %s"
        )

    @property
    def version_table(self) -> str:
        """The text to give ``to_regclass`` to learn whether the schema exists."""
        return f"{self.q}.schema_version"

    @property
    def schema_exists(self) -> str:
        return "SELECT to_regclass(%s) IS NOT NULL"

    @property
    def schema_version(self) -> str:
        return f"SELECT coalesce(max(version), 0) FROM {self.q}.schema_version"

    @property
    def applied_versions(self) -> str:
        return f"SELECT array_agg(version) FROM {self.q}.schema_version"

    @property
    def create_version_table(self) -> str:
        return (
            f"CREATE SCHEMA IF NOT EXISTS {self.q};"
            f" CREATE TABLE IF NOT EXISTS {self.q}.schema_version"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )

    @property
    def record_version(self) -> str:
        return f"INSERT INTO {self.q}.schema_version (version) VALUES (%s)"

    @property
    def setup_lock(self) -> str:
        return f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext(%s))"

    @property
    def rewrite_events(self) -> str:
        # One statement: all the batch's events or none; position, version and
        # recorded_at stay as they are. The tag table keeps the events' names
        # (queries by name and tag read them there): renamed with them.
        return (
            "WITH u AS (SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[])"
            " AS u(id, name, data, metadata)),"
            f" renamed AS (UPDATE {self.q}.event_tags AS t SET name = u.name"
            f" FROM u JOIN {self.q}.events AS x ON x.id = u.id"
            " WHERE t.position = x.position AND t.name <> u.name)"
            f" UPDATE {self.q}.events AS e"
            " SET name = u.name, data = u.data::json, metadata = u.metadata::json"
            " FROM u WHERE e.id = u.id"
        )


LEADER_LOCK_CLASS = LOCK_CLASS + 1
"""The class id the session advisory locks that elect a subscription's driver had, with a
32-bit ``hashtext`` of its name, before they took 64-bit keys (schema version 6 and
earlier releases): two names could share a key, and one projection starve another."""

PARKED_COLUMNS = (
    "id, subscription, event_id, position, error, traceback, attempts, parked_at, retry_requested"
)


@dataclass(frozen=True, slots=True)
class SubscriptionStatements:
    """The durable-subscription statements, for one schema."""

    schema: str

    @property
    def q(self) -> str:
        return quote_ident(self.schema)

    @property
    def load_checkpoint(self) -> str:
        return f"SELECT position FROM {self.q}.subscriptions WHERE name = %s"

    @property
    def insert_checkpoint(self) -> str:
        return (
            f"INSERT INTO {self.q}.subscriptions (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO NOTHING"
        )

    @property
    def move_checkpoint(self) -> str:
        return (
            f"UPDATE {self.q}.subscriptions SET position = %s, updated_at = now()"
            " WHERE name = %s AND position = %s"
        )

    @property
    def checkpoints(self) -> str:
        return f"SELECT name, position FROM {self.q}.subscriptions ORDER BY name"

    @property
    def save_state(self) -> str:
        return (
            f"INSERT INTO {self.q}.subscription_states (name, state, detail) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
            " detail = excluded.detail, updated_at = now()"
        )

    @property
    def states(self) -> str:
        return (
            f"SELECT name, state, detail, updated_at FROM {self.q}.subscription_states"
            " ORDER BY name"
        )

    @property
    def park(self) -> str:
        return (
            f"INSERT INTO {self.q}.parked_events"
            " (subscription, event_id, position, error, traceback, attempts)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (subscription, event_id) DO UPDATE SET error = excluded.error,"
            " traceback = excluded.traceback, attempts = excluded.attempts,"
            " parked_at = now(), retry_requested = false"
        )

    def parked(self, *, subscription: bool) -> str:
        which = " AND subscription = %s" if subscription else ""
        return (
            f"SELECT {PARKED_COLUMNS} FROM {self.q}.parked_events WHERE id > %s{which}"
            " ORDER BY id LIMIT %s"
        )

    def request_retry(self, *, one: bool, subscription: bool) -> str:
        where = ["true"]
        if one:
            where.append("id = %s")
        if subscription:
            where.append("subscription = %s")
        return (
            f"UPDATE {self.q}.parked_events SET retry_requested = true WHERE {' AND '.join(where)}"
        )

    @property
    def unpark(self) -> str:
        return f"DELETE FROM {self.q}.parked_events WHERE id = %s"

    @property
    def try_leader_lock(self) -> str:
        # The one-key form: a 64-bit key (see SubscriptionOps.lease_key), in a space
        # of its own, apart from the two-key stream locks.
        return "SELECT pg_try_advisory_lock(%s::bigint)"

    @property
    def leader_unlock(self) -> str:
        return "SELECT pg_advisory_unlock(%s::bigint)"

    @property
    def held_leader_locks(self) -> str:
        # pg_locks shows a one-key (bigint) advisory lock with the key's high half in
        # classid, its low half in objid and objsubid 1; stream locks use two keys.
        return (
            "SELECT classid::bigint, objid::bigint FROM pg_locks"
            " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
