"""The relay to NATS JetStream (the server on 127.0.0.1:4222), against a real server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from conduit import AsyncEventStore, EventStore
from conduit.relay import LeaseLost, Relay
from relay_support import (
    conduit_command,
    nats_count,
    nats_delete,
    nats_held,
    problems,
    relay_with_kills,
    start_writers,
    store_log,
    unique,
)

NATS = ["nats://127.0.0.1:4222"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def jetstream() -> Iterator[str]:
    """A JetStream stream name of this test's own, deleted afterwards."""
    name = unique("RELAYTEST")
    yield name
    asyncio.run(nats_delete(NATS, name))


@pytest.fixture
async def store() -> AsyncIterator[AsyncEventStore]:
    async with AsyncEventStore() as opened:
        yield opened


def _subject(stream: str) -> str:
    return f"{stream.lower()}.{{stream_id}}"


async def test_relay_publishes_each_event_once_on_its_streams_subject_with_headers(
    store: AsyncEventStore, jetstream: str
) -> None:
    order = f"order-{uuid.uuid4().hex[:6]}"
    await store.push("order_placed", order, {"total": 3})
    await store.push("order_paid", order, {"amount": 3}, metadata={"user": "kris"})
    await store.push("person_registered", "person/1.x", {"name": "Kris"})
    relay = Relay(store, f"nats://127.0.0.1:4222/{jetstream}", subject=_subject(jetstream))

    assert await relay.run() == await store.head_position()

    held = await nats_held(NATS, jetstream)
    assert [(h.subject, h.version) for h in held] == [
        (f"{jetstream.lower()}.{order}", 1),
        (f"{jetstream.lower()}.{order}", 2),
        (f"{jetstream.lower()}.person%2F1%2Ex", 1),
    ]
    import nats

    nc = await nats.connect(NATS[0])
    try:
        msg = await nc.jetstream().get_msg(jetstream, seq=2)
    finally:
        await nc.close()
    paid = [e async for e in store.read_all()][1]
    assert msg.headers is not None
    assert msg.headers["Conduit-Event-Name"] == "order_paid"
    assert msg.headers["Conduit-Stream-Id"] == order
    assert msg.headers["Conduit-Position"] == str(paid.position)
    assert msg.headers["Conduit-Event-Id"] == str(paid.id)
    assert msg.headers["Nats-Msg-Id"] == f"relay:{paid.position}"
    from conduit.relay import decode_event

    assert decode_event(msg.data or b"") == paid


async def test_a_relay_started_again_resumes_after_the_streams_last_message(
    store: AsyncEventStore, jetstream: str
) -> None:
    for i in range(30):
        await store.push("thing_happened", f"s-{i % 3}", {"i": i})
    url = f"nats://127.0.0.1:4222/{jetstream}"
    await Relay(store, url, subject=_subject(jetstream), name="one", batch_size=7).run()
    for i in range(5):
        await store.push("thing_happened", "s-9", {"i": i})

    # Another name (other message ids, no checkpoint): only the broker says where to go on.
    await Relay(store, url, subject=_subject(jetstream), name="two").run()

    held = await nats_held(NATS, jetstream)
    log = [(e.position, str(e.stream_id), e.version) async for e in store.read_all()]
    assert problems(held, log) == []
    assert len(held) == 35


async def test_the_checkpoint_follows_what_the_broker_acknowledged(
    store: AsyncEventStore, jetstream: str
) -> None:
    for i in range(12):
        await store.push("thing_happened", "s", {"i": i})
    relay = Relay(store, f"nats://127.0.0.1:4222/{jetstream}", subject=_subject(jetstream))
    await relay.run()
    statuses = {s.name: s for s in await store.subscription_status()}
    assert statuses["relay"].checkpoint == await store.head_position()
    assert statuses["relay"].behind == 0
    await store.push("thing_happened", "s", {"i": 12})
    statuses = {s.name: s for s in await store.subscription_status()}
    assert statuses["relay"].behind == 1


async def test_a_second_relay_of_the_same_name_stands_by(tmp_path: object, jetstream: str) -> None:
    url = f"sqlite:///{tmp_path}/relay.db"
    async with AsyncEventStore(url) as first_store, AsyncEventStore(url) as second_store:
        await first_store.push("thing_happened", "s", {})
        target = f"nats://127.0.0.1:4222/{jetstream}"
        first = Relay(first_store, target, subject=_subject(jetstream), name="r")
        second = Relay(second_store, target, subject=_subject(jetstream), name="r")
        running = asyncio.create_task(first.run_forever())
        try:
            deadline = time.monotonic() + 10
            while first.relayed != await first_store.head_position():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            with pytest.raises(LeaseLost):
                await second.run()
        finally:
            first.stop()
            await asyncio.wait_for(running, 10)
        assert first.state == "stopped"
        assert await second.run() == 1  # the lease is free again: nothing left to publish
    assert await nats_count(NATS, jetstream) == 1


async def test_an_unreachable_broker_is_retried_and_said_in_the_state(
    store: AsyncEventStore,
) -> None:
    await store.push("thing_happened", "s", {})
    relay = Relay(store, "nats://127.0.0.1:1/NOWHERE", backoff=0.01, max_backoff=0.05)
    running = asyncio.create_task(relay.run_forever())
    try:
        deadline = time.monotonic() + 10
        while relay.state != "retrying":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert relay.last_error is not None
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)


# -- SIGKILL while relaying ---------------------------------------------------------


@pytest.mark.torture
@pytest.mark.timeout(400)
def test_relay_killed_at_random_ten_times_leaves_each_event_once_in_order(
    postgres_url: str, jetstream: str
) -> None:
    """8 writers push 20,000 events; the relay is SIGKILLed and restarted 10 times."""
    url = f"{postgres_url}?schema={unique('relay_')}"
    EventStore(url).setup()
    deadline = time.time() + 300
    writers = start_writers(url, writers=8, per_writer=2500)
    command = conduit_command(
        url,
        "relay",
        "--to",
        f"nats://127.0.0.1:4222/{jetstream}",
        "--subject",
        _subject(jetstream),
        "--name",
        "kill-test",
        "--batch-size",
        "200",
    )

    def finished() -> bool:
        return asyncio.run(nats_count(NATS, jetstream)) >= 20_000

    mid_flight = relay_with_kills(
        command, kills=10, writers=writers, finished=finished, deadline=deadline
    )

    held = asyncio.run(nats_held(NATS, jetstream))
    assert problems(held, store_log(url)) == []
    assert len(held) == 20_000
    assert mid_flight >= 5, f"only {mid_flight} of the kills came while relaying"
