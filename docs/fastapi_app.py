"""A FastAPI application over Conduit's AsyncEventStore (see docs/asyncio.md).

- ``POST /streams/{stream_id}/events`` pushes one event (409 when ``expected_version``
  is stale);
- ``GET /streams/{stream_id}`` reads a stream;
- ``GET /log/follow`` sends the global log as server-sent events, live, until the
  client goes away.

The store is opened in the app's lifespan, from ``create_app(url)`` or else the
``CONDUIT_URL`` environment variable (default: ``sqlite:///events.db``)::

    CONDUIT_URL=sqlite:///events.db uvicorn --app-dir docs fastapi_app:app
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from conduit import AsyncEventStore, InvalidEvent, WrongExpectedVersion
from conduit.events import Event


class NewEvent(BaseModel):
    """An event to push."""

    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    expected_version: int | None = Field(default=None, ge=0)
    id: UUID | None = Field(default=None, description="Give one to make a retry safe.")


class RecordedEvent(BaseModel):
    """An event as the store recorded it."""

    id: UUID
    stream_id: UUID | str
    name: str
    version: int
    position: int
    recorded_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> Self:
        return cls.model_validate(event, from_attributes=True)


def get_store(request: Request) -> AsyncEventStore:
    store: AsyncEventStore = request.app.state.store
    return store


Store = Annotated[AsyncEventStore, Depends(get_store)]
router = APIRouter()


@router.post(
    "/streams/{stream_id}/events",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "The stream is not at `expected_version`."}},
)
async def push(stream_id: str, new: NewEvent, store: Store) -> RecordedEvent:
    try:
        event = await store.push(
            new.name,
            stream_id,
            new.data,
            metadata=new.metadata,
            expected_version=new.expected_version,
            event_id=new.id,
        )
    except WrongExpectedVersion as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    except InvalidEvent as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from error
    return RecordedEvent.of(event)


@router.get("/streams/{stream_id}")
async def read(
    stream_id: str,
    store: Store,
    from_version: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> list[RecordedEvent]:
    events = store.read(stream_id, from_version=from_version, limit=limit)
    found = [RecordedEvent.of(event) async for event in events]
    if not found and await store.stream_version(stream_id) == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stream {stream_id}")
    return found


async def start_position(
    store: Store,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> int:
    """Where a follower starts: where its EventSource broke off (``Last-Event-ID``),
    ``?after=``, or else the head, taken before the response starts so that
    nothing pushed after the client connected is missed."""
    if last_event_id is not None:
        return last_event_id
    return after if after is not None else await store.head_position()


@router.get("/log/follow", response_class=EventSourceResponse)
async def follow(
    store: Store,
    after: Annotated[int, Depends(start_position)],
    stream_prefix: str | None = None,
) -> AsyncIterator[ServerSentEvent]:
    # Ends when the client disconnects: the server cancels this generator, and
    # follow() gives its place back.
    async for event in store.follow(after=after, stream_prefix=stream_prefix):
        yield ServerSentEvent(data=RecordedEvent.of(event), id=str(event.position))


def create_app(url: str | None = None) -> FastAPI:
    """The application, on the store at ``url`` (default: ``$CONDUIT_URL``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        target = url or os.environ.get("CONDUIT_URL", "sqlite:///events.db")
        async with AsyncEventStore(target) as store:
            await store.setup()
            app.state.store = store
            yield

    app = FastAPI(title="Conduit example", lifespan=lifespan)
    app.include_router(router)
    return app


app = create_app()
