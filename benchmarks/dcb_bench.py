"""The DCB section (issue 16): conditional appends on PostgreSQL, Conduit against
eventsourcing's ``PostgresDCBRecorderTT`` in the same run.

- conditional appends/s with 1 and 8 writer processes: one event per append,
  a condition on one tag, each writer its own tags;
- the no-false-conflicts ratio: the same 8 writers appending under their
  conditions against appending the same tagged events without one;
- the condition check on a store of 1,000,000 tagged events against an
  empty store: the time of one conditional append (check and insert).

Writers are spawned processes started together by a barrier; each runs for
the measurement's duration and reports its count.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg

from benchmarks.common import CONDUIT, EVENTSOURCING, Row, Section, Settings, Target, fresh_database

__all__ = ["DATABASE", "run"]

DATABASE = "conduit_bench_dcb"
Log = Callable[[str], None]
BIG = 1_000_000
BUILD_BATCH = 2_000


def _conduit_writer(
    url: str, schema: str, writer: int, duration: float, conditional: bool, barrier: Any
) -> int:
    from conduit import AppendCondition, EventStore, Query, QueryItem

    tag = f"writer:{writer}:{uuid.uuid4().hex[:6]}"
    query = Query(QueryItem(tags=[tag]))
    with EventStore(url, schema=schema, pool_size=1, group_commit=False) as store:
        last = store.head_position()
        count = 0
        barrier.wait(timeout=120)
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            event = {"name": "noted", "data": {"n": count}, "tags": [tag]}
            if conditional:
                [recorded] = store.append([event], condition=AppendCondition(query, after=last))
                last = recorded.position
            else:
                store.append([event])
            count += 1
        return count


def _eventsourcing_writer(
    url: str, schema: str, writer: int, duration: float, conditional: bool, barrier: Any
) -> int:
    from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem

    datastore, recorder = _tt(url, schema)
    tag = f"writer:{writer}:{uuid.uuid4().hex[:6]}"
    query = DCBQuery(items=[DCBQueryItem(tags=[tag])])
    last = 0
    count = 0
    try:  # (``schema`` is the recorder's table name: see _tt)
        barrier.wait(timeout=120)
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            event = DCBEvent(type="noted", data=b'{"n": %d}' % count, tags=[tag])
            last = recorder.append(
                [event], DCBAppendCondition(fail_if_events_match=query, after=last)
            )
            count += 1
        return count
    finally:
        datastore.close()


def _tt(url: str, table: str) -> tuple[Any, Any]:
    """eventsourcing's datastore and TT recorder over the tables named ``table``.

    In the ``public`` schema: eventsourcing 9.5's tag table refers to its events
    table without the schema, so another schema would need a search path.
    """
    from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
    from eventsourcing.postgres import PostgresDatastore

    parts = urlsplit(url)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        schema="public",
        pool_size=1,
    )
    return datastore, PostgresDCBRecorderTT(datastore, events_table_name=table)


def _child(func: Any, queue: Any, kwargs: dict[str, Any]) -> None:
    try:
        queue.put(("ok", func(**kwargs)))
    except BaseException as exc:  # reported to the parent
        queue.put(("error", repr(exc)))


def _writers(func: Any, count: int, duration: float, **kwargs: Any) -> float:
    """Appends/s of ``count`` writer processes of ``func`` running together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count + 1)
    queue = ctx.Queue()
    processes = [
        ctx.Process(
            target=_child,
            args=(func, queue, {**kwargs, "writer": i, "duration": duration, "barrier": barrier}),
            daemon=True,
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)
        results = [queue.get(timeout=duration + 120) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    failed = [value for status, value in results if status != "ok"]
    if failed:
        raise RuntimeError(f"a writer failed: {failed[0]}")
    return float(sum(value for _, value in results)) / duration


def _schema(url: str, kind: str) -> str:
    schema = f"{kind}_{uuid.uuid4().hex[:8]}"
    if kind == "conduit":
        from conduit import EventStore

        with EventStore(url, schema=schema) as store:
            store.setup()
    else:  # a table name, in the public schema
        datastore, recorder = _tt(url, schema)
        recorder.create_table()
        datastore.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return schema


def _check_time(url: str, schema: str, calls: int) -> float:
    """Mean seconds of one conditional append on a tag with events before ``after``."""
    from conduit import AppendCondition, EventStore, Query, QueryItem

    with EventStore(url, schema=schema, pool_size=1, group_commit=False) as store:
        tag = "entity:17"  # on the big store: 1 event in 20 carries it, all before `after`
        query = Query(QueryItem(tags=[tag]))
        last = store.head_position()
        for _ in range(20):  # warm-up
            [event] = store.append(
                [{"name": "noted", "data": {}, "tags": [tag]}],
                condition=AppendCondition(query, after=last),
            )
            last = event.position
        start = time.perf_counter()
        for _ in range(calls):
            [event] = store.append(
                [{"name": "noted", "data": {}, "tags": [tag]}],
                condition=AppendCondition(query, after=last),
            )
            last = event.position
        return (time.perf_counter() - start) / calls


def _fill(url: str, schema: str, events: int, log: Log) -> None:
    from conduit import EventStore

    with EventStore(url, schema=schema, group_commit=False) as store:
        written = 0
        while written < events:
            size = min(BUILD_BATCH, events - written)
            store.push_many(
                f"bulk-{written}",
                [
                    {
                        "name": "noted",
                        "data": {"i": written + i},
                        "tags": [f"entity:{(written + i) % 20}", f"batch:{written}"],
                    }
                    for i in range(size)
                ],
            )
            written += size
            if written % 200_000 == 0:
                log(f"dcb: {written:,} tagged events written")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{schema}".events')
        conn.execute(f'VACUUM ANALYZE "{schema}".event_tags')
        conn.execute("CHECKPOINT")


def run(quick: bool, server_url: str, log: Log) -> Section:
    """Measure the DCB figures against eventsourcing's PostgresDCBRecorderTT."""
    settings = Settings.quick() if quick else Settings()
    duration = 2.0 if quick else 5.0
    big = 100_000 if quick else BIG
    calls = 100 if quick else 300
    section = Section(
        title="DCB: conditional appends on PostgreSQL (issue 16)",
        contenders=[CONDUIT, EVENTSOURCING],
    )
    with fresh_database(server_url, DATABASE) as url:
        for writers in (1, 8):
            best = {CONDUIT: 0.0, EVENTSOURCING: 0.0}
            for round_ in range(settings.rounds):
                order = [CONDUIT, EVENTSOURCING] if round_ % 2 == 0 else [EVENTSOURCING, CONDUIT]
                for name in order:
                    func = _conduit_writer if name == CONDUIT else _eventsourcing_writer
                    schema = _schema(url, "conduit" if name == CONDUIT else "es")
                    figure = _writers(
                        func, writers, duration, url=url, schema=schema, conditional=True
                    )
                    best[name] = max(best[name], figure)
                    log(f"dcb: {name}, {writers} writer(s): {figure:,.0f} conditional appends/s")
            noun = "writer" if writers == 1 else "writers"
            values: dict[str, float | None] = dict(best)
            section.rows.append(
                Row(f"conditional appends/s, one event, one tag, {writers} {noun}", "/s", values)
            )
            required = 1.5 if writers == 1 else 4.0
            section.targets.append(
                Target(
                    f"conditional appends, {writers} {noun}, vs PostgresDCBRecorderTT",
                    best[CONDUIT] / best[EVENTSOURCING],
                    required,
                )
            )
        plain = conditional = 0.0
        for round_ in range(settings.rounds):
            for with_condition in (True, False) if round_ % 2 == 0 else (False, True):
                schema = _schema(url, "conduit")
                figure = _writers(
                    _conduit_writer, 8, duration, url=url, schema=schema, conditional=with_condition
                )
                if with_condition:
                    conditional = max(conditional, figure)
                else:
                    plain = max(plain, figure)
        log(f"dcb: 8 writers, disjoint tags: {conditional:,.0f}/s conditional, {plain:,.0f}/s not")
        section.extra_title = "Conduit alone"
        section.extra.append(
            Row(
                "8 writers, disjoint tags, appends/s under conditions", "/s", {CONDUIT: conditional}
            )
        )
        section.extra.append(
            Row("8 writers, disjoint tags, the same appends without", "/s", {CONDUIT: plain})
        )
        section.targets.append(
            Target(
                "no false conflicts: conditional / unconditional, 8 writers",
                conditional / plain,
                0.8,
            )
        )
        empty = _schema(url, "conduit")
        empty_time = _check_time(url, empty, calls)
        full = _schema(url, "conduit")
        log(f"dcb: writing {big:,} tagged events")
        _fill(url, full, big, log)
        full_time = _check_time(url, full, calls)
        log(
            f"dcb: conditional append {empty_time * 1e3:.2f} ms empty, "
            f"{full_time * 1e3:.2f} ms on {big:,} events"
        )
        section.extra.append(
            Row("one conditional append, empty store", "ms", {CONDUIT: empty_time * 1e3})
        )
        section.extra.append(
            Row(f"one conditional append, {big:,} tagged events", "ms", {CONDUIT: full_time * 1e3})
        )
        section.targets.append(
            Target(
                f"condition check on {big:,} events / on an empty store",
                full_time / empty_time,
                2.0,
                at_most=True,
            )
        )
    section.notes += [
        "Each writer is a process of its own with one connection, appending one event per "
        "call under a condition on a tag of its own (Conduit: `store.append(..., "
        "condition=AppendCondition(...))`, group commit off; eventsourcing: "
        "`PostgresDCBRecorderTT.append(..., DCBAppendCondition(...))`, which locks its "
        "events table). Writers start together and run for "
        f"{duration:g} s; the best of {settings.rounds} interleaved rounds counts.",
        "No false conflicts: the same 8 Conduit writers, each round in a fresh schema, "
        "appending the same tagged events with and without their conditions.",
        "Condition check: the mean time of one conditional append (locks, check through "
        "the tag index, insert) on a tag whose events lie before `after`, on an empty "
        f"store and on one of {big:,} tagged events (each with 2 tags).",
    ]
    return section
