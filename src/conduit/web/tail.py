"""GET /api/tail: the global log as server-sent events, live.

Each event is sent as ``event: event``, ``id: <position>`` and its JSON as
``data``. A browser's ``EventSource`` reconnects by itself and sends the last
id it saw (``Last-Event-ID``), so the tail resumes where it broke off.

The tail iterates :meth:`AsyncEventStore.follow`: woken at once by the pushes
of the store the application serves (and by ``NOTIFY`` on a PostgreSQL store
opened with ``notify=True``), it looks at the log for the pushes of other
processes too, every :data:`POLL_INTERVAL` seconds while events come and
backing off to :data:`MAX_POLL_INTERVAL` while the log is quiet. It ends when
the client goes away (the response is cancelled) and when the server stops
(``app.state.stopping``); either way the store's follower is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conduit.errors import ConduitError
from conduit.events import Event
from conduit.web import params
from conduit.web.serialize import event_json
from conduit.web.stopping import Stopping
from conduit.web.stores import store_of

__all__ = ["HEARTBEAT", "MAX_POLL_INTERVAL", "POLL_INTERVAL", "tail"]

log = logging.getLogger("conduit.web")

POLL_INTERVAL = 0.05
"""Seconds between two looks at the log while events come."""

MAX_POLL_INTERVAL = 1.0
"""The longest wait between two looks once the log is quiet."""

HEARTBEAT = 15.0
"""Seconds of silence after which a comment keeps proxies from closing the stream."""


async def tail(request: Request) -> Response:
    """Follow the global log after ``after`` (default: the head), as server-sent events."""
    store = store_of(request)
    query = request.query_params
    names = params.names(query)
    resume = request.headers.get("last-event-id")
    if resume:
        after = params.integer({"Last-Event-ID": resume}, "Last-Event-ID")
    else:
        after = params.integer(query, "after")
    if after is None:
        after = await store.head_position()
    follow = store.follow(
        after=after,
        names=names,
        poll_interval=POLL_INTERVAL,
        max_poll_interval=MAX_POLL_INTERVAL,
    )
    stopping: Stopping = request.app.state.stopping
    return StreamingResponse(
        _messages(follow, stopping),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _messages(follow: AsyncIterator[Event], stopping: Stopping) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    stop: asyncio.Task[Any] = asyncio.ensure_future(stopping.wait())
    coming: asyncio.Task[Any] | None = None
    try:
        while True:
            if coming is None:
                coming = asyncio.ensure_future(_next(follow))
            done, _ = await asyncio.wait(
                (coming, stop), timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
            )
            if stop in done:
                return
            if coming not in done:
                yield ": still here\n\n"
                continue
            try:
                event: Event | None = coming.result()
            except ConduitError as exc:
                # The browser reconnects (after ``retry``) and resumes after its last event.
                log.error("the live tail stopped: the store failed", exc_info=exc)
                return
            if event is None:  # the store was closed
                return
            coming = None
            yield _message(event)
    finally:
        # Cancelled (the client went away) or not, release the store's follower.
        with anyio.CancelScope(shield=True):
            for task in (stop, coming):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            closing = getattr(follow, "aclose", None)
            if closing is not None:
                await closing()


async def _next(follow: AsyncIterator[Event]) -> Event | None:
    try:
        return await follow.__anext__()
    except StopAsyncIteration:
        return None


def _message(event: Event) -> str:
    data = json.dumps(event_json(event), ensure_ascii=False, separators=(",", ":"))
    return f"event: event\nid: {event.position}\ndata: {data}\n\n"
