"""Brokers failing under a relay: a node of a NATS cluster killed, then the stream's leader;
a Redis server and a RabbitMQ node (streams) killed and started again. Nothing lost,
nothing twice, caught up alone."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conduit import EventStore
from nats_cluster import NatsCluster, answers, free_port
from rabbit_node import RabbitNode
from relay_support import (
    child_env,
    conduit_command,
    nats_count,
    nats_held,
    problems,
    rabbit_held,
    rabbit_last,
    redis_held,
    start_writers,
    store_log,
    unique,
)

WRITERS, PER_WRITER = 4, 1000
EVENTS = WRITERS * PER_WRITER


def _wait(condition: Callable[[], bool], what: str, deadline: float) -> None:
    while not condition():
        assert time.time() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.mark.torture
@pytest.mark.timeout(300)
def test_a_nats_node_then_the_streams_leader_killed_while_relaying(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    EventStore(url).setup()
    stream = unique("RELAYCLUSTER")
    deadline = time.time() + 240
    with NatsCluster(tmp_path / "nats") as cluster:
        hosts = ",".join(s.removeprefix("nats://") for s in cluster.servers)
        relay = subprocess.Popen(
            conduit_command(
                url,
                "relay",
                "--to",
                f"nats://{hosts}/{stream}?replicas=3",
                "--subject",
                f"{stream.lower()}.{{stream_id}}",
                "--batch-size",
                "100",
            ),
            env=child_env(),
        )
        # the writers stop half-way until the gate opens, just before the leader is
        # killed: the relay is still short of the store's events when it loses its leader
        gate = tmp_path / "gate"
        writers = start_writers(url, writers=WRITERS, per_writer=PER_WRITER, pause=0.02, gate=gate)
        try:
            leader = asyncio.run(cluster.stream_leader(stream))
            follower = (leader + 1) % 3
            time.sleep(0.5)
            cluster.kill(follower)  # a node that is not the leader
            time.sleep(1.5)
            cluster.start(follower)
            asyncio.run(cluster.wait_for_jetstream())
            leader = asyncio.run(cluster.stream_leader(stream))
            held_before = _nats_count(cluster, stream)
            gate.touch()
            cluster.kill(leader)  # then the stream's leader
            time.sleep(2.0)
            cluster.start(leader)
            for writer in writers:
                assert writer.wait(max(1.0, deadline - time.time())) == 0
            _wait(
                lambda: _nats_count(cluster, stream) >= EVENTS,
                "the relay catching up after the kills",
                deadline,
            )
            assert relay.poll() is None, "the relay exited"
        finally:
            _stop(relay)
        held = asyncio.run(nats_held(cluster.live_servers(), stream))
    assert held_before < EVENTS, "the leader was killed after the relay had finished"
    assert problems(held, store_log(url)) == []
    assert len(held) == EVENTS


@pytest.mark.torture
@pytest.mark.timeout(300)
def test_a_redis_server_killed_and_started_again_while_relaying(tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (Debian: apt-get install redis)"
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    redis_cmd = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        _wait(lambda: answers(port), "redis-server starting", time.time() + 20)
        return process

    url = f"sqlite:///{tmp_path}/events.db"
    EventStore(url).setup()
    key = unique("relaytest-")
    target = f"redis://127.0.0.1:{port}/0?stream={key}"
    deadline = time.time() + 240
    redis_server = start_redis()
    relay = subprocess.Popen(
        conduit_command(url, "relay", "--to", target, "--batch-size", "100"), env=child_env()
    )
    # the writers stop half-way until the gate opens, once the server is back: the
    # relay has the other half to publish after the restart
    gate = tmp_path / "gate"
    writers = start_writers(url, writers=WRITERS, per_writer=PER_WRITER, pause=0.02, gate=gate)
    try:
        time.sleep(1.0)
        redis_server.send_signal(signal.SIGKILL)
        redis_server.wait(10)
        held_before = _xlen(port, key)
        time.sleep(2.0)  # the relay retries meanwhile
        redis_server = start_redis()
        gate.touch()
        for writer in writers:
            assert writer.wait(max(1.0, deadline - time.time())) == 0
        _wait(lambda: (_xlen(port, key) or 0) >= EVENTS, "the relay catching up", deadline)
        assert relay.poll() is None, "the relay exited"
        held = redis_held(key, url=f"redis://127.0.0.1:{port}/0")
    finally:
        _stop(relay)
        redis_server.send_signal(signal.SIGKILL)
        redis_server.wait(10)
    assert held_before is None or held_before < EVENTS
    assert problems(held, store_log(url)) == []
    assert len(held) == EVENTS


@pytest.mark.torture
@pytest.mark.timeout(360)
def test_a_rabbitmq_node_restarted_while_relaying(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    EventStore(url).setup()
    stream = unique("relaytest-")
    deadline = time.time() + 300
    with RabbitNode(tmp_path / "rabbit") as node:
        port = node.stream_port
        relay = subprocess.Popen(
            conduit_command(
                url,
                "relay",
                "--to",
                f"rabbitmq-stream://guest:guest@127.0.0.1:{port}/{stream}",
                "--name",
                "restarted",
                "--batch-size",
                "100",
            ),
            env=child_env(),
        )
        # the writers stop half-way until the gate opens, once the node is back: the
        # relay has the other half to publish after the restart, however long it took
        gate = tmp_path / "gate"
        writers = start_writers(url, writers=WRITERS, per_writer=PER_WRITER, pause=0.02, gate=gate)
        try:
            _wait(lambda: _rabbit_last(stream, port) > 0, "the first confirms", deadline)
            node.stop()  # SIGTERM: RabbitMQ shuts down; writers and the relay go on
            time.sleep(2.0)  # the relay retries meanwhile
            node.start()
            held_before = _rabbit_last(stream, port)
            gate.touch()
            for writer in writers:
                assert writer.wait(max(1.0, deadline - time.time())) == 0
            _wait(
                lambda: _rabbit_last(stream, port) >= EVENTS,
                "the relay catching up after the restart",
                deadline,
            )
            assert relay.poll() is None, "the relay exited"
        finally:
            _stop(relay)
        held = asyncio.run(rabbit_held(stream, EVENTS, port=port))
    assert held_before < EVENTS, "the node was killed after the relay had finished"
    assert problems(held, store_log(url)) == []
    assert len(held) == EVENTS


def _rabbit_last(stream: str, port: int) -> int:
    """The last position the broker confirmed for the relay (its publishing id); 0 if none."""
    return asyncio.run(rabbit_last(stream, "restarted", port=port))


def _nats_count(cluster: NatsCluster, stream: str) -> int:
    """How many messages the stream holds; -1 while the cluster cannot say (electing)."""
    import nats.errors

    try:
        return asyncio.run(nats_count(cluster.live_servers(), stream))
    except (nats.errors.Error, OSError):
        return -1


def _xlen(port: int, key: str) -> int | None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        return int(client.xlen(key))
    except redis.exceptions.ConnectionError:
        return None
    finally:
        client.close()
