"""The browser's pages: overview, streams, a stream, an event, the log, projections.

Every list is paged by key (a stream id, a version, a position), never by
offset, and no page counts a whole table: each view costs a few indexed reads
whatever the size of the store.
"""

from __future__ import annotations

from collections import Counter

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conduit.dcb import Query, QueryItem
from conduit.errors import InvalidArgument
from conduit.web import params
from conduit.web.auth import check_csrf
from conduit.web.history import correlated_page, event_link_id, events_before, related
from conduit.web.render import page, with_query
from conduit.web.stores import store_of

__all__ = ["PAGE_SIZE", "RECENT", "routes"]

PAGE_SIZE = 50
"""Rows per page."""

RECENT = 15
"""Events on the overview."""

PARKED_SHOWN = 200
"""Parked events listed on the projections page."""


async def overview(request: Request) -> Response:
    """The store at a glance: the log's head, the newest events, projections' health."""
    store = store_of(request)
    recent = await events_before(store, None, RECENT)
    statuses = await store.subscription_status()
    parked = Counter([item.subscription async for item in store.parked()])
    head = recent[-1].position if recent else await store.head_position()
    return page(
        request,
        "overview.html",
        {
            "title": "Overview",
            "head": head,
            "newest": recent[-1] if recent else None,
            "recent": list(reversed(recent)),
            "statuses": statuses,
            "parked": parked,
            "engine": store.backend.scheme,
        },
    )


async def streams(request: Request) -> Response:
    """Streams by id, searched by prefix, paged by the last id shown."""
    query = request.query_params
    prefix = params.text(query, "prefix")
    after = params.text(query, "after")
    listed = store_of(request).streams(prefix=prefix, after=after, limit=PAGE_SIZE + 1)
    found = [stream async for stream in listed]
    shown = found[:PAGE_SIZE]
    following = None
    if len(found) > PAGE_SIZE:
        following = with_query("/streams", prefix=prefix, after=str(shown[-1].stream_id))
    return page(
        request,
        "streams.html",
        {
            "title": "Streams",
            "prefix": prefix or "",
            "streams": shown,
            "first": with_query("/streams", prefix=prefix) if after else None,
            "following": following,
        },
    )


async def stream(request: Request) -> Response:
    """A stream's events in version order, a page at a time."""
    store = store_of(request)
    stream_id: str = request.path_params["stream_id"]
    query = request.query_params
    from_version = params.integer(query, "from_version", minimum=1)
    backwards = params.boolean(query, "backwards")
    version = await store.stream_version(stream_id)
    metadata = await store.stream_metadata(stream_id)
    if version == 0 and metadata is None:
        return _missing(request, f"The stream {stream_id!r} has no events.")
    events = store.read(
        stream_id, from_version=from_version, backwards=backwards, limit=PAGE_SIZE + 1
    )
    found = [event async for event in events]
    shown = found[:PAGE_SIZE]
    more = len(found) > PAGE_SIZE
    if backwards:
        shown.reverse()
    href = request.url.path
    older = newer = None
    if shown:
        first, last = shown[0].version, shown[-1].version
        if first > 1 and (more or not backwards):
            older = with_query(href, from_version=first - 1, backwards="true")
        if last < version and (more or backwards):
            newer = with_query(href, from_version=last + 1)
    return page(
        request,
        "stream.html",
        {
            "title": f"Stream {stream_id}",
            "stream_id": stream_id,
            "version": version,
            "metadata": metadata,
            "events": shown,
            "older": older,
            "newer": newer,
            "oldest": href if older else None,
            "newest": with_query(href, backwards="true") if newer else None,
        },
    )


async def tombstones(request: Request) -> Response:
    """Deleted streams (soft and hard), by id, paged by the last id shown. The browser
    only shows them: deleting is for the CLI and the API of the store."""
    after = params.text(request.query_params, "after")
    found = await store_of(request).tombstones(after=after, limit=PAGE_SIZE + 1)
    shown = found[:PAGE_SIZE]
    following = None
    if len(found) > PAGE_SIZE:
        following = with_query("/deleted-streams", after=str(shown[-1].stream_id))
    return page(
        request,
        "tombstones.html",
        {
            "title": "Deleted streams",
            "tombstones": shown,
            "first": "/deleted-streams" if after else None,
            "following": following,
        },
    )


async def event(request: Request) -> Response:
    """One event: its data, metadata, and links to its correlation and causation."""
    store = store_of(request)
    raw: str = request.path_params["event_id"]
    event_id = event_link_id(raw)
    found = await store.read_event(event_id) if event_id is not None else None
    if found is None:
        return _missing(request, f"No event has the id {raw!r}.")
    relatives = await related(store, found)
    return page(
        request,
        "event.html",
        {
            "title": f"Event {found.name}",
            "event": found,
            "related": relatives,
            "causation_href": event_link_id(relatives.causation_id),
        },
    )


