"""Removing events removes their tags from the engines' tag index (``event_tags``)."""

from __future__ import annotations

from collections.abc import Callable

from conduit import EventStore

ENGINES = ["sqlite", "postgres"]


def _tag_rows(store: EventStore, engine: str) -> int:
    """How many rows the engine's tag index holds (SQLite and PostgreSQL keep one)."""
    backend: object = store.backend
    if engine == "sqlite":
        return int(backend._query("SELECT count(*) FROM event_tags")[0][0])  # type: ignore[attr-defined]
    import psycopg

    config = backend.engine.config  # type: ignore[attr-defined]
    with psycopg.connect(config.conninfo) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{config.schema}".event_tags').fetchone()
    assert row is not None
    return int(row[0])


def test_removed_events_leave_no_tags_behind(make_store: Callable[[], EventStore]) -> None:
    store = make_store()
    engine = store.backend.scheme.replace("postgresql", "postgres")
    store.push_many("tagged", [("noted", {}), ("noted", {})], tags=["course:1", "student:2"])
    store.push_many("cut", [("noted", {}), ("noted", {})], tags=["course:1"])
    store.push_many("capped", [("noted", {}), ("noted", {})], tags=["course:3"])
    assert _tag_rows(store, engine) == 4 + 2 + 2
    store.delete_stream("tagged", hard=True)
    store.truncate_stream("cut", 2)
    store.set_stream_metadata("capped", max_count=1)
    store.scavenge()
    assert _tag_rows(store, engine) == 1 + 1
