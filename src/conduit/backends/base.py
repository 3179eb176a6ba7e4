"""The protocol every storage engine implements.

An engine appends validated, encoded batches (:class:`~conduit.events.NewEvent`)
to one stream, and reads pages back as :class:`~conduit.events.Event` values.
Iteration, validation and dispatch live above it, in the store, so that each
engine is only its storage. Every read builds new events, with ``data`` and
``metadata`` dicts of their own: the store decrypts personal values in them
in place (:mod:`conduit.core.sealing`). Every engine must pass the contract kit in
:mod:`conduit.testing` unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

from conduit.dcb import AppendCondition, Query
from conduit.errors import ConduitError
from conduit.events import (
    Event,
    NewEvent,
    ParkedEvent,
    Snapshot,
    StreamInfo,
    StreamKey,
    SubscriptionState,
)
from conduit.personal import SubjectKey

__all__ = [
    "Announcing",
    "AppendRequest",
    "Backend",
    "EventRewrite",
    "GroupOutcome",
    "StreamAppend",
    "announcer",
]


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events to append to one stream, at an expected version (``None``: any)."""

    stream: StreamKey
    events: tuple[NewEvent, ...]
    expected: int | None


AppendRequest: TypeAlias = tuple[StreamAppend, ...]
"""One caller's append: one or several streams' events, recorded all or nothing."""

GroupOutcome: TypeAlias = "list[list[Event]] | ConduitError"
"""What one request of :meth:`Backend.append_group` gets: per stream, its recorded
events; or the error that request alone raises (nothing of it written)."""


@dataclass(frozen=True, slots=True)
class EventRewrite:
    """A new name, data and metadata for an event already recorded (``migrate-events``).

    ``data`` and ``metadata`` are JSON text, encoded and checked by
    :mod:`conduit.codec` above the engine, as for :class:`~conduit.events.NewEvent`.
    """

    id: uuid.UUID
    name: str
    data: str
    metadata: str


