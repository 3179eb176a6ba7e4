"""Personal data's operations: keys for sealing a push, reveals on reads, forgetting.

The encryption itself is pure (:mod:`conduit.core.sealing`); what needs the
store's keys table is an engine operation (``subject_keys``,
``add_subject_keys``, ``forget_subject``), so both faces run exactly this.

Keys for *writing* are cached by the store (bounded): a push of a known
subject costs no lookup. Reads never use that cache: each page holding
personal data looks its subjects' keys up once, so that a subject forgotten by
another process reads as forgotten at once everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from conduit.backends.base import AppendRequest
from conduit.core.effects import Op
from conduit.core.paging import Pages
from conduit.core.sealing import (
    Opened,
    event_subjects_pushed,
    forget_cipher,
    new_key,
    page_subjects,
    plain_text,
    reveal_page,
    seal_event,
)
from conduit.errors import InvalidArgument, SubjectForgotten
from conduit.events import Event, GCPaused, NewEvent
from conduit.personal import SUBJECTS_KEY, SubjectKey, subject_text
from conduit.reserved import AUDIT_STREAM

__all__ = [
    "KeyCache",
    "add_keys",
    "forget",
    "key_pages",
    "keys_for_writing",
    "recorded_retry",
    "reveal",
    "seal_batch",
]

_CACHE_MAX = 10_000


class KeyCache:
    """Subjects' keys a store used to seal pushes (never to reveal reads)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def drop(self, subject: str) -> None:
        """Forget a subject's cached key (and its cipher)."""
        forget_cipher(self.keys.pop(subject, None))

    def keep(self, found: dict[str, bytes]) -> None:
        if len(self.keys) + len(found) > _CACHE_MAX:
            self.keys.clear()
        self.keys.update(found)


def keys_for_writing(engine: Any, cache: KeyCache, subjects: set[str]) -> Op[dict[str, bytes]]:
    """The keys to seal personal values of ``subjects`` with, made for new subjects.

    Raises:
        SubjectForgotten: one of them was forgotten.
    """
    cached = cache.keys
    keys = {s: cached[s] for s in subjects if s in cached}
    if len(keys) == len(subjects):
        return keys
    wanted = sorted(subjects - keys.keys())
    found = yield from engine.keep_subject_keys([SubjectKey(s, new_key()) for s in wanted])
    if any(s not in found for s in wanted):  # another writer's first key won a race
        found = yield from engine.subject_keys(wanted)
    live: dict[str, bytes] = {}
    for subject in wanted:
        key = found.get(subject)
        if key is None:
            raise SubjectForgotten(subject)
        live[subject] = key
    cache.keep(live)
    keys.update(live)
    return keys


def seal_batch(
    engine: Any, cache: KeyCache, stream: str, batch: Sequence[NewEvent], *, shown: bool
) -> Op[tuple[Sequence[NewEvent], list[Opened | None] | None]]:
    """The batch with its personal values sealed, and each event's values by subject (for
    what the push returns); ``None`` when the batch held no personal value. ``shown``:
    the push returns the values in the clear (see :func:`seal_event`)."""
    subjects: set[str] = set()
    for new in batch:
        if new.personal:
            subjects |= event_subjects_pushed(new, stream)
    if not subjects:
        return batch, None
    keys = yield from keys_for_writing(engine, cache, subjects)
    sealed: list[NewEvent] = []
    opened: list[Opened | None] = []
    with GCPaused():  # all of it lives on: no cycle to find (see GCPaused)
        for new in batch:
            if new.personal:
                made, values = seal_event(new, stream, keys, shown=shown)
                sealed.append(made)
                opened.append(values)
            else:
                sealed.append(new)
                opened.append(None)
    return sealed, opened


def recorded_retry(engine: Any, pushed: AppendRequest, revealed: bool) -> Op[list[Event] | None]:
    """The recorded events of a retried push with personal values, or ``None`` when
    ``pushed`` (the request before sealing) is not a retry of what is recorded.

    Sealing a retry again draws new nonces, so the engine, which compares what it
    stores, finds other metadata (``DuplicateEvent``); this compares what the events
    hold instead: each id recorded in its part's stream, in order and one version
    after another, with the same name, tags, data and metadata once revealed.
    """
    stored: list[Event] = []
    for part in pushed:
        previous: Event | None = None
        for new in part.events:
            event: Event | None = yield from engine.read_event(new.id)
            if event is None or str(event.stream_id) != part.stream.text:
                return None
            if previous is not None and event.version != previous.version + 1:
                return None
            stored.append(event)
            previous = event
    if not revealed:  # the store shows the stored form: compare a second reading
        shown: list[Event] = []
        for event in stored:
            again = yield from engine.read_event(event.id)
            if again is None:
                return None
            shown.append(again)
    opened = yield from reveal(engine, stored)  # one key lookup for them all
    given = [new for part in pushed for new in part.events]
    for event, new in zip(opened, given, strict=True):
        metadata = {k: v for k, v in event.metadata.items() if k != SUBJECTS_KEY}
        if (
            event.name != new.name
            or event.tags != new.tags
            or event.data != orjson.loads(plain_text(new.data, new.personal))
            or metadata != orjson.loads(new.metadata)
        ):
            return None
    return list(opened) if revealed else shown


def reveal(engine: Any, page: Sequence[Event]) -> Op[Sequence[Event]]:
    """A page of events as reads give it: personal values decrypted, or
    :data:`~conduit.personal.FORGOTTEN`. One key lookup for a page that holds any."""
    subjects = page_subjects(page)
    if not subjects:
        return page
    keys = yield from engine.subject_keys(sorted(subjects))
    return reveal_page(page, keys)


def forget(core: Any, subject: object, by: str | None) -> Op[bool]:
    """Destroy a subject's key, then record ``subject_forgotten`` in the audit stream
    (through the store's normal push path); True if a key was destroyed."""
    text = subject_text(subject)
    if by is not None and type(by) is not str:
        raise InvalidArgument("by names who asked (a string)", field="by")
    destroyed: bool = yield from core.engine.forget_subject(text)
    core.key_cache.drop(text)
    metadata = None if by is None else {"by": by}
    data = {"subject": text, "key_destroyed": destroyed}
    yield from core.push(
        "subject_forgotten", AUDIT_STREAM, data, metadata, None, None, internal=True
    )
    return destroyed


def key_pages(core: Any, *, limit: int | None) -> Pages[str | None, SubjectKey]:
    """Every key and tombstone of the store, by subject, a page at a time."""
    engine = core.engine

    def fetch(after: str | None, size: int) -> Op[Sequence[SubjectKey]]:
        page: Sequence[SubjectKey] = yield from engine.subject_key_page(after=after, limit=size)
        return page

    return Pages(fetch, None, _subject, limit=limit, page_size=core.page_size)


def _subject(key: SubjectKey) -> str:
    return key.subject


def add_keys(core: Any, keys: Sequence[SubjectKey]) -> Op[None]:
    """Keep another store's keys and tombstones (a copy, an import).

    Raises:
        InvalidArgument: not :class:`SubjectKey` values, or a key not of 32 bytes.
    """
    for given in keys:
        if not isinstance(given, SubjectKey):
            raise InvalidArgument("keys are conduit.SubjectKey values", field="keys")
        subject_text(given.subject, "keys")
        if given.key is not None and (type(given.key) is not bytes or len(given.key) != 32):
            raise InvalidArgument(
                f"keys: the key of {given.subject!r} is not 32 bytes", field="keys"
            )
        if given.key is None:
            core.key_cache.drop(given.subject)
    yield from core.engine.add_subject_keys(list(keys))
