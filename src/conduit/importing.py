"""Importing what Conduit does not import itself.

The application's objects, by ``module:attribute`` (as workers and commands
take them), and the packages of Conduit's optional parts (the extras of
``pip install 'conduit-eventstore[…]'``), with an error that names the extra
to install when one is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conduit.errors import ConfigurationError, MissingDependency

__all__ = ["EXTRAS", "import_attribute", "needs_extra", "require_extra"]

EXTRAS = {
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "sqlalchemy": "sql",
    "starlette": "web",
    "uvicorn": "web",
    "jinja2": "web",
    "typer": "cli",
    "rich": "cli",
    "nats": "nats",
    "redis": "redis",
    "rstream": "rabbitmq",
    "cryptography": "personal",
}
"""Which extra installs each optional package Conduit imports (pyproject.toml lists them)."""


@contextmanager
def needs_extra(feature: str) -> Iterator[None]:
    """Translate a missing optional package, imported in the block, into :class:`MissingDependency`.

    ``feature`` names what needs it ("PostgreSQL stores"), for the message.
    Other import errors (a module of the application, a bug) pass unchanged.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        extra = EXTRAS.get(module)
        if extra is None:
            raise
        raise MissingDependency(feature, module, extra) from exc


def require_extra(extra: str, feature: str) -> None:
    """Import every package of ``extra``, so that a missing one is named up front.

    A package may fail later, and less clearly, when one it uses is missing
    (Starlette's templates without Jinja2).

    Raises:
        MissingDependency: the first package of the extra that is missing.
    """
    with needs_extra(feature):
        for module, provider in EXTRAS.items():
            if provider == extra:
                importlib.import_module(module)


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
