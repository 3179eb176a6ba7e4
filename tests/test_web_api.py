"""The JSON API of ``conduit serve``, on SQLite and PostgreSQL.

Schemathesis checks the API against its OpenAPI description; the tests below
pin each behaviour the issue names: options of ``read``, keyset paging, 409
with the actual version, 422 with the field at fault, parked events.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from conduit import AsyncEventStore, EventStore
from conduit.errors import InvalidArgument
from conduit.events import Event
from conduit.web import create_app
from conduit.web.api import routes as api_routes
from conduit.web.auth import CSRF_COOKIE
from conduit.web.history import events_before
from conduit.web.openapi import description
from conduit.web.serialize import pretty
from conduit.web.server import BackgroundServer
from conduit.web.stores import ServedStore

ENGINES = ["sqlite", "postgres"]
EXAMPLES = {"sqlite": 20, "postgresql": 10}
"""Schemathesis examples per operation and mode, by engine: enough to find, bounded in time.
PostgreSQL gets fewer: the same code answers, and its part is mapping the engine's errors."""


T = TypeVar("T")


@pytest.fixture
def app(store: EventStore) -> Starlette:
    """The application over the ``EventStore`` of the test, which it serves through an
    ``AsyncEventStore`` of its own over the same storage."""
    return create_app(store)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def on_the_served_store(client: TestClient, call: Callable[[AsyncEventStore], Awaitable[T]]) -> T:
    """Await ``call(store)``, the store the application serves, in the application's loop."""
    app: Any = client.app
    served: AsyncEventStore = app.state.store
    assert client.portal is not None, "use the client as a context manager"

    async def run() -> T:
        return await call(served)

    return client.portal.call(run)


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def append(client: TestClient, stream_id: str, *events: dict[str, Any], **body: Any) -> Any:
    response = client.post(f"/api/streams/{stream_id}/events", json={"events": events, **body})
    return response


# -- writing ----------------------------------------------------------------------


def test_append_returns_the_recorded_events_with_201(client: TestClient) -> None:
    event_id = str(uuid.uuid4())
    response = append(
        client,
        "person-1",
        {"name": "person_registered", "data": {"first_name": "Kris"}, "id": event_id},
        {"name": "PersonRenamed", "data": {"first_name": "Kim"}, "metadata": {"user": "admin"}},
        expected_version=0,
    )
    assert response.status_code == 201
    events = response.json()["events"]
    assert [(e["version"], e["name"]) for e in events] == [
        (1, "person_registered"),
        (2, "person_renamed"),
    ]
    assert events[0]["id"] == event_id
    assert events[1]["metadata"] == {"user": "admin"}
    assert events[0]["position"] < events[1]["position"]


def test_append_with_a_wrong_expected_version_answers_409_with_the_actual_version(
    client: TestClient, store: EventStore
) -> None:
    store.push("person_registered", "person-1", {})
    response = append(
        client, "person-1", {"name": "person_renamed", "data": {}}, expected_version=0
    )
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "wrong_expected_version"
    assert (body["expected"], body["actual"], body["stream_id"]) == (0, 1, "person-1")
    assert store.stream_version("person-1") == 1


def test_append_again_with_the_same_event_ids_records_nothing_new(
    client: TestClient, store: EventStore
) -> None:
    event = {"name": "person_registered", "data": {}, "id": str(uuid.uuid4())}
    first = append(client, "person-1", event, expected_version=0)
    again = append(client, "person-1", event, expected_version=0)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert store.stream_version("person-1") == 1


