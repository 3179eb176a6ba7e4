"""A relay's lag and state where every subscription's show: conduit projections, conduit
stats, the browser (a relay to the local NATS server, and one to a broker that is down)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conduit import AsyncEventStore, EventStore
from conduit.cli.application import app
from conduit.relay import Relay
from conduit.web import create_app
from nats_cluster import free_port
from relay_support import conduit_command, nats_delete, unique

NATS = ["nats://127.0.0.1:4222"]


@pytest.fixture
def jetstream() -> Iterator[str]:
    name = unique("RELAYTEST")
    yield name
    asyncio.run(nats_delete(NATS, name))


@pytest.fixture
def url(tmp_path: Path, jetstream: str) -> str:
    """A store whose relay 'to-nats' relayed 10 events and is 3 behind."""
    url = f"sqlite:///{tmp_path}/events.db"
    with EventStore(url) as store:
        for i in range(10):
            store.push("thing_happened", f"s-{i % 2}", {"i": i})
    target = f"nats://127.0.0.1:4222/{jetstream}"
    result = CliRunner().invoke(
        app,
        [
            "--store",
            url,
            "relay",
            "--to",
            target,
            "--name",
            "to-nats",
            "--subject",
            f"{jetstream}.{{stream_id}}",
            "--once",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "relayed up to position 10" in result.output
    with EventStore(url) as store:
        for i in range(3):
            store.push("thing_happened", "s-0", {"i": 10 + i})
    return url


def test_conduit_projections_shows_the_relays_lag(url: str) -> None:
    result = CliRunner().invoke(app, ["--store", url, "projections", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["to-nats"]["checkpoint"] == 10
    assert records["to-nats"]["behind"] == 3
    assert records["to-nats"]["state"]["state"] == "stopped"  # --once ended


def test_conduit_stats_shows_the_relays_lag(url: str) -> None:
    result = CliRunner().invoke(app, ["--store", url, "stats", "--json"])
    assert result.exit_code == 0, result.output
    projections = {p["name"]: p for p in json.loads(result.stdout)["projections"]}
    assert projections["to-nats"]["behind"] == 3


def test_the_browser_shows_the_relays_lag(url: str) -> None:
    with EventStore(url) as store:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            found = client.get("/api/projections").json()["projections"]
            page = client.get("/projections").text
    relay = next(p for p in found if p["name"] == "to-nats")
    assert (relay["checkpoint"], relay["behind"]) == (10, 3)
    assert "to-nats" in page


@pytest.fixture
def retrying(tmp_path: Path) -> Iterator[str]:
    """A store whose relay 'to-nowhere' retries, its broker down, while the test looks."""
    url = f"sqlite:///{tmp_path}/events.db"
    with EventStore(url) as store:
        for i in range(5):
            store.push("thing_happened", f"s-{i % 2}", {"i": i})
    loop = asyncio.new_event_loop()
    relays: list[Relay] = []

    async def relay_forever() -> None:
        async with AsyncEventStore(url) as store:
            relay = Relay(
                store,
                f"nats://127.0.0.1:{free_port()}/NOWHERE",  # nothing listens there
                name="to-nowhere",
                backoff=0.05,
                max_backoff=0.2,
            )
            relays.append(relay)
            await relay.run_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(relay_forever(),))
    thread.start()
    try:
        deadline = time.time() + 30
        while not _state_of(url, "to-nowhere"):
            assert time.time() < deadline, "the relay never said it was retrying"
            time.sleep(0.05)
        yield url
    finally:
        while not relays:
            time.sleep(0.01)
        loop.call_soon_threadsafe(relays[0].stop)
        thread.join(30)
        loop.close()
    assert _state_of(url, "to-nowhere") == "stopped"


def _state_of(url: str, name: str) -> str | None:
    with EventStore(url) as store:
        for state in store.backend.subscription_states():
            if state.name == name:
                return str(state.state)
    return None


def _retrying(record: dict[str, Any]) -> None:
    assert record["state"]["state"] == "retrying"
    assert "NOWHERE" in record["state"]["detail"] or "Broker" in record["state"]["detail"]
    assert record["state"]["since"].endswith("Z")


def test_conduit_projections_and_stats_say_a_relay_is_retrying(retrying: str) -> None:
    result = CliRunner().invoke(app, ["--store", retrying, "projections", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    _retrying(records["to-nowhere"])
    assert records["to-nowhere"]["behind"] == 5
    result = CliRunner().invoke(app, ["--store", retrying, "stats", "--json"])
    assert result.exit_code == 0, result.output
    _retrying({p["name"]: p for p in json.loads(result.stdout)["projections"]}["to-nowhere"])
    table = CliRunner().invoke(app, ["--store", retrying, "projections"], env={"COLUMNS": "250"})
    assert "retrying since" in table.stdout


def test_the_browser_says_a_relay_is_retrying(retrying: str) -> None:
    with EventStore(retrying) as store:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            found = client.get("/api/projections").json()["projections"]
            page = client.get("/projections").text
            overview = client.get("/").text
    _retrying(next(p for p in found if p["name"] == "to-nowhere"))
    assert "retrying since" in page
    assert "retrying since" in overview


@pytest.mark.timeout(120)
def test_a_relay_killed_while_relaying_shows_as_stopped(tmp_path: Path, jetstream: str) -> None:
    # SIGKILL leaves it no time to say it stopped: what it last said (idle, caught up)
    # stays in the store, and its lease lapses after its ttl.
    url = f"sqlite:///{tmp_path}/events.db"
    with EventStore(url) as store:
        for i in range(5):
            store.push("thing_happened", f"s-{i % 2}", {"i": i})
    command = conduit_command(
        url,
        "relay",
        "--to",
        f"nats://127.0.0.1:4222/{jetstream}",
        "--name",
        "to-nats",
        "--subject",
        f"{jetstream}.{{stream_id}}",
        "--lease-ttl",
        "1",
    )
    relay = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while _state_of(url, "to-nats") not in ("relaying", "idle"):
            assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
            assert time.time() < deadline, "the relay never said it was relaying"
            time.sleep(0.05)
        assert _shown_state(url)[0] in ("relaying", "idle")  # alive: shown as it says
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait(30)
    said = _state_of(url, "to-nats")
    assert said in ("relaying", "idle")  # it had no time to say more
    deadline = time.time() + 30
    while _shown_state(url)[0] != "stopped":
        assert time.time() < deadline, "a killed relay is still shown working"
        time.sleep(0.2)
    detail = _shown_state(url)[1]
    assert f"it last said {said!r}" in detail
    table = CliRunner().invoke(app, ["--store", url, "projections"], env={"COLUMNS": "250"})
    assert "stopped since" in table.stdout
    with EventStore(url) as store:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            found = client.get("/api/projections").json()["projections"]
            page = client.get("/projections").text
    assert next(p for p in found if p["name"] == "to-nats")["state"]["state"] == "stopped"
    assert '<td class="state">stopped<div class="note">since' in page
    assert "it ended without saying so" in page


def _shown_state(url: str) -> tuple[str, str]:
    """The relay's state and detail as ``conduit projections --json`` shows them."""
    result = CliRunner().invoke(app, ["--store", url, "projections", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    shown = records["to-nats"]["state"]
    return str(shown["state"]), str(shown["detail"] or "")
