"""Relays (issue 15): throughput to each broker against its raw client, and push-to-consumer
latency over NATS.

A SQLite store of 100,000 events (20,000 with ``--quick``) is relayed to a fresh
broker stream by :class:`conduit.relay.Relay` (``run()``: connect, find where
the broker stands, read, encode, publish, wait for the acknowledgements, keep
the checkpoint), timed up to its last acknowledgement. The raw client publishes
the same messages, encoded before its clock starts, to another fresh stream
with the same acknowledgement discipline, timed from connecting to its last
acknowledgement: NATS JetStream through nats-py's ``publish_async`` (a future per
message, many in flight) with the same headers; Redis through pipelines of the
same batch size, one after the other on one connection; RabbitMQ Streams
through rstream's ``send_batch`` with publish confirms, the same number of
batches in flight. Latency: events pushed one at a time into the store a
relay follows (``run_forever``), received by a NATS subscriber on the
stream's subjects; from before ``push`` to the subscriber's callback.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from benchmarks.common import CONDUIT, Row, Section, Target, event_data, rate
from conduit import AsyncEventStore, EventStore
from conduit.relay import Relay
from conduit.relay import target as target_at
from conduit.relay.messages import Message, SubjectTemplate, encode_event

__all__ = ["run"]

Log = Callable[[str], None]
RAW = "raw client"
NATS = "nats://127.0.0.1:4222"
REDIS = "redis://127.0.0.1:6379/0"
RABBIT = "rabbitmq-stream://guest:guest@127.0.0.1:5552"
BATCH = 500
STREAMS = 1000


def run(quick: bool, workdir: Path, server_url: str, log: Log) -> Section:
    """Measure relay throughput to each target, its raw client's, and NATS latency."""
    del server_url  # the store is a SQLite file
    load_start = os.getloadavg()
    events = 20_000 if quick else 100_000
    rounds = 1 if quick else 2
    section = Section(
        "Relays (issue 15)",
        [CONDUIT, RAW],
        extra_title="Push-to-consumer latency over NATS JetStream (Conduit)",
    )
    url = f"sqlite:///{workdir / 'relay.db'}"
    _fill(url, events)
    log(f"relay: a store of {events:,} events")
    messages = asyncio.run(_messages(url))
    for label, relay, raw in (
        ("NATS JetStream", _relay_nats, _raw_nats),
        ("Redis Streams", _relay_redis, _raw_redis),
        ("RabbitMQ Streams", _relay_rabbit, _raw_rabbit),
    ):
        mine = theirs = 0.0
        for round_ in range(rounds):  # interleaved, the other one first each round
            order = [(relay, url, True), (raw, messages, False)]
            for measure, given, is_mine in order if round_ % 2 == 0 else order[::-1]:
                figure = asyncio.run(measure(given))  # type: ignore[operator]
                if is_mine:
                    mine = max(mine, figure)
                else:
                    theirs = max(theirs, figure)
        log(f"relay {label}: Conduit {mine:,.0f}/s, raw {theirs:,.0f}/s")
        section.rows.append(
            Row(f"relay {events:,} events to {label}", "events/s", {CONDUIT: mine, RAW: theirs})
        )
        section.targets.append(Target(f"relay to {label} / raw client", mine / theirs, 0.7))
    samples = 200 if quick else 1000
    p50, p99 = asyncio.run(_latency(workdir, samples))
    log(f"relay latency over NATS: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    section.extra.append(
        Row(f"push to NATS consumer, p50 ({samples} events)", "ms", {CONDUIT: p50})
    )
    section.extra.append(
        Row(f"push to NATS consumer, p99 ({samples} events)", "ms", {CONDUIT: p99})
    )
    section.targets.append(
        Target("push-to-consumer p99 over NATS", p99, 50.0, at_most=True, unit="ms")
    )
    load_end = os.getloadavg()
    section.notes.append(
        f"Store: SQLite (WAL), {events:,} events over {STREAMS} streams, batches of {BATCH}. "
        "Brokers: the machine's NATS (JetStream, file storage, 1 replica), Redis 7.0 and "
        "RabbitMQ 3.10 (stream plugin), all on 127.0.0.1. The raw client's messages are "
        "encoded before its clock starts; Conduit's time includes reading and encoding. "
        f"Each throughput is the best of {rounds} round(s), the two measured in turn, the "
        "other first each round. "
        f"Load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end."
    )
    section.notes.append(
        "Latency: one push every 5 ms into the AsyncEventStore the relay follows (its "
        "pushes wake the relay at once; another process's pushes are found by polling, "
        "every 10 ms while events come, or at once with PostgreSQL's notify=true)."
    )
    for package in ("nats-py", "redis", "rstream"):
        section.versions[package] = metadata.version(package)
    return section


