"""JSON values to typed ones: by the annotations of the class being built (see the package)."""

from __future__ import annotations

import dataclasses
import enum
import threading
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from conduit.personal import FORGOTTEN
from conduit.typed_codec.encoding import personal_fields
from conduit.typed_codec.models import Mismatch, is_model_class, validation_error

__all__ = ["Decoder", "class_decoder", "decoder_for"]

Decoder = Callable[[Any], Any]
"""Turns a JSON value into the annotated type, or raises
:class:`~conduit.typed_codec.models.Mismatch`."""


_class_decoders: dict[type, Decoder] = {}
"""Decoders of the classes compiled so far: only complete ones."""
_compiling: dict[type, Decoder] = {}
"""The classes of the compilation under way (placeholders first): published to
``_class_decoders`` when it succeeds, forgotten when it fails, so that a class
that failed is compiled (and fails) again rather than left half-made."""
_compile_lock = threading.RLock()


def class_decoder(cls: type) -> Decoder:
    """The decoder of a dataclass or pydantic model class, compiled once.

    Raises:
        TypeError: a field's annotation names a type typed events do not support.
        NameError: an annotation names a type that cannot be found.
    """
    found = _class_decoders.get(cls)
    if found is not None:
        return found
    with _compile_lock:
        found = _class_decoders.get(cls) or _compiling.get(cls)
        if found is not None:
            return found  # compiled meanwhile, or a class that refers to itself
        outermost = not _compiling
        _compiling[cls] = lambda raw: _class_decoders[cls](raw)
        try:
            decoder = _compile_class(cls)
        except BaseException:
            if outermost:
                _compiling.clear()
            raise
        _compiling[cls] = decoder
        if outermost:
            _class_decoders.update(_compiling)
            _compiling.clear()
        return decoder