def test_append_an_event_id_of_another_stream_answers_409(client: TestClient) -> None:
    event = {"name": "person_registered", "data": {}, "id": str(uuid.uuid4())}
    append(client, "person-1", event)
    response = append(client, "person-2", event)
    assert response.status_code == 409
    assert response.json()["error"] == "duplicate_event"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"name": "person registered", "data": {}}]}, "events[0].name"),
        ({"events": [{"name": "ok", "data": {"a": "\x00"}}]}, "events[0].data['a']"),
        ({"events": [{"name": "ok", "data": {"n": 2**70}}]}, "events[0].data['n']"),
        ({"events": [{"name": "ok", "data": []}]}, "events[0].data"),
        ({"events": [{"name": "ok", "data": {}, "metadata": "x"}]}, "events[0].metadata"),
        ({"events": [{"name": "ok", "data": {}, "id": "not-a-uuid"}]}, "events[0].id"),
        ({"events": [{"name": "ok", "data": {}, "recorded_at": "2024"}]}, "events[0].recorded_at"),
        ({"events": [{"name": "ok"}]}, "events[0].data"),
        ({"events": []}, "events"),
        ({"events": [{"name": "ok", "data": {}}], "expected_version": -1}, "expected_version"),
        ({"events": [{"name": "ok", "data": {}}], "expected_version": "1"}, "expected_version"),
        ({"events": [{"name": "ok", "data": {}}], "extra": 1}, "extra"),
    ],
    ids=lambda value: None if isinstance(value, dict) else str(value),
)
def test_append_bad_input_answers_422_naming_the_field_and_writes_nothing(
    client: TestClient, store: EventStore, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/streams/person-1/events", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert store.head_position() == 0


def test_append_refuses_a_body_that_is_not_json(client: TestClient) -> None:
    not_json = client.post(
        "/api/streams/s/events", content=b"{", headers={"content-type": "application/json"}
    )
    assert (not_json.status_code, not_json.json()["field"]) == (422, "body")
    form = client.post("/api/streams/s/events", data={"events": "x"})
    assert form.status_code == 415


# -- reading ----------------------------------------------------------------------


def test_read_stream_takes_the_options_of_read(client: TestClient, store: EventStore) -> None:
    store.push_many("s", [("happened", {"n": n}) for n in range(1, 8)])
    base = "/api/streams/s/events"

    first = client.get(base, params={"limit": 3}).json()
    assert [e["version"] for e in first["events"]] == [1, 2, 3]
    assert (first["version"], first["next_from_version"]) == (7, 4)
    rest = client.get(base, params={"from_version": 4}).json()
    assert [e["version"] for e in rest["events"]] == [4, 5, 6, 7]
    assert rest["next_from_version"] is None
    backwards = client.get(base, params={"backwards": "true", "limit": 2}).json()
    assert [e["version"] for e in backwards["events"]] == [7, 6]
    assert backwards["next_from_version"] == 5

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get(base, params={"since": future}).json()["events"] == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert len(client.get(base, params={"since": past}).json()["events"]) == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2024-05-01T12:00:00"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"from_version": 0}, "from_version"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"backwards": "maybe"}, "backwards"),
    ],
)
def test_read_stream_bad_options_answer_422_naming_the_field(
    client: TestClient, store: EventStore, query: dict[str, Any], field: str
) -> None:
    store.push("happened", "s", {})
    response = client.get("/api/streams/s/events", params=query)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_read_an_unknown_stream_answers_404(client: TestClient) -> None:
    assert client.get("/api/streams/nobody/events").status_code == 404


def test_stream_ids_with_slashes_and_spaces_are_one_path_parameter(
    client: TestClient, store: EventStore
) -> None:
    store.push("happened", "tenant/a b?c", {"n": 1})
    response = client.get("/api/streams/tenant%2Fa%20b%3Fc/events")
    assert response.status_code == 200
    assert response.json()["stream_id"] == "tenant/a b?c"


def test_streams_are_listed_by_prefix_with_keyset_paging(
    client: TestClient, store: EventStore
) -> None:
    for stream_id in ["order-3", "order-1", "person-1", "order-2"]:
        store.push("happened", stream_id, {})
    first = client.get("/api/streams", params={"prefix": "order-", "limit": 2}).json()
    assert [s["stream_id"] for s in first["streams"]] == ["order-1", "order-2"]
    assert first["next_after"] == "order-2"
    rest = client.get(
        "/api/streams", params={"prefix": "order-", "after": first["next_after"], "limit": 2}
    ).json()
    assert rest == {"streams": [{"stream_id": "order-3", "version": 1}], "next_after": None}


def test_one_event_by_id(client: TestClient, store: EventStore) -> None:
    event = store.push("happened", "s", {"a": [1, 2.5, "x", None, True]}, metadata={"m": 1})
    body = client.get(f"/api/events/{event.id}").json()
    assert body["data"] == {"a": [1, 2.5, "x", None, True]}
    assert body["metadata"] == {"m": 1}
    assert (body["stream_id"], body["version"], body["position"]) == ("s", 1, event.position)
    assert datetime.fromisoformat(body["recorded_at"]) == event.recorded_at
    assert client.get(f"/api/events/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/events/nope").json()["field"] == "event_id"