def _fill(url: str, count: int) -> None:
    with EventStore(url) as store:
        for start in range(0, count, 100):
            stream = f"order-{start // 100 % STREAMS}"
            store.push_many(
                stream, [("value_added", event_data(i)) for i in range(start, start + 100)]
            )


async def _messages(url: str) -> list[Message]:
    subject = SubjectTemplate()
    async with AsyncEventStore(url) as store:
        return [encode_event(event, subject) async for event in store.read_all()]


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def _timed_relay(url: str, target_url: str, cleanup: Callable[[], object]) -> float:
    """From ``run()`` to the last acknowledgement (the target's teardown is not counted:
    rstream's close sleeps 0.2 s per connection)."""
    name = _name("bench-")
    target = target_at(target_url, source=name)
    closing: list[float] = []
    close = target.close

    async def timed_close() -> None:
        closing.append(time.perf_counter())
        await close()

    target.close = timed_close  # type: ignore[method-assign]
    try:
        async with AsyncEventStore(url) as store:
            relay = Relay(store, target, name=name, batch_size=BATCH)
            started = time.perf_counter()
            count = await relay.run()
            head = await store.head_position()
            assert count == head, (count, head)
            return rate(head, closing[0] - started)
    finally:
        await cleanup()  # type: ignore[misc]


# -- NATS ----------------------------------------------------------------------------


async def _delete_jetstream(name: str) -> None:
    import nats

    nc = await nats.connect(NATS)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def _relay_nats(url: str) -> float:
    stream = _name("BENCH")
    return await _timed_relay(url, f"{NATS}/{stream}", lambda: _delete_jetstream(stream))


async def _raw_nats(messages: Sequence[Message]) -> float:
    import nats

    stream = _name("BENCH")
    headers = []
    for seq, message in enumerate(messages):
        h = dict(message.headers)
        h["Nats-Msg-Id"] = f"raw:{message.position}"
        h["Nats-Expected-Last-Sequence"] = str(seq)
        headers.append(h)
    started = time.perf_counter()
    nc = await nats.connect(NATS, pending_size=64 * 1024 * 1024)
    js = nc.jetstream(publish_async_max_pending=BATCH * 32)
    await js.add_stream(name=stream, subjects=["conduit.*"])
    try:
        futures = [
            await js.publish_async(m.subject, m.body, headers=h)
            for m, h in zip(messages, headers, strict=True)
        ]
        await asyncio.gather(*futures)
        return rate(len(messages), time.perf_counter() - started)
    finally:
        await js.delete_stream(stream)
        await nc.close()


# -- Redis ---------------------------------------------------------------------------


async def _relay_redis(url: str) -> float:
    import redis.asyncio

    key = _name("bench-")

    async def cleanup() -> None:
        client = redis.asyncio.Redis.from_url(REDIS)
        await client.delete(key)
        await client.aclose()

    return await _timed_relay(url, f"{REDIS}?stream={key}", cleanup)


