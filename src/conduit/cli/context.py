"""What every command shares: the top-level options, and URLs safe to print."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import typer

__all__ = ["Settings", "safe_url", "settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The options given before the command: ``conduit --store URL --debug …``."""

    store_url: str | None = None
    debug: bool = False


def settings(ctx: typer.Context) -> Settings:
    """The top-level options of this invocation."""
    found = ctx.find_object(Settings)
    return found if found is not None else Settings()


def safe_url(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``, for printing."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
