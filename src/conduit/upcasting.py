"""Schema evolution: upcasters turn stored data of older versions into today's shape.

An event's schema version is kept in its metadata under ``schema_version``
(absent means 1). An upcaster is registered for one ``(name, version)`` and
returns the data of the next version (``version + 1`` unless it says
otherwise); it may also rename the event. Upcasters chain: a v1 event goes
through v1 → v2 → v3 on its way to the reader. Reading never rewrites what is
stored: upcasters work on a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from conduit import codec
from conduit.errors import EventDecodeError, InvalidArgument, InvalidEvent
from conduit.events import Event, event_name

__all__ = ["SCHEMA_VERSION_KEY", "Upcaster", "Upcasters", "schema_version"]

SCHEMA_VERSION_KEY = "schema_version"
"""The metadata key that holds an event's schema version."""

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes the data of one version (a copy it may change) and returns the next version's."""


def schema_version(event: Event) -> int:
    """The schema version an event's data is in (1 when its metadata does not say)."""
    version = event.metadata.get(SCHEMA_VERSION_KEY, 1)
    return version if type(version) is int else 1


@dataclass(frozen=True, slots=True)
class _Step:
    upcast: Upcaster
    name: str
    version: int


class Upcasters:
    """The upcasters of one store, by ``(event name, schema version)``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], _Step] = {}
        self._renamed_to: dict[str, set[str]] = {}
        self._current: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def register(
        self,
        name: str,
        version: int,
        upcast: Upcaster,
        *,
        rename: str | None = None,
        to_version: int | None = None,
    ) -> None:
        """Turn data of event ``name`` at schema ``version`` into the next version's.

        Args:
            rename: the event's name from then on (the chain goes on under it).
            to_version: the version ``upcast`` returns; ``version + 1`` by default.

        Raises:
            InvalidArgument: a second upcaster for the same ``(name, version)``,
                or one that would make the chain go round in a loop.
        """
        source = (event_name(name), version)
        if type(version) is not int or version < 1:
            raise InvalidArgument("version must be an integer of 1 or more", field="version")
        target = (
            event_name(rename) if rename is not None else source[0],
            version + 1 if to_version is None else to_version,
        )
        if source in self._steps:
            raise InvalidArgument(f"an upcaster for {source[0]} v{version} is already registered")
        if target == source or (target[0] == source[0] and target[1] < version):
            raise InvalidArgument(f"the upcaster for {source[0]} v{version} leads nowhere new")
        seen = {source}
        step: tuple[str, int] | None = target
        while step is not None:
            if step in seen:
                raise InvalidArgument(f"the upcaster for {source[0]} v{version} makes a loop")
            seen.add(step)
            following = self._steps.get(step)
            step = None if following is None else (following.name, following.version)
        self._steps[source] = _Step(upcast, target[0], target[1])
        self._current[target[0]] = max(self._current.get(target[0], 0), target[1])
        if target[0] != source[0]:
            self._renamed_to.setdefault(target[0], set()).add(source[0])

    def __call__(
        self, name: str, version: int, *, rename: str | None = None, to_version: int | None = None
    ) -> Callable[[Upcaster], Upcaster]:
        """Register the decorated function as an upcaster (see :meth:`register`)."""

        def decorate(upcast: Upcaster) -> Upcaster:
            self.register(name, version, upcast, rename=rename, to_version=to_version)
            return upcast

        return decorate

    def steps(self) -> list[tuple[str, int, str, int]]:
        """Every registered upcaster as (name, version, new name, new version), sorted."""
        return sorted(
            (name, version, step.name, step.version)
            for (name, version), step in self._steps.items()
        )

    def current_version(self, name: str) -> int | None:
        """The version the chains lead ``name`` to, if any upcaster leads to it."""
        return self._current.get(name)

    def stored_names(self, names: Iterable[str]) -> set[str]:
        """The names under which events that read as ``names`` may be stored."""
        found = set(names)
        todo = list(found)
        while todo:
            for older in self._renamed_to.get(todo.pop(), ()):
                if older not in found:
                    found.add(older)
                    todo.append(older)
        return found

    def upcast(self, event: Event) -> Event:
        """The event in today's shape (itself when no upcaster applies).

        Raises:
            EventDecodeError: an upcaster failed or returned something that is
                not event data.
        """
        version = schema_version(event)
        step = self._steps.get((event.name, version))
        if step is None:
            return event
        data = orjson.loads(orjson.dumps(event.data))  # a copy: what is stored stays as it was
        name = event.name
        while step is not None:
            try:
                data = step.upcast(data)
                codec.validate(data, "data") if type(data) is dict else _not_data(data)
            except InvalidEvent as exc:
                raise EventDecodeError(
                    event.id, event.name, f"the upcaster of {name} v{version}", exc.field, str(exc)
                ) from exc
            except Exception as exc:
                raise EventDecodeError(
                    event.id, event.name, f"the upcaster of {name} v{version}", None, repr(exc)
                ) from exc
            name, version = step.name, step.version
            step = self._steps.get((name, version))
        metadata = {**event.metadata, SCHEMA_VERSION_KEY: version}
        return replace(event, name=name, data=data, metadata=metadata)


def _not_data(data: object) -> None:
    raise InvalidEvent(f"data: an upcaster returned {type(data).__name__}, not a dict")
