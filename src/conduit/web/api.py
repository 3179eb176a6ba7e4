"""The JSON API: read streams, events and the global log; append; operate projections.

Every route is declared in :data:`routes` and described in
:mod:`conduit.web.openapi`; a test checks that both list the same operations.
Errors are JSON objects ``{"error", "message", "field"}``; see :func:`error_response`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from conduit.errors import (
    BackendError,
    ConduitError,
    DuplicateEvent,
    InvalidArgument,
    InvalidEvent,
    WrongExpectedVersion,
)
from conduit.events import event_name
from conduit.web import params
from conduit.web.serialize import event_json, parked_json, status_json, stream_json
from conduit.web.stores import store_of
from conduit.web.tail import tail

__all__ = ["MAX_APPEND", "error_response", "routes"]

MAX_APPEND = 1000
"""The most events one API call may append."""

_EVENT_KEYS = frozenset({"name", "data", "metadata", "id", "tags"})


def error_response(exc: Exception) -> JSONResponse:
    """The API's answer to an error of the store (the pages have their own)."""
    if isinstance(exc, WrongExpectedVersion):
        return JSONResponse(
            {
                "error": "wrong_expected_version",
                "message": str(exc),
                "field": "expected_version",
                "stream_id": str(exc.stream_id),
                "expected": exc.expected,
                "actual": exc.actual,
            },
            status_code=409,
        )
    if isinstance(exc, DuplicateEvent):
        return JSONResponse(
            {
                "error": "duplicate_event",
                "message": str(exc),
                "field": "id",
                "event_id": str(exc.event_id),
                "stream_id": str(exc.stream_id),
            },
            status_code=409,
        )
    if isinstance(exc, InvalidArgument):
        kind = "invalid_event" if isinstance(exc, InvalidEvent) else "invalid_argument"
        return _error(422, kind, str(exc), exc.field)
    if isinstance(exc, BackendError):
        # The driver's message may name hosts and users: it goes to the log only.
        return _error(503, "backend_error", "The storage engine failed; see the server's log.")
    if isinstance(exc, ConduitError):
        return _error(500, "conduit_error", str(exc))
    return _error(500, "internal_error", "Internal error; see the server's log.")


def _error(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "field": field}, status_code=status)


def _not_found(message: str) -> JSONResponse:
    return _error(404, "not_found", message)


# -- reading -------------------------------------------------------------------


async def list_streams(request: Request) -> Response:
    """GET /api/streams: streams by id, with a prefix and keyset paging."""
    query = request.query_params
    prefix = params.text(query, "prefix")
    after = params.text(query, "after")
    limit = params.limit(query)
    streams = store_of(request).streams(prefix=prefix, after=after, limit=limit + 1)
    found = [stream async for stream in streams]
    page = found[:limit]
    more = len(found) > limit
    return JSONResponse(
        {
            "streams": [stream_json(stream) for stream in page],
            "next_after": str(page[-1].stream_id) if more else None,
        }
    )


async def read_stream(request: Request) -> Response:
    """GET /api/streams/{stream_id}/events: like ``EventStore.read``, one page at a time."""
    store = store_of(request)
    stream_id: str = request.path_params["stream_id"]
    query = request.query_params
    since = params.moment(query, "since")
    from_version = params.integer(query, "from_version", minimum=1)
    limit = params.limit(query)
    backwards = params.boolean(query, "backwards")
    events = store.read(
        stream_id, since=since, from_version=from_version, limit=limit + 1, backwards=backwards
    )
    found = [event async for event in events]
    version = await store.stream_version(stream_id)
    if version == 0:
        return _not_found(f"stream {stream_id!r} has no events")
    page = found[:limit]
    next_version = None
    if len(found) > limit:
        next_version = page[-1].version + (-1 if backwards else 1)
    return JSONResponse(
        {
            "stream_id": stream_id,
            "version": version,
            "events": [event_json(event) for event in page],
            "next_from_version": next_version,
        }
    )


async def read_event(request: Request) -> Response:
    """GET /api/events/{event_id}: one event."""
    raw: str = request.path_params["event_id"]
    try:
        event = await store_of(request).read_event(raw)
    except InvalidEvent:
        raise InvalidArgument(f"event_id: {raw!r} is not a UUID", field="event_id") from None
    if event is None:
        return _not_found(f"no event has the id {raw}")
    return JSONResponse(event_json(event))


async def read_log(request: Request) -> Response:
    """GET /api/log: the global log after a position."""
    query = request.query_params
    after = params.integer(query, "after", default=0)
    assert after is not None
    limit = params.limit(query)
    names = params.names(query)
    events = [e async for e in store_of(request).read_all(after=after, names=names, limit=limit)]
    return JSONResponse(
        {
            "events": [event_json(event) for event in events],
            "next_after": events[-1].position if events else after,
        }
    )


# -- writing -------------------------------------------------------------------


async def stream_events(request: Request) -> Response:
    """GET or POST /api/streams/{stream_id}/events: read a page, or append."""
    if request.method == "POST":
        return await append(request)
    return await read_stream(request)


async def append(request: Request) -> Response:
    """POST /api/streams/{stream_id}/events: append a batch, atomically."""
    stream_id: str = request.path_params["stream_id"]
    body = await _json_body(request)
    unknown = set(body) - {"events", "expected_version"}
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidArgument(f"{field}: not a field of an append", field=field)
    expected = _version(body.get("expected_version"))
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidArgument("events: a non-empty list of events", field="events")
    if len(events) > MAX_APPEND:
        raise InvalidArgument(f"events: at most {MAX_APPEND} in one call", field="events")
    for index, item in enumerate(events):
        _check_new_event(item, index)
    recorded = await store_of(request).push_many(stream_id, events, expected_version=expected)
    return JSONResponse({"events": [event_json(event) for event in recorded]}, status_code=201)