def test_the_log_after_a_position_with_names(client: TestClient, store: EventStore) -> None:
    events = [store.push(name, "s", {}) for name in ["a_happened", "b_happened", "a_happened"]]
    everything = client.get("/api/log").json()
    assert [e["id"] for e in everything["events"]] == [str(e.id) for e in events]
    assert everything["next_after"] == events[-1].position
    after_first = client.get("/api/log", params={"after": events[0].position}).json()
    assert [e["id"] for e in after_first["events"]] == [str(e.id) for e in events[1:]]
    only_a = client.get("/api/log", params=[("names", "a_happened")]).json()
    assert len(only_a["events"]) == 2
    at_the_end = client.get("/api/log", params={"after": events[-1].position}).json()
    assert at_the_end == {"events": [], "next_after": events[-1].position}
    assert client.get("/api/log", params={"names": "not a name"}).json()["field"] == "names"


# -- the live tail and the log read backwards ------------------------------------


def tail_events(
    url: str,
    count: int,
    headers: dict[str, str] | None = None,
    listening: threading.Event | None = None,
) -> list[Any]:
    """The first ``count`` events a server-sent event stream sends.

    ``listening`` is set once the answer's headers came: the tail has then
    fixed the position it follows from (the head, without ``after``).
    """
    found: list[Any] = []
    with httpx2.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if listening is not None:
            listening.set()
        for line in response.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line.removeprefix("data: ")))
            if len(found) == count:
                break
    return found


def test_the_tail_sends_new_events_and_resumes_after_the_last_event_id(
    store: EventStore,
) -> None:
    first, second = (store.push("happened", "s", {"n": n}) for n in (1, 2))
    with BackgroundServer(create_app(store)) as server:
        tail = f"{server.url}/api/tail"
        sent = tail_events(f"{tail}?after=0", 2)
        assert [e["id"] for e in sent] == [str(first.id), str(second.id)]
        resumed = tail_events(tail, 1, headers={"last-event-id": str(first.position)})
        assert resumed[0]["id"] == str(second.id)

        live: list[Any] = []
        listening = threading.Event()
        reader = threading.Thread(
            target=lambda: live.extend(tail_events(f"{tail}?names=wanted", 1, None, listening))
        )
        reader.start()
        # The tail starts at the head: push once it is listening.
        assert listening.wait(30), "the tail did not answer"
        store.push("unwanted", "s", {})
        third = store.push("wanted", "s", {"n": 3})
        reader.join(30)
        assert not reader.is_alive(), "the tail sent no wanted event"
        assert [e["id"] for e in live] == [str(third.id)]


def followers(app: Starlette) -> int:
    """How many followers of the log the store the application serves has."""
    return len(app.state.store._core.followers)


def test_the_tail_ends_when_the_client_goes_away(app: Starlette, store: EventStore) -> None:
    store.push("happened", "s", {"n": 1})
    with BackgroundServer(app) as server:
        with httpx2.stream("GET", f"{server.url}/api/tail?after=0", timeout=30) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            assert followers(app) == 1
        # The client closed its connection: the server ends the tail and its follower.
        wait_until(lambda: followers(app) == 0)
        assert httpx2.get(f"{server.url}/api/log", timeout=30).status_code == 200


def test_the_tail_ends_cleanly_when_the_server_stops(app: Starlette, store: EventStore) -> None:
    server = BackgroundServer(app)
    server.start()
    ended = threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            with httpx2.stream("GET", f"{server.url}/api/tail", timeout=30) as response:
                for _ in response.iter_lines():
                    pass
        except BaseException as exc:  # a tail cut off instead of ended
            failed.append(exc)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        wait_until(lambda: followers(app) == 1)
    finally:
        server.stop()
    assert ended.wait(30), "the tail did not end"
    assert failed == []  # the response ended with its last chunk, not a broken connection
    assert followers(app) == 0
    assert app.state.store._closed  # the lifespan closed the store the application made
    assert store.head_position() == 0  # and left the one it was given open


def test_the_tail_ends_when_the_store_is_closed(client: TestClient, store: EventStore) -> None:
    store.push("happened", "s", {"n": 1})
    with client.stream("GET", "/api/tail", params={"after": 0}) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        on_the_served_store(client, lambda served: served.close())
        assert [line for line in lines if line.startswith("data: ")] == []  # and it ended


