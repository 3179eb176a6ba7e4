"""The store's operations, shared by ``EventStore`` and ``AsyncEventStore``.

:class:`StoreCore` holds what a store is — its engine, its typed events, its
page size, its group of concurrent appends, its listeners and subscriptions —
and offers every call of the public API as an operation (a generator of
effects, see :mod:`conduit.core.effects`) or, for the paged reads, as a
:class:`~conduit.core.paging.Pages`. The two faces only run them: the sync
face by blocking, the async face by awaiting. Everything a call does between
its arguments and its result is here, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from conduit import snapshots
from conduit.core import shredding
from conduit.core.appending import Appending
from conduit.core.effects import Op
from conduit.core.group import Group
from conduit.core.paging import Pages
from conduit.core.reads import (
    check_before,
    check_from_version,
    check_limit,
    check_position,
    check_related,
    check_since,
)
from conduit.core.shredding import KeyCache, reveal
from conduit.errors import InvalidArgument
from conduit.events import (
    WORKING_STATES,
    Event,
    ParkedEvent,
    StreamId,
    StreamInfo,
    SubscriptionState,
    event_name,
    event_uuid,
    stream_key,
)
from conduit.personal import SubjectKey
from conduit.reserved import RESERVED_PREFIX
from conduit.subscriptions.driving import Driver, SubscriptionStatus
from conduit.subscriptions.lag import count_after, count_behind
from conduit.subscriptions.partitioned import PartitionedDriver
from conduit.subscriptions.partitions import Partition
from conduit.subscriptions.runner import Filter
from conduit.typed import TypeRegistry

if TYPE_CHECKING:
    from conduit.aggregate import Aggregate

__all__ = ["DEFAULT_PAGE_SIZE", "RESERVED_PREFIX", "Notified", "StoreCore"]

log = logging.getLogger("conduit")

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 500
"""How many events a read fetches from the engine at a time."""

# RESERVED_PREFIX (conduit.reserved): checkpoint names Conduit keeps for itself
# (``conduit.migrate-events``): no subscription may take one, and subscription
# status does not list them; nor may applications push to such streams.


class Notified(Protocol):
    """A subscription running in a store, as the store sees it (either face's)."""

    @property
    def name(self) -> str: ...

    @property
    def driver(self) -> Driver | PartitionedDriver: ...

    def after_push(self) -> Op[None]:
        """What the subscription does once a push through this store committed: an
        inline one catches up (in the pushing thread or task), a background one is
        woken."""
        ...


class StoreCore(Appending):
    """The state and the operations of one store (see the module docstring).

    Args:
        engine: the engine, whose methods return operations.
        types: typed events and upcasters, or ``None``.
        page_size: how many events reads fetch at a time.
        group: concurrent appends combined into one transaction (group
            commit), or ``None`` to append each on its own.
    """

    def __init__(
        self,
        engine: Any,
        *,
        types: TypeRegistry | None,
        page_size: int,
        snapshot_every: int | None = None,
        group: Group[Any] | None = None,
        reveal: bool = True,
        retention: timedelta | None = None,
    ) -> None:
        if type(page_size) is not int or page_size < 1:
            raise InvalidArgument("page_size must be at least 1", field="page_size")
        self.engine = engine
        self.types = types
        self.page_size = page_size
        self.snapshot_every = snapshot_every
        self.group = group
        self.reveal = reveal
        """Whether reads decrypt personal values (False: their stored, sealed form,
        for exports and copies)."""
        self.key_cache = KeyCache()
        self.retention = retention
        """The store-wide maximum age of events (``None``: kept until removed)."""
        self.listeners: tuple[object, ...] = ()
        self.subscriptions: tuple[Notified, ...] = ()
        self.followers: set[Any] = set()
        """The signals of this store's followers of the log, set after each push."""
        self.starting: set[str] = set()
        """Names of subscriptions starting (reserved until their start succeeds)."""
        self.lock = threading.Lock()
        """Guards the registry of listeners and subscriptions (threads of ``EventStore``)."""

    def add_listener(self, listener: object) -> None:
        """Notify a plain listener of every push through this store."""
        with self.lock:
            self.listeners = (*self.listeners, listener)

    # -- reading ---------------------------------------------------------------

    def stream_pages(
        self,
        stream_id: StreamId,
        *,
        since: datetime | None,
        from_version: int | None,
        limit: int | None,
        backwards: bool,
    ) -> Pages[int | None, Event]:
        """``EventStore.read``: a stream's events, a page at a time."""
        key = stream_key(stream_id)
        check_since(since)
        remaining = check_limit(limit)
        check_from_version(from_version)
        engine = self.engine
        types = self.types
        retention = self.retention
        if retention is not None and key.text.startswith(RESERVED_PREFIX):
            retention = None  # Conduit's own streams (the audit) never expire

        def fetch(start: int | None, size: int) -> Op[Sequence[Event]]:
            oldest = since
            if retention is not None:
                cutoff = datetime.now(UTC) - retention
                oldest = cutoff if since is None else max(since, cutoff)
            page = yield from engine.read_stream(
                key, start=start, backwards=backwards, since=oldest, limit=size
            )
            if self.reveal:
                page = yield from reveal(engine, page)
            return page if types is None else list(map(types.decode, page))

        def advance(event: Event) -> int | None:
            start = event.version + (-1 if backwards else 1)
            return None if start < 1 else start

        return Pages(fetch, from_version, advance, limit=remaining, page_size=self.page_size)

    def log_pages(
        self,
        *,
        after: int | None,
        names: Iterable[str] | None,
        limit: int | None,
        correlation_id: Any = None,
        causation_id: Any = None,
        wait: bool = True,
        before: int | None = None,
        backwards: bool = False,
    ) -> Pages[Any, Event]:
        """``EventStore.read_all``: the global log, a page at a time (newest first,
        ``backwards``, the cursor then being the ``before`` of the next page).

        With types and ``names`` (today's names), events stored under an older
        name that upcasters rename are fetched too, and kept when their name,
        once upcast, is one of ``names``.
        """
        position = check_position(after)
        below = check_before(before)
        if type(backwards) is not bool:
            raise InvalidArgument("backwards must be True or False", field="backwards")
        wanted = None if names is None else tuple(sorted({event_name(n) for n in names}))
        remaining = check_limit(limit)
        related = {
            key: check_related(key, value)
            for key, value in (("correlation_id", correlation_id), ("causation_id", causation_id))
            if value is not None
        }
        engine = self.engine
        stored, keep = self.log_filter(wanted)

        def fetch(after: int, size: int) -> Op[Sequence[Event]]:
            if stored is not None and not stored:
                return []
            page: Sequence[Event] = yield from engine.read_all(
                after=after, names=stored, limit=size, wait=wait, before=below, **related
            )
            if self.reveal:
                page = yield from reveal(engine, page)
            return page

        def fetch_back(top: int | None, size: int) -> Op[Sequence[Event]]:
            if stored is not None and not stored:
                return []
            page: Sequence[Event] = yield from engine.read_all(
                after=position,
                names=stored,
                limit=size,
                wait=wait,
                before=top,
                backwards=True,
                **related,
            )
            return page

        if backwards:
            return Pages(
                fetch_back, below, _position, limit=remaining, page_size=self.page_size, keep=keep
            )
        return Pages(
            fetch,
            position,
            _position,
            limit=remaining,
            page_size=self.page_size,
            keep=keep,
        )

    def log_filter(
        self, names: tuple[str, ...] | None
    ) -> tuple[tuple[str, ...] | None, Callable[[Sequence[Event]], Sequence[Event]] | None]:
        """What a read of the log by today's ``names`` asks the engine for (the names
        events are stored under), and how it turns a page into the events it keeps:
        upcast and typed, and with the names of today."""
        types = self.types
        if types is None:
            return names, None
        if names is None:

            def decoded(page: Sequence[Event]) -> Sequence[Event]:
                return list(map(types.decode, page))

            return None, decoded
        today = set(names)

        def kept(page: Sequence[Event]) -> Sequence[Event]:
            return [event for event in map(types.decode, page) if event.name in today]

        return tuple(sorted(types.upcasters.stored_names(today))), kept

    def streams_pages(
        self, *, prefix: str | None, after: str | None, limit: int | None
    ) -> Pages[str | None, StreamInfo]:
        """``EventStore.streams``: streams and their versions, by id, a page at a time."""
        remaining = check_limit(limit)
        engine = self.engine

        def fetch(cursor: str | None, size: int) -> Op[Sequence[StreamInfo]]:
            page: Sequence[StreamInfo] = yield from engine.streams(
                after=cursor, prefix=prefix, limit=size
            )
            return page

        return Pages(
            fetch,
            None if after is None else str(after),
            _stream_text,
            limit=remaining,
            page_size=self.page_size,
        )

    def parked_pages(
        self, subscription: str | None, *, after: int, limit: int | None
    ) -> Pages[int, ParkedEvent]:
        """``EventStore.parked``: parked events by id, a page at a time."""
        if type(after) is not int or after < 0:
            raise InvalidArgument("after must be a parked event's id (0 or more)", field="after")
        remaining = check_limit(limit)
        engine = self.engine

        def fetch(cursor: int, size: int) -> Op[Sequence[ParkedEvent]]:
            page: Sequence[ParkedEvent] = yield from engine.parked(
                subscription=subscription, after=cursor, limit=size
            )
            return page

        return Pages(fetch, after, _parked_id, limit=remaining, page_size=self.page_size)

    def stream_version(self, stream_id: StreamId) -> Op[int]:
        """``EventStore.stream_version``."""
        version: int = yield from self.engine.stream_version(stream_key(stream_id))
        return version

    def head_position(self, *, wait: bool = True) -> Op[int]:
        """``EventStore.head_position``."""
        head: int = yield from self.engine.head_position(wait=wait)
        return head

    def read_event(self, event_id: Any) -> Op[Event | None]:
        """``EventStore.read_event``."""
        event: Event | None = yield from self.engine.read_event(event_uuid(event_id))
        if event is not None and self.reveal:
            event = (yield from reveal(self.engine, [event]))[0]
        if event is None or self.types is None:
            return event
        return self.types.decode(event)

    def revealed(self, page: Sequence[Event]) -> Op[Sequence[Event]]:
        """A page read from the engine as this store's reads give it (subscriptions,
        followers): personal values decrypted, unless the store keeps them sealed."""
        if not self.reveal:
            return page
        return (yield from reveal(self.engine, page))

    # -- personal data -------------------------------------------------------------

    def forget(self, subject: object, by: str | None) -> Op[bool]:
        """``EventStore.forget``."""
        return (yield from shredding.forget(self, subject, by))

    def key_pages(self, *, limit: int | None) -> Pages[str | None, SubjectKey]:
        """``EventStore.subject_keys``: every key and tombstone, by subject."""
        return shredding.key_pages(self, limit=check_limit(limit))

    def add_keys(self, keys: Sequence[SubjectKey]) -> Op[None]:
        """``EventStore.add_subject_keys``: keys and tombstones of another store."""
        yield from shredding.add_keys(self, keys)

    # -- parked events -----------------------------------------------------------

    def drop_parked(self, parked_id: int) -> Op[bool]:
        """``EventStore.drop_parked``."""
        dropped: bool = yield from self.engine.unpark(parked_id)
        return dropped

    def retry_parked(self, parked_id: int | None, subscription: str | None) -> Op[int]:
        """``EventStore.retry_parked``: marked, and this store's drivers told to look."""
        count: int = yield from self.engine.request_retry(parked_id, subscription=subscription)
        for known in self.subscriptions:
            known.driver.runner.check_retries_soon()
            yield from known.after_push()
        return count

    def subscription_status(self) -> Op[list[SubscriptionStatus]]:
        """``EventStore.subscription_status``: it looks, it never waits."""
        running = {known.name: known for known in self.subscriptions}
        head = yield from self.engine.head_position(wait=False)
        stored = yield from self.engine.checkpoints()
        states = {s.name: s for s in (yield from self.engine.subscription_states())}
        states.update((yield from self._unsaid_stops(states)))
        found: dict[str, int] = {}
        partitions: dict[str, list[tuple[Partition, int]]] = {}
        for key, position in stored:
            parsed = Partition.of_key(key)
            if parsed is not None:
                partitions.setdefault(parsed[0], []).append((parsed[1], position))
            elif not key.startswith(RESERVED_PREFIX):
                found[key] = position
        for name in states:  # a driver that said something but handled nothing yet
            if name not in partitions and not name.startswith(RESERVED_PREFIX):
                found.setdefault(name, 0)
        statuses = []
        for name in sorted(set(found) | set(running) | set(partitions)):
            if name in running:
                statuses.extend((yield from running[name].driver.statuses()))
                continue
            if name in found:
                checkpoint = found[name]
                behind, capped = yield from count_after(self, checkpoint)
                statuses.append(SubscriptionStatus(name, checkpoint, head, behind, capped))
            for partition, checkpoint in sorted(
                partitions.get(name, ()), key=lambda item: (item[0].count, item[0].index)
            ):
                behind, capped = yield from count_behind(
                    self, checkpoint, Filter(partition=partition)
                )
                statuses.append(
                    SubscriptionStatus(name, checkpoint, head, behind, capped, str(partition))
                )
        return [
            replace(status, state=states[status.name])
            if status.name in states and status.partition is None
            else status
            for status in statuses
        ]

    def _unsaid_stops(
        self, states: dict[str, SubscriptionState]
    ) -> Op[dict[str, SubscriptionState]]:
        """The states of drivers that said they were working but hold no lease: they
        ended without saying so (killed, or their machine lost), and are shown
        ``stopped``. A working driver renews its lease every third of its ttl."""
        claimed = [name for name, state in states.items() if state.state in WORKING_STATES]
        if not claimed or not hasattr(self.engine, "leases_held"):
            return {}
        held = yield from self.engine.leases_held(claimed)
        return {
            name: SubscriptionState(
                name,
                "stopped",
                f"no driver holds its lease: it ended without saying so (it last said "
                f"{states[name].state!r})",
                states[name].updated_at,
            )
            for name in claimed
            if name not in held
        }

    # -- entities and snapshots ----------------------------------------------------

    def save_snapshot(self, stream_id: StreamId, state: object, version: int) -> Op[None]:
        """``EventStore.save_snapshot``."""
        if type(version) is not int or version < 1:
            raise InvalidArgument("version must be an integer of 1 or more", field="version")
        yield from snapshots.take_snapshot(self, stream_id, state, version)

    def load(self, stream_id: StreamId, onto: type[T], use_snapshots: bool) -> Op[T]:
        """``EventStore.load``."""
        return (yield from snapshots.load(self, stream_id, onto, snapshots=use_snapshots))

    def save(self, entity: Aggregate) -> Op[list[Event]]:
        """``EventStore.save``."""
        pending = entity.pending_events
        if not pending:
            return []
        before = entity.version
        recorded = yield from self.push_many(entity.id, pending, before)
        entity._conduit_saved(recorded[-1].version)
        snapshots.add_subjects(entity, recorded)
        yield from snapshots.maybe_snapshot(self, entity.id, entity, before, recorded[-1].version)
        return recorded


def _position(event: Event) -> int:
    return event.position


def _stream_text(info: StreamInfo) -> str:
    return str(info.stream_id)


def _parked_id(parked: ParkedEvent) -> int:
    return parked.id
