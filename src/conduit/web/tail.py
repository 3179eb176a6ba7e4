"""GET /api/tail: the global log as server-sent events, live.

Each event is sent as ``event: event``, ``id: <position>`` and its JSON as
``data``. A browser's ``EventSource`` reconnects by itself and sends the last
id it saw (``Last-Event-ID``), so the tail resumes where it broke off. The
stream polls the store (every :data:`POLL_INTERVAL` seconds while idle) rather
than waiting for in-process pushes, so it shows events pushed by any process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conduit.events import Event
from conduit.store import EventStore
from conduit.web import params
from conduit.web.serialize import event_json

__all__ = ["BATCH", "HEARTBEAT", "POLL_INTERVAL", "tail"]

POLL_INTERVAL = 0.25
"""Seconds between two looks at the log while nothing new came."""

HEARTBEAT = 15.0
"""Seconds of silence after which a comment keeps proxies from closing the stream."""

BATCH = 200
"""The most events read from the store at a time."""


async def tail(request: Request) -> Response:
    """Follow the global log after ``after`` (default: the head), as server-sent events."""
    store: EventStore = request.app.state.store
    query = request.query_params
    names = params.names(query)
    resume = request.headers.get("last-event-id")
    if resume:
        after = params.integer({"Last-Event-ID": resume}, "Last-Event-ID")
    else:
        after = params.integer(query, "after")
    if after is None:
        after = await run_in_threadpool(store.head_position)
    stopping: threading.Event = request.app.state.stopping
    return StreamingResponse(
        _follow(store, after, names, stopping),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _follow(
    store: EventStore, after: int, names: list[str] | None, stopping: threading.Event
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    quiet = 0.0
    while not stopping.is_set():
        events = await run_in_threadpool(_page, store, after, names)
        for event in events:
            yield _message(event)
        if events:
            after = events[-1].position
            quiet = 0.0
            continue
        await anyio.sleep(POLL_INTERVAL)
        quiet += POLL_INTERVAL
        if quiet >= HEARTBEAT:
            yield ": still here\n\n"
            quiet = 0.0


def _page(store: EventStore, after: int, names: list[str] | None) -> list[Event]:
    return list(store.read_all(after=after, names=names, limit=BATCH))


def _message(event: Event) -> str:
    data = json.dumps(event_json(event), ensure_ascii=False, separators=(",", ":"))
    return f"event: event\nid: {event.position}\ndata: {data}\n\n"
