"""A relay's lag where every subscription's shows: conduit projections, conduit stats, the
browser (a relay to the local NATS server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conduit import EventStore
from conduit.cli.application import app
from conduit.web import create_app
from relay_support import nats_delete, unique

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
