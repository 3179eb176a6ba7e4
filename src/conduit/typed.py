"""Typed events: dataclasses (and pydantic models) as events, and the registry that
turns stored events back into them.

A typed event's name is the snake_case of its class name
(``PersonRegistered`` → ``person_registered``) unless the class declares
``event_name = "..."``; its schema version is its ``event_version`` class
attribute (1 when absent). Reading gives a :class:`~conduit.events.TypedEvent`
(an ``Event`` with a ``payload``) for names registered with the store, and a
plain ``Event`` for everything else.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from conduit import codec
from conduit.errors import EventDecodeError, InvalidArgument, InvalidEvent
from conduit.events import Event, event_name, make_event, make_typed_event
from conduit.personal import Personal
from conduit.typed_codec import (
    Decoder,
    Mismatch,
    class_decoder,
    is_model_class,
    is_typed,
    to_json,
)
from conduit.upcasting import SCHEMA_VERSION_KEY, Upcaster, Upcasters, schema_version

__all__ = ["TypeRegistry", "encode_typed", "is_typed", "type_name", "type_version"]

C = TypeVar("C", bound=type)

_names: dict[type, str] = {}


def type_name(cls: type) -> str:
    """The event name of a typed event class."""
    found = _names.get(cls)
    if found is None:
        declared = getattr(cls, "event_name", None)
        found = event_name(declared if isinstance(declared, str) else cls.__name__)
        _names[cls] = found
    return found


def type_version(cls: type) -> int | None:
    """The schema version a typed event class declares (``event_version``), if any."""
    version = getattr(cls, "event_version", None)
    if version is None:
        return None
    if type(version) is not int or version < 1:
        raise InvalidEvent(
            f"{cls.__name__}.event_version must be an integer of 1 or more", field="event_version"
        )
    return version


def encode_typed(
    event: object, where: str = ""
) -> tuple[str, str, int | None, tuple[Personal, ...]]:
    """A typed event's name, data as JSON text, declared schema version, and the values
    of its fields marked personal (see :func:`conduit.codec.encode_data`).

    Raises:
        InvalidEvent: a field that cannot be stored, named.
    """
    cls = type(event)
    data = to_json(event, f"{where}data")
    text, personal = codec.encode_data(data, field=f"{where}data")
    return type_name(cls), text, type_version(cls), personal


@dataclass(frozen=True, slots=True)
class _Entry:
    cls: type
    decode: Decoder
    version: int


class TypeRegistry:
    """The event classes (and upcasters) a store reads events into.

    Args:
        types: event classes: dataclasses, or pydantic models.
        upcasters: the upcasters to apply on read; a new, empty set by default.

    Raises:
        InvalidArgument: two classes with one event name, or a field annotated
            with a type typed events cannot hold.
    """

    def __init__(self, types: Iterable[type] = (), *, upcasters: Upcasters | None = None) -> None:
        self.upcasters = upcasters if upcasters is not None else Upcasters()
        self._entries: dict[str, _Entry] = {}
        for cls in types:
            self.register(cls)

    def __repr__(self) -> str:
        return f"<TypeRegistry {sorted(self._entries)}>"

    def register(self, cls: C) -> C:
        """Read events named after ``cls`` into ``cls``; returns it (a decorator too)."""
        if not isinstance(cls, type):
            raise InvalidArgument(f"{cls!r} is not a class", field="types")
        name = type_name(cls)
        known = self._entries.get(name)
        if known is not None and known.cls is not cls:
            raise InvalidArgument(
                f"{cls.__qualname__} and {known.cls.__qualname__} both have the event "
                f"name {name!r}",
                field="types",
            )
        try:
            decode = class_decoder(cls)
        except (TypeError, NameError) as exc:
            raise InvalidArgument(f"{cls.__qualname__}: {exc}", field="types") from exc
        self._entries[name] = _Entry(cls, decode, type_version(cls) or 1)
        return cls

    def upcaster(
        self, name: str, version: int, *, rename: str | None = None, to_version: int | None = None
    ) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register an upcaster (see :meth:`conduit.upcasting.Upcasters.register`)."""
        return self.upcasters(name, version, rename=rename, to_version=to_version)

    def class_for(self, name: str) -> type | None:
        """The class registered for an event name, if any."""
        entry = self._entries.get(name)
        return None if entry is None else entry.cls

    def current_version(self, name: str) -> int | None:
        """The schema version events named ``name`` are written at today, if known."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.version
        return self.upcasters.current_version(name)

    def check(self, name: str, data: str, metadata: dict[str, Any] | None, where: str) -> str:
        """Validate untyped data pushed under ``name``; return its metadata text.

        The metadata gets today's schema version unless it names one (an
        import of older events). Then the event must read back as reads will
        give it: upcast, and decoded into its registered class (see
        :meth:`refuse_unreadable`).

        Raises:
            InvalidEvent: the event would not read back, naming the field.
        """
        version = self.current_version(name)
        if version is None or (metadata is not None and SCHEMA_VERSION_KEY in metadata):
            text = codec.encode(metadata, field=f"{where}metadata") if metadata else "{}"
        else:
            metadata = {**(metadata or {}), SCHEMA_VERSION_KEY: version}
            text = codec.encode(metadata, field=f"{where}metadata")
        self.refuse_unreadable(name, data, metadata, where)
        return text

    def refuse_unreadable(
        self,
        name: str,
        data: str,
        metadata: dict[str, Any] | None,
        where: str,
        pushed: object = None,
    ) -> None:
        """Refuse, before anything is written, an event that reads would not give back.

        Reads upcast an event and decode it into its registered class; an
        event that would fail there (an upcaster refuses its data, its schema
        version leads to no class version, its data does not fit the class)
        would be stored but never read. ``pushed``, a typed event, must also
        read back equal (``==``) when it is of the registered class.

        Raises:
            InvalidEvent: naming the field at fault.
        """
        if not self.upcasters and name not in self._entries:
            return  # the common case: reads give such an event as it is stored
        event = make_event(_PROVISIONAL, "", name, codec.decode(data), metadata or {}, 0, 0, _EPOCH)
        if self.upcasters:
            try:
                event = self.upcasters.upcast(event)
            except EventDecodeError as exc:
                raise InvalidEvent(
                    f"{where}data: {exc.class_name} refused it: {exc.reason}", field=f"{where}data"
                ) from None
        entry = self._entries.get(event.name)
        if entry is None:
            return
        stored = schema_version(event)
        if stored != entry.version:
            field = f"{where}metadata[{SCHEMA_VERSION_KEY!r}]"
            raise InvalidEvent(
                f"{field}: {event.name} v{stored} would not read back: its class "
                f"{entry.cls.__qualname__} is at v{entry.version}, and no upcaster leads there",
                field=field,
            )
        try:
            payload = entry.decode(event.data)
        except Mismatch as exc:
            field = f"{where}data" + "".join(f"[{part!r}]" for part in exc.path)
            raise InvalidEvent(
                f"{field}: does not fit {entry.cls.__qualname__}: {exc.reason}", field=field
            ) from None
        if pushed is not None and type(payload) is type(pushed):
            _refuse_unequal(pushed, payload, f"{where}data")

    def decode(self, event: Event) -> Event:
        """The event in today's shape: upcast, and typed when its name is registered.

        Raises:
            EventDecodeError: the data does not fit the class (naming the
                field), or was written at a schema version no upcaster leads from.
        """
        if self.upcasters:
            event = self.upcasters.upcast(event)
        entry = self._entries.get(event.name)
        if entry is None:
            return event
        cls = entry.cls
        stored = schema_version(event)
        if stored != entry.version:
            raise EventDecodeError(
                event.id,
                event.name,
                cls.__qualname__,
                None,
                f"stored at schema version {stored}, the class is at {entry.version}, and no "
                f"upcaster leads from {event.name} v{stored}",
            )
        try:
            payload = entry.decode(event.data)
        except Mismatch as exc:
            raise EventDecodeError(
                event.id, event.name, cls.__qualname__, exc.field or None, exc.reason
            ) from None
        return make_typed_event(event, payload)


_PROVISIONAL = uuid.UUID(int=0)
"""The id of the event a push checks before it has one recorded."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _refuse_unequal(pushed: object, read: object, where: str) -> None:
    """Refuse a typed event that reads back unequal, naming the first field that differs."""
    cls = type(pushed)
    if getattr(cls, "__eq__", object.__eq__) is object.__eq__:  # eq=False: identity
        return
    if pushed == read:
        return
    names: Iterable[str]
    if is_model_class(cls):
        names = cls.model_fields  # type: ignore[attr-defined]
    else:
        names = [f.name for f in dataclasses.fields(pushed) if f.compare]  # type: ignore[arg-type]
    for name in names:
        given, back = getattr(pushed, name, None), getattr(read, name, None)
        if given != back:
            field = f"{where}.{name}"
            raise InvalidEvent(
                f"{field}: would not read back equal ({given!r} reads back as {back!r}); "
                "give it a value of its annotated type",
                field=field,
            )
    raise InvalidEvent(
        f"{where}: {cls.__qualname__} would not read back equal ({pushed!r} reads back as "
        f"{read!r})",
        field=where,
    )
