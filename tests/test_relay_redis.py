"""The relay to Redis Streams (the server on 127.0.0.1:6379), against a real server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from conduit import AsyncEventStore, EventStore
from conduit.relay import Relay
from relay_support import (
    REDIS,
    conduit_command,
    problems,
    redis_count,
    redis_delete,
    redis_held,
    relay_with_kills,
    start_writers,
    store_log,
    unique,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key() -> Iterator[str]:
    """A Redis stream key of this test's own, deleted afterwards."""
    name = unique("relaytest-")
    yield name
    redis_delete(name)


@pytest.fixture
async def store() -> AsyncIterator[AsyncEventStore]:
    async with AsyncEventStore() as opened:
        yield opened


async def test_each_event_is_an_entry_whose_id_is_its_position(
    store: AsyncEventStore, key: str
) -> None:
    for i in range(25):
        await store.push("thing_happened", f"order-{i % 4}", {"i": i})
    relay = Relay(store, f"{REDIS}?stream={key}", batch_size=6)

    assert await relay.run() == await store.head_position()

    held = redis_held(key)  # checks each entry id against the event's position
    log = [(e.position, str(e.stream_id), e.version) async for e in store.read_all()]
    assert problems(held, log) == []
    assert {h.subject for h in held} == {f"conduit.order-{n}" for n in range(4)}


async def test_a_relay_without_checkpoint_resumes_after_the_streams_last_id(
    store: AsyncEventStore, key: str
) -> None:
    for i in range(10):
        await store.push("thing_happened", "s", {"i": i})
    await Relay(store, f"{REDIS}?stream={key}", name="one").run()
    await store.push("thing_happened", "s", {"i": 10})

    await Relay(store, f"{REDIS}?stream={key}", name="two").run()

    log = [(e.position, str(e.stream_id), e.version) async for e in store.read_all()]
    assert problems(redis_held(key), log) == []


async def test_redis_refuses_an_entry_at_or_below_the_last_id(
    store: AsyncEventStore, key: str
) -> None:
    """What exactly once rests on, should a relay ever send an event again."""
    from conduit.relay import BrokerError
    from conduit.relay.messages import SubjectTemplate, encode_event
    from conduit.relay.redis import RedisTarget

    event = await store.push("thing_happened", "s", {})
    target = RedisTarget(REDIS, key=key)
    await target.connect()
    try:
        message = encode_event(event, SubjectTemplate())
        await (await target.publish([message]))
        with pytest.raises(BrokerError, match="refused"):
            await (await target.publish([message]))
        assert await target.last_position() == event.position
    finally:
        await target.close()
    assert redis_count(key) == 1


@pytest.mark.torture
@pytest.mark.timeout(400)
def test_relay_killed_at_random_ten_times_leaves_each_event_once_in_order(
    postgres_url: str, key: str
) -> None:
    """8 writers push 20,000 events; the relay is SIGKILLed and restarted 10 times."""
    url = f"{postgres_url}?schema={unique('relay_')}"
    EventStore(url).setup()
    deadline = time.time() + 300
    writers = start_writers(url, writers=8, per_writer=2500)
    command = conduit_command(
        url, "relay", "--to", f"{REDIS}?stream={key}", "--name", "kill", "--batch-size", "200"
    )

    mid_flight = relay_with_kills(
        command,
        kills=10,
        writers=writers,
        finished=lambda: redis_count(key) >= 20_000,
        deadline=deadline,
    )

    held = redis_held(key)
    assert problems(held, store_log(url)) == []
    assert len(held) == 20_000
    assert mid_flight >= 5, f"only {mid_flight} of the kills came while relaying"