def test_no_route_runs_in_a_thread_pool(
    app: Starlette, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page and API route awaits the async store: none runs in Starlette's pool."""
    store.subscribe(Picky(), name="picky", max_attempts=1, backoff=0)
    event = store.push(
        "happened", "person-1", {"n": 1, "fail": True}, metadata={"correlation_id": "c"}
    )
    store.push_many("person-2", [("happened", {"n": 2}), ("happened", {"n": 3})])
    [parked] = store.parked()
    values = {
        "stream_id": "person-1",
        "event_id": str(event.id),
        "correlation_id": "c",
        "tag": "course:c1",
        "parked_id": str(parked.id),
    }
    routes = [route for route in app.routes if isinstance(route, Route)]
    assert all(inspect.iscoroutinefunction(route.endpoint) for route in routes)
    pooled: list[object] = []

    async def refuse(func: object, *args: object, **kwargs: object) -> None:
        pooled.append(func)
        raise AssertionError(f"{func!r} ran in a thread pool")

    monkeypatch.setattr("anyio.to_thread.run_sync", refuse)
    exercised = set()
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        client.get("/")  # sets the CSRF cookie the forms carry
        csrf = client.cookies[CSRF_COOKIE]
        last = ("/drop", "{parked_id}")  # retries first, so that each finds the parked event
        for route in sorted(routes, key=lambda route: route.path.endswith(last)):
            path = re.sub(r"{(\w+)(:\w+)?}", lambda m: values[m.group(1)], route.path)
            for method in sorted((route.methods or set()) - {"HEAD"}):
                if path == "/api/tail":
                    with client.stream("GET", path, params={"after": 0}) as response:
                        lines = response.iter_lines()
                        assert next(line for line in lines if line.startswith("data: "))
                    status = response.status_code
                elif method == "POST" and path.startswith("/api/"):
                    status = client.post(
                        path, json={"events": [{"name": "x", "data": {}}]}
                    ).status_code
                elif method == "POST":
                    status = client.post(path, data={"csrf": csrf}).status_code
                else:
                    status = client.request(method, path).status_code
                assert status < 500, (method, path, status)
                exercised.add((method, route.path))
    assert pooled == []
    assert len(exercised) == sum(len((r.methods or set()) - {"HEAD"}) for r in routes)


def test_the_application_opens_the_store_it_made_in_its_lifespan(store: EventStore) -> None:
    """Over PostgreSQL the application makes an async connection pool, which belongs to
    the event loop its lifespan runs in; memory and SQLite need no lifespan."""
    store.push("happened", "s", {})
    app = create_app(store)
    response = TestClient(app, base_url="http://127.0.0.1").get("/api/log")
    if store.backend.scheme == "postgresql":
        assert response.status_code == 500
        assert "lifespan" in response.json()["message"]
    else:
        assert len(response.json()["events"]) == 1
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        assert len(client.get("/api/log").json()["events"]) == 1


def test_an_async_store_given_is_served_and_left_open(store: EventStore) -> None:
    store.push("happened", "s", {})

    async def serve(given: AsyncEventStore) -> None:
        app = create_app(given)
        assert app.state.store is given
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            assert len((await client.get("/api/log")).json()["events"]) == 1
        assert await given.head_position() == store.head_position()

    asyncio.run(_with_async_face(store, serve))


def test_events_before_a_position_are_the_last_ones_below_it(store: EventStore) -> None:
    recorded: list[Event] = []
    for size in (1, 7, 1, 1, 30, 2, 1, 15):  # PostgreSQL leaves gaps between transactions
        recorded += store.push_many(f"s-{size}", [("happened", {})] * size)
    positions = [e.position for e in recorded]

    async def check(served: AsyncEventStore) -> None:
        for before in [None, positions[-1], positions[40], positions[9] + 1, positions[0], 1]:
            below = [p for p in positions if before is None or p < before]
            for limit in (1, 5, 50, 100):
                found = [e.position for e in await events_before(served, before, limit)]
                assert found == below[-limit:], (before, limit)

    asyncio.run(_with_async_face(store, check))


async def _with_async_face(
    store: EventStore, call: Callable[[AsyncEventStore], Awaitable[None]]
) -> None:
    served = ServedStore(store)
    await served.open()
    try:
        await call(served.store)
    finally:
        await served.close()


def test_the_log_page_pages_by_position_newest_first(client: TestClient, store: EventStore) -> None:
    recorded = store.push_many("s", [("happened", {"n": n}) for n in range(120)])
    newest = client.get("/log").text
    assert f'data-position="{recorded[-1].position}"' in newest
    assert f'data-position="{recorded[69].position}"' not in newest
    older = client.get("/log", params={"before": recorded[70].position}).text
    assert f'data-position="{recorded[69].position}"' in older
    assert f'data-position="{recorded[20].position}"' in older
    assert f'data-position="{recorded[19].position}"' not in older
    newer = client.get("/log", params={"after": recorded[19].position}).text
    assert f'data-position="{recorded[20].position}"' in newer
    assert "data-tail-after" not in newer  # only the newest page follows the log


# -- projections ------------------------------------------------------------------


class Picky:
    """A projection that fails on events marked ``fail`` until fixed."""

    def __init__(self) -> None:
        self.broken = True
        self.seen: list[int] = []

    def on_happened(self, event: Any) -> None:
        if self.broken and event.data.get("fail"):
            raise ValueError("cannot handle this one")
        self.seen.append(event.data["n"])


def test_projections_show_checkpoint_lag_and_parked_events(
    client: TestClient, store: EventStore
) -> None:
    store.subscribe(Picky(), name="picky", max_attempts=1, backoff=0)
    store.push("happened", "s", {"n": 1, "fail": True})
    store.push("happened", "s", {"n": 2})
    body = client.get("/api/projections").json()
    assert body["head_position"] == store.head_position()
    [status] = body["projections"]
    assert (status["name"], status["behind"], status["parked"]) == ("picky", 0, 1)
    assert status["checkpoint"] == store.head_position()
    [parked] = client.get("/api/projections/parked").json()["parked"]
    assert parked["subscription"] == "picky"
    assert "cannot handle this one" in parked["error"]


def test_a_page_of_parked_events_after_an_id_reads_none_before_it(
    client: TestClient, app: Starlette, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.subscribe(Picky(), name="picky", max_attempts=1, backoff=0)
    store.push_many("s", [("happened", {"n": n, "fail": True}) for n in range(30)])
    ids = [item.id for item in store.parked()]
    assert len(ids) == 30
    calls: list[dict[str, Any]] = []
    read: list[int] = []
    engine = app.state.store._core.engine  # what the served store reads through, as operations
    engine_parked = engine.parked

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs)
        page = yield from engine_parked(**kwargs)
        read.extend(item.id for item in page)
        return page

    monkeypatch.setattr(engine, "parked", counting)
    body = client.get("/api/projections/parked", params={"after": ids[19], "limit": 5}).json()
    assert [item["id"] for item in body["parked"]] == ids[20:25]
    assert body["next_after"] == ids[24]
    assert calls[0]["after"] == ids[19]
    assert min(read) > ids[19]  # the engine skipped the first 20 by its index
    assert len(read) == 6  # the page, and one more that tells there is a next page


def test_parked_events_page_by_id_in_the_store(store: EventStore) -> None:
    store.subscribe(Picky(), name="picky", max_attempts=1, backoff=0)
    store.push_many("s", [("happened", {"n": n, "fail": True}) for n in range(5)])
    ids = [item.id for item in store.parked()]
    assert [item.id for item in store.parked(after=ids[1], limit=2)] == ids[2:4]
    assert [item.id for item in store.parked("picky", after=ids[3])] == ids[4:]
    assert list(store.parked(limit=0)) == []
    with pytest.raises(InvalidArgument, match="after"):
        store.parked(after=-1)  # refused at the call, not at the first item
    with pytest.raises(InvalidArgument, match="limit"):
        store.parked(limit=-1)


def subscribe_picky(client: TestClient, picky: Picky) -> None:
    """Subscribe ``picky`` (inline) through the store the application serves."""
    on_the_served_store(
        client, lambda served: served.subscribe(picky, name="picky", max_attempts=1, backoff=0)
    )


def test_retry_a_parked_event_runs_it_again(client: TestClient, store: EventStore) -> None:
    picky = Picky()
    subscribe_picky(client, picky)
    append(client, "s", {"name": "happened", "data": {"n": 1, "fail": True}})
    [parked] = store.parked()
    picky.broken = False
    response = client.post(f"/api/projections/parked/{parked.id}/retry")
    assert response.json() == {"marked": 1}
    assert picky.seen == [1]  # the inline subscription retried it at once
    assert list(store.parked()) == []
    assert client.post(f"/api/projections/parked/{parked.id}/retry").status_code == 404


def test_retry_every_parked_event_of_a_subscription(client: TestClient, store: EventStore) -> None:
    picky = Picky()
    subscribe_picky(client, picky)
    for n in (1, 2):
        append(client, "s", {"name": "happened", "data": {"n": n, "fail": True}})
    assert len(list(store.parked())) == 2
    picky.broken = False
    response = client.post("/api/projections/retry", params={"subscription": "picky"})
    assert response.json() == {"marked": 2}
    assert sorted(picky.seen) == [1, 2]


def test_a_retry_reaches_a_subscription_of_the_event_store_the_app_was_made_with(
    client: TestClient, store: EventStore
) -> None:
    """The application serves the ``EventStore`` through a store of its own: the
    ``EventStore``'s subscriptions pick the retry up when they next catch up."""
    picky = Picky()
    store.subscribe(picky, name="picky", mode="background", max_attempts=1, backoff=0)
    store.push("happened", "s", {"n": 1, "fail": True})
    wait_until(lambda: list(store.parked()))
    [parked] = store.parked()
    picky.broken = False
    response = client.post(f"/api/projections/parked/{parked.id}/retry")
    assert response.json() == {"marked": 1}
    wait_until(lambda: picky.seen == [1] and not list(store.parked()))


def test_drop_a_parked_event(client: TestClient, store: EventStore) -> None:
    store.subscribe(Picky(), name="picky", max_attempts=1, backoff=0)
    store.push("happened", "s", {"n": 1, "fail": True})
    [parked] = store.parked()
    assert client.delete(f"/api/projections/parked/{parked.id}").status_code == 204
    assert list(store.parked()) == []
    assert client.delete(f"/api/projections/parked/{parked.id}").status_code == 404


# -- the description ----------------------------------------------------------------


def test_the_description_lists_exactly_the_api_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    described = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    served = {
        (route.path.replace(":stream_id}", "}"), method)
        for route in api_routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert described == served


CASES = [
    (mode, method.upper(), path)
    for path, item in description(token=False)["paths"].items()
    if path != "/api/tail"  # never ends: it has tests of its own
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or operation["parameters"] or "requestBody" in operation
]


@pytest.mark.parametrize(
    ("mode", "method", "path"), CASES, ids=[f"{m.value} {o} {p}" for m, o, p in CASES]
)
def test_the_api_keeps_to_its_description(
    store: EventStore, method: str, path: str, mode: GenerationMode
) -> None:
    """Schemathesis: no server error, and every answer fits the description."""
    picky = Picky()
    store.subscribe(picky, name="picky", max_attempts=1, backoff=0)
    store.push("happened", "person-1", {"n": 1, "fail": True}, metadata={"correlation_id": "c"})
    store.push_many("person-2", [("happened", {"n": 2}), ("happened", {"n": 3})])
    app = create_app(store, allowed_hosts=["*"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]

    @given(operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[store.backend.scheme],
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run: CI never flickers
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case[Any]) -> None:
        # JSON Schema cannot say "integers within 64 bits" (see the description).
        assume(mode is GenerationMode.NEGATIVE or not _holds_a_huge_integer(case.body))
        case.call_and_validate()

    call()


def _holds_a_huge_integer(value: object) -> bool:
    if isinstance(value, dict):
        return any(_holds_a_huge_integer(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_a_huge_integer(item) for item in value)
    return type(value) is int and not -(2**63) <= value < 2**63


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, {"c": "é"}], "e": {}, "l": [], "n": None, "t": True},
        {"f": 1e16, "g": 1.2345678901234567e17, "s": 'line\nbreak "quoted" \\ </pre>'},
        {"big": 2**70, "small": -(2**65)},
        [],
        "text",
    ],
)
def test_pretty_json_is_the_stdlib_indented_text(value: object) -> None:
    assert pretty(value) == json.dumps(value, indent=2, ensure_ascii=False)