@runtime_checkable
class Backend(Protocol):
    """A storage engine. Engines are safe to share between threads."""

    scheme: str
    """The URL scheme that names the engine: ``memory``, ``sqlite``, ``postgresql``."""

    def setup(self) -> None:
        """Create the engine's schema, or migrate it to this release's version.

        Safe to call when it exists, and from several processes at once.

        Raises:
            SchemaError: the schema is newer than this release.
            BackendError: the engine failed.
        """

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        """Append a batch to one stream, atomically, and return the recorded events.

        ``expected_version``: ``None`` for any, ``0`` for a stream that must not
        exist yet, ``n`` for a stream whose last version is ``n``. When every
        event id of the batch is already recorded in this stream (a retried
        push), the recorded events are returned and nothing is written. An
        event's ``shown`` texts, where given, may stand for its data and
        metadata in the returned events (never in what is stored).

        Raises:
            WrongExpectedVersion: the stream is at another version; nothing written.
            DuplicateEvent: an event id is recorded elsewhere; nothing written.
            BackendError: the engine failed; nothing written, or the outcome is
                unknown (retry with the same event ids).
        """
        ...

    def append_group(self, requests: Sequence[AppendRequest]) -> list[GroupOutcome]:
        """Several appends in one transaction of the engine (group commit).

        Each request is all or nothing and gets its own outcome, in order: per
        stream, the recorded events (as :meth:`append` returns them, retries
        included); or the error it alone raises (``WrongExpectedVersion``,
        ``DuplicateEvent``), nothing of it written, the others unaffected. The
        streams' locks are taken in one sorted order, so that two groups never
        deadlock; each request's events are contiguous in the global log.

        Raises:
            BackendError: the engine failed: every request failed (or its
                outcome is unknown).
        """
        ...

    def append_request(
        self, request: AppendRequest, condition: AppendCondition | None = None
    ) -> list[list[Event]]:
        """One append of one or several streams, all or nothing, in one transaction.

        Returns, per part, its recorded events (a retry of a request already
        recorded returns those). The request's events are contiguous in the
        global log. With ``condition``, the append fails when an event the
        condition's query matches is recorded after its ``after`` position;
        on PostgreSQL, transaction-scoped advisory locks on the condition's
        keys and on the written events' keys make the check and the insert one
        step for every other append whose keys overlap (docs/dcb.md).

        Raises:
            WrongExpectedVersion: streams at other versions; ``conflicts``
                names every one; nothing written.
            AppendConditionFailed: naming the first matching event's position;
                nothing written.
            DuplicateEvent: an event id is recorded elsewhere; nothing written.
            BackendError: the engine failed.
        """
        ...

    def read_query(
        self, query: Query, *, after: int, limit: int, backwards: bool = False
    ) -> list[Event]:
        """One page of the events ``query`` matches whose position is after ``after``:
        in log order, or the latest first (``backwards``). Served by the tag and name
        indexes; on PostgreSQL, below the reader horizon as :meth:`read_all`."""
        ...

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> list[Event]:
        """One page of a stream, in version order (or reverse).

        Forwards: versions from ``start`` (``None`` = 1) up. Backwards: versions
        from ``start`` (``None`` = the last) down. ``since`` keeps the events
        recorded at or after that time. An unknown stream gives an empty page.
        """
        ...

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
        before: int | None = None,
        backwards: bool = False,
    ) -> list[Event]:
        """One page of the global log: events whose position is after ``after``
        (and below ``before``, when given).

        In log order, each event once; an event that commits later never
        appears behind a position this method has already returned.
        ``names``, ``correlation_id`` and ``causation_id`` keep only the
        events with one of those names, and whose metadata holds that
        ``correlation_id`` / ``causation_id`` (a string, or an integer by its
        decimal text); each is served by an index. ``wait``: right after this
        engine appended, wait (bounded) until its own events can be read
        (PostgreSQL's reader horizon); False for callers that only look
        (status, lag, the browser). ``backwards``: the page is the ``limit``
        events nearest ``before`` (or the end of the log), newest first, read
        down an index as a forward page is read up it.

        An engine with a class attribute ``partitioned_reads = True`` also
        takes ``partition=`` (a :class:`~conduit.subscriptions.partitions.Partition`)
        here and in :meth:`count_after`: only the events of that partition's
        streams, ``limit`` of them (Conduit's engines filter in SQL where they
        can). Partitioned subscriptions filter the pages of other engines
        themselves.
        """
        ...

    def stream_version(self, stream: StreamKey) -> int:
        """The version of the stream's last event, 0 when it has none."""
        ...

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> list[StreamInfo]:
        """One page of streams, ordered by their id's text, after ``after``."""
        ...

    def stream_totals(self) -> tuple[int, int]:
        """How many streams have events, and the sum of their versions (their events,
        in a store that never removes any): one aggregate over the streams, never the log.
        """
        ...

    def head_position(self, *, wait: bool = True) -> int:
        """The position of the last event in the global log (0 when empty).

        ``wait`` as for :meth:`read_all`.
        """
        ...

    def count_after(
        self,
        position: int,
        *,
        names: Sequence[str] | None,
        limit: int | None = None,
        wait: bool = True,
    ) -> int:
        """How many events of the global log come after ``position`` (with those names).

        ``limit``: count at most so many (a bounded read, whatever the log's
        size). ``wait`` as for :meth:`read_all`.
        """
        ...

    def first_position_since(self, since: datetime) -> int | None:
        """The position of the first event recorded at or after ``since``, if any."""
        ...

    def read_event(self, event_id: uuid.UUID) -> Event | None:
        """One event by its id, or ``None``."""
        ...

    # -- snapshots ---------------------------------------------------------

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> None:
        """Keep a snapshot of an entity, unless a newer one of its class is kept.

        Engines keep one snapshot per stream and ``class_name``: the one of
        the highest version. Snapshots are a cache: they are never needed to
        read events.

        Raises:
            BackendError: the engine failed.
        """
        ...

    def load_snapshot(self, stream: StreamKey, class_name: str) -> Snapshot | None:
        """The snapshot kept for a stream and entity class, or ``None``."""
        ...

    # -- durable subscriptions ---------------------------------------------

    def load_checkpoint(self, name: str) -> int | None:
        """The position a subscription has handled up to, ``None`` if it never ran."""
        ...

    def save_checkpoint(self, name: str, position: int, *, expected: int | None) -> bool:
        """Move a subscription's checkpoint, if it is still at ``expected``.

        ``expected`` is the checkpoint the caller loaded (``None``: it had
        none). Returns False, changing nothing, when another driver moved it
        in between.
        """
        ...

    def checkpoints(self) -> list[tuple[str, int]]:
        """Every subscription's name and checkpoint, by name."""
        ...

    def save_subscription_state(self, name: str, state: str, detail: str | None) -> None:
        """Keep what a subscription's driver is doing now (replacing what it said before),
        with the time; see :class:`~conduit.events.SubscriptionState`."""
        ...

    def subscription_states(self) -> list[SubscriptionState]:
        """Every subscription state kept, by name."""
        ...

    def park(
        self, subscription: str, event: Event, *, error: str, traceback: str, attempts: int
    ) -> None:
        """Keep an event a subscription gave up on (replacing an earlier parking of it)."""
        ...

    def parked(self, *, subscription: str | None, after: int, limit: int) -> list[ParkedEvent]:
        """A page of parked events, by id, after ``after``."""
        ...

    def request_retry(self, parked_id: int | None, *, subscription: str | None) -> int:
        """Ask the subscription's driver to try parked events again; returns how many.

        ``parked_id`` ``None`` means every parked event (of ``subscription``).
        """
        ...

    def unpark(self, parked_id: int) -> bool:
        """Forget a parked event (dropped, or applied by a retry); False if unknown."""
        ...

    def try_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Become (or stay) the one driver of a subscription; False if another is.

        Renewing before ``ttl`` seconds pass keeps the lease; a holder that
        dies loses it (PostgreSQL: with its session; others: after ``ttl``).
        An engine whose leases ignore ``ttl`` says so with a class attribute
        ``leases_expire = False`` (see :mod:`conduit.testing.contract_leases`).
        """
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give up a lease taken with :meth:`try_lease`."""
        ...

    def leases_held(self, names: Sequence[str]) -> set[str]:
        """Those of ``names`` whose lease a driver holds now, in any process (a lease
        past its ``ttl`` or of a session that ended is not held). Status reads it
        to tell a driver that stopped saying so from one that died; an engine
        without it is read as holding every lease."""
        ...

    # -- subjects' keys (personal data, conduit.personal) --------------------

    def subject_keys(self, subjects: Sequence[str]) -> dict[str, bytes | None]:
        """The keys of those ``subjects`` the store has a row for: the key, or ``None``
        for a subject that was forgotten (its tombstone). Unknown subjects are absent."""
        ...

    def add_subject_keys(self, keys: Sequence[SubjectKey]) -> None:
        """Keep the keys of subjects that have no row yet (an existing key wins, so two
        writers making a subject's first key agree on one). A tombstone (``key``
        ``None``) also replaces a live key: forgetting wins.

        Raises:
            BackendError: the engine failed.
        """
        ...

    def keep_subject_keys(self, keys: Sequence[SubjectKey]) -> dict[str, bytes | None]:
        """Keep these new live keys for the subjects that have no row yet, and return
        the keys of those subjects as they are then (``None``: forgotten) — the keys a
        push seals with, found or made in one step. A subject missing from the result
        lost a race to another writer's first key, not yet visible: look it up again.

        Raises:
            BackendError: the engine failed.
        """
        ...

    def forget_subject(self, subject: str) -> bool:
        """Destroy a subject's key, leaving its tombstone (made if the subject had no
        row), and scrub what the engine can of the old bytes (docs/personal-data.md).
        Returns True when a key was destroyed.

        Raises:
            BackendError: the engine failed; the key may or may not be destroyed
                (forget again).
        """
        ...

    def subject_key_page(self, *, after: str | None, limit: int) -> list[SubjectKey]:
        """A page of keys and tombstones, ordered by subject, after ``after``."""
        ...

    def close(self) -> None:
        """Release connections and files. The engine is unusable afterwards."""
        ...

    # -- rewriting (conduit migrate-events) ---------------------------------

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> int:
        """Replace the name, data and metadata of recorded events, atomically.

        All or nothing, in one transaction. Each event keeps its id, stream,
        version, position and recorded time; ids not recorded are skipped.
        Only :mod:`conduit.migration` calls this: events are otherwise never
        changed. Returns how many events were rewritten.

        Raises:
            BackendError: the engine failed; nothing written.
        """
        ...


@runtime_checkable
class Announcing(Protocol):
    """An engine that announces appends (PostgreSQL's ``NOTIFY``, for stores opened with
    ``notify=True``): a background driver registers its wake-up signal with it, to
    look at once instead of at its next poll. Only a hint: drivers poll as well."""

    announces: bool
    """Whether announcements are listened for (PostgreSQL: ``notify=True``); when
    False, wakers are not registered and no listening connection is opened."""

    def add_waker(self, wake: Any) -> None:
        """Set ``wake`` (the driver's signal) on every announcement."""
        ...

    def remove_waker(self, wake: Any) -> None:
        """Stop setting ``wake``."""
        ...


def announcer(backend: object) -> Announcing | None:
    """``backend`` when it announces appends and listens for them, else ``None``."""
    if isinstance(backend, Announcing) and backend.announces:
        return backend
    return None
