"""The ``conduit`` application: top-level options, error reporting, its commands.

Each command (or group of commands) lives in a module of its own and is
registered here. Errors Conduit raises on purpose (:class:`ConduitError`) are
reported as one line on stderr with exit status 1, without the passwords of
the URLs given on the command line; ``--debug`` shows the traceback instead.

The command modules import only what their options need: anything heavier
(SQLAlchemy, the web application, Rich's tables and progress bars) is
imported by the command that uses it, so that ``conduit push`` starts fast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from conduit.cli import (
    demo,
    events,
    init,
    lifecycle,
    migrate,
    personal,
    projections,
    relay,
    run,
    serve,
    streams,
    transfer,
)
from conduit.cli.context import Settings
from conduit.errors import ConduitError
from conduit.masking import hide_passwords

__all__ = ["app", "error_line", "main"]


_ARGS = "conduit.args"


class _ConduitGroup(TyperGroup):
    """Turns Conduit's errors into one line on stderr, unless ``--debug``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # every URL given, for hiding their passwords
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            with _driver_logs(debug):
                return super().invoke(ctx)
        except ConduitError as exc:
            if debug:
                raise
            message = error_line(exc, [ctx.params.get("store") or "", *ctx.meta.get(_ARGS, [])])
            typer.echo(f"{typer.style('Error:', fg='red', bold=True)} {message}", err=True)
            raise typer.Exit(1) from None


def error_line(exc: ConduitError, urls: list[str]) -> str:
    """An error as one line, without the passwords of ``urls`` (which may be any text)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return hide_passwords(message, urls)


@contextmanager
def _driver_logs(debug: bool) -> Iterator[None]:
    # The connection pool logs every failed attempt while it retries; the
    # error that ends the command already says what failed.
    pool = logging.getLogger("psycopg.pool")
    level = pool.level
    if not debug:
        pool.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool.setLevel(level)


app = typer.Typer(
    name="conduit",
    cls=_ConduitGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _options(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="CONDUIT_URL",
            metavar="URL",
            help="The store to work on: memory://, sqlite:///path/to/file.db or "
            "postgresql://user@host:port/database.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    """Conduit, an event store for Python, on the command line.

    Examples:

    conduit demo
    conduit init sqlite:///events.db
    CONDUIT_URL=sqlite:///events.db conduit init
    """
    ctx.obj = Settings(store_url=store, debug=debug)


app.command(name="init")(init.init)
app.command(name="demo")(demo.demo)
app.command(name="run")(run.run)
app.command(name="serve")(serve.serve)
for _group in (events, streams, transfer, personal, projections, migrate, relay, lifecycle):
    _group.register(app)


def main() -> None:
    """The console script's entry point."""
    app()
