"""The browser's correlation and causation links are complete: every event of the log
that carries the id, however far apart, found by the engines' indexes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conduit import EventStore
from conduit.web import create_app
from conduit.web.pages import PAGE_SIZE

ENGINES = ["memory", "sqlite", "postgres"]


@pytest.fixture
def client(store: EventStore) -> Iterator[TestClient]:
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        yield client


def _far_apart(store: EventStore, gap: int) -> list[str]:
    """Three events of one correlation, ``gap`` unrelated events between each two."""
    ids = []
    for step in range(3):
        metadata = {"correlation_id": "c"}
        event = store.push("order_step", "order-1", {"step": step}, metadata=metadata)
        ids.append(str(event.id))
        store.push_many("noise", [("noise_made", {"i": i}) for i in range(gap)])
    return ids


def test_an_event_page_lists_correlated_events_far_away_in_the_log(
    store: EventStore, client: TestClient
) -> None:
    ids = _far_apart(store, 3_000)
    page = client.get(f"/events/{ids[0]}").text
    correlated = page[page.index('id="correlated"') :]
    assert all(event_id in correlated for event_id in ids[1:])


def test_an_event_page_lists_what_it_caused_however_far(
    store: EventStore, client: TestClient
) -> None:
    cause = store.push("order_placed", "order-2", {})
    store.push_many("noise", [("noise_made", {"i": i}) for i in range(3_000)])
    effect = store.push("payment_taken", "pay-2", {}, metadata={"causation_id": str(cause.id)})
    page = client.get(f"/events/{cause.id}").text
    assert str(effect.id) in page[page.index('id="caused"') :]


def test_the_correlation_page_pages_through_every_correlated_event(
    store: EventStore, client: TestClient
) -> None:
    for i in range(PAGE_SIZE + 5):
        store.push("step_done", f"s{i % 3}", {"i": i}, metadata={"correlation_id": "many"})
        store.push("noise_made", "noise", {})
    wanted = {e.position for e in store.read_all(correlation_id="many")}
    first = client.get("/correlations/many")
    assert first.status_code == 200
    following = re.search(r'href="(/correlations/many\?after=\d+)"', first.text)
    assert following is not None
    second = client.get(following.group(1))
    shown = [int(p) for p in re.findall(r'data-position="(\d+)"', first.text + second.text)]
    assert len(shown) == PAGE_SIZE + 5
    assert set(shown) == wanted
