"""The asyncio face of a store: :class:`AsyncEventStore`, a 1:1 mirror of ``EventStore``.

Every call runs the same operation of the store's core
(:mod:`conduit.core.store_ops`) as ``EventStore`` does, awaiting its I/O instead
of blocking: PostgreSQL through psycopg's async connections and
``AsyncConnectionPool``; SQLite on a thread of the store's own (so that the event
loop never waits for the disk); memory inline. Arguments, results and errors
are ``EventStore``'s: see its methods for what each one does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from conduit.backends.base import announcer
from conduit.core.effects import AsyncRuntime
from conduit.core.following import Follow
from conduit.core.lifecycle import check_retention
from conduit.core.opening import check_store_options, open_async
from conduit.core.paging import Pages
from conduit.core.store_ops import DEFAULT_PAGE_SIZE, StoreCore
from conduit.core.subscribing import plan_subscription, starting, stopping
from conduit.core.writes import PendingEvent
from conduit.dcb import AppendCondition, Query
from conduit.entity_faces import AsyncStoreEntities
from conduit.errors import BackendError
from conduit.events import Event, ParkedEvent, StreamId, StreamInfo
from conduit.lifecycle_faces import AsyncStoreLifecycle
from conduit.personal_faces import AsyncStorePersonalData
from conduit.subscriptions.aio import AsyncSubscription
from conduit.subscriptions.driving import Mode, SubscriptionStatus
from conduit.typed import TypeRegistry

if TYPE_CHECKING:
    pass

__all__ = ["AsyncEventStore"]

T = TypeVar("T")


class AsyncEventStore(AsyncStoreLifecycle, AsyncStorePersonalData, AsyncStoreEntities):
    """An event store for asyncio: push events, read them back, subscribe, follow.

    Takes the arguments of :class:`~conduit.EventStore` (the same URLs and
    options). Open it with ``async with AsyncEventStore(url) as store:``, or
    call :meth:`close` when done; every method is a coroutine, and ``read``,
    ``read_all``, ``streams``, ``parked`` and :meth:`follow` are async iterators
    (``async for event in store.read(stream_id)``) that fetch a page at a time
    and hold no pooled connection between two pages.

    Raises:
        ConfigurationError: as ``EventStore``.
    """

    def __init__(
        self,
        url: Any = "memory://",
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        types: TypeRegistry | Iterable[type] | None = None,
        snapshot_every: int | None = None,
        group_commit: bool | None = None,
        reveal_personal_data: bool = True,
        retention: timedelta | None = None,
        **options: Any,
    ) -> None:
        registry = check_store_options(
            page_size=page_size,
            snapshot_every=snapshot_every,
            types=types,
            group_commit=group_commit,
        )
        # SQLite's statements run on a thread of the store's own: one writer at a
        # time anyway, and its appends combined there (group commit).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conduit-sqlite")
        opened = open_async(url, options, group_commit, self._thread)
        self.backend: Any = opened.backend
        """The engine, its calls as coroutines (for tools; the store's API is above it)."""
        self._owns_backend = opened.owns
        self._runtime: AsyncRuntime = opened.runtime
        self._core = StoreCore(
            opened.engine,
            types=registry,
            page_size=page_size,
            snapshot_every=snapshot_every,
            group=opened.group,
            reveal=bool(reveal_personal_data),
            retention=check_retention(retention),
        )
        self._closed = False

    @property
    def types(self) -> TypeRegistry | None:
        """Where events are read into typed objects and upcast; ``None``: plain events."""
        return self._core.types

    @property
    def page_size(self) -> int:
        """How many events reads fetch from the engine at a time."""
        return self._core.page_size

    @page_size.setter
    def page_size(self, size: int) -> None:
        self._core.page_size = size

    @property
    def snapshot_every(self) -> int | None:
        """Take a snapshot of an entity every this many events (``None``: never)."""
        return self._core.snapshot_every

    def __repr__(self) -> str:
        return f"<AsyncEventStore {self._core.engine.scheme}>"

    async def _pages(self, pages: Pages[Any, T]) -> AsyncIterator[T]:
        run = self._runtime.run
        while (fetch := pages.next()) is not None:
            for item in pages.feed(await run(fetch)):
                yield item

    # -- lifecycle -----------------------------------------------------------

    async def setup(self) -> None:
        """See :meth:`EventStore.setup`."""
        await self._runtime.run(self._core.engine.setup())

    async def close(self) -> None:
        """See :meth:`EventStore.close`: stops this store's subscriptions, then releases
        the engine's connections and files."""
        self._closed = True
        with self._core.lock:
            running, self._core.subscriptions = self._core.subscriptions, ()
        for subscription in running:
            await subscription.stop()  # type: ignore[attr-defined]
        for wake in list(self._core.followers):
            wake.set()
        if self._owns_backend:
            closing = self.backend.close()
            if asyncio.iscoroutine(closing):
                await closing
        self._thread.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        opening = getattr(self.backend, "open", None)
        if callable(opening):
            await opening()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- writing -------------------------------------------------------------

    async def push(
        self,
        name: str | object,
        stream_id: StreamId,
        data: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        expected_version: int | None = None,
        event_id: Any = None,
        tags: Iterable[str] | None = None,
    ) -> Event:
        """See :meth:`EventStore.push`."""
        return await self._runtime.run(
            self._core.push(name, stream_id, data, metadata, expected_version, event_id, tags)
        )

    async def push_many(
        self,
        stream_id: StreamId | Mapping[Any, Iterable[PendingEvent]],
        events: Iterable[PendingEvent] | None = None,
        *,
        expected_version: int | None = None,
        expected_versions: Mapping[Any, int] | None = None,
        tags: Iterable[str] | None = None,
    ) -> list[Event]:
        """See :meth:`EventStore.push_many`."""
        return await self._runtime.run(
            self._core.push_many(stream_id, events, expected_version, expected_versions, tags)
        )

    async def append(
        self,
        events: Iterable[PendingEvent],
        *,
        condition: AppendCondition | None = None,
        tags: Iterable[str] | None = None,
        expected_versions: Mapping[Any, int] | None = None,
    ) -> list[Event]:
        """See :meth:`EventStore.append`."""
        return await self._runtime.run(
            self._core.append(events, condition, tags, expected_versions)
        )

    # -- reading -------------------------------------------------------------

    async def get(self, stream_id: StreamId) -> list[Event]:
        """See :meth:`EventStore.get`."""
        return [event async for event in self.read(stream_id)]

    def read(
        self,
        stream_id: StreamId,
        *,
        since: datetime | None = None,
        from_version: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
    ) -> AsyncIterator[Event]:
        """See :meth:`EventStore.read`: an async iterator."""
        return self._pages(
            self._core.stream_pages(
                stream_id, since=since, from_version=from_version, limit=limit, backwards=backwards
            )
        )

    def read_all(
        self,
        *,
        after: int | None = None,
        names: Iterable[str] | None = None,
        limit: int | None = None,
        correlation_id: Any = None,
        causation_id: Any = None,
        before: int | None = None,
        backwards: bool = False,
    ) -> AsyncIterator[Event]:
        """See :meth:`EventStore.read_all`: an async iterator."""
        return self._pages(
            self._core.log_pages(
                after=after,
                names=names,
                limit=limit,
                correlation_id=correlation_id,
                causation_id=causation_id,
                before=before,
                backwards=backwards,
            )
        )

    async def read_query(
        self,
        query: Query,
        *,
        after: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
    ) -> list[Event]:
        """See :meth:`EventStore.read_query`."""
        if backwards:
            if limit is None:
                found = await self.read_query(query, after=after)
                return found[::-1]
            return await self._runtime.run(
                self._core.read_query_backwards(query, after=after, limit=limit)
            )
        return [
            e async for e in self._pages(self._core.query_pages(query, after=after, limit=limit))
        ]

    async def stream_version(self, stream_id: StreamId) -> int:
        """See :meth:`EventStore.stream_version`."""
        return await self._runtime.run(self._core.stream_version(stream_id))

    def streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[StreamInfo]:
        """See :meth:`EventStore.streams`: an async iterator."""
        return self._pages(self._core.streams_pages(prefix=prefix, after=after, limit=limit))

    async def head_position(self) -> int:
        """See :meth:`EventStore.head_position`."""
        return await self._runtime.run(self._core.head_position())

    async def read_event(self, event_id: Any) -> Event | None:
        """See :meth:`EventStore.read_event`."""
        return await self._runtime.run(self._core.read_event(event_id))

    def follow(
        self,
        *,
        after: int | None = None,
        names: Iterable[str] | None = None,
        stream_prefix: str | None = None,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
    ) -> AsyncIterator[Event]:
        """The global log after ``after``, then every event as it is recorded, for ever.

        It catches up a page at a time, then waits for new events: woken at once
        by this store's pushes and by the engine's announcements (PostgreSQL's
        ``NOTIFY``, for stores opened with ``notify=True``), polling for the
        rest (every ``poll_interval`` seconds while events come, twice as long
        after each quiet look, up to ``max_poll_interval``). It ends cleanly when
        closed (``aclose()``) or when its task is cancelled, and holds no pooled
        connection while it waits. This is what an SSE or WebSocket endpoint
        iterates.

        Raises:
            InvalidArgument: a bad ``after``, ``names`` or interval.
        """
        follow = Follow(
            self._core,
            after=after,
            names=names,
            stream_prefix=stream_prefix,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
        return self._follow(follow)

    def follow_pages(
        self,
        *,
        after: int | None = None,
        names: Iterable[str] | None = None,
        stream_prefix: str | None = None,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
    ) -> AsyncGenerator[Sequence[Event], None]:
        """:meth:`follow`, a page of events at a time (as the engine read them, filtered).

        For consumers that handle events in batches (a relay); a page the
        filters kept nothing of is not given.

        Raises:
            InvalidArgument: a bad ``after``, ``names`` or interval.
        """
        follow = Follow(
            self._core,
            after=after,
            names=names,
            stream_prefix=stream_prefix,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
        return self._follow_pages(follow)

    async def _follow(self, follow: Follow) -> AsyncIterator[Event]:
        async with contextlib.aclosing(self._follow_pages(follow)) as pages:
            async for page in pages:
                for event in page:
                    yield event

    async def _follow_pages(self, follow: Follow) -> AsyncGenerator[Sequence[Event], None]:
        wake = asyncio.Event()
        announcing = announcer(self.backend)
        self._core.followers.add(wake)
        if announcing is not None:
            announcing.add_waker(wake)
        try:
            while not self._closed:
                wake.clear()
                try:
                    page = await self._runtime.run(follow.step())
                except BackendError:
                    if self._closed:
                        return  # the store closed under the follower: it ends
                    raise
                if page:
                    yield page
                if not follow.caught_up:
                    continue
                try:
                    # asyncio.timeout, not wait_for: on 3.11, wait_for loses a
                    # cancellation that comes as the event is set, and the
                    # follower would go on after its task was cancelled
                    async with asyncio.timeout(follow.wait()):
                        await wake.wait()
                except TimeoutError:
                    follow.quiet()
                else:
                    follow.woken()
        finally:
            self._core.followers.discard(wake)
            if announcing is not None:
                announcing.remove_waker(wake)

    # -- subscribing ---------------------------------------------------------

    async def subscribe(
        self,
        listener: object,
        *,
        name: str | None = None,
        mode: Mode | None = None,
        names: Sequence[str] | None = None,
        streams: str | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        on_failure: Literal["park", "stop"] | None = None,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        lease_ttl: float | None = None,
        partitions: int | None = None,
    ) -> Any:
        """See :meth:`EventStore.subscribe`: handlers may be ``async def`` (plain ``def``
        handlers work too); a ``background`` subscription runs as an asyncio task in
        the store's loop. Named subscriptions keep their checkpoints, retries and
        parked events in the same tables as under ``EventStore``: a projection
        started by one face goes on under the other."""
        core = self._core
        plan = plan_subscription(
            core,
            listener,
            name=name,
            mode=mode,
            names=names,
            streams=streams,
            max_attempts=max_attempts,
            backoff=backoff,
            on_failure=on_failure,
            batch_size=batch_size,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            lease_ttl=lease_ttl,
            partitions=partitions,
        )
        if plan is None:
            core.add_listener(listener)
            return listener
        driver = plan.driver(core, stopped=asyncio.Event(), wake=asyncio.Event())
        wakers = announcer(self.backend)
        subscription = AsyncSubscription(driver, self._runtime, wakers)
        await self._runtime.run(starting(core, subscription))
        return subscription

    async def unsubscribe(self, listener: object) -> None:
        """See :meth:`EventStore.unsubscribe`."""
        for subscription in stopping(self._core, listener):
            await subscription.stop()  # type: ignore[attr-defined]

    # -- parked events and lag -----------------------------------------------

    def parked(
        self, subscription: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[ParkedEvent]:
        """See :meth:`EventStore.parked`: an async iterator."""
        return self._pages(self._core.parked_pages(subscription, after=after, limit=limit))

    async def retry_parked(
        self, parked_id: int | None = None, *, subscription: str | None = None
    ) -> int:
        """See :meth:`EventStore.retry_parked`."""
        return await self._runtime.run(self._core.retry_parked(parked_id, subscription))

    async def drop_parked(self, parked_id: int) -> bool:
        """See :meth:`EventStore.drop_parked`."""
        return await self._runtime.run(self._core.drop_parked(parked_id))

    async def subscription_status(self) -> list[SubscriptionStatus]:
        """See :meth:`EventStore.subscription_status`."""
        return await self._runtime.run(self._core.subscription_status())