def _compile_class(cls: type) -> Decoder:
    if is_model_class(cls):
        return _model_decoder(cls)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is neither a dataclass nor a pydantic model")
    hints = typing.get_type_hints(cls)
    marked = personal_fields(cls)
    plan: list[tuple[str, Decoder, bool]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        field_decoder = decoder_for(hints.get(f.name, Any))
        if f.name in marked:
            field_decoder = _forgettable(field_decoder)
        plan.append((f.name, field_decoder, required))
    direct = _builds_plainly(cls)
    every = len(plan)
    new = object.__new__

    def decode(raw: Any) -> Any:
        if type(raw) is not dict:
            raise Mismatch(f"expected an object for {cls.__name__}, got {_kind(raw)}")
        kwargs = {}
        name = ""
        try:
            for name, decode_field, required in plan:
                if name in raw:
                    kwargs[name] = decode_field(raw[name])
                elif required:
                    raise Mismatch("missing")
        except Mismatch as exc:
            raise exc.inside(name) from None
        if direct and len(kwargs) == every:  # what its __init__ would do, without the calls
            made = new(cls)
            made.__dict__.update(kwargs)
            return made
        try:
            return cls(**kwargs)
        except Exception as exc:  # __post_init__ validation
            raise Mismatch(f"{cls.__name__}(...) refused the data: {exc!r}") from None

    return decode


_INITVAR = getattr(dataclasses, "_FIELD_INITVAR", object())
"""How dataclasses marks an ``InitVar`` pseudo-field (unknown: none is taken for plain)."""


def _builds_plainly(cls: type) -> bool:
    """Whether the dataclass's ``__init__``, given every field, only stores them: the
    one dataclasses wrote, no ``__post_init__``, no field it sets itself, no slots,
    no ``__setattr__`` of its own. A frozen dataclass's ``__init__`` then costs a call
    of ``object.__setattr__`` per field; filling the instance's ``__dict__`` gives the
    same object (``==``, ``hash``, ``repr``) at a fraction of the cost."""
    params = getattr(cls, "__dataclass_params__", None)
    declared = getattr(cls, "__dataclass_fields__", {})  # InitVars too, which __init__ takes
    init = cls.__dict__.get("__init__") or getattr(cls, "__init__", None)
    code = getattr(init, "__code__", None)
    return (
        params is not None
        and params.init
        and code is not None
        and code.co_filename == "<string>"  # written by dataclasses, not by hand
        and not hasattr(cls, "__post_init__")
        and all(f.init for f in dataclasses.fields(cls))
        and all(getattr(f, "_field_type", None) is not _INITVAR for f in declared.values())
        and all("__slots__" not in vars(k) for k in cls.__mro__[:-1])
        and (params.frozen or getattr(cls, "__setattr__", None) is object.__setattr__)
    )


def _forgettable(decode: Decoder) -> Decoder:
    """A personal field's decoder: :data:`~conduit.personal.FORGOTTEN` stays itself."""

    def decode_personal(raw: Any) -> Any:
        return FORGOTTEN if raw is FORGOTTEN else decode(raw)

    return decode_personal


def _model_decoder(cls: type) -> Decoder:
    def decode(raw: Any) -> Any:
        try:
            return cls.model_validate(raw)  # type: ignore[attr-defined]
        except validation_error() as exc:
            first = exc.errors()[0]  # type: ignore[attr-defined]
            raise Mismatch(first["msg"], tuple(first["loc"])) from None

    return decode


def decoder_for(annotation: Any) -> Decoder:
    """The decoder of one annotation."""
    if annotation is Any or annotation is object:
        return _identity
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return decoder_for(args[0])
    if isinstance(annotation, typing.NewType):
        return decoder_for(annotation.__supertype__)
    if origin is typing.Literal:
        allowed = args
        return lambda raw: _literal(raw, allowed)
    if origin is typing.Union or origin is types.UnionType:
        return _union(
            [decoder_for(arg) for arg in args if arg is not type(None)], type(None) in args
        )
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = decoder_for(args[0])
            return lambda raw: tuple(_items(raw, item))
        if args == ((),):
            args = ()
        return _fixed_tuple([decoder_for(arg) for arg in args]) if args else _tuple_any
    if origin in (list, Sequence, typing.List):  # noqa: UP006
        item = decoder_for(args[0]) if args else _identity
        return lambda raw: _items(raw, item)
    if origin in (set, AbstractSet):
        item = decoder_for(args[0]) if args else _identity
        return lambda raw: set(_items(raw, item))
    if origin is frozenset:
        item = decoder_for(args[0]) if args else _identity
        return lambda raw: frozenset(_items(raw, item))
    if origin in (dict, Mapping):
        key = _KEYS.get(args[0]) if args else _identity
        if key is None:
            key = _enum_key(args[0]) if _is_enum(args[0]) else None
        if key is None:
            raise TypeError(f"{annotation!r}: dict keys must be str, int, UUID, dates or enums")
        value = decoder_for(args[1]) if args else _identity
        return lambda raw: _mapping(raw, key, value)
    if annotation in (list, tuple, set, frozenset, dict):
        return decoder_for(annotation[Any] if annotation is not tuple else tuple[Any, ...])
    if _is_enum(annotation):
        return _enum(annotation)
    if isinstance(annotation, type) and (
        dataclasses.is_dataclass(annotation) or is_model_class(annotation)
    ):
        return class_decoder(annotation)
    raise TypeError(f"{annotation!r} is not a type typed events support")


def _kind(raw: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(raw), type(raw).__name__
    )


def _identity(raw: Any) -> Any:
    return raw


def _str(raw: Any) -> str:
    if type(raw) is str:
        return raw
    raise Mismatch(f"expected a string, got {_kind(raw)}")


def _int(raw: Any) -> int:
    if type(raw) is int:
        return raw
    raise Mismatch(f"expected an integer, got {_kind(raw)}")


def _float(raw: Any) -> float:
    t = type(raw)
    if t is float:
        return raw  # type: ignore[no-any-return]
    if t is int:
        return float(raw)
    raise Mismatch(f"expected a number, got {_kind(raw)}")


def _bool(raw: Any) -> bool:
    if type(raw) is bool:
        return raw
    raise Mismatch(f"expected true or false, got {_kind(raw)}")


def _none(raw: Any) -> None:
    if raw is not None:
        raise Mismatch(f"expected null, got {_kind(raw)}")


def _parsed(parse: Callable[[str], Any], what: str) -> Decoder:
    def decode(raw: Any) -> Any:
        if type(raw) is not str:
            raise Mismatch(f"expected {what} as text, got {_kind(raw)}")
        try:
            return parse(raw)
        except (ValueError, InvalidOperation):
            raise Mismatch(f"{raw!r} is not {what}") from None

    return decode


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError("naive")
    return value


def _date(text: str) -> date:
    if len(text) != 10:
        raise ValueError("not a date")
    return date.fromisoformat(text)


_SIMPLE: dict[Any, Decoder] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    None: _none,
    type(None): _none,
    datetime: _parsed(_aware, "an aware datetime"),
    date: _parsed(_date, "a date"),
    time: _parsed(time.fromisoformat, "a time"),
    uuid.UUID: _parsed(uuid.UUID, "a UUID"),
    Decimal: _parsed(Decimal, "a decimal"),
}

