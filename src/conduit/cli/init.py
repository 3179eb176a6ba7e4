"""``conduit init``: create a store's schema, or migrate it."""

from __future__ import annotations

from typing import Annotated

import typer

from conduit.cli.common import console as make_console
from conduit.cli.context import settings
from conduit.masking import mask_password
from conduit.store import EventStore

__all__ = ["init"]


def init(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Argument(
            metavar="URL",
            help="The store: sqlite:///path/to/file.db or postgresql://user@host:port/database. "
            "Default: --store, or the CONDUIT_URL environment variable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a store's schema, or migrate it to this release; safe to repeat.

    Examples:

    conduit init sqlite:///events.db
    conduit --store postgresql://app@db.example.com/app init
    CONDUIT_URL=postgresql://app@db.example.com/app conduit init
    """
    url = url or settings(ctx).store_url
    if not url:
        raise typer.BadParameter(
            "no store URL: give one (conduit init sqlite:///events.db), "
            "or use --store, or set CONDUIT_URL",
            param_hint="URL",
        )
    with EventStore(url) as store:
        store.setup()
        engine = store.backend.scheme
        has_events = store.head_position() > 0
    console = make_console()
    console.print(f"Set up the {engine} store at {mask_password(url)}: its schema is up to date.")
    if engine == "memory":
        console.print("Note: a memory:// store keeps nothing once the command ends.")
    elif has_events:
        console.print("It already holds events.")
    else:
        console.print("It holds no events yet.")
