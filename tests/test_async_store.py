"""AsyncEventStore: what the async face adds to the contract kit (which it passes too,
tests/test_contract_async.py): concurrency of tasks, following the log, cancellation,
async handlers and subscriptions, group commit, and the sync face's tables shared."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conduit import AsyncEventStore, EventStore, WrongExpectedVersion
from conduit.events import Event

ENGINES = ["memory", "sqlite", "postgres"]


@pytest.fixture
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """(url or backend, options) of one store, the same for every call."""
    engine: str = request.param
    if engine == "memory":
        from conduit.backends.memory import MemoryBackend

        backend = MemoryBackend()
        yield lambda: (backend, {})
    elif engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        yield lambda: (url, {})
    else:
        base = request.getfixturevalue("postgres_url")
        schema = f"aio_{uuid.uuid4().hex[:10]}"
        yield lambda: (base, {"schema": schema})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    given = [m.args[0] for m in metafunc.definition.iter_markers("parametrize")]
    if "make_url" in metafunc.fixturenames and "make_url" not in given:
        metafunc.parametrize("make_url", ENGINES, indirect=True, ids=ENGINES)


async def opened(make_url: Callable[[], Any], **more: Any) -> AsyncEventStore:
    target, options = make_url()
    store = AsyncEventStore(target, **options, **more)
    await store.__aenter__()
    await store.setup()
    return store


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_tasks_pushing_with_expected_versions_while_followers_tail(
    make_url: Callable[[], Any],
) -> None:
    """200 tasks append to 50 shared streams, each retrying on WrongExpectedVersion,
    while two followers tail the log: nothing lost, repeated or out of stream order,
    and every task's result is what is stored."""

    async def scenario() -> None:
        store = await opened(make_url)
        streams = [f"account-{n}" for n in range(50)]
        per_task = 3
        results: list[Event] = []
        expected_total = 200 * per_task

        async def follower(seen: list[Event]) -> None:
            async for event in store.follow():
                seen.append(event)
                if len(seen) == expected_total:
                    return

        async def task(number: int) -> None:
            rng = random.Random(number)
            for step in range(per_task):
                stream = rng.choice(streams)
                while True:
                    version = await store.stream_version(stream)
                    try:
                        event = await store.push(
                            "money_moved",
                            stream,
                            {"task": number, "step": step},
                            expected_version=version,
                        )
                    except WrongExpectedVersion:
                        await asyncio.sleep(0)
                        continue
                    results.append(event)
                    break

        first: list[Event] = []
        second: list[Event] = []
        followers = [asyncio.create_task(follower(first)), asyncio.create_task(follower(second))]
        await asyncio.gather(*(task(n) for n in range(200)))
        await asyncio.wait_for(asyncio.gather(*followers), 60)

        stored = {s: await store.get(s) for s in streams}
        assert sum(len(events) for events in stored.values()) == expected_total
        for events in stored.values():
            assert [e.version for e in events] == list(range(1, len(events) + 1))
        by_id = {e.id: e for events in stored.values() for e in events}
        assert {e.id: e for e in results} == by_id  # every result is what is stored
        for seen in (first, second):
            assert len({e.id for e in seen}) == expected_total  # none lost, none twice
            assert [e.position for e in seen] == sorted(e.position for e in seen)
            for s in streams:
                versions = [e.version for e in seen if e.stream_id == s]
                assert versions == sorted(versions)
        await store.close()

    run(scenario())


def test_follow_ends_on_aclose_and_on_cancellation(make_url: Callable[[], Any]) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        await store.push("thing_happened", "s", {})
        follower = store.follow()
        assert isinstance(follower, AsyncIterator)
        first = await follower.__anext__()
        assert first.version == 1
        await follower.aclose()  # type: ignore[attr-defined]

        seen: list[Event] = []

        async def tail() -> None:
            async for event in store.follow():
                seen.append(event)

        task = asyncio.create_task(tail())
        await store.push("thing_happened", "s", {})
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e.version for e in seen] == [1, 2]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert store._core.followers == set()
        await store.close()

    run(scenario())


