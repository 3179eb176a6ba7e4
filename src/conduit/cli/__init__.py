"""The ``conduit`` command: a thin client of the public API, one module per command group."""

from conduit.cli.app import app, main

__all__ = ["app", "main"]