def _version(value: object) -> int | None:
    # JSON has one kind of number: 3.0 is the integer 3, as JSON Schema says.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or (type(value) is int and 0 <= value <= params.MAX_INTEGER):
        return value
    raise InvalidArgument(
        "expected_version: null, 0 (a new stream) or the stream's last version",
        field="expected_version",
    )


def _check_new_event(item: object, index: int) -> None:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise InvalidEvent(f"{where}: an object with name, data, metadata and id", field=where)
    unknown = set(item) - _EVENT_KEYS
    if unknown:
        field = f"{where}.{sorted(unknown)[0]}"
        raise InvalidEvent(f"{field}: not a field of an event", field=field)
    for key in ("name", "data"):
        if key not in item:
            raise InvalidEvent(f"{where}.{key}: missing", field=f"{where}.{key}")
    try:
        event_name(item["name"])
    except InvalidEvent as exc:
        raise InvalidEvent(f"{where}.{exc}", field=f"{where}.name") from None
    for key in ("data", "metadata"):
        if key in item and not isinstance(item[key], dict):
            raise InvalidEvent(f"{where}.{key}: a JSON object", field=f"{where}.{key}")
    if "metadata" in item and item["metadata"] is None:
        raise InvalidEvent(f"{where}.metadata: a JSON object", field=f"{where}.metadata")
    if "tags" in item and not isinstance(item["tags"], list):
        raise InvalidEvent(f"{where}.tags: an array of strings", field=f"{where}.tags")
    if "id" in item:
        try:
            uuid.UUID(item["id"])
        except (TypeError, ValueError, AttributeError):
            raise InvalidEvent(f"{where}.id: a UUID as text", field=f"{where}.id") from None


async def _json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType()
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidArgument("body: not a JSON document", field="body") from None
    if not isinstance(body, dict):
        raise InvalidArgument("body: a JSON object", field="body")
    return body


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class UnsupportedMediaType(ConduitError):
    """A write whose body is not ``application/json`` (answered 415)."""

    def __init__(self) -> None:
        super().__init__("the body must be application/json")


# -- projections -----------------------------------------------------------------


async def projections(request: Request) -> Response:
    """GET /api/projections: every subscription's checkpoint, lag and parked events."""
    store = store_of(request)
    statuses = await store.subscription_status()
    parked: dict[str, int] = {}
    async for item in store.parked():
        parked[item.subscription] = parked.get(item.subscription, 0) + 1
    return JSONResponse(
        {
            "head_position": await store.head_position(),
            "projections": [status_json(status, parked.get(status.name, 0)) for status in statuses],
        }
    )


async def list_parked(request: Request) -> Response:
    """GET /api/projections/parked: parked events, oldest first, with keyset paging."""
    query = request.query_params
    subscription = params.text(query, "subscription", max_length=200)
    after = params.integer(query, "after", default=0)
    assert after is not None
    limit = params.limit(query)
    found = store_of(request).parked(subscription, after=after, limit=limit + 1)
    items = [item async for item in found]
    page = items[:limit]
    return JSONResponse(
        {
            "parked": [parked_json(item) for item in page],
            "next_after": page[-1].id if len(items) > limit else None,
        }
    )


async def retry_parked(request: Request) -> Response:
    """POST /api/projections/parked/{parked_id}/retry: ask its subscription to try again."""
    parked_id = _parked_id(request)
    marked = await store_of(request).retry_parked(parked_id)
    if marked == 0:
        return _not_found(f"no parked event has the id {parked_id}")
    return JSONResponse({"marked": marked})


async def retry_all_parked(request: Request) -> Response:
    """POST /api/projections/retry: retry every parked event (of one subscription)."""
    subscription = params.text(request.query_params, "subscription", max_length=200)
    marked = await store_of(request).retry_parked(None, subscription=subscription)
    return JSONResponse({"marked": marked})


async def drop_parked(request: Request) -> Response:
    """DELETE /api/projections/parked/{parked_id}: forget a parked event for good."""
    parked_id = _parked_id(request)
    if not await store_of(request).drop_parked(parked_id):
        return _not_found(f"no parked event has the id {parked_id}")
    return Response(status_code=204)


def _parked_id(request: Request) -> int:
    value = params.integer(request.path_params, "parked_id", minimum=1)
    assert value is not None
    return value


routes: list[BaseRoute] = [
    Route("/api/streams", list_streams, methods=["GET"]),
    Route("/api/streams/{stream_id:stream_id}/events", stream_events, methods=["GET", "POST"]),
    Route("/api/events/{event_id}", read_event, methods=["GET"]),
    Route("/api/log", read_log, methods=["GET"]),
    Route("/api/tail", tail, methods=["GET"]),
    Route("/api/projections", projections, methods=["GET"]),
    Route("/api/projections/retry", retry_all_parked, methods=["POST"]),
    Route("/api/projections/parked", list_parked, methods=["GET"]),
    Route("/api/projections/parked/{parked_id}/retry", retry_parked, methods=["POST"]),
    Route("/api/projections/parked/{parked_id}", drop_parked, methods=["DELETE"]),
]
"""The API's routes, in the order Starlette matches them."""