def test_a_follower_cancelled_as_it_is_woken_ends(make_url: Callable[[], Any]) -> None:
    """A follower waiting for events, woken and cancelled in the same turn of the loop,
    ends with its cancellation (asyncio.wait_for, on 3.11, returned the wake-up and
    lost the cancellation: the follower went on for ever; the docs' sample hung so)."""

    async def scenario() -> None:
        store = await opened(make_url)
        seen: list[Event] = []

        async def tail() -> None:
            async for event in store.follow(max_poll_interval=0.2):
                seen.append(event)

        task = asyncio.create_task(tail())
        for _ in range(20):  # caught up (nothing to read) and waiting
            await asyncio.sleep(0.01)
        assert store._core.followers
        for wake in store._core.followers:
            wake.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
        assert task.cancelled()
        assert store._core.followers == set()
        await store.close()

    run(scenario())


def test_follow_filters_by_name_and_stream_prefix(make_url: Callable[[], Any]) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        await store.push("order_placed", "order-1", {})
        await store.push("order_paid", "order-1", {})
        await store.push("order_placed", "cart-1", {})
        await store.push("order_placed", "order-2", {})
        seen: list[Event] = []
        async for event in store.follow(names=["order_placed"], stream_prefix="order-"):
            seen.append(event)
            if len(seen) == 2:
                break
        assert [(e.name, e.stream_id) for e in seen] == [
            ("order_placed", "order-1"),
            ("order_placed", "order-2"),
        ]
        await store.close()

    run(scenario())


