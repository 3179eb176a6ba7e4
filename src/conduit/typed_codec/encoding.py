"""Typed values to JSON values: by the values themselves (see the package)."""

from __future__ import annotations

import dataclasses
import enum
import itertools
import typing
import uuid
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson

from conduit.errors import InvalidEvent
from conduit.personal import Forgotten, Personal, PersonalData, subject_text
from conduit.typed_codec.models import base_model, is_model_class

__all__ = ["personal_fields", "to_json"]


def to_json(value: object, path: str) -> Any:
    """A typed value as JSON values (to be checked by the strict codec).

    Raises:
        InvalidEvent: a value typed events cannot hold (a naive datetime, an
            unsupported type, two dict keys or set items stored alike), naming
            ``path``.
    """
    return _to_json(value, path, False)


class _Unsupported(InvalidEvent):
    """A value of a type this codec does not know (a model may know it)."""


_MINUTE = timedelta(minutes=1)
_init_fields: dict[type, tuple[str, ...]] = {}
"""The fields a dataclass's ``__init__`` takes, by class: its data."""
_personal_fields: dict[type, dict[str, PersonalData]] = {}
"""The fields of a class marked ``Annotated[..., PersonalData()]``, by class."""


def personal_fields(cls: type) -> dict[str, PersonalData]:
    """The fields of a dataclass or pydantic model marked as personal data, by name."""
    found = _personal_fields.get(cls)
    if found is not None:
        return found
    found = {}
    if is_model_class(cls):
        for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
            for extra in info.metadata:
                if isinstance(extra, PersonalData):
                    found[name] = extra
    else:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except (NameError, TypeError):
            hints = {}
        for name, hint in hints.items():
            if typing.get_origin(hint) is typing.Annotated:
                for extra in hint.__metadata__:
                    if isinstance(extra, PersonalData):
                        found[name] = extra
    _personal_fields[cls] = found
    return found


def _marked(obj: object, marker: PersonalData, value: Any, path: str) -> Personal:
    """A field's JSON value marked as personal data of its subject."""
    if marker.subject is None:
        return Personal(value, None)
    subject = _to_json(getattr(obj, marker.subject, None), f"{path}", False)
    return Personal(value, subject_text(subject, f"{path} (its subject, {marker.subject})"))


def _to_json(value: object, path: str, in_model: bool) -> Any:
    """``in_model``: inside a pydantic model, which pydantic decodes, not this codec."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return value
    if t is Forgotten:
        return str(value)
    if isinstance(value, enum.Enum):
        return _to_json(value.value, path, in_model)
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            raise InvalidEvent(
                f"{path}: a naive datetime is ambiguous; give it a timezone", field=path
            )
        if in_model and offset % _MINUTE:
            return value.astimezone(UTC).isoformat()  # the same instant, in a form pydantic reads
        return value.isoformat()
    if isinstance(value, time):
        offset = value.utcoffset()
        if in_model and offset is not None and offset % _MINUTE:
            raise InvalidEvent(
                f"{path}: pydantic cannot read back a time whose UTC offset has seconds "
                f"({offset}); give it an offset in whole minutes",
                field=path,
            )
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_to_json(item, f"{path}[{i}]", in_model) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return _set_json(value, path, in_model)
    if isinstance(value, dict):
        return _dict_json(value, path, in_model)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _init_fields.get(t)
        if names is None:
            names = _init_fields[t] = tuple(f.name for f in dataclasses.fields(value) if f.init)
        marked = personal_fields(t)
        if not marked:
            return {
                name: _to_json(getattr(value, name), f"{path}.{name}", in_model) for name in names
            }
        result = {}
        for name in names:
            item = _to_json(getattr(value, name), f"{path}.{name}", in_model)
            marker = marked.get(name)
            result[name] = item if marker is None else _marked(value, marker, item, path)
        return result
    base = base_model()
    if base is not None and isinstance(value, base):
        return _model_json(value, path)
    raise _Unsupported(
        f"{path}: {t.__name__} is not supported in typed events (use str, int, float, bool, "
        "None, datetime, date, time, UUID, Decimal, enums, lists, tuples, sets, dicts, "
        "dataclasses or pydantic models)",
        field=path,
    )


def _set_json(value: AbstractSet[Any], path: str, in_model: bool) -> list[Any]:
    items = [_to_json(item, f"{path}[{i}]", in_model) for i, item in enumerate(value)]
    try:
        texts = [orjson.dumps(item) for item in items]
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(f"{path}: cannot be encoded as JSON ({exc})", field=path) from None
    keyed = sorted(zip(texts, items, strict=True), key=lambda pair: pair[0])  # a stable order
    for (before, _), (after, _) in itertools.pairwise(keyed):
        if before == after:
            raise InvalidEvent(
                f"{path}: two items of the set are both stored as {after.decode()}, so "
                "it would read back smaller",
                field=path,
            )
    return [item for _, item in keyed]


def _dict_json(value: dict[Any, Any], path: str, in_model: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for k, v in value.items():
        key = _key(k, path, in_model)
        if key in result:
            first = next(old for old in value if _key(old, path, in_model) == key)
            raise InvalidEvent(
                f"{path}: keys {first!r} and {k!r} are both stored as {key!r}", field=path
            )
        result[key] = _to_json(v, f"{path}[{k!r}]", in_model)
    return result


def _model_json(value: Any, path: str) -> dict[str, Any]:
    """A pydantic model's fields, through this codec (not ``model_dump``, which
    lets naive datetimes through and drops the seconds of UTC offsets)."""
    result: dict[str, Any] = {}
    marked = personal_fields(type(value))
    for name, info in type(value).model_fields.items():
        if info.exclude:
            continue
        item = _model_field(value, name, getattr(value, name), f"{path}.{name}")
        marker = marked.get(name)
        result[name] = item if marker is None else _marked(value, marker, item, path)
    for name, item in (value.model_extra or {}).items():
        result[name] = _model_field(value, name, item, f"{path}.{name}")
    return result


def _model_field(model: Any, name: str, item: object, path: str) -> Any:
    try:
        return _to_json(item, path, True)
    except _Unsupported:
        pass  # a type only pydantic knows (a URL, a secret...): its own JSON form
    try:
        return model.model_dump(mode="json", include={name})[name]
    except Exception as exc:
        raise InvalidEvent(f"{path}: pydantic cannot serialize it ({exc})", field=path) from None


def _key(key: object, path: str, in_model: bool) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if type(key) is str:
        return key
    if isinstance(key, date | time):
        text: str = _to_json(key, path, in_model)
        return text
    if isinstance(key, int | uuid.UUID | Decimal) and not isinstance(key, bool):
        return str(key)
    raise InvalidEvent(f"{path}: key {key!r} cannot be a JSON object key", field=path)
