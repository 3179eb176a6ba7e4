"""conduit.relay.consume: a SQL read model built from a relay's JetStream stream, for real."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conduit import AsyncEventStore
from conduit.relay import Relay
from conduit.relay.consume import consume
from relay_support import (
    child_env,
    ledger_of,
    nats_delete,
    unique,
)
from worker_app import EVENT, Ledger, hits, ledger, read_checkpoint

pytestmark = pytest.mark.anyio

NATS = ["nats://127.0.0.1:4222"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def jetstream() -> Iterator[str]:
    name = unique("RELAYTEST")
    yield name
    asyncio.run(nats_delete(NATS, name))


async def _relayed(jetstream: str, count: int, *, seed: int = 1) -> list[tuple[str, int, int]]:
    """Push ``count`` events to a store in memory, relay them; returns (stream, value, position)."""
    rng = random.Random(seed)
    pushed = []
    async with AsyncEventStore() as store:
        for i in range(count):
            stream = f"account-{rng.randrange(20)}"
            event = await store.push(EVENT, stream, {"value": rng.randrange(1000), "i": i})
            pushed.append((stream, event.data["value"], event.position))
        await Relay(
            store, f"nats://127.0.0.1:4222/{jetstream}", subject=f"{jetstream}.{{stream_id}}"
        ).run()
    return pushed


def _applied_once(database: str) -> bool:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(hits.c.times)).scalars()) == {1}
    finally:
        engine.dispose()


def _ledger(database: str) -> Ledger:
    projection = Ledger(database)
    projection.setup()
    return projection


def _checkpoint(database: str) -> int:
    engine = sa.create_engine(database)
    try:
        return read_checkpoint(engine)
    except sa.exc.OperationalError:  # no table yet
        return 0
    finally:
        engine.dispose()


async def test_a_read_model_consumed_from_the_broker_equals_the_store(
    jetstream: str, tmp_path: Path
) -> None:
    pushed = await _relayed(jetstream, 300)
    database = f"sqlite:///{tmp_path}/ledger.db"
    stop = asyncio.Event()
    running = asyncio.create_task(
        consume(_ledger(database), f"nats://127.0.0.1:4222/{jetstream}", batch_size=40, stop=stop)
    )
    try:
        deadline = time.monotonic() + 30
        while _checkpoint(database) < pushed[-1][2]:
            assert time.monotonic() < deadline, "the consumer did not catch up"
            assert not running.done(), running
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
    assert ledger(database) == ledger_of((s, v) for s, v, _ in pushed)
    assert _applied_once(database)


async def test_a_consumer_started_again_goes_on_after_its_checkpoint(
    jetstream: str, tmp_path: Path
) -> None:
    pushed = await _relayed(jetstream, 120)
    database = f"sqlite:///{tmp_path}/ledger.db"
    for _ in range(2):  # the second run finds its checkpoint at the end: nothing again
        stop = asyncio.Event()
        running = asyncio.create_task(
            consume(_ledger(database), f"nats://127.0.0.1:4222/{jetstream}", stop=stop)
        )
        deadline = time.monotonic() + 30
        while _checkpoint(database) < pushed[-1][2]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(running, 20)
    assert ledger(database) == ledger_of((s, v) for s, v, _ in pushed)
    assert _applied_once(database)


def test_conduit_run_from_a_relay_stream_builds_the_read_model(
    jetstream: str, tmp_path: Path
) -> None:
    pushed = asyncio.run(_relayed(jetstream, 200))
    database = f"sqlite:///{tmp_path}/ledger.db"
    env = {**child_env(), "LEDGER_DATABASE": database}
    command = [
        sys.executable,
        "-c",
        "from conduit.cli import main; main()",
        "run",
        "relay_support:ledger_projections",
        "--from",
        f"nats://127.0.0.1:4222/{jetstream}",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _checkpoint(database) < pushed[-1][2]:
            assert time.monotonic() < deadline, "the worker did not catch up"
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert b"Running ledger from nats://" in errors
    assert ledger(database) == ledger_of((s, v) for s, v, _ in pushed)


@pytest.mark.torture
@pytest.mark.timeout(300)
def test_a_consumer_killed_at_random_builds_the_read_model_of_the_store(
    jetstream: str, tmp_path: Path
) -> None:
    pushed = asyncio.run(_relayed(jetstream, 20_000))
    database = f"sqlite:///{tmp_path}/ledger.db"
    _ledger(database)
    command = [
        sys.executable,
        str(Path(__file__).with_name("relay_support.py")),
        "consume",
        f"nats://127.0.0.1:4222/{jetstream}",
        database,
    ]
    rng = random.Random(15)
    deadline = time.time() + 200
    mid_flight = 0
    for _ in range(10):
        before = _checkpoint(database)
        process = subprocess.Popen(command, env=child_env(), stderr=subprocess.DEVNULL)
        while _checkpoint(database) == before and before < pushed[-1][2]:
            assert time.time() < deadline, "the consumer made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))  # kill it at a random point of its work
        behind = _checkpoint(database) < pushed[-1][2]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        mid_flight += behind
        assert time.time() < deadline
    final = subprocess.Popen(command, env=child_env())
    try:
        while _checkpoint(database) < pushed[-1][2]:
            assert time.time() < deadline, "the consumer did not catch up"
            assert final.poll() is None, "the consumer exited"
            time.sleep(0.1)
    finally:
        final.send_signal(signal.SIGTERM)
        try:
            final.wait(20)
        except subprocess.TimeoutExpired:
            final.kill()
            final.wait(5)
    assert ledger(database) == ledger_of((s, v) for s, v, _ in pushed)
    assert _applied_once(database)
    assert mid_flight >= 5, f"only {mid_flight} of the kills came while consuming"