def test_async_handlers_of_listeners_and_subscriptions_are_awaited(
    make_url: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        heard: list[str] = []

        class Listener:
            async def on_thing_happened(self, event: Event) -> None:
                await asyncio.sleep(0)
                heard.append(f"listener {event.version}")

        class Counter:
            def __init__(self) -> None:
                self.count = 0

            async def on_thing_happened(self, event: Event) -> None:
                await asyncio.sleep(0)
                self.count += 1

            def on_event(self, event: Event) -> None:  # plain handlers work too
                heard.append(f"plain {event.version}")

        await store.subscribe(Listener())
        counter = Counter()
        inline = await store.subscribe(counter, name="counter")
        background = await store.subscribe(Counter(), name="counted", mode="background")
        last = await store.push("thing_happened", "s", {})
        assert counter.count == 1  # inline: handled before push returned
        await background.wait_for(last)
        assert sorted(heard) == ["listener 1", "plain 1", "plain 1"]  # two Counters
        statuses = {s.name: s for s in await store.subscription_status()}
        assert statuses["counter"].checkpoint == last.position
        assert inline.mode == "inline"
        await store.close()

    run(scenario())


def test_a_projection_started_by_the_sync_face_goes_on_under_the_async_one(
    make_url: Callable[[], Any],
) -> None:
    target, options = make_url()
    seen: list[int] = []

    class Projection:
        def on_thing_happened(self, event: Event) -> None:
            seen.append(event.data["n"])

    with EventStore(target, **options) as sync:
        sync.setup()
        sync.subscribe(Projection(), name="shared")
        for n in range(3):
            sync.push("thing_happened", "s", {"n": n})

    async def scenario() -> None:
        store = await opened(make_url)
        for n in range(3, 5):
            await store.push("thing_happened", "s", {"n": n})
        await store.subscribe(Projection(), name="shared")  # resumes from its checkpoint
        await store.push("thing_happened", "s", {"n": 5})
        await store.close()

    run(scenario())
    assert seen == [0, 1, 2, 3, 4, 5]
    with EventStore(target, **options) as sync:
        sync.subscribe(Projection(), name="shared")  # and back: nothing new to apply
        assert seen == [0, 1, 2, 3, 4, 5]


def test_a_cancelled_push_leaves_the_whole_append_or_nothing(
    make_url: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        outcomes = []
        for attempt in range(20):
            stream = f"s-{attempt}"
            task = asyncio.create_task(
                store.push_many(stream, [("thing_happened", {"n": n}) for n in range(50)])
            )
            await asyncio.sleep(random.Random(attempt).random() * 0.005)
            task.cancel()
            try:
                await task
                outcomes.append("done")
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            assert (await store.stream_version(stream)) in (0, 50)
        await store.push("thing_happened", "after", {})  # the store keeps working
        assert await store.stream_version("after") == 1
        await store.close()

    run(scenario())


@pytest.mark.parametrize("make_url", ["postgres"], indirect=True)
def test_cancelled_reads_and_follows_give_their_connections_back(
    make_url: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        store = await opened(make_url, pool_size=2)
        await store.push_many("s", [("thing_happened", {"n": n}) for n in range(600)])
        pool = store.backend.executor.pool
        for _ in range(5):

            async def read_some() -> None:
                async for _event in store.read("s"):
                    await asyncio.sleep(0.001)

            task = asyncio.create_task(read_some())
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            async def follow_some() -> None:
                async for _event in store.follow():
                    await asyncio.sleep(0.001)

            task = asyncio.create_task(follow_some())
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        stats = pool.get_stats()
        assert stats.get("pool_size", 0) - stats.get("pool_available", 0) == 0, stats
        assert len(await store.get("s")) == 600  # and a read still finds a connection
        await store.close()

    run(scenario())


@pytest.mark.parametrize("make_url", ["memory", "sqlite", "postgres"], indirect=True)
def test_paged_reads_come_in_order_and_a_read_left_early_holds_no_connection(
    make_url: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        store.page_size = 7
        await store.push_many("s", [("thing_happened", {"n": n}) for n in range(50)])
        assert [e.data["n"] async for e in store.read("s")] == list(range(50))
        assert [e.version async for e in store.read("s", backwards=True, limit=20)] == list(
            range(50, 30, -1)
        )
        reading = store.read("s")
        taken = [await anext(reading) for _ in range(10)]  # the third page is on its way
        await reading.aclose()  # type: ignore[attr-defined]
        assert [e.version for e in taken] == list(range(1, 11))
        async for event in store.read("s"):
            if event.version == 8:
                break
        if store.backend.scheme == "postgresql":
            pool = store.backend.executor.pool
            for _ in range(100):  # the abandoned read's fetch ends on its own
                stats = pool.get_stats()
                if stats.get("pool_size", 0) == stats.get("pool_available", 0):
                    break
                await asyncio.sleep(0.01)
            stats = pool.get_stats()
            assert stats.get("pool_size", 0) - stats.get("pool_available", 0) == 0, stats
        assert len(await store.get("s")) == 50
        await store.close()

    run(scenario())


@pytest.mark.parametrize("make_url", ["sqlite", "postgres"], indirect=True)
def test_concurrent_pushes_share_commits_and_each_gets_its_own_result(
    make_url: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        store = await opened(make_url)
        await store.push("thing_happened", "taken", {})
        pushes = [store.push("thing_happened", f"s-{n}", {"n": n}) for n in range(64)]
        doomed = store.push("thing_happened", "taken", {}, expected_version=0)
        results = await asyncio.gather(*pushes, doomed, return_exceptions=True)
        assert isinstance(results[-1], WrongExpectedVersion)
        for n, event in enumerate(results[:-1]):
            assert isinstance(event, Event)
            assert (event.stream_id, event.version, event.data) == (f"s-{n}", 1, {"n": n})
        group = store._core.group
        assert group is not None
        assert group.combined > 0  # some pushes shared a transaction
        assert await store.stream_version("taken") == 1
        await store.close()

    run(scenario())
