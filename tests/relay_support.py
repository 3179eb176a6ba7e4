"""Brokers, writers and checks for the relay tests; also run as a script by their children.

``python tests/relay_support.py write URL WRITER COUNT`` pushes COUNT events
from one writer process. The other helpers read back what a broker stream
holds, as :class:`Held` records, and say what is wrong with it. Every loop has
a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

ROOT = Path(__file__).resolve().parents[1]
EVENT_NAME = "thing_happened"
STREAMS_PER_WRITER = 25


class Held(NamedTuple):
    """One message a broker stream holds, as the checks need it."""

    subject: str
    position: int
    stream_id: str
    version: int


def held_from_body(subject: str, body: bytes) -> Held:
    fields = orjson.loads(body)
    return Held(subject, fields["position"], fields["stream_id"], fields["version"])


def unique(prefix: str) -> str:
    """A name no other test (or run) uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}"
    return env


def conduit_command(url: str, *args: str) -> list[str]:
    """The ``conduit`` command, run by this interpreter on this worktree's code."""
    return [sys.executable, "-c", "from conduit.cli import main; main()", "--store", url, *args]


# -- writers --------------------------------------------------------------------


def write(url: str, writer: int, count: int, pause: float = 0.0, gate: str = "") -> None:
    """Push ``count`` events, in batches of 1 to 4, to this writer's streams, waiting
    ``pause`` seconds after each batch; with a ``gate`` file, push half of them, then
    wait (three minutes at most) until the file exists before pushing the rest."""
    from conduit import EventStore

    rng = random.Random(writer)
    with EventStore(url) as store:
        done = 0
        while done < count:
            if gate and done >= count // 2:
                _wait_for_file(Path(gate), time.monotonic() + 180)
                gate = ""
            size = min(count - done, rng.randint(1, 4))
            stream = f"w{writer}-{rng.randrange(STREAMS_PER_WRITER)}"
            store.push_many(
                stream,
                [(EVENT_NAME, {"writer": writer, "i": done + k}) for k in range(size)],
            )
            done += size
            if pause:
                time.sleep(pause)


def _wait_for_file(path: Path, deadline: float) -> None:
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.05)


