"""The relay to RabbitMQ Streams (127.0.0.1:5552, the rabbitmq_stream plugin), for real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from conduit import AsyncEventStore, EventStore
from conduit.relay import Relay
from relay_support import (
    conduit_command,
    problems,
    rabbit_delete,
    rabbit_held,
    rabbit_last,
    relay_with_kills,
    start_writers,
    store_log,
    unique,
)

pytestmark = pytest.mark.anyio

BROKER = "rabbitmq-stream://guest:guest@127.0.0.1:5552"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stream() -> Iterator[str]:
    """A RabbitMQ stream of this test's own, deleted afterwards."""
    name = unique("relaytest-")
    yield name
    asyncio.run(rabbit_delete(name))


@pytest.fixture
async def store() -> AsyncIterator[AsyncEventStore]:
    async with AsyncEventStore() as opened:
        yield opened


async def test_each_event_is_published_once_with_its_position_as_publishing_id(
    store: AsyncEventStore, stream: str
) -> None:
    for i in range(40):
        await store.push("thing_happened", f"order-{i % 3}", {"i": i})
    relay = Relay(store, f"{BROKER}/{stream}", name="rel", batch_size=9, subject="app.{category}")

    assert await relay.run() == await store.head_position()
    assert await Relay(store, f"{BROKER}/{stream}", name="rel").run() == 40  # nothing again

    held = await rabbit_held(stream, 40)
    log = [(e.position, str(e.stream_id), e.version) async for e in store.read_all()]
    assert problems(held, log) == []
    assert {h.subject for h in held} == {"app.order"}
    assert await rabbit_last(stream, "rel") == await store.head_position()


async def test_the_broker_drops_a_repeated_publishing_id_of_the_named_producer(
    store: AsyncEventStore, stream: str
) -> None:
    """What exactly once rests on, should a relay ever send an event again."""
    from conduit.relay.messages import SubjectTemplate, encode_event
    from conduit.relay.rabbitmq import RabbitStreamTarget

    events = [await store.push("thing_happened", "s", {"i": i}) for i in range(3)]
    target = RabbitStreamTarget(stream=stream, producer="p")
    await target.connect()
    try:
        messages = [encode_event(e, SubjectTemplate()) for e in events]
        await (await target.publish(messages))
        await (await target.publish(messages[1:]))  # confirmed, and dropped
        assert await target.last_position() == events[-1].position
    finally:
        await target.close()
    held = await rabbit_held(stream, 3)
    assert [h.position for h in held] == [e.position for e in events]


@pytest.mark.torture
@pytest.mark.timeout(400)
def test_relay_killed_at_random_ten_times_leaves_each_event_once_in_order(
    postgres_url: str, stream: str
) -> None:
    """8 writers push 20,000 events; the relay is SIGKILLed and restarted 10 times."""
    url = f"{postgres_url}?schema={unique('relay_')}"
    EventStore(url).setup()
    deadline = time.time() + 300
    writers = start_writers(url, writers=8, per_writer=2500)
    command = conduit_command(
        url, "relay", "--to", f"{BROKER}/{stream}", "--name", "kill", "--batch-size", "200"
    )
    head = 0

    def finished() -> bool:
        nonlocal head
        if not head and all(w.poll() is not None for w in writers):
            head = store_log(url)[-1][0]
        return bool(head) and asyncio.run(rabbit_last(stream, "kill")) >= head

    mid_flight = relay_with_kills(
        command, kills=10, writers=writers, finished=finished, deadline=deadline
    )

    held = asyncio.run(rabbit_held(stream, 20_000))
    assert problems(held, store_log(url)) == []
    assert len(held) == 20_000
    assert mid_flight >= 5, f"only {mid_flight} of the kills came while relaying"


def test_the_amqp_encoding_is_rstreams_and_decodes_back() -> None:
    from rstream import AMQPMessage, amqp_decoder

    from conduit.relay.messages import Message
    from conduit.relay.rabbitmq import amqp_message

    headers = {"Conduit-Event-Name": "order_paid", "Conduit-Stream-Id": "é" * 300}
    for body in (b'{"a": 1}', b"x" * 70_000):
        for given in ({"Conduit-Position": "7"}, headers):
            message = Message(7, "conduit.order-1", body, given)
            encoded = amqp_message(message)
            properties = {"subject": message.subject, **given}
            if len(encoded) < 1000:  # rstream writes long maps in the other (also valid) form
                assert encoded == bytes(AMQPMessage(body=body, application_properties=properties))
            decoded = amqp_decoder(encoded)
            assert bytes(decoded.body) == body
            assert decoded.application_properties == {
                k.encode(): v.encode() for k, v in properties.items()
            }
