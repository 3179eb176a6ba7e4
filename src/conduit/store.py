"""The facade users hold: :class:`EventStore`."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, overload

from conduit import codec, snapshots
from conduit.backends.base import Backend
from conduit.backends.url import open_backend
from conduit.errors import (
    ConfigurationError,
    DuplicateEvent,
    InvalidArgument,
    InvalidEvent,
    WrongExpectedVersion,
)
from conduit.events import (
    Event,
    NewEvent,
    ParkedEvent,
    StreamId,
    StreamInfo,
    event_name,
    event_uuid,
    make_new_event,
    make_typed_event,
    stream_key,
)
from conduit.subscriptions.dispatch import deliver
from conduit.subscriptions.drivers import (
    MAX_POLL_INTERVAL,
    POLL_INTERVAL,
    Mode,
    Subscription,
    SubscriptionStatus,
)
from conduit.subscriptions.lag import count_after
from conduit.subscriptions.projector import Projector, StoreProjector
from conduit.subscriptions.runner import Filter, RetryPolicy, Runner
from conduit.typed import TypeRegistry, encode_typed, is_typed
from conduit.upcasting import SCHEMA_VERSION_KEY

if TYPE_CHECKING:
    from conduit.aggregate import Aggregate
    from conduit.migration import MigrationReport, Progress

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_BATCH", "RESERVED_PREFIX", "EventStore", "PendingEvent"]

RESERVED_PREFIX = "conduit."
"""Checkpoint names Conduit keeps for itself (``conduit.migrate-events``): no
subscription may take one, and subscription status does not list them."""

T = TypeVar("T")
L = TypeVar("L")

log = logging.getLogger("conduit")

DEFAULT_PAGE_SIZE = 500
"""How many events a read fetches from the engine at a time."""

MAX_BATCH = 100_000
"""The most events one ``push_many`` may append."""

PendingEvent = (
    Mapping[str, Any]
    | tuple[str, dict[str, Any]]
    | tuple[str, dict[str, Any], dict[str, Any]]
    | object
)
"""An event for :meth:`EventStore.push_many`: ``{"name", "data", "metadata", "id",
"recorded_at"}`` or
``(name, data)`` or ``(name, data, metadata)``, or a typed event (a dataclass or
pydantic model instance)."""


class EventStore:
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
        **options: Any,
    ) -> None:
        if page_size < 1:
            raise InvalidArgument("page_size must be at least 1", field="page_size")
        if snapshot_every is not None and (type(snapshot_every) is not int or snapshot_every < 1):
            raise InvalidArgument(
                "snapshot_every must be None or 1 or more", field="snapshot_every"
            )
        self.types: TypeRegistry | None = (
            types if types is None or isinstance(types, TypeRegistry) else TypeRegistry(types)
        )
        """Where events are read into typed objects and upcast; ``None``: plain events."""
        self.snapshot_every = snapshot_every
        if isinstance(url, Backend):
            if options:
                raise ConfigurationError(
                    f"engine options ({', '.join(sorted(options))}) are given to the engine "
                    "when the store opens it from a URL; configure the backend object you "
                    "pass instead"
                )
            self.backend: Backend = url
        else:
            self.backend = open_backend(url, **options)
        self._owns_backend = not isinstance(url, Backend)
        self.page_size = page_size
        self._listeners: tuple[object, ...] = ()
        self._subscriptions: tuple[Subscription, ...] = ()
        self._starting: set[str] = set()
        self._listeners_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<EventStore {self.backend.scheme}>"

    # -- lifecycle -----------------------------------------------------------

    def setup(self) -> None:
        """Create the store's schema, or migrate it; safe to repeat."""
        self.backend.setup()

    def close(self) -> None:
        """Stop this store's subscriptions, then release the engine's connections and files.

        A backend object given to the constructor belongs to the caller, who may
        share it between stores: it is left open (close it yourself).
        """
        with self._listeners_lock:
            running, self._subscriptions = self._subscriptions, ()
        for subscription in running:
            subscription.stop()
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
        key = stream_key(stream_id)
        new = _new_event(name, data, metadata, event_id, "", self.types)
        _check_expected(expected_version)
        recorded = self.backend.append(key, (new,), expected_version)
        if self.types is not None or type(name) is not str:
            recorded = self._typed_results(recorded, (name,))
        self._notify(recorded)
        return recorded[0]

    def push_many(
        self,
        stream_id: StreamId,
        events: Iterable[PendingEvent],
        *,
        expected_version: int | None = None,
    ) -> list[Event]:
        """Record several events at the end of one stream, atomically: all or nothing.

        Each event is a mapping with ``name``, ``data`` and optionally
        ``metadata``, ``id`` and ``recorded_at`` (for imports and copies: the
        aware time the source store recorded it, kept as is), or a tuple
        ``(name, data)`` or ``(name, data, metadata)``. Errors are those of
        :meth:`push`.
        """
        key = stream_key(stream_id)
        items = events if isinstance(events, list | tuple) else list(events)
        batch = [_pending(item, index, self.types) for index, item in enumerate(items)]
        if not batch:
            _check_expected(expected_version)
            actual = self.backend.stream_version(key)
            if expected_version is not None and expected_version != actual:
                raise WrongExpectedVersion(stream_id, expected_version, actual)
            return []
        if len(batch) > MAX_BATCH:
            raise InvalidEvent(f"events: at most {MAX_BATCH} events in one batch", field="events")
        if len({new.id for new in batch}) != len(batch):
            seen: set[object] = set()
            for new in batch:
                if new.id in seen:
                    raise DuplicateEvent(new.id, stream_id)
                seen.add(new.id)
        _check_expected(expected_version)
        recorded = self.backend.append(key, batch, expected_version)
        if self.types is not None or any(is_typed(item) for item in items):
            recorded = self._typed_results(recorded, items)
        self._notify(recorded)
        return recorded

    def _typed_results(self, recorded: list[Event], pushed: Sequence[object]) -> list[Event]:
        """The recorded events as reads will give them: typed objects attached.

        Cannot fail: with types, every pushed event was checked to read back
        before it was written (``TypeRegistry.refuse_unreadable``), so decoding
        the committed events again gives what that check saw.
        """
        types = self.types
        result: list[Event] = []
        for event, item in zip(recorded, pushed, strict=True):
            if is_typed(item) and (
                types is None or types.class_for(event.name) in (None, type(item))
            ):
                result.append(make_typed_event(event, item))
            elif types is None:
                result.append(event)
            else:
                result.append(types.decode(event))
        return result

    # -- reading -------------------------------------------------------------

    def get(self, stream_id: StreamId) -> list[Event]:
        """Every event of a stream, in version order (an empty list for none)."""
        return list(self.read(stream_id))

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
        key = stream_key(stream_id)
        _check_since(since)
        remaining = _check_limit(limit)
        if from_version is not None and (type(from_version) is not int or from_version < 1):
            raise InvalidArgument(
                "from_version must be an integer of 1 or more", field="from_version"
            )
        return self._read_pages(key, from_version, backwards, since, remaining)

    def _read_pages(
        self,
        key: Any,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        remaining: int | None,
    ) -> Iterator[Event]:
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            page = self.backend.read_stream(
                key, start=start, backwards=backwards, since=since, limit=size
            )
            if self.types is None:
                yield from page
            else:
                yield from map(self.types.decode, page)
            if len(page) < size:
                return
            if remaining is not None:
                remaining -= len(page)
            start = page[-1].version + (-1 if backwards else 1)
            if backwards and start < 1:
                return

    def read_all(
        self,
        *,
        after: int | None = None,
        names: Iterable[str] | None = None,
        limit: int | None = None,
        correlation_id: str | uuid.UUID | None = None,
        causation_id: str | uuid.UUID | None = None,
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

        Each filter is served by an index, whatever the size of the log.
        """
        position = _check_position(after)
        wanted = None if names is None else tuple(sorted({event_name(n) for n in names}))
        remaining = _check_limit(limit)
        related = {
            key: _check_related(key, value)
            for key, value in (("correlation_id", correlation_id), ("causation_id", causation_id))
            if value is not None
        }
        if self.types is None:
            return self._read_all_pages(position, wanted, remaining, related)
        return self._read_all_typed(position, wanted, remaining, self.types, related)

    def _read_all_pages(
        self,
        position: int,
        names: Sequence[str] | None,
        remaining: int | None,
        related: Mapping[str, str] | None = None,
    ) -> Iterator[Event]:
        if names is not None and not names:
            return
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            if related:
                page = self.backend.read_all(
                    after=position,
                    names=names,
                    limit=size,
                    correlation_id=related.get("correlation_id"),
                    causation_id=related.get("causation_id"),
                )
            else:
                page = self.backend.read_all(after=position, names=names, limit=size)
            yield from page
            if len(page) < size:
                return
            if remaining is not None:
                remaining -= len(page)
            position = page[-1].position

    def _read_all_typed(
        self,
        position: int,
        names: Sequence[str] | None,
        remaining: int | None,
        types: TypeRegistry,
        related: Mapping[str, str] | None = None,
    ) -> Iterator[Event]:
        """The global log, upcast and typed; ``names`` are today's names.

        Events stored under an older name that upcasters rename are fetched
        too, and kept when their name, once upcast, is one of ``names``.
        """
        if names is None:
            for event in self._read_all_pages(position, None, remaining, related):
                yield types.decode(event)
            return
        wanted = set(names)
        stored = tuple(sorted(types.upcasters.stored_names(wanted)))
        for event in self._read_all_pages(position, stored, None, related):
            event = types.decode(event)
            if event.name in wanted:
                yield event
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    def stream_version(self, stream_id: StreamId) -> int:
        """The version of a stream's last event; 0 for a stream with no events."""
        return self.backend.stream_version(stream_key(stream_id))

    def streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Iterator[StreamInfo]:
        """Iterate over streams and their versions, ordered by id (as text).

        Args:
            prefix: only streams whose id starts with this text.
            after: resume after this stream id (keyset paging).
            limit: stop after this many streams.
        """
        remaining = _check_limit(limit)
        cursor = None if after is None else str(after)
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            page = self.backend.streams(after=cursor, prefix=prefix, limit=size)
            yield from page
            if len(page) < size:
                return
            if remaining is not None:
                remaining -= len(page)
            cursor = str(page[-1].stream_id)

    def head_position(self) -> int:
        """The position of the newest event in the global log (0 when empty)."""
        return self.backend.head_position()

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
        poll_interval: float = POLL_INTERVAL,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        lease_ttl: float = 10.0,
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
        poll_interval: float = POLL_INTERVAL,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        lease_ttl: float = 10.0,
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

        Raises:
            InvalidArgument: a bad or reserved name, a name already running
                in this store, or a named subscription's option given for a
                plain listener.
            ProjectionError: an inline subscription's first catch-up stopped
                on a failing event (``on_failure="stop"``).
        """
        options = {
            "mode": mode,
            "names": names,
            "streams": streams,
            "max_attempts": max_attempts,
            "backoff": backoff,
            "on_failure": on_failure,
            "batch_size": batch_size,
            "poll_interval": poll_interval,
            "max_poll_interval": max_poll_interval,
            "lease_ttl": lease_ttl,
        }
        if name is None and not _is_projector(listener):
            given = sorted(option for option, value in options.items() if value is not None)
            if given:
                raise InvalidArgument(
                    f"{', '.join(given)}: options of a named subscription, and {listener!r} "
                    "is a plain listener; give it a name= to make it a named subscription",
                    field=given[0],
                )
            with self._listeners_lock:
                self._listeners = (*self._listeners, listener)
            return listener
        subscription = self._named_subscription(
            listener,
            name,
            filter=Filter.of(names, streams),
            policy=RetryPolicy(
                3 if max_attempts is None else max_attempts,
                0.05 if backoff is None else backoff,
                on_failure=on_failure or "park",
            ),
            batch_size=batch_size,
            mode=mode or "inline",
            poll_interval=POLL_INTERVAL if poll_interval is None else poll_interval,
            max_poll_interval=MAX_POLL_INTERVAL if max_poll_interval is None else max_poll_interval,
            lease_ttl=10.0 if lease_ttl is None else lease_ttl,
        )
        self._start(subscription)
        return subscription

    def _named_subscription(
        self,
        listener: object,
        name: str | None,
        *,
        filter: Filter,
        policy: RetryPolicy,
        batch_size: int | None,
        mode: Mode,
        poll_interval: float,
        max_poll_interval: float,
        lease_ttl: float,
    ) -> Subscription:
        """A named subscription's driver, made and checked, not started yet."""
        projector: Projector
        if _is_projector(listener):
            projector = listener  # type: ignore[assignment]
            own_name = getattr(listener, "name", None)
            if name is not None and own_name != name:
                raise InvalidArgument(
                    f"this projection keeps its checkpoint as {own_name!r}; "
                    f"name it {name!r} where it is made, not here",
                    field="name",
                )
            name = own_name
        if not isinstance(name, str) or not name:
            raise InvalidArgument("a subscription's name is a non-empty string", field="name")
        if name.startswith(RESERVED_PREFIX):
            raise InvalidArgument(
                f"subscription names starting with {RESERVED_PREFIX!r} are Conduit's own",
                field="name",
            )
        if not _is_projector(listener):
            projector = StoreProjector(self.backend, name, listener)
        runner = Runner(
            self,
            projector,
            filter=filter,
            policy=policy,
            batch_size=batch_size or getattr(listener, "batch_size", None) or 100,
        )
        return Subscription(
            runner,
            mode,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            lease_ttl=lease_ttl,
        )

    def _start(self, subscription: Subscription) -> None:
        """Start a subscription and register it, once its start succeeded.

        The name is reserved meanwhile, so that a second subscription of the
        same name is refused; a start that fails (an inline first catch-up
        stopped by a failing event) leaves nothing registered.
        """
        name = subscription.name
        with self._listeners_lock:
            if name in self._starting or any(known.name == name for known in self._subscriptions):
                raise InvalidArgument(f"a subscription named {name!r} is already running here")
            self._starting.add(name)
        try:
            subscription.start()
            with self._listeners_lock:
                self._subscriptions = (*self._subscriptions, subscription)
            if subscription.mode == "inline":
                # What other threads pushed during the first catch-up, before
                # their pushes could see this subscription.
                subscription.catch_up()
        except BaseException:
            with self._listeners_lock:
                self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            subscription.stop()
            raise
        finally:
            with self._listeners_lock:
                self._starting.discard(name)

    def unsubscribe(self, listener: object) -> None:
        """Stop notifying a listener, or stop a subscription, given to :meth:`subscribe`."""
        with self._listeners_lock:
            self._listeners = tuple(item for item in self._listeners if item is not listener)
            stopping = [
                s
                for s in self._subscriptions
                if s is listener
                or s.runner.projector is listener
                or getattr(s.runner.projector, "target", None) is listener
            ]
            self._subscriptions = tuple(s for s in self._subscriptions if s not in stopping)
        for subscription in stopping:
            subscription.stop()

    def _notify(self, events: list[Event]) -> None:
        listeners = self._listeners
        if listeners:
            deliver(listeners, events)
        for subscription in self._subscriptions:
            try:
                subscription.notify()
            except Exception:  # a failing subscription never undoes the push
                log.exception("subscription %r failed after a push", subscription.name)

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
        if type(after) is not int or after < 0:
            raise InvalidArgument("after must be a parked event's id (0 or more)", field="after")
        remaining = _check_limit(limit)

        def pages(after: int, remaining: int | None) -> Iterator[ParkedEvent]:
            while remaining is None or remaining > 0:
                size = self.page_size if remaining is None else min(self.page_size, remaining)
                page = self.backend.parked(subscription=subscription, after=after, limit=size)
                yield from page
                if len(page) < size:
                    return
                if remaining is not None:
                    remaining -= len(page)
                after = page[-1].id

        return pages(after, remaining)

    def retry_parked(self, parked_id: int | None = None, *, subscription: str | None = None) -> int:
        """Ask for parked events to be tried again by their subscription's driver.

        ``parked_id`` ``None`` retries every parked event (of ``subscription``).
        The event leaves the parked list once its handler succeeds. Returns how
        many events were marked.
        """
        count = self.backend.request_retry(parked_id, subscription=subscription)
        for known in self._subscriptions:
            known.runner.check_retries_soon()
            known.notify()
        return count

    def drop_parked(self, parked_id: int) -> bool:
        """Forget a parked event for good; False if there is no such parked event."""
        return self.backend.unpark(parked_id)

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
        running = {known.name: known for known in self._subscriptions}
        head = self.backend.head_position(wait=False)
        found = {
            name: position
            for name, position in self.backend.checkpoints()
            if not name.startswith(RESERVED_PREFIX)
        }
        statuses = []
        for name in sorted(set(found) | set(running)):
            if name in running:
                statuses.append(running[name].status())
            else:
                checkpoint = found[name]
                behind, capped = count_after(self, checkpoint)
                statuses.append(SubscriptionStatus(name, checkpoint, head, behind, capped))
        return statuses

    # -- entities and snapshots ----------------------------------------------

    def save_snapshot(self, stream_id: StreamId, state: object, version: int) -> None:
        """Keep ``state`` (an entity) as its stream's snapshot at ``version``.

        The entity's attributes go through the typed codec (see
        :mod:`conduit.snapshots`); a newer snapshot of the same class is kept
        rather than replaced by an older one.

        Raises:
            InvalidEvent: a value in the state cannot be stored.
            ValueError: the state would not read back equal.
            BackendError: the engine failed.
        """
        if type(version) is not int or version < 1:
            raise InvalidArgument("version must be an integer of 1 or more", field="version")
        snapshots.take_snapshot(self, stream_id, state, version)

    def load(self, stream_id: StreamId, onto: type[T], *, use_snapshots: bool = True) -> T:
        """An entity rebuilt from its latest snapshot and the events after it.

        ``onto`` is the entity class (constructible without arguments). A
        snapshot taken under another ``snapshot_version`` of the class is
        ignored; one that cannot be decoded is ignored with a
        :class:`~conduit.snapshots.SnapshotWarning`. Events are applied as by
        :func:`conduit.replay` (for an :class:`~conduit.Aggregate`, its
        ``apply_<name>`` methods get the typed payloads). Under a snapshot
        policy (``snapshot_every``), a snapshot is taken when enough events
        were replayed. A stream with no events gives a new entity.

        Raises:
            EventDecodeError: an event does not fit its registered class.
            BackendError: the engine failed.
        """
        return snapshots.load(self, stream_id, onto, snapshots=use_snapshots)

    def save(self, entity: Aggregate) -> list[Event]:
        """Push the events an :class:`~conduit.Aggregate` recorded, atomically.

        Uses the version the entity was loaded (or last saved) at as the
        expected version, so that a concurrent save raises and writes nothing.

        Raises:
            WrongExpectedVersion: another save came first; reload and retry.
            InvalidEvent, BackendError: as :meth:`push_many`.
        """
        pending = entity.pending_events
        if not pending:
            return []
        before = entity.version
        recorded = self.push_many(entity.id, pending, expected_version=before)
        entity._conduit_saved(recorded[-1].version)
        snapshots.maybe_snapshot(self, entity.id, entity, before, recorded[-1].version)
        return recorded

    def read_event(self, event_id: Any) -> Event | None:
        """One event by its id (a UUID or its text), or ``None``."""
        event = self.backend.read_event(event_uuid(event_id))
        if event is None or self.types is None:
            return event
        return self.types.decode(event)

    def migrate_events(
        self,
        *,
        batch_size: int = 500,
        dry_run: bool = False,
        after: int | None = None,
        restart: bool = False,
        progress: Progress | None = None,
    ) -> MigrationReport:
        """Rewrite stored events to today's schema versions with this store's upcasters.

        In batches of ``batch_size`` events, one transaction each, resuming
        where an interrupted run stopped (``restart``: from the beginning;
        ``after``: right after that position); ``dry_run`` writes nothing and
        reports what would change. See :func:`conduit.migration.migrate_events`.

        Raises:
            EventDecodeError: an upcaster failed on an event; its batch is not written.
            BackendError: the engine failed.
        """
        from conduit.migration import migrate_events

        return migrate_events(
            self,
            batch_size=batch_size,
            dry_run=dry_run,
            after=after,
            restart=restart,
            progress=progress,
        )


def _new_event(
    name: object,
    data: object,
    metadata: object,
    event_id: object,
    where: str = "",
    types: TypeRegistry | None = None,
) -> NewEvent:
    if type(name) is not str and is_typed(name):
        return _new_typed_event(name, data, metadata, event_id, where, types)
    new_id = event_uuid(event_id)
    stored_name = event_name(name)
    text = codec.encode(data, field=f"{where}data")
    if types is not None and (metadata is None or type(metadata) is dict):
        meta = types.check(stored_name, text, metadata, where)
    else:
        meta = "{}" if metadata is None else codec.encode(metadata, field=f"{where}metadata")
    return make_new_event(new_id, stored_name, text, meta)


def _new_typed_event(
    event: object,
    data: object,
    metadata: object,
    event_id: object,
    where: str,
    types: TypeRegistry | None = None,
) -> NewEvent:
    if data is not None:
        raise InvalidEvent(
            f"{where}data: a typed event carries its own data; give no data", field=f"{where}data"
        )
    new_id = event_uuid(event_id)
    name, text, version = encode_typed(event, where)
    if version is not None:
        if metadata is not None and not isinstance(metadata, dict):
            codec.encode(metadata, field=f"{where}metadata")  # raises, naming the field
        metadata = {**(metadata or {}), SCHEMA_VERSION_KEY: version}  # type: ignore[dict-item]
    meta = "{}" if metadata is None else codec.encode(metadata, field=f"{where}metadata")
    if types is not None:
        # Reads will decode it: refuse now what they could not give back, equal.
        types.refuse_unreadable(name, text, metadata, where, event)  # type: ignore[arg-type]
    return make_new_event(new_id, name, text, meta)


def _pending(item: object, index: int, types: TypeRegistry | None = None) -> NewEvent:
    where = f"events[{index}]."
    if type(item) is tuple and len(item) == 2:  # the common case first
        return _new_event(item[0], item[1], None, None, where, types)
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "data", "metadata", "id", "recorded_at"}
        if unknown or "name" not in item or "data" not in item:
            raise InvalidEvent(
                f"events[{index}]: a mapping with 'name', 'data' and optionally 'metadata' "
                "and 'id'",
                field=f"events[{index}]",
            )
        new = _new_event(
            item["name"], item["data"], item.get("metadata"), item.get("id"), where, types
        )
        recorded_at = item.get("recorded_at")
        if recorded_at is None:
            return new
        if not isinstance(recorded_at, datetime) or recorded_at.utcoffset() is None:
            raise InvalidEvent(
                f"events[{index}].recorded_at: a timezone-aware datetime",
                field=f"events[{index}].recorded_at",
            )
        return replace(new, recorded_at=recorded_at.astimezone(UTC))
    if isinstance(item, tuple) and len(item) in (2, 3):
        metadata = item[2] if len(item) == 3 else None
        return _new_event(item[0], item[1], metadata, None, where, types)
    if is_typed(item):
        return _new_typed_event(item, None, None, None, where, types)
    raise InvalidEvent(
        f"events[{index}]: {type(item).__name__} is not an event; use a mapping "
        "{'name', 'data'} or a tuple (name, data)",
        field=f"events[{index}]",
    )