_KEYS: dict[Any, Decoder] = {
    str: _str,
    int: _parsed(int, "an integer"),
    uuid.UUID: _SIMPLE[uuid.UUID],
    Decimal: _SIMPLE[Decimal],
    date: _SIMPLE[date],
    datetime: _SIMPLE[datetime],
    time: _SIMPLE[time],
}


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _enum(cls: type[enum.Enum]) -> Decoder:
    def decode(raw: Any) -> Any:
        try:
            return cls(raw)
        except ValueError:
            raise Mismatch(f"{raw!r} is not a {cls.__name__}") from None

    return decode


def _enum_key(cls: type[enum.Enum]) -> Decoder:
    by_text = {str(member.value): member for member in cls}

    def decode(raw: Any) -> Any:
        try:
            return by_text[raw]
        except KeyError:
            raise Mismatch(f"{raw!r} is not a {cls.__name__}") from None

    return decode


def _literal(raw: Any, allowed: tuple[Any, ...]) -> Any:
    for option in allowed:
        if raw == option and type(raw) is type(option):
            return option
    raise Mismatch(f"{raw!r} is not one of {allowed!r}")


def _union(options: list[Decoder], nullable: bool) -> Decoder:
    def decode(raw: Any) -> Any:
        if raw is None and nullable:
            return None
        failure: Mismatch | None = None
        for option in options:
            try:
                return option(raw)
            except Mismatch as exc:
                failure = failure or exc
        raise failure or Mismatch(f"expected null, got {_kind(raw)}")

    return decode


def _items(raw: Any, item: Decoder) -> list[Any]:
    if type(raw) is not list:
        raise Mismatch(f"expected an array, got {_kind(raw)}")
    index = 0
    try:
        result = []
        for index in range(len(raw)):
            result.append(item(raw[index]))
        return result
    except Mismatch as exc:
        raise exc.inside(index) from None


def _tuple_any(raw: Any) -> tuple[Any, ...]:
    return tuple(_items(raw, _identity))


def _fixed_tuple(items: list[Decoder]) -> Decoder:
    def decode(raw: Any) -> tuple[Any, ...]:
        if type(raw) is not list or len(raw) != len(items):
            raise Mismatch(f"expected an array of {len(items)} items, got {_kind(raw)}")
        index = 0
        try:
            result = []
            for index in range(len(items)):
                result.append(items[index](raw[index]))
            return tuple(result)
        except Mismatch as exc:
            raise exc.inside(index) from None

    return decode


def _mapping(raw: Any, key: Decoder, value: Decoder) -> dict[Any, Any]:
    if type(raw) is not dict:
        raise Mismatch(f"expected an object, got {_kind(raw)}")
    name = ""
    try:
        result = {}
        for name, item in raw.items():
            result[key(name)] = value(item)
        return result
    except Mismatch as exc:
        raise exc.inside(name) from None
