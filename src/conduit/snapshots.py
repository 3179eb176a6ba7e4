"""Snapshots: an entity's state at one version, so that loading it replays only
the events after that version.

A snapshot is a cache, never the truth: one that cannot be decoded, or that
was taken under another ``snapshot_version`` of the entity class, is ignored
(with a :class:`SnapshotWarning` when it is unreadable) and the entity is
rebuilt from its events. State is the entity's ``__dict__`` (Conduit's own
``_conduit_*`` attributes aside) through the typed codec, decoded by the
class's annotations; or what its ``to_snapshot()`` returns, given back to its
``from_snapshot(data)`` classmethod.
"""

from __future__ import annotations

import contextlib
import typing
import warnings
from typing import Any, TypeVar

from conduit import codec
from conduit.core.effects import Op
from conduit.core.sealing import page_subjects
from conduit.core.sealing_state import open_state, seal_state, sealed_state_subjects
from conduit.errors import InvalidArgument
from conduit.events import Snapshot, StreamId, stream_key
from conduit.migration import snapshot_outdated
from conduit.replay import replay
from conduit.typed_codec import Decoder, Mismatch, decoder_for, to_json

__all__ = [
    "SnapshotWarning",
    "class_name",
    "decode_state",
    "encode_state",
    "load",
    "maybe_snapshot",
    "take_snapshot",
]

T = TypeVar("T")

_OWN = "_conduit_"  # Conduit's bookkeeping attributes, never part of a snapshot


class SnapshotWarning(UserWarning):
    """A snapshot was ignored or not taken; the entity was rebuilt from its events."""


def class_name(cls: type) -> str:
    """The name snapshots of ``cls`` are kept under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def snapshot_version(cls: type) -> int:
    """The entity class's declared ``snapshot_version`` (1 when absent)."""
    version = getattr(cls, "snapshot_version", 1)
    return version if type(version) is int else 1


def snapshot_every(cls: type, default: int | None) -> int | None:
    """How often to snapshot entities of ``cls``: its own ``snapshot_every``, else the store's."""
    every = getattr(cls, "snapshot_every", None)
    return every if type(every) is int and every > 0 else default


def encode_state(entity: object) -> str:
    """The entity's state as JSON text.

    Raises:
        InvalidEvent: a value the typed codec cannot hold, named.
        InvalidArgument: the state would not decode back equal (an attribute
            of a type only its annotation could restore is not annotated).
    """
    to_snapshot = getattr(entity, "to_snapshot", None)
    if callable(to_snapshot):
        return codec.encode(to_json(to_snapshot(), "state"), field="state")
    state = _state(entity)
    text = codec.encode(to_json(state, "state"), field="state")
    if _decode_attributes(type(entity), codec.decode(text)) != state:
        raise InvalidArgument(
            f"the state of {type(entity).__qualname__} would not read back equal; annotate "
            "its attributes or give it to_snapshot() and from_snapshot()",
            field="state",
        )
    return text


def decode_state(cls: type[T], text: str) -> T:
    """An entity of ``cls`` rebuilt from a snapshot's JSON text.

    Raises:
        Exception: anything; the caller ignores the snapshot.
    """
    data = codec.decode(text)
    from_snapshot = getattr(cls, "from_snapshot", None)
    if callable(from_snapshot):
        entity: T = from_snapshot(data)
        return entity
    state = _decode_attributes(cls, data)
    entity = cls()
    vars(entity).update(state)
    return entity


def _state(entity: object) -> dict[str, Any]:
    return {k: v for k, v in vars(entity).items() if not k.startswith(_OWN)}


_attribute_decoders: dict[type, dict[str, Decoder]] = {}


