"""What every command shares: the top-level options."""

from __future__ import annotations

from dataclasses import dataclass

import typer

__all__ = ["Settings", "settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The options given before the command: ``conduit --store URL --debug …``."""

    store_url: str | None = None
    debug: bool = False


def settings(ctx: typer.Context) -> Settings:
    """The top-level options of this invocation."""
    found = ctx.find_object(Settings)
    return found if found is not None else Settings()
