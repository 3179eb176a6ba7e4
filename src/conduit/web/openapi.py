"""The OpenAPI 3.1 description of the JSON API, served at ``/openapi.json``.

Written by hand, next to the routes of :mod:`conduit.web.api`; the tests check
that both list the same operations and run schemathesis against it, so that a
response that strays from this description fails the build.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conduit.web.params import DEFAULT_LIMIT, MAX_INTEGER, MAX_LIMIT
from conduit.web.schemas import NAME_PATTERN, SCHEMAS, ref, text

__all__ = ["description", "openapi"]

_JSON = "application/json"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ref("Error"), description)


def _integer(minimum: int = 0) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": MAX_INTEGER}


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, **extra} | {
        "description": description
    }


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "The most items to return.",
)
NAMES = _query(
    "names",
    {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 200}},
    "Only events with these names (repeat the parameter: names=a&names=b).",
    style="form",
    explode=True,
)
POSITION_AFTER = _query("after", _integer(), "A position: the log resumes right after it.")
STREAM_ID = _path(
    "stream_id",
    text(1000, 1),
    "The stream's id (URL-encoded; it may hold slashes).",
)
PARKED_ID = _path("parked_id", _integer(1), "The parked event's id.")


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    writes: bool = False,
    token: bool,
) -> dict[str, Any]:
    answers = dict(responses)
    answers["400"] = _error("A Host header this server does not trust.")
    if token:
        answers["401"] = _error("No token, or another one.")
        answers["429"] = _error("Too many wrong tokens from this address; see Retry-After.")
    if writes:
        answers["403"] = _error("The server is read-only, or the request came from another site.")
    answers.setdefault("422", _error("A parameter is not valid; field names it."))
    answers["503"] = _error("The storage engine failed.")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters or [],
        "responses": answers,
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def description(*, token: bool) -> dict[str, Any]:
    """The API's description; ``token``: whether requests need the server's token."""

    def op(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _operation(*args, token=token, **kwargs)

    paths: dict[str, Any] = {
        "/api/streams": {
            "get": op(
                "listStreams",
                "Streams ordered by id, with their versions; paged by the last id seen.",
                {"200": _json(ref("StreamPage"), "A page of streams.")},
                parameters=[
                    _query(
                        "prefix",
                        text(1000),
                        "Only streams whose id starts with this text.",
                    ),
                    _query(
                        "after",
                        text(1000),
                        "Resume after this stream id (next_after of the previous page).",
                    ),
                    LIMIT,
                ],
            )
        },
        "/api/streams/{stream_id}/events": {
            "get": op(
                "readStream",
                "A stream's events in version order (or backwards), a page at a time.",
                {
                    "200": _json(ref("StreamEvents"), "A page of the stream's events."),
                    "404": _error("The stream has no events."),
                },
                parameters=[
                    STREAM_ID,
                    _query(
                        "since",
                        {"type": "string", "format": "date-time"},
                        "Only events recorded at or after this time (with a timezone).",
                    ),
                    _query(
                        "from_version",
                        _integer(1),
                        "Start at this version (forwards: it and later; backwards: it and "
                        "earlier).",
                    ),
                    LIMIT,
                    _query(
                        "backwards",
                        {"type": "boolean", "default": False},
                        "From the last event to the first.",
                    ),
                ],
            ),
            "post": op(
                "appendToStream",
                "Append events to a stream, atomically: all or nothing.",
                {
                    "201": _json(ref("Events"), "The recorded events."),
                    "409": _json(
                        ref("Conflict"),
                        "wrong_expected_version (actual is the stream's version), or "
                        "duplicate_event (an event id is recorded in another stream).",
                    ),
                    "413": {"description": "The body is too large."},
                    "415": _error("The body is not application/json."),
                    "422": _error("An event or the expected version is not valid."),
                },
                parameters=[STREAM_ID],
                body={"required": True, "content": {_JSON: {"schema": ref("Append")}}},
                writes=True,
            ),
        },
        "/api/events/{event_id}": {
            "get": op(
                "readEvent",
                "One event by its id.",
                {
                    "200": _json(ref("Event"), "The event."),
                    "404": _error("No event has this id."),
                },
                parameters=[
                    _path("event_id", {"type": "string", "format": "uuid"}, "The event's id.")
                ],
            )
        },
        "/api/log": {
            "get": op(
                "readLog",
                "The global log after a position: every event of every stream, in commit order.",
                {"200": _json(ref("LogPage"), "A page of the log.")},
                parameters=[POSITION_AFTER, LIMIT, NAMES],
            )
        },
        "/api/tail": {
            "get": op(
                "tailLog",
                "Follow the global log live, as server-sent events (one per event, id = its "
                "position); resumes after Last-Event-ID when the client reconnects.",
                {
                    "200": {
                        "description": "A never-ending text/event-stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                parameters=[
                    _query("after", _integer(), "Start after this position (default: the head)."),
                    NAMES,
                ],
            )
        },
        "/api/projections": {
            "get": op(
                "listProjections",
                "Every subscription's checkpoint, the log's head, how far behind, how many "
                "parked events.",
                {"200": _json(ref("Projections"), "The projections' status.")},
            )
        },
        "/api/projections/parked": {
            "get": op(
                "listParked",
                "Parked events (those a subscription gave up on), oldest first.",
                {"200": _json(ref("ParkedPage"), "A page of parked events.")},
                parameters=[
                    _query(
                        "subscription",
                        text(200),
                        "Only this subscription's parked events.",
                    ),
                    _query("after", _integer(), "Resume after this parked event id."),
                    LIMIT,
                ],
            )
        },
        "/api/projections/retry": {
            "post": op(
                "retryAllParked",
                "Ask for every parked event (of one subscription) to be tried again by its "
                "subscription's driver.",
                {"200": _json(ref("Marked"), "How many parked events were marked.")},
                parameters=[
                    _query(
                        "subscription",
                        text(200),
                        "Only this subscription's parked events.",
                    )
                ],
                writes=True,
            )
        },
        "/api/projections/parked/{parked_id}/retry": {
            "post": op(
                "retryParked",
                "Ask for a parked event to be tried again; it leaves the parked list once its "
                "handler succeeds.",
                {
                    "200": _json(ref("Marked"), "The event was marked for a retry."),
                    "404": _error("No parked event has this id."),
                },
                parameters=[PARKED_ID],
                writes=True,
            )
        },
        "/api/projections/parked/{parked_id}": {
            "delete": op(
                "dropParked",
                "Forget a parked event for good.",
                {
                    "204": {"description": "Dropped."},
                    "404": _error("No parked event has this id."),
                },
                parameters=[PARKED_ID],
                writes=True,
            )
        },
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Conduit",
            "version": "1",
            "description": "The JSON API of a Conduit event store (conduit serve).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if token:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "conduit_session"},
        }
        spec["security"] = [{"bearer": []}, {"cookie": []}]
    return spec


async def openapi(request: Request) -> Response:
    """GET /openapi.json."""
    spec: dict[str, Any] = request.app.state.openapi
    return JSONResponse(spec)