async def log(request: Request) -> Response:
    """The global log, newest first, paged by position; the newest page follows it live."""
    store = store_of(request)
    query = request.query_params
    after = params.integer(query, "after")
    before = params.integer(query, "before", minimum=1)
    if after is not None and before is not None:
        raise InvalidArgument("give after or before, not both", field="before")
    if after is not None:
        found = [event async for event in store.read_all(after=after, limit=PAGE_SIZE + 1)]
        shown = found[:PAGE_SIZE]
        has_newer, has_older = len(found) > PAGE_SIZE, after > 0
    else:
        shown = await events_before(store, before, PAGE_SIZE)
        has_newer, has_older = before is not None, len(shown) == PAGE_SIZE
    live = after is None and before is None
    newer = older = None
    if shown and has_newer:
        newer = with_query("/log", after=shown[-1].position)
    if shown and has_older:
        older = with_query("/log", before=shown[0].position)
    return page(
        request,
        "log.html",
        {
            "title": "Global log",
            "events": list(reversed(shown)),
            "newer": newer,
            "older": older,
            "live": live,
            "poll_only": query.get("tail") == "poll",
            "tail_after": shown[-1].position if shown else (after or 0),
        },
    )


async def correlation(request: Request) -> Response:
    """The events that carry a correlation id, in log order, a page at a time."""
    correlation_id: str = request.path_params["correlation_id"]
    after = params.integer(request.query_params, "after", default=0)
    assert after is not None
    events, more = await correlated_page(store_of(request), correlation_id, after, PAGE_SIZE)
    following = None
    if more and events:
        following = with_query(request.url.path, after=events[-1].position)
    return page(
        request,
        "correlation.html",
        {
            "title": f"Correlation {correlation_id}",
            "correlation_id": correlation_id,
            "events": events,
            "after": after,
            "first": request.url.path if after else None,
            "following": following,
        },
    )


async def tag(request: Request) -> Response:
    """The events that carry a tag, in log order, a page at a time (the tag index)."""
    raw: str = request.path_params["tag"]
    after = params.integer(request.query_params, "after", default=0)
    assert after is not None
    try:
        query = Query(QueryItem(tags=[raw]))
    except InvalidArgument:
        return _missing(request, f"{raw!r} is not a tag.")
    found = await store_of(request).read_query(query, after=after, limit=PAGE_SIZE + 1)
    events = found[:PAGE_SIZE]
    following = None
    if len(found) > PAGE_SIZE:
        following = with_query(request.url.path, after=events[-1].position)
    return page(
        request,
        "tag.html",
        {
            "title": f"Tag {raw}",
            "tag": raw,
            "events": events,
            "after": after,
            "first": request.url.path if after else None,
            "following": following,
        },
    )


async def projections(request: Request) -> Response:
    """Subscriptions: checkpoint, lag, and parked events with buttons to retry or drop them."""
    store = store_of(request)
    statuses = await store.subscription_status()
    parked = [item async for item in store.parked()]
    counts = Counter(item.subscription for item in parked)
    return page(
        request,
        "projections.html",
        {
            "title": "Projections",
            "statuses": statuses,
            "counts": counts,
            "parked": parked[:PARKED_SHOWN],
            "parked_total": len(parked),
            "done": params.text(request.query_params, "done", max_length=200),
        },
    )


async def retry_parked(request: Request) -> Response:
    """POST: ask a parked event's subscription to try it again."""
    await check_csrf(request)
    parked_id = _parked_id(request)
    marked = await store_of(request).retry_parked(parked_id)
    if not marked:
        return _missing(request, f"No parked event has the id {parked_id}.")
    return _back(f"Retry requested for parked event {parked_id}.")


async def drop_parked(request: Request) -> Response:
    """POST: forget a parked event for good."""
    await check_csrf(request)
    parked_id = _parked_id(request)
    dropped = await store_of(request).drop_parked(parked_id)
    if not dropped:
        return _missing(request, f"No parked event has the id {parked_id}.")
    return _back(f"Dropped parked event {parked_id}.")


async def retry_all(request: Request) -> Response:
    """POST: retry every parked event of one subscription (or of all)."""
    fields = await check_csrf(request)
    subscription = fields.get("subscription") or None
    marked = await store_of(request).retry_parked(None, subscription=subscription)
    return _back(f"Retry requested for {marked} parked event{'s' if marked != 1 else ''}.")


def _parked_id(request: Request) -> int:
    value = params.integer(request.path_params, "parked_id", minimum=1)
    assert value is not None
    return value


def _back(done: str) -> Response:
    return RedirectResponse(with_query("/projections", done=done), status_code=303)


def _missing(request: Request, message: str) -> Response:
    return page(request, "error.html", {"title": "Not found", "message": message}, status_code=404)


routes: list[BaseRoute] = [
    Route("/", overview, methods=["GET"]),
    Route("/streams", streams, methods=["GET"]),
    Route("/deleted-streams", tombstones, methods=["GET"]),
    Route("/streams/{stream_id:stream_id}", stream, methods=["GET"]),
    Route("/events/{event_id}", event, methods=["GET"]),
    Route("/log", log, methods=["GET"]),
    Route("/correlations/{correlation_id:stream_id}", correlation, methods=["GET"]),
    Route("/tags/{tag:stream_id}", tag, methods=["GET"]),
    Route("/projections", projections, methods=["GET"]),
    Route("/projections/retry", retry_all, methods=["POST"]),
    Route("/projections/parked/{parked_id}/retry", retry_parked, methods=["POST"]),
    Route("/projections/parked/{parked_id}/drop", drop_parked, methods=["POST"]),
]
"""The pages' routes."""
