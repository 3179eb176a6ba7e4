"""The ``conduit`` command: a thin client of the public API, one module per command group.

It needs the ``cli`` extra (Typer and Rich): without it, the ``conduit``
script says what to install instead of failing with a traceback. Importing
this package is cheap; :data:`app` is loaded on first use.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from conduit.errors import MissingDependency
from conduit.importing import require_extra

if TYPE_CHECKING:
    from conduit.cli.application import app

__all__ = ["app", "main"]


def main() -> None:
    """The console script's entry point."""
    try:
        application = _application()
    except MissingDependency as exc:
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(1) from None
    application.main()


def __getattr__(name: str) -> Any:
    if name == "app":
        return _application().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _application() -> ModuleType:
    require_extra("cli", "the conduit command")
    return importlib.import_module("conduit.cli.application")
