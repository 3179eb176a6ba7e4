"""SQL read models under AsyncEventStore: on SQLAlchemy's asyncio engine (handlers get an
AsyncSession and may be async), or on a sync engine run off the event loop; the
checkpoint in the same transaction as the rows, exactly once, as under EventStore."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from conduit import AsyncEventStore, EventStore
from conduit.events import Event
from conduit.projections import SQLProjection
from worker_app import create_database, drop_database, sqlalchemy_url, with_database

ENGINES = ["sqlite", "postgres"]

metadata = sa.MetaData()
totals = sa.Table(
    "async_totals",
    metadata,
    sa.Column("stream_id", sa.String(100), primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
)


class AsyncTotals(SQLProjection):
    """Handlers awaiting an AsyncSession."""

    name = "async_totals"
    metadata = metadata
    batch_size = 7

    async def on_amount_recorded(self, event: Event, session: AsyncSession) -> None:
        found = await session.execute(
            sa.select(totals.c.total).where(totals.c.stream_id == str(event.stream_id))
        )
        total = found.scalar_one_or_none()
        if total is None:
            await session.execute(
                totals.insert().values(stream_id=str(event.stream_id), total=event.data["n"])
            )
        else:
            await session.execute(
                totals.update()
                .where(totals.c.stream_id == str(event.stream_id))
                .values(total=total + event.data["n"])
            )


class SyncTotals(SQLProjection):
    """The same read model on a sync engine: its handlers get a Session."""

    name = "async_totals"
    metadata = metadata
    batch_size = 7

    def on_amount_recorded(self, event: Event, session: Session) -> None:
        total = session.execute(
            sa.select(totals.c.total).where(totals.c.stream_id == str(event.stream_id))
        ).scalar_one_or_none()
        if total is None:
            session.execute(
                totals.insert().values(stream_id=str(event.stream_id), total=event.data["n"])
            )
        else:
            session.execute(
                totals.update()
                .where(totals.c.stream_id == str(event.stream_id))
                .values(total=total + event.data["n"])
            )


@pytest.fixture(params=ENGINES)
def read_model(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(sync URL, async URL) of a fresh read-model database."""
    if request.param == "sqlite":
        path = tmp_path / "read-model.db"
        yield f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
        return
    admin: str = request.getfixturevalue("postgres_url")
    name = create_database(admin)
    url = sqlalchemy_url(with_database(admin, name))
    yield url, url
    drop_database(admin, name)


def totals_in(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(totals.c.stream_id, totals.c.total)).all()
    engine.dispose()
    return {stream: total for stream, total in rows}


def checkpoint_in(url: str) -> int | None:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT position FROM conduit_checkpoints")).scalar()
    engine.dispose()
    return None if found is None else int(found)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_an_async_engine_read_model_applies_each_event_once_with_its_checkpoint(
    read_model: tuple[str, str], tmp_path: Path, mode: str
) -> None:
    sync_url, async_url = read_model

    async def scenario() -> int:
        engine = create_async_engine(async_url)
        projection = AsyncTotals(engine)
        await projection.setup_async()
        async with AsyncEventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
            subscription = await store.subscribe(projection, mode=mode)  # type: ignore[arg-type]
            last = None
            for n in range(1, 21):
                last = await store.push("amount_recorded", f"account-{n % 3}", {"n": n})
            assert last is not None
            await subscription.wait_for(last)
            assert await projection.load_checkpoint_async() == last.position
        await engine.dispose()
        return last.position

    position = run(scenario())
    expected = {f"account-{k}": sum(n for n in range(1, 21) if n % 3 == k) for k in range(3)}
    assert totals_in(sync_url) == expected
    assert checkpoint_in(sync_url) == position


def test_a_sync_engine_read_model_runs_off_the_event_loop(
    read_model: tuple[str, str], tmp_path: Path
) -> None:
    sync_url, _ = read_model

    async def scenario() -> None:
        projection = SyncTotals(sync_url)
        await projection.setup_async()
        async with AsyncEventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
            await store.subscribe(projection)
            loop_thread = asyncio.get_running_loop()
            assert loop_thread is not None
            for n in range(1, 6):
                await store.push("amount_recorded", "account-1", {"n": n})

    run(scenario())
    assert totals_in(sync_url) == {"account-1": 15}


def test_a_read_model_built_by_the_sync_face_goes_on_under_the_async_one(
    read_model: tuple[str, str], tmp_path: Path
) -> None:
    sync_url, async_url = read_model
    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    with EventStore(events_url) as store:
        projection = SyncTotals(sync_url)
        projection.setup()
        store.subscribe(projection)
        for n in range(1, 4):
            store.push("amount_recorded", "account-1", {"n": n})

    async def scenario() -> None:
        engine = create_async_engine(async_url)
        async with AsyncEventStore(events_url) as store:
            await store.subscribe(AsyncTotals(engine))
            await store.push("amount_recorded", "account-1", {"n": 4})
        await engine.dispose()

    run(scenario())
    assert totals_in(sync_url) == {"account-1": 10}  # 1..3 once, then 4: nothing twice


def test_a_failing_async_handler_is_parked_and_the_rest_applied(
    read_model: tuple[str, str], tmp_path: Path
) -> None:
    _, async_url = read_model

    class Picky(AsyncTotals):
        async def on_amount_recorded(self, event: Event, session: AsyncSession) -> None:
            if event.data["n"] == 3:
                raise ValueError("three is refused")
            await super().on_amount_recorded(event, session)

    async def scenario() -> tuple[list[Any], int]:
        engine = create_async_engine(async_url)
        projection = Picky(engine)
        await projection.setup_async()
        async with AsyncEventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
            await store.subscribe(projection, max_attempts=2, backoff=0.01)
            for n in range(1, 6):
                await store.push("amount_recorded", "account-1", {"n": n})
            parked = [item async for item in store.parked()]
            checkpoint = await projection.load_checkpoint_async()
        await engine.dispose()
        return parked, checkpoint

    parked, checkpoint = run(scenario())
    assert [item.attempts for item in parked] == [2]
    assert checkpoint > 0
    assert totals_in(read_model[0]) == {"account-1": 1 + 2 + 4 + 5}