def start_writers(
    url: str, writers: int, per_writer: int, pause: float = 0.0, gate: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """Writer processes; with ``gate``, each pushes half its events and waits for the
    file ``gate`` to exist before the rest (see :func:`write`)."""
    script = str(Path(__file__).resolve())
    gated = [] if gate is None else [str(gate)]
    return [
        subprocess.Popen(
            [sys.executable, script, "write", url, str(w), str(per_writer), str(pause), *gated],
            env=child_env(),
        )
        for w in range(writers)
    ]


# -- killing a relay ------------------------------------------------------------


def relay_with_kills(
    command: Sequence[str],
    *,
    kills: int,
    writers: Sequence[subprocess.Popen[bytes]],
    finished: Callable[[], bool],
    deadline: float,
    seed: int = 15,
) -> int:
    """Run the relay ``command``, SIGKILL and restart it ``kills`` times at random while it
    publishes, then let it finish: returns how many kills happened while the broker was
    still short of the store's events (``finished()`` tells whether it holds them all)."""
    rng = random.Random(seed)
    mid_flight = 0
    for _ in range(kills):
        process = subprocess.Popen(command, env=child_env(), stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        done = finished()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        if not done:
            mid_flight += 1
        assert time.time() < deadline, "the kill loop ran out of time"
    for writer in writers:
        assert writer.wait(max(1.0, deadline - time.time())) == 0
    final = subprocess.Popen(command, env=child_env())
    try:
        while not finished():
            assert time.time() < deadline, "the broker is short of events at the deadline"
            assert final.poll() is None, "the relay exited"
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more may come
    finally:
        final.send_signal(signal.SIGTERM)
        try:
            final.wait(20)
        except subprocess.TimeoutExpired:
            final.kill()
            final.wait(5)
    return mid_flight


# -- checks ---------------------------------------------------------------------


def problems(held: Sequence[Held], log: Iterable[tuple[int, str, int]]) -> list[str]:
    """What is wrong with a broker's contents, given the store's log (position, stream, version).

    Empty when the broker holds each event exactly once, in log order (so each
    stream's events in version order, positions increasing on each subject).
    """
    found: list[str] = []
    expected = list(log)
    positions = [h.position for h in held]
    if len(set(positions)) != len(positions):
        found.append(f"{len(positions) - len(set(positions))} events held twice")
    wanted = [p for p, _, _ in expected]
    if set(positions) != set(wanted):
        missing = sorted(set(wanted) - set(positions))
        extra = sorted(set(positions) - set(wanted))
        found.append(f"missing {len(missing)} (e.g. {missing[:3]}), unknown {len(extra)}")
    if positions != sorted(positions):
        found.append("not in log order")
    by_stream: dict[str, list[int]] = defaultdict(list)
    by_subject: dict[str, list[int]] = defaultdict(list)
    for h in held:
        by_stream[h.stream_id].append(h.version)
        by_subject[h.subject].append(h.position)
    for stream, versions in by_stream.items():
        if versions != list(range(1, len(versions) + 1)):
            found.append(f"stream {stream}: versions {versions[:10]}...")
    for subject, ordered in by_subject.items():
        if any(b <= a for a, b in itertools.pairwise(ordered)):
            found.append(f"subject {subject}: positions not strictly increasing")
    return found


def store_log(url: str) -> list[tuple[int, str, int]]:
    from conduit import EventStore

    with EventStore(url) as store:
        return [(e.position, str(e.stream_id), e.version) for e in store.read_all()]


# -- NATS ------------------------------------------------------------------------


async def nats_held(servers: Sequence[str], stream: str, timeout: float = 60.0) -> list[Held]:
    """Every message of a JetStream stream, in stream order."""
    import nats

    nc = await nats.connect(servers=list(servers), connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(stream)
        total = info.state.messages
        held: list[Held] = []
        if not total:
            return held
        sub = await js.pull_subscribe("", durable=None, stream=stream)
        deadline = time.monotonic() + timeout
        while len(held) < total:
            assert time.monotonic() < deadline, f"read {len(held)} of {total} messages"
            try:
                msgs = await sub.fetch(min(1000, total - len(held)), timeout=2)
            except TimeoutError:
                continue
            for msg in msgs:
                held.append(held_from_body(msg.subject, msg.data))
                await msg.ack()
        await sub.unsubscribe()
        return held
    finally:
        await nc.close()


async def nats_count(servers: Sequence[str], stream: str) -> int:
    import nats
    import nats.js.errors

    nc = await nats.connect(servers=list(servers), connect_timeout=5)
    try:
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()


async def nats_delete(servers: Sequence[str], stream: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(servers=list(servers), connect_timeout=5)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream(timeout=10).delete_stream(stream)
    finally:
        await nc.close()


# -- Redis ---------------------------------------------------------------------------

REDIS = "redis://127.0.0.1:6379/0"


def redis_held(key: str, url: str = REDIS) -> list[Held]:
    """Every entry of a Redis stream, checking that its id is the event's position."""
    import redis

    client = redis.Redis.from_url(url)
    held: list[Held] = []
    after = "-"
    while True:
        entries: Any = client.xrange(key, min=after, count=2000)
        if after != "-":
            entries = entries[1:]
        if not entries:
            break
        for entry_id, fields in entries:
            item = held_from_body(fields[b"subject"].decode(), fields[b"event"])
            assert entry_id.decode() == f"{item.position}-0"
            held.append(item)
        after = entries[-1][0].decode()
    client.close()
    return held


def redis_count(key: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        return int(client.xlen(key))
    finally:
        client.close()


def redis_delete(key: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    client.delete(key)
    client.close()


# -- RabbitMQ Streams ------------------------------------------------------------------


async def rabbit_held(
    stream: str, count: int, timeout: float = 60.0, port: int = 5552
) -> list[Held]:
    """The first ``count`` messages of a RabbitMQ stream (and any more that come in 1 s)."""
    from rstream import (
        AMQPMessage,
        Consumer,
        ConsumerOffsetSpecification,
        OffsetType,
        amqp_decoder,
    )

    held: list[Held] = []
    enough = asyncio.Event()

    async def on_message(message: AMQPMessage, context: object) -> None:
        props = message.application_properties or {}
        subject = props.get(b"subject", props.get("subject"))
        if isinstance(subject, bytes):
            subject = subject.decode()
        held.append(held_from_body(str(subject), bytes(message.body)))
        if len(held) >= count:
            enough.set()

    consumer = Consumer("127.0.0.1", port, username="guest", password="guest")
    await consumer.start()
    try:
        await consumer.subscribe(
            stream,
            on_message,
            decoder=amqp_decoder,
            offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None),
        )
        await asyncio.wait_for(enough.wait(), timeout)
        await asyncio.sleep(1.0)  # a repeat would come now
    finally:
        await consumer.close()
    return held


async def rabbit_last(stream: str, reference: str, port: int = 5552) -> int:
    """The last publishing id the broker holds for a producer (0: none, or no answer)."""
    from rstream import Producer

    producer = Producer("127.0.0.1", port, username="guest", password="guest")
    await producer.start()
    try:
        client = await producer.default_client
        return int(await client.query_publisher_sequence(stream=stream, reference=reference))
    except Exception:
        return 0
    finally:
        await producer.close()


async def rabbit_delete(stream: str) -> None:
    from rstream import Producer

    producer = Producer("127.0.0.1", 5552, username="guest", password="guest")
    await producer.start()
    try:
        await producer.delete_stream(stream, missing_ok=True)
    finally:
        await producer.close()


# -- consuming --------------------------------------------------------------------------


def consume_ledger(source: str, database: str, *, batch_size: int = 50) -> None:
    """Drive the worker tests' SQL read model (tests/worker_app.py) from a relay's stream."""
    from conduit.relay.consume import consume
    from worker_app import Ledger

    projection = Ledger(database)
    projection.setup()
    asyncio.run(consume(projection, source, batch_size=batch_size))


def ledger_projections() -> list[object]:
    """For ``conduit run relay_support:ledger_projections``: the ledger in $LEDGER_DATABASE."""
    from worker_app import Ledger

    projection = Ledger(os.environ["LEDGER_DATABASE"])
    projection.setup()
    return [projection]


def ledger_of(events: Iterable[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """The totals the read model must hold for these (stream id, value) events."""
    totals: dict[str, tuple[int, int]] = {}
    for stream, value in events:
        count, total = totals.get(stream, (0, 0))
        totals[stream] = (count + 1, total + value)
    return totals


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), *sys.argv[6:])
    elif sys.argv[1] == "consume":
        consume_ledger(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