def _check_expected(expected_version: object) -> None:
    if expected_version is None:
        return
    if type(expected_version) is not int or expected_version < 0:
        # An argument of the call, not a part of an event: not an InvalidEvent.
        raise InvalidArgument(
            f"expected_version: {expected_version!r} is not a version (None, 0 or more)",
            field="expected_version",
        )


def _check_since(since: object) -> None:
    if since is None:
        return
    if not isinstance(since, datetime):
        raise InvalidArgument("since must be a datetime", field="since")
    if since.tzinfo is None or since.utcoffset() is None:
        raise InvalidArgument(
            "since must be timezone-aware (for example datetime.now(UTC)); a naive "
            "datetime is ambiguous",
            field="since",
        )


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if type(limit) is not int or limit < 0:
        raise InvalidArgument("limit must be an integer of 0 or more", field="limit")
    return limit


def _check_related(key: str, value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is not str or not value or "\x00" in value:
        raise InvalidArgument(f"{key} must be a non-empty string", field=key)
    return value


def _check_position(after: object) -> int:
    if after is None:
        return 0
    if type(after) is not int or after < 0:
        raise InvalidArgument("after must be a position (an integer of 0 or more)", field="after")
    return after


def _is_projector(listener: object) -> bool:
    return all(
        callable(getattr(listener, method, None))
        for method in ("load_checkpoint", "apply", "apply_parked")
    )