async def _raw_redis(messages: Sequence[Message]) -> float:
    import redis.asyncio

    key = _name("bench-")
    started = time.perf_counter()
    client = redis.asyncio.Redis.from_url(REDIS, single_connection_client=True)
    try:
        for at in range(0, len(messages), BATCH):
            pipe = client.pipeline(transaction=False)
            for m in messages[at : at + BATCH]:
                fields = {"event": m.body, "subject": m.subject, **m.headers}
                pipe.xadd(key, fields, id=f"{m.position}-0")  # type: ignore[arg-type]
            await pipe.execute()
        return rate(len(messages), time.perf_counter() - started)
    finally:
        await client.delete(key)
        await client.aclose()


# -- RabbitMQ Streams ------------------------------------------------------------------


async def _delete_rabbit(stream: str) -> None:
    from rstream import Producer

    producer = Producer("127.0.0.1", 5552, username="guest", password="guest")
    await producer.start()
    try:
        await producer.delete_stream(stream, missing_ok=True)
    finally:
        await producer.close()


async def _relay_rabbit(url: str) -> float:
    stream = _name("bench-")
    return await _timed_relay(url, f"{RABBIT}/{stream}", lambda: _delete_rabbit(stream))


async def _raw_rabbit(messages: Sequence[Message]) -> float:
    from rstream import AMQPMessage, ConfirmationStatus, Producer

    stream = _name("bench-")
    started = time.perf_counter()
    producer = Producer("127.0.0.1", 5552, username="guest", password="guest")
    await producer.start()
    await producer.create_stream(stream, exists_ok=True)
    window = asyncio.Semaphore(64)  # as many batches in flight as the relay's target
    pending: list[asyncio.Future[None]] = []
    try:
        for at in range(0, len(messages), BATCH):
            chunk = messages[at : at + BATCH]
            amqp = []
            for m in chunk:
                message = AMQPMessage(
                    body=m.body, application_properties={"subject": m.subject, **m.headers}
                )
                message.publishing_id = m.position
                amqp.append(message)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            left = [len(chunk)]

            def confirmed(
                status: ConfirmationStatus,
                done: asyncio.Future[None] = done,
                left: list[int] = left,
            ) -> None:
                left[0] -= 1
                if not left[0] and not done.done():
                    done.set_result(None)
                    window.release()

            await window.acquire()
            await producer.send_batch(
                stream, amqp, publisher_name="raw", on_publish_confirm=confirmed
            )
            pending.append(done)
        await asyncio.gather(*pending)
        return rate(len(messages), time.perf_counter() - started)
    finally:
        await producer.delete_stream(stream, missing_ok=True)
        await producer.close()


# -- latency -------------------------------------------------------------------------------


async def _latency(workdir: Path, samples: int) -> tuple[float, float]:
    import nats

    stream = _name("BENCHLAT")
    subject = f"{stream.lower()}.{{stream_id}}"
    url = f"sqlite:///{workdir / 'latency.db'}"
    received: dict[int, float] = {}
    nc = await nats.connect(NATS)

    async def on_message(msg: object) -> None:
        position = int(msg.headers["Conduit-Position"])  # type: ignore[attr-defined]
        received[position] = time.perf_counter()

    await nc.subscribe(f"{stream.lower()}.*", cb=on_message)
    sent: dict[int, float] = {}
    try:
        async with AsyncEventStore(url) as store:
            relay = Relay(store, f"{NATS}/{stream}", name="latency", subject=subject)
            running = asyncio.create_task(relay.run_forever())
            await store.push("warmed_up", "warm-up", {})
            deadline = time.monotonic() + 30
            while relay.relayed != 1:
                assert time.monotonic() < deadline, "the relay did not start"
                await asyncio.sleep(0.01)
            for i in range(samples):
                at = time.perf_counter()
                event = await store.push("value_added", f"order-{i % 10}", event_data(i))
                sent[event.position] = at
                await asyncio.sleep(0.005)
            while len([p for p in sent if p in received]) < samples:
                assert time.monotonic() < deadline + samples * 0.01, "events did not arrive"
                await asyncio.sleep(0.01)
            relay.stop()
            await asyncio.wait_for(running, 10)
    finally:
        await nc.close()
        await _delete_jetstream(stream)
    delays = sorted((received[p] - sent[p]) * 1000 for p in sent)
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]
