"""``conduit serve``: the event browser and its JSON API, over HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated, Any

import typer

from conduit.async_store import AsyncEventStore
from conduit.cli.common import file_options
from conduit.cli.context import settings
from conduit.errors import ConfigurationError
from conduit.importing import require_extra
from conduit.masking import mask_password

__all__ = ["is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost``, 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            help="The address to listen on. Anything but a loopback address needs a token."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The port to listen on.")] = 8400,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CONDUIT_TOKEN",
            metavar="TOKEN",
            help="Require this token on every request (Authorization: Bearer TOKEN, or the "
            "login form). Prefer the CONDUIT_TOKEN variable: arguments show in ps.",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option("--read-only", help="Refuse every write and admin action (403)."),
    ] = False,
    public_url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="The URL browsers reach the server at, behind a reverse proxy "
            "(https://events.example.com); changes are accepted from this origin only. "
            "Repeat for several.",
            show_default=False,
        ),
    ] = None,
    trusted_proxy: Annotated[
        bool,
        typer.Option(
            "--trusted-proxy",
            help="Believe X-Forwarded-Host, X-Forwarded-Proto and X-Forwarded-For: only "
            "when nothing but the reverse proxy can reach the server.",
        ),
    ] = False,
    session_max_age: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="How long a login in the browser lasts (default: 43200, 12 hours).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the event browser and its JSON API (OpenAPI at /openapi.json).

    Binds 127.0.0.1 by default. On any other address it refuses to start
    without a token. The store is opened as an AsyncEventStore: every request
    awaits it, in one event loop.

    Examples:

    CONDUIT_URL=sqlite:///events.db conduit serve
    CONDUIT_TOKEN=$(openssl rand -hex 24) conduit --store sqlite:///events.db serve --host 0.0.0.0
    conduit --store postgresql://app@db/app serve --read-only --port 8080
    conduit serve --trusted-proxy --public-url https://events.example.com
    """
    require_extra("web", "conduit serve")
    from conduit.web.sessions import DEFAULT_MAX_AGE

    url = settings(ctx).store_url
    if not url:
        raise typer.BadParameter(
            "no store URL: use --store URL or set CONDUIT_URL", param_hint="--store"
        )
    if token is not None and not token.strip():
        raise ConfigurationError("the token is empty: give a long random one, or none")
    if not is_loopback(host) and token is None:
        raise ConfigurationError(
            f"refusing to serve on {host} without a token: anyone who reaches it could read "
            "and write every event. Set CONDUIT_TOKEN (or --token), or serve on 127.0.0.1"
        )
    options = {
        "token": token,
        "read_only": read_only,
        "public_url": public_url or None,
        "trusted_proxy": trusted_proxy,
        "session_max_age": session_max_age or DEFAULT_MAX_AGE,
    }
    asyncio.run(_serve(url, host, port, options))


async def _serve(url: str, host: str, port: int, options: dict[str, Any]) -> None:
    """Open the store, serve it until interrupted, close it: all in one event loop (an
    async connection pool belongs to the loop it was opened in)."""
    from rich.console import Console

    from conduit.web import create_app, server

    read_only: bool = options["read_only"]
    opened = AsyncEventStore(url, **file_options(url, create=False, read_only=read_only))
    async with opened as store:
        await store.head_position()  # fail now, with one line, if the store cannot be read
        app = create_app(store, **options)
        console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
        shown = f"[{host}]" if ":" in host else host
        mode = " (read-only)" if read_only else ""
        console.print(
            f"Serving {mask_password(url)}{mode} on http://{shown}:{port}/ ; Ctrl-C stops."
        )
        if options["token"] is not None:
            console.print("Requests need the token: Authorization: Bearer …, or log in.")
        await server.serve(app, host=host, port=port)
