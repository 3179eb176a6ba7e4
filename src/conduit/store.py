"""The facade users hold: :class:`EventStore`, Conduit's sync face.

Every call runs an operation of the store's core (:mod:`conduit.core.store_ops`)
by blocking the calling thread; :class:`conduit.AsyncEventStore` runs the same
operations as coroutines.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, overload

from conduit.backends.base import Backend, announcer
from conduit.core.effects import SyncRuntime
from conduit.core.following import Follow
from conduit.core.lifecycle import check_retention
from conduit.core.opening import check_store_options, open_sync
from conduit.core.paging import Pages
from conduit.core.store_ops import DEFAULT_PAGE_SIZE, RESERVED_PREFIX, StoreCore
from conduit.core.subscribing import plan_subscription, starting, stopping
from conduit.core.writes import MAX_BATCH, PendingEvent
from conduit.dcb import AppendCondition, Query
from conduit.entity_faces import StoreEntities
from conduit.errors import BackendError
from conduit.events import Event, GCPaused, ParkedEvent, StreamId, StreamInfo
from conduit.lifecycle_faces import StoreLifecycle
from conduit.personal_faces import StorePersonalData
from conduit.subscriptions.drivers import Subscription
from conduit.subscriptions.driving import Mode, SubscriptionStatus
from conduit.subscriptions.projector import Projector
from conduit.typed import TypeRegistry

if TYPE_CHECKING:
    pass

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_BATCH", "RESERVED_PREFIX", "EventStore", "PendingEvent"]

T = TypeVar("T")
L = TypeVar("L")


class EventStore(StoreLifecycle, StorePersonalData, StoreEntities):
    """An event store: push events to streams, read them back, subscribe.

    Args:
        url: which engine: ``memory://`` (the default, nothing kept),
            ``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db``;
            or a :class:`~conduit.backends.base.Backend` object.
        page_size: how many events reads fetch at a time.
        types: the typed event classes to read events into (a list of
            classes, or a :class:`~conduit.TypeRegistry`, which also holds
            upcasters); events of other names read as plain ``Event``.
        snapshot_every: take a snapshot of an entity loaded or saved through
            :meth:`load` and :meth:`save` every this many events (an entity
            class's own ``snapshot_every`` attribute wins); ``None``: never.
        group_commit: combine the concurrent appends of this store's threads into
            one engine transaction each time (one commit for many; each caller
            still gets its own events or its own error). ``None``, the default:
            on for SQLite and PostgreSQL, off for memory (which has no commit to
            share); ``False`` turns it off. See docs/design.md, group commit.
        reveal_personal_data: decrypt personal values on reads (the default);
            ``False``: reads give them in their stored, encrypted form
            (``{"conduit.sealed": [subject, ciphertext]}``), as exports and
            copies move them. See docs/personal-data.md.
        retention: the store-wide maximum age of events: reads of a stream
            return none older, and :meth:`scavenge` removes them (Conduit's own
            ``conduit.`` streams excepted). See docs/lifecycle.md.
        **options: passed to the engine opened from ``url`` (for example
            ``synchronous="normal"`` for SQLite, ``pool_size=8`` or
            ``schema="app"`` for PostgreSQL); not with a backend object.

    Raises:
        ConfigurationError: the URL is malformed or names no known engine, an
            option is unknown to the engine (the message names the known ones),
            or options were given with a backend object.
    """

    def __init__(
        self,
        url: str | Backend = "memory://",
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
        opened = open_sync(url, options, group_commit)
        self.backend: Backend = opened.backend
        """The engine, its calls as plain methods (for tools; the store's API is above it)."""
        self._owns_backend = opened.owns
        self._runtime: SyncRuntime = opened.runtime
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
        return f"<EventStore {self.backend.scheme}>"

    @staticmethod
    def _listed(events: Iterator[Event]) -> list[Event]:
        # A list of events kept whole: every collection while it grows would walk
        # all of it again (a tenth to a fifth of a long read), to free nothing (see GCPaused).
        # The collector runs again once the list is made.
        with GCPaused():
            return list(events)

    def _pages(self, pages: Pages[Any, T]) -> Iterator[T]:
        run = self._runtime.run
        while (fetch := pages.next()) is not None:
            yield from pages.feed(run(fetch))

    # -- lifecycle -----------------------------------------------------------

    def setup(self) -> None:
        """Create the store's schema, or migrate it; safe to repeat."""
        self._runtime.run(self._core.engine.setup())

    def close(self) -> None:
        """Stop this store's subscriptions, then release the engine's connections and files.

        A backend object given to the constructor belongs to the caller, who may
        share it between stores: it is left open (close it yourself).
        """
        self._closed = True
        for wake in list(self._core.followers):
            wake.set()
        with self._core.lock:
            running, self._core.subscriptions = self._core.subscriptions, ()
        for subscription in running:
            subscription.stop()  # type: ignore[attr-defined]
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -------------------------------------------------------------

    def push(
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
        """Record one event at the end of a stream and return it.

        ``name`` is an event name with its ``data``, or a typed event (a
        dataclass or pydantic model instance, without ``data``): its class
        gives the name and its fields the data, and the returned event is a
        :class:`~conduit.events.TypedEvent` carrying it as ``payload``.
        ``expected_version``: ``None`` appends whatever the stream's version;
        ``0`` requires a new stream; ``n`` requires the stream's last version to
        be ``n``. ``event_id`` (a UUID) makes a retry safe: pushing again an
        event whose id is recorded in the same stream returns the recorded one.

        Raises:
            InvalidEvent: a bad name, stream id, event id, data or metadata.
            WrongExpectedVersion: the stream is at another version.
            DuplicateEvent: the event id is recorded in another stream.
            BackendError: the engine failed.
        """
        return self._runtime.run(
            self._core.push(name, stream_id, data, metadata, expected_version, event_id, tags)
        )

    def push_many(
        self,
        stream_id: StreamId | Mapping[Any, Iterable[PendingEvent]],
        events: Iterable[PendingEvent] | None = None,
        *,
        expected_version: int | None = None,
        expected_versions: Mapping[Any, int] | None = None,
        tags: Iterable[str] | None = None,
    ) -> list[Event]:
        """Record several events, atomically: all or nothing.

        ``push_many(stream_id, events, expected_version=...)`` appends a batch
        to one stream. ``push_many({stream_a: events, stream_b: events},
        expected_versions={stream_a: 3, stream_b: 0})`` appends to several
        streams in one transaction: every stream's expected version is
        checked, and :class:`~conduit.errors.WrongExpectedVersion` names every
        stream that failed (its ``conflicts``); the events of the call are
        contiguous in the global log, stream after stream in the mapping's
        order. Returns the recorded events in that order.

        Each event is a mapping with ``name``, ``data`` and optionally
        ``metadata``, ``id``, ``tags`` and ``recorded_at`` (for imports and
        copies: the aware time the source store recorded it, kept as is), or a
        tuple ``(name, data)`` or ``(name, data, metadata)``. ``tags`` are
        added to every event's own. Errors are those of :meth:`push`.
        """
        return self._runtime.run(
            self._core.push_many(stream_id, events, expected_version, expected_versions, tags)
        )

    def append(
        self,
        events: Iterable[PendingEvent],
        *,
        condition: AppendCondition | None = None,
        tags: Iterable[str] | None = None,
        expected_versions: Mapping[Any, int] | None = None,
    ) -> list[Event]:
        """Record events of one, several or no streams atomically, under a condition.

        Each event is as for :meth:`push_many`, and a mapping may name its
        ``stream_id``; the events without one go to one new stream named
        ``dcb:<the first such event's id>``. With ``condition``
        (:class:`~conduit.AppendCondition`), nothing is written when an event
        its query matches was recorded after its ``after`` position: the
        Dynamic Consistency Boundary (docs/dcb.md). Appends whose keys (names
        and tags of the condition and of the events) do not overlap never wait
        for each other, on any engine that runs writers at once.

        Raises:
            AppendConditionFailed: naming the first matching event's position.
            WrongExpectedVersion: a stream of ``expected_versions`` is elsewhere.
            InvalidEvent, DuplicateEvent, BackendError: as for :meth:`push`.
        """
        return self._runtime.run(self._core.append(events, condition, tags, expected_versions))

    # -- reading -------------------------------------------------------------

    def get(self, stream_id: StreamId) -> list[Event]:
        """Every event of a stream, in version order (an empty list for none)."""
        return self._listed(self.read(stream_id))

    def read(
        self,
        stream_id: StreamId,
        *,
        since: datetime | None = None,
        from_version: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
    ) -> Iterator[Event]:
        """Iterate over a stream's events, fetching a page at a time.

        Args:
            since: only events recorded at or after this timezone-aware time.
            from_version: start at this version (forwards: it and later;
                backwards: it and earlier).
            limit: stop after this many events.
            backwards: from the last event to the first.

        Raises:
            InvalidArgument: a naive ``since``, a negative ``limit`` or a
                ``from_version`` below 1.
        """
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
    ) -> Iterator[Event]:
        """Iterate over the global log: every event of every stream, once, in commit order.

        Args:
            after: a position this store returned; the log resumes right after it.
            names: only events with these names.
            limit: stop after this many events.
            correlation_id: only events whose metadata's ``correlation_id`` is
                this (a string; an integer matches by its decimal text).
            causation_id: only events whose metadata's ``causation_id`` is this
                (the events an event caused: its id's text).
            before: only events whose position is below this one.
            backwards: newest first, from ``before`` (or the end of the log) down
                to ``after`` (or the beginning): the log page a browser shows.

        Each filter is served by an index, whatever the size of the log, and so
        is reading backwards.
        """
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

    def read_query(
        self,
        query: Query,
        *,
        after: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
    ) -> list[Event]:
        """The events ``query`` matches whose position is after ``after``, in log order
        (the latest first with ``backwards``), at most ``limit``.

        Base a decision on them, then :meth:`append` with
        ``AppendCondition(query, after=<the last position seen>)`` (or
        :meth:`head_position` read before, when nothing matched). Served by
        the tag and name indexes, whatever the size of the log.
        """
        if backwards:
            if limit is None:
                return self.read_query(query, after=after)[::-1]
            return self._runtime.run(
                self._core.read_query_backwards(query, after=after, limit=limit)
            )
        return self._listed(self._pages(self._core.query_pages(query, after=after, limit=limit)))

    def stream_version(self, stream_id: StreamId) -> int:
        """The version of a stream's last event; 0 for a stream with no events."""
        return self._runtime.run(self._core.stream_version(stream_id))

    def streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Iterator[StreamInfo]:
        """Iterate over streams and their versions, ordered by id (as text).

        Args:
            prefix: only streams whose id starts with this text.
            after: resume after this stream id (keyset paging).
            limit: stop after this many streams.
        """
        return self._pages(self._core.streams_pages(prefix=prefix, after=after, limit=limit))

    def head_position(self) -> int:
        """The position of the newest event in the global log (0 when empty)."""
        return self._runtime.run(self._core.head_position())

    def read_event(self, event_id: Any) -> Event | None:
        """One event by its id (a UUID or its text), or ``None``."""
        return self._runtime.run(self._core.read_event(event_id))

    def follow(
        self,
        *,
        after: int | None = None,
        names: Iterable[str] | None = None,
        stream_prefix: str | None = None,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
    ) -> Generator[Event, None, None]:
        """The global log after ``after``, then every event as it is recorded, for ever.

        It catches up a page at a time, then waits for new events: woken at once
        by this store's pushes and by the engine's announcements (PostgreSQL's
        ``NOTIFY``, for stores opened with ``notify=True``), polling for the
        rest (every ``poll_interval`` seconds while events come, twice as long
        after each quiet look, up to ``max_poll_interval``). It ends when closed
        (``close()`` of the iterator) or when the store closes, and holds no
        pooled connection while it waits. ``AsyncEventStore.follow`` is its
        asyncio twin, for SSE and WebSocket endpoints.

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

    def _follow(self, follow: Follow) -> Generator[Event, None, None]:
        wake = threading.Event()
        announcing = announcer(self.backend)
        self._core.followers.add(wake)
        if announcing is not None:
            announcing.add_waker(wake)
        try:
            while not self._closed:
                wake.clear()
                try:
                    page = self._runtime.run(follow.step())
                except BackendError:
                    if self._closed:
                        return  # the store closed under the follower: it ends
                    raise
                yield from page
                if not follow.caught_up:
                    continue
                if wake.wait(follow.wait()):
                    follow.woken()
                else:
                    follow.quiet()
        finally:
            self._core.followers.discard(wake)
            if announcing is not None:
                announcing.remove_waker(wake)

    # -- subscribing ---------------------------------------------------------

    @overload
    def subscribe(
        self,
        listener: object,
        *,
        name: str,
        mode: Mode = "inline",
        names: Sequence[str] | None = None,
        streams: str | None = None,
        max_attempts: int = 3,
        backoff: float = 0.05,
        on_failure: Literal["park", "stop"] = "park",
        batch_size: int | None = None,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        lease_ttl: float = 10.0,
        partitions: int = 1,
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        listener: Projector,
        *,
        name: None = None,
        mode: Mode = "inline",
        names: Sequence[str] | None = None,
        streams: str | None = None,
        max_attempts: int = 3,
        backoff: float = 0.05,
        on_failure: Literal["park", "stop"] = "park",
        batch_size: int | None = None,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        lease_ttl: float = 10.0,
        partitions: int = 1,
    ) -> Subscription: ...

    @overload
    def subscribe(self, listener: L) -> L: ...

    def subscribe(
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
    ) -> object:
        """Notify ``listener`` of new events: a plain listener, or a named subscription.

        Which one is explicit: ``listener`` becomes a **named subscription**
        when a ``name`` is given, or when it is a projector that keeps its
        own checkpoint under its own name (it has ``load_checkpoint``,
        ``apply`` and ``apply_parked``, as a
        :class:`conduit.projections.SQLProjection` has). A named subscription
        keeps a checkpoint and receives every event after it, in global-log
        order, whoever pushed it, starting from the first event of the log;
        it returns a :class:`~conduit.subscriptions.Subscription`. An inline
        one catches up inside this call; if that fails (``on_failure="stop"``),
        the error is raised and nothing stays subscribed.

        Anything else is a **plain listener**, whatever its attributes (a
        ``name`` attribute included): any object with ``on_<event name>(event)``
        methods, and optionally ``on_event(event)`` for every event, called in
        the pushing thread once a push through this store has committed. An
        exception it raises is logged with the event id and neither undoes the
        push nor stops other listeners. Returns the listener. The options
        below are a named subscription's: given for a plain listener, they
        are refused.

        Args:
            name: the subscription's name: its checkpoint, lease and parked
                events are kept under it.
            mode: ``inline`` (driven by the pushing thread, so the caller
                reads its own writes; no lease: every store that subscribes
                it inline drives it) or ``background`` (a thread that holds
                the subscription's lease).
            names: only events with these names.
            streams: only events of streams whose id starts with this prefix.
            max_attempts, backoff, on_failure: a failing handler is retried
                ``max_attempts`` times in all with exponential backoff from
                ``backoff`` seconds, then its event is parked and the
                subscription goes on (``"park"``) or stops (``"stop"``).
            batch_size: events applied at a time: for SQL read models, one
                transaction with the checkpoint per ``batch_size`` events; by
                default the projection's ``batch_size`` attribute, else 100.
                The log is read in pages of 500 (or ``batch_size``, if larger).
            poll_interval, max_poll_interval: how often a background driver
                looks for events pushed by other processes: every
                ``poll_interval`` seconds while it finds some, twice as long
                after each look that finds none, up to ``max_poll_interval``.
                Pushes through this store (and ``NOTIFY``, on PostgreSQL with
                ``notify=True``) wake it at once.
            lease_ttl: seconds after which another driver may take over a dead
                driver's lease (SQLite and memory; PostgreSQL takes over at
                once, when the session ends).
            partitions: split the subscription into this many partitions by
                a stable hash of the stream id (see
                :mod:`conduit.subscriptions.partitions`), each with its own
                checkpoint and lease, so that up to that many background
                drivers (``conduit run --partitions N`` workers) drive it at
                once, sharing the partitions out among those alive. Order is
                kept within each stream, not across streams. A projection
                whose checkpoints were kept for another number of partitions
                is refused (:class:`~conduit.subscriptions.partitions.PartitionsChanged`:
                at once, inline; as the driver's ``error``, background)
                until it is rebuilt with the new number.

        Raises:
            InvalidArgument: a bad or reserved name, a name already running
                in this store, or a named subscription's option given for a
                plain listener.
            ProjectionError: an inline subscription's first catch-up stopped
                on a failing event (``on_failure="stop"``), or its checkpoints
                were kept for another number of partitions.
        """
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
        driver = plan.driver(core, stopped=threading.Event(), wake=threading.Event())
        wakers = announcer(self.backend)
        subscription = Subscription(driver, self._runtime, wakers)
        self._runtime.run(starting(core, subscription))
        return subscription

    def unsubscribe(self, listener: object) -> None:
        """Stop notifying a listener, or stop a subscription, given to :meth:`subscribe`."""
        for subscription in stopping(self._core, listener):
            subscription.stop()  # type: ignore[attr-defined]

    # -- parked events and lag -----------------------------------------------

    def parked(
        self, subscription: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> Iterator[ParkedEvent]:
        """The events subscriptions gave up on, with their errors, oldest first.

        Args:
            subscription: only the events of this subscription.
            after: a parked event's id; the list resumes right after it (keyset
                paging: the engine skips what comes before by its index).
            limit: stop after this many parked events.

        Raises:
            InvalidArgument: ``after`` or ``limit`` is not an integer of 0 or more.
        """
        return self._pages(self._core.parked_pages(subscription, after=after, limit=limit))

    def retry_parked(self, parked_id: int | None = None, *, subscription: str | None = None) -> int:
        """Ask for parked events to be tried again by their subscription's driver.

        ``parked_id`` ``None`` retries every parked event (of ``subscription``).
        The event leaves the parked list once its handler succeeds. Returns how
        many events were marked.
        """
        return self._runtime.run(self._core.retry_parked(parked_id, subscription))

    def drop_parked(self, parked_id: int) -> bool:
        """Forget a parked event for good; False if there is no such parked event."""
        return self._runtime.run(self._core.drop_parked(parked_id))

    def subscription_status(self) -> list[SubscriptionStatus]:
        """Every subscription's checkpoint, the log's head and how many events behind.

        For a subscription running in this store, ``behind`` counts the
        events after its checkpoint that its filters keep (by name, and by
        stream prefix: exactly up to :data:`~conduit.subscriptions.lag.SCAN_LIMIT`
        events, an upper bound past that). The filters of a subscription not
        running here are not stored, so its ``behind`` counts every event after
        its checkpoint: an upper bound. Counts stop at
        :data:`~conduit.subscriptions.lag.BEHIND_LIMIT` (``capped``), and a status
        only looks: it never waits for this store's own last push to be readable.
        """
        return self._runtime.run(self._core.subscription_status())
