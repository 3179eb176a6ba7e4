"""The browser shows deleted streams' tombstones, stream metadata and the audit stream,
and offers no destructive action (deleting is for the CLI and the store's API)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from conduit import EventStore
from conduit.web import create_app

ENGINES = ["memory", "sqlite", "postgres"]


@pytest.fixture
def client(store: EventStore) -> Iterator[TestClient]:
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        yield client


def _stores(store: EventStore) -> None:
    for n in range(3):
        store.push("noted", "gone", {"n": n})
        store.push("noted", "hidden", {"n": n})
        store.push("noted", "capped", {"n": n})
    store.delete_stream("gone", hard=True, by="ops")
    store.delete_stream("hidden")
    store.truncate_stream("capped", 2)
    store.set_stream_metadata("capped", max_age=timedelta(days=7), max_count=10)


def test_the_deleted_streams_page_lists_tombstones(store: EventStore, client: TestClient) -> None:
    _stores(store)
    page = client.get("/deleted-streams")
    assert page.status_code == 200
    rows = re.findall(r'<td class="id"><a href="[^"]+">([^<]+)</a></td><td>(\w+)</td>', page.text)
    assert rows == [("gone", "hard"), ("hidden", "soft")]
    assert "deleted streams" in client.get("/streams").text


def test_a_stream_page_shows_its_tombstone_and_its_metadata(
    store: EventStore, client: TestClient
) -> None:
    _stores(store)
    gone = client.get("/streams/gone")
    assert gone.status_code == 200
    assert "Deleted for good (hard) at version 3" in gone.text
    assert "Deleted (soft)" in client.get("/streams/hidden").text
    capped = client.get("/streams/capped").text
    facts = capped[capped.index('id="stream-metadata"') :]
    assert "truncated before version 2" in facts
    assert "max age 7 days" in facts
    assert "max count 10" in facts


def test_the_audit_stream_is_shown_with_who_did_what(store: EventStore, client: TestClient) -> None:
    _stores(store)
    page = client.get("/streams/conduit.audit").text
    for name in ("stream_deleted", "stream_truncated", "stream_metadata_set"):
        assert name in page
    assert "ops" in client.get(f"/events/{store.get('conduit.audit')[0].id}").text


def test_no_page_offers_a_destructive_action(store: EventStore, client: TestClient) -> None:
    _stores(store)
    for path in ("/streams", "/deleted-streams", "/streams/gone", "/streams/capped"):
        text = client.get(path).text
        assert "<form" not in text.replace('<form method="get"', ""), path
    for path in ("/streams/gone/delete", "/api/streams/capped/delete", "/deleted-streams"):
        assert client.post(path).status_code in (403, 404, 405), path
    assert store.get("capped")  # still there
