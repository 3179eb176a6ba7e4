"""Finding the application's objects by ``module:attribute``, as workers and commands take them."""

from __future__ import annotations

import importlib
from typing import Any

from conduit.errors import ConfigurationError

__all__ = ["import_attribute"]


def import_attribute(spec: str, example: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted) and return the object.

    ``example`` is a valid spec, shown when ``spec`` is malformed.

    Raises:
        ConfigurationError: a malformed spec, a module that cannot be
            imported, or an attribute it does not have.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"{spec!r} is not module:attribute (e.g. {example})")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    return target
