"""The FastAPI example of docs/asyncio.md (docs/fastapi_app.py), on SQLite and PostgreSQL.

Each test pushes, reads and follows the log as server-sent events: once in
process (httpx2's ``AsyncClient`` on the ASGI app, its lifespan run by
asgi-lifespan), once through a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest
import uvicorn
from asgi_lifespan import LifespanManager

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "fastapi_app.py"
DEADLINE = 30.0  # seconds: the most any wait lasts (the machine may be loaded)

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]


def load_example() -> ModuleType:
    """docs/fastapi_app.py as a module of its own (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    base: str = request.getfixturevalue("postgres_url")
    return f"{base}{'&' if '?' in base else '?'}schema=fastapi_{uuid.uuid4().hex[:10]}"


class StreamingASGITransport(httpx2.AsyncBaseTransport):
    """An ASGI app as httpx2's transport, its response body handed over as it is sent.

    httpx2's own ``ASGITransport`` (like httpx's) waits for the whole body before
    it answers, so it cannot read a stream that ends only when the client leaves.
    Here the app runs in a task; closing the response tells it that the client
    disconnected, and waits for it to end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "headers": [(key.lower(), value) for key, value in request.headers.raw],
            "server": (request.url.host, request.url.port or 80),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        left = asyncio.Event()
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                chunks.put_nowait(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                chunks.put_nowait(None)

        task = asyncio.create_task(run())
        first: list[asyncio.Future[Any]] = [task, started]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            task.result()  # the app's error
            raise AssertionError("the app ended without a response")
        start = started.result()
        stream = _Body(chunks, task, left)
        return httpx2.Response(start["status"], headers=start.get("headers", []), stream=stream)


class _Body(httpx2.AsyncByteStream):
    def __init__(
        self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], left: asyncio.Event
    ) -> None:
        self.chunks = chunks
        self.task = task
        self.left = left

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk

    async def aclose(self) -> None:
        self.left.set()
        await asyncio.wait_for(self.task, DEADLINE)  # the app ends: it heard the client leave


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting, after {DEADLINE} s, for {what}")
        await asyncio.sleep(0.01)


def followers(app: Any) -> int:
    """How many follow() loops the app's store runs (its SSE streams still open)."""
    return len(app.state.store._core.followers)


async def push_read_and_follow(client: httpx2.AsyncClient, app: Any) -> None:
    """What both tests do: push, read, follow the log, disconnect."""
    placed = await client.post(
        "/streams/order-1/events",
        json={"name": "order_placed", "data": {"total": 12.5}, "metadata": {"user": "kris"}},
    )
    assert placed.status_code == 201, placed.text
    first = placed.json()
    assert (first["stream_id"], first["name"], first["version"]) == ("order-1", "order_placed", 1)
    assert (first["data"], first["metadata"]) == ({"total": 12.5}, {"user": "kris"})

    stale = await client.post(
        "/streams/order-1/events", json={"name": "order_placed", "expected_version": 0}
    )
    assert stale.status_code == 409
    assert "stream version: 1" in stale.json()["detail"]
    refused = await client.post("/streams/order-1/events", json={"name": "x", "data": {"n": "\0"}})
    assert refused.status_code == 422

    read = await client.get("/streams/order-1")
    assert read.status_code == 200
    assert read.json() == [first]
    assert (await client.get("/streams/nothing-here")).status_code == 404

    async with client.sse("/log/follow") as source:  # from the head: what comes next
        assert source.response.status_code == 200
        messages = aiter(source)
        paid = await client.post(
            "/streams/order-1/events", json={"name": "order_paid", "expected_version": 1}
        )
        assert paid.status_code == 201, paid.text
        message = await asyncio.wait_for(anext(messages), DEADLINE)
        assert message.json() == paid.json()
        assert message.id == str(paid.json()["position"])
        assert followers(app) == 1
    await until(lambda: followers(app) == 0, "the SSE stream to end when its client left")

    # An EventSource that reconnects sends the last id it saw: the stream resumes there.
    resume = {"Last-Event-ID": str(first["position"])}
    async with client.sse("/log/follow", headers=resume) as source:
        message = await asyncio.wait_for(anext(aiter(source)), DEADLINE)
        assert message.json() == paid.json()
    await until(lambda: followers(app) == 0, "the resumed SSE stream to end")


def test_the_app_in_process_pushes_reads_and_follows(store_url: str) -> None:
    example = load_example()
    app = example.create_app(store_url)

    async def scenario() -> None:
        lifespan = LifespanManager(app, startup_timeout=DEADLINE, shutdown_timeout=DEADLINE)
        async with lifespan:
            transport = StreamingASGITransport(lifespan.app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
                await push_read_and_follow(client, app)
            store = app.state.store
        assert store._closed  # the lifespan closed it

    asyncio.run(asyncio.wait_for(scenario(), 120))


@pytest.fixture
def served(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """The example's module-level ``app`` (its store from CONDUIT_URL) served by uvicorn in
    a thread, on a free port of 127.0.0.1: (base URL, app)."""
    monkeypatch.setenv("CONDUIT_URL", store_url)
    app = load_example().app
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        listening.close()
    assert not thread.is_alive(), "uvicorn did not stop"
    assert app.state.store._closed  # the lifespan closed it


def test_the_app_under_uvicorn_pushes_reads_and_follows(served: tuple[str, Any]) -> None:
    url, app = served

    async def scenario() -> None:
        async with httpx2.AsyncClient(base_url=url, trust_env=False, timeout=DEADLINE) as client:
            await push_read_and_follow(client, app)

    asyncio.run(asyncio.wait_for(scenario(), 120))
