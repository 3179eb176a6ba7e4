"""Where Conduit's time goes on PostgreSQL: one writer, microseconds per append.

Splits an append into the server's work (the same loop run inside the server
by a ``DO`` block, with a ``COMMIT`` per append: no network, no Python) and
the client's (round trip, pool, encoding, building the returned ``Event``),
next to a raw INSERT measured the same ways.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from benchmarks.common import CONDUIT, EVENT_NAME, Row, Section, event_data
from benchmarks.pg_contenders import RAW, prepare
from conduit import EventStore, new_id

__all__ = ["run"]

BATCH = 100
Log = Callable[[str], None]


def _per_call(work: Callable[[int], object], calls: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` microseconds per call, after a warm-up."""
    for i in range(20):
        work(i)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for i in range(calls):
            work(i)
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def run(url: str, calls: int, log: Log) -> list[Row]:
    """Time the pieces of a single-event append, Conduit's and raw psycopg's."""
    prepare("conduit", url, "cost_conduit")
    prepare("raw-single", url, "cost_raw")
    data = event_data(1)
    text = orjson.dumps(data).decode()
    rows: list[Row] = []

    def add(label: str, who: str, micros: float) -> None:
        rows.append(Row(label, "µs", {who: micros}))

    with (
        psycopg.connect(url, autocommit=True) as conn,
        EventStore(url, schema="cost_conduit", pool_size=1) as store,
    ):
        conn.execute("SET default_transaction_isolation = 'read committed'")
        streams = [uuid.uuid4() for _ in range(10)]
        insert = (
            'INSERT INTO "cost_raw".events (id, stream_id, stream_is_uuid, version, name, data,'
            " metadata) VALUES (%s, %s, true, %s, %s, %s, '{}')"
        )
        versions = dict.fromkeys(streams, 0)

        def raw(i: int) -> None:
            stream = streams[i % 10]
            versions[stream] += 1
            conn.execute(insert, (new_id(), str(stream), versions[stream], EVENT_NAME, text))

        call, names = _append_call(conn, "cost_conduit", SINGLE)

        def direct(i: int) -> None:
            known = {
                "p_stream": str(streams[i % 10]),
                "p_is_uuid": True,
                "p_id": new_id(),
                "p_name": EVENT_NAME,
                "p_data": text,
                "p_metadata": "{}",
                "p_notify": False,
            }
            conn.execute(call, [known.get(name) for name in names]).fetchall()

        pool = store.backend.executor.pool  # type: ignore[attr-defined]

        def checkout(_: int) -> None:
            with pool.connection():
                pass

        add(
            "`SELECT 1` round trip (plain connection)",
            RAW,
            _per_call(lambda _: conn.execute("SELECT 1").fetchall(), calls),
        )
        add("raw INSERT, autocommit (client to commit)", RAW, _per_call(raw, calls))
        add(f"`{SINGLE}(...)` called directly, autocommit", CONDUIT, _per_call(direct, calls))
        add(
            "`store.push(...)` end to end",
            CONDUIT,
            _per_call(lambda i: store.push(EVENT_NAME, streams[i % 10], data), calls),
        )
        add("psycopg_pool `connection()` checkout + return", CONDUIT, _per_call(checkout, calls))
        add(
            "raw INSERT, server only (DO block, COMMIT each)",
            RAW,
            _server_loop(conn, _raw_do(text), calls),
        )
        add(
            f"`{SINGLE}`, server only (DO block, COMMIT each)",
            CONDUIT,
            _server_loop(conn, _conduit_do(conn, text), calls),
        )
        _batch_rows(conn, store, max(10, calls // 10), add)
    log("postgres costs: done")
    return rows


def _batch_rows(
    conn: psycopg.Connection[Any],
    store: EventStore,
    calls: int,
    add: Callable[[str, str, float], None],
) -> None:
    """The pieces of ``push_many`` of one batch, per event."""
    batch = [(EVENT_NAME, event_data(i)) for i in range(BATCH)]
    texts = [orjson.dumps(data).decode() for _, data in batch]
    stream = uuid.uuid4()
    wall = _per_call(lambda _: store.push_many(stream, batch), calls)
    cpu = _cpu_per_call(lambda: store.push_many(stream, batch), calls)
    add(f"`push_many` of {BATCH}, end to end, per event", CONDUIT, wall / BATCH)
    add(f"`push_many` of {BATCH}, client CPU, per event", CONDUIT, cpu / BATCH)
    text_format = _cpu_per_call(
        lambda: conn.execute("SELECT cardinality(%s::text[])", [texts]), calls
    )
    binary = _cpu_per_call(lambda: conn.execute("SELECT cardinality(%b::text[])", [texts]), calls)
    add(
        f"psycopg: send {BATCH} JSON texts as a `%s` text[] (text format), CPU per event",
        RAW,
        text_format / BATCH,
    )
    add(
        "psycopg: the same as `%b` (binary format), CPU per event",
        RAW,
        binary / BATCH,
    )
    body = _conduit_do(conn, texts[0], size=BATCH)
    add(
        f"`{BATCHED}` of {BATCH}, server only (DO block), per event",
        CONDUIT,
        _server_loop(conn, body, calls) / BATCH,
    )


def _cpu_per_call(work: Callable[[], object], calls: int) -> float:
    """Best-of-3 microseconds of this process's CPU time per call."""
    work()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            work()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


SINGLE = "append_event"
"""The SQL function behind a one-event ``push``."""
BATCHED = "append_batch"
"""The SQL function behind ``push_many``."""


def _append_call(
    conn: psycopg.Connection[Any], schema: str, function: str
) -> tuple[str, list[str]]:
    """A call of an append function by argument names, whatever its signature grows into.

    Arguments this benchmark does not know are passed as NULL.
    """
    row = conn.execute(
        "SELECT p.proargnames, p.proargmodes FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s AND p.proname = %s",
        (schema, function),
    ).fetchone()
    if row is None:
        raise RuntimeError(f"no function {schema}.{function}")
    all_names, modes = row
    names = [name for i, name in enumerate(all_names) if modes is None or modes[i] in ("i", "b")]
    marks = ", ".join(f"{name} => %s" for name in names)
    return f'SELECT * FROM "{schema}".{function}({marks})', names


def _conduit_do(conn: psycopg.Connection[Any], text: str, size: int = 1) -> str:
    function = SINGLE if size == 1 else BATCHED
    _, names = _append_call(conn, "cost_conduit", function)
    known = {
        "p_stream": "'do-' || (i % 10)",
        "p_is_uuid": "false",
        "p_id": "gen_random_uuid()",
        "p_name": f"'{EVENT_NAME}'",
        "p_ids": f"ARRAY(SELECT gen_random_uuid() FROM generate_series(1, {size}))",
        "p_names": f"array_fill('{EVENT_NAME}'::text, ARRAY[{size}])",
        "p_data": f"'{text}'" if size == 1 else f"array_fill('{text}'::text, ARRAY[{size}])",
        "p_metadata": "'{}'" if size == 1 else f"array_fill('{{}}'::text, ARRAY[{size}])",
        "p_notify": "false",
    }
    args = ", ".join(f"{name} => {known.get(name, 'NULL')}" for name in names)
    return f'PERFORM * FROM "cost_conduit".{function}({args})'


def _server_loop(conn: psycopg.Connection[Any], body: str, calls: int) -> float:
    block = f"DO $$ BEGIN FOR i IN 1..{calls} LOOP {body}; COMMIT; END LOOP; END $$"
    conn.execute(block)  # warm-up
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        conn.execute(block)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def _raw_do(text: str) -> str:
    return (
        'INSERT INTO "cost_raw".events (id, stream_id, stream_is_uuid, version, name, data,'
        f" metadata) VALUES (gen_random_uuid(), 'do-' || (i % 10), true,"
        f' (SELECT coalesce(max(version), 0) + 1 FROM "cost_raw".events'
        f" WHERE stream_id = 'do-' || (i % 10)), '{EVENT_NAME}', '{text}', '{{}}')"
    )


def section(rows: list[Row], calls: int) -> Section:
    """The rows as a section of the report."""
    found = Section(
        "Where Conduit's time goes (PostgreSQL, one writer)",
        [CONDUIT],
        extra_title="Pieces of an append, each timed alone (µs per append, or per event)",
    )
    found.extra = rows
    found.notes.append(
        f"Each piece runs {calls} times, best of 3. The server-only rows run the same "
        "statement in a `DO` block that commits after each one (no network, no Python): "
        "the difference to the row above them is the client's share. The server-only raw "
        "INSERT also looks up the stream's version (`max(version)`), which the client-side "
        "raw INSERT does not need. The psycopg rows send the same 100 JSON texts that "
        f"`push_many` passes to `{BATCHED}` (`p_data`), as a parameter of a trivial query. "
        f"A one-event `push` calls `{SINGLE}` (scalar parameters, in text format), "
        f"`push_many` calls `{BATCHED}` (arrays, in binary format)."
    )
    return found
