"""What a typed value is (a dataclass or a pydantic model), and :class:`Mismatch`."""

from __future__ import annotations

import dataclasses
import sys

__all__ = ["Mismatch", "base_model", "is_model_class", "is_typed", "validation_error"]


def base_model() -> type | None:
    """pydantic's ``BaseModel``, once the application has imported pydantic.

    pydantic is optional, and importing it costs a tenth of a second: Conduit
    never imports it. An application with pydantic models has imported it (its
    models are made of it), so a value can only be a model when it is loaded.
    """
    module = sys.modules.get("pydantic")
    found: type | None = getattr(module, "BaseModel", None) if module is not None else None
    return found


def validation_error() -> type[Exception]:
    module = sys.modules.get("pydantic")
    found: type[Exception] = getattr(module, "ValidationError", ValueError)
    return found


class Mismatch(Exception):
    """A JSON value does not fit its annotation; ``path`` names where."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def inside(self, segment: str | int) -> Mismatch:
        """The same mismatch, one level further out."""
        return Mismatch(self.reason, (segment, *self.path))

    @property
    def field(self) -> str:
        """The path as text: ``address.zip``, ``tags[2]``."""
        text = ""
        for segment in self.path:
            if isinstance(segment, int):
                text += f"[{segment}]"
            else:
                text += f".{segment}" if text else segment
        return text


def is_model_class(cls: object) -> bool:
    """Whether ``cls`` is a pydantic model class."""
    base = base_model()
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def is_typed(value: object) -> bool:
    """Whether ``value`` is a typed event: a dataclass or pydantic model instance."""
    t = type(value)
    if t is dict or t is tuple or t is str or isinstance(value, type):
        return False
    return dataclasses.is_dataclass(value) or (
        (base := base_model()) is not None and isinstance(value, base)
    )