def _decode_attributes(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    decoders = _attribute_decoders.get(cls)
    if decoders is None:
        hints = typing.get_type_hints(cls)
        decoders = {
            name: decoder_for(hint)
            for name, hint in hints.items()
            if typing.get_origin(hint) is not typing.ClassVar and hint is not typing.ClassVar
        }
        _attribute_decoders[cls] = decoders
    state = {}
    for name, value in data.items():
        decode = decoders.get(name)
        try:
            state[name] = value if decode is None else decode(value)
        except Mismatch as exc:
            raise Mismatch(exc.reason, (name, *exc.path)) from None
    return state


_SUBJECTS = "_conduit_subjects"
"""The attribute where an entity loaded or saved by a store keeps the subjects whose
personal data its events held: its snapshots are sealed with their keys."""


def _track(entity: object, subjects: set[str]) -> None:
    with contextlib.suppress(AttributeError):  # __slots__: snapshots look subjects up
        setattr(entity, _SUBJECTS, frozenset(subjects))


def add_subjects(entity: object, events: Any) -> None:
    """Note the subjects of events just recorded for ``entity``."""
    known = getattr(entity, _SUBJECTS, None)
    if known is not None:
        _track(entity, set(known) | page_subjects(events))


def _stream_subjects(core: Any, stream_id: StreamId, version: int) -> Op[set[str]]:
    """The subjects of a stream's events up to ``version``, as stored."""
    found: set[str] = set()
    key = stream_key(stream_id)
    start = 1
    while start <= version:
        page = yield from core.engine.read_stream(
            key, start=start, backwards=False, since=None, limit=core.page_size
        )
        if not page:
            break
        found |= page_subjects(event for event in page if event.version <= version)
        start = page[-1].version + 1
    return found


def take_snapshot(core: Any, stream_id: StreamId, entity: object, version: int) -> Op[None]:
    """Keep ``entity`` as the snapshot of ``stream_id`` at ``version``.

    ``core`` is the store's :class:`~conduit.core.store_ops.StoreCore`. When the
    stream's events hold personal data, the state is sealed with the keys of
    all their subjects, so that forgetting any one of them forgets the snapshot.
    """
    cls = type(entity)
    text = encode_state(entity)
    subjects = getattr(entity, _SUBJECTS, None)
    if subjects is None:
        subjects = yield from _stream_subjects(core, stream_id, version)
    if subjects:
        keys = yield from core.engine.subject_keys(sorted(subjects))
        text = seal_state(text, subjects, keys)
    snapshot = Snapshot(class_name(cls), version, snapshot_version(cls), text)
    yield from core.engine.save_snapshot(stream_key(stream_id), snapshot)


def maybe_snapshot(
    core: Any, stream_id: StreamId, entity: object, before: int, after: int
) -> Op[None]:
    """Take a snapshot when the policy says so: a multiple of N passed between the versions."""
    every = snapshot_every(type(entity), core.snapshot_every)
    if every is None or after // every == before // every:
        return
    try:
        yield from take_snapshot(core, stream_id, entity, after)
    except Exception as exc:  # a cache: failing to fill it never fails the caller
        warnings.warn(
            SnapshotWarning(f"no snapshot of {stream_id} at version {after}: {exc}"),
            stacklevel=3,
        )


def load(core: Any, stream_id: StreamId, onto: type[T], *, snapshots: bool = True) -> Op[T]:
    """The latest usable snapshot of ``onto`` plus the events after it."""
    from conduit.aggregate import Aggregate

    key = stream_key(stream_id)
    engine = core.engine
    entity: T | None = None
    start = 0
    kept = (yield from engine.load_snapshot(key, class_name(onto))) if snapshots else None
    if kept is not None and (yield from snapshot_outdated(engine, key, kept)):
        kept = None  # built from events migrate-events has rewritten since
    subjects: set[str] = set()
    state = None if kept is None else kept.data
    sealed = None if state is None else sealed_state_subjects(state)
    if sealed is not None and state is not None:
        subjects.update(sealed)
        state = open_state(state, (yield from engine.subject_keys(sealed)))
        # None: a subject was forgotten, and the snapshot with it
    if kept is not None and state is not None and kept.snapshot_version == snapshot_version(onto):
        try:
            entity = decode_state(onto, state)
            start = kept.version
        except Exception as exc:
            warnings.warn(
                SnapshotWarning(
                    f"ignored the snapshot of {stream_id} at version {kept.version} for "
                    f"{onto.__qualname__}, which cannot be decoded ({exc!r}); replaying every event"
                ),
                stacklevel=3,
            )
    if entity is None:
        entity = onto()
    last = start
    aggregate = isinstance(entity, Aggregate)
    if aggregate:
        entity._conduit_loaded(stream_id, start)  # type: ignore[attr-defined]
    pages = core.stream_pages(
        stream_id, since=None, from_version=start + 1, limit=None, backwards=False
    )
    while (fetch := pages.next()) is not None:
        page = pages.feed((yield from fetch))
        if page:
            subjects |= page_subjects(page)
            if aggregate:
                entity._conduit_replay(page)  # type: ignore[attr-defined]
            else:
                replay(page, onto=entity)
            last = page[-1].version
    _track(entity, subjects)
    if snapshots:
        yield from maybe_snapshot(core, stream_id, entity, start, last)
    return entity
