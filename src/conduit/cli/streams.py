"""``conduit streams`` and ``conduit stats``: what a store holds."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from conduit.cli.common import console, json_line, open_store, store_url, table
from conduit.cli.projections import Lag, lag_table, store_lags
from conduit.store import EventStore

__all__ = ["register", "stats", "streams"]

PAGE = 100


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``conduit`` application."""
    app.command(name="streams")(streams)
    app.command(name="stats")(stats)


def streams(
    ctx: typer.Context,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix", metavar="TEXT", help="Only streams whose id starts with this text."
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="STREAM",
            help="Start after this stream id: the next page of a listing.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="At most N streams (a page).")
    ] = PAGE,
    every: Annotated[
        bool, typer.Option("--all", help="Every stream, however many (ignores --limit).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
) -> None:
    """List streams and their versions, ordered by id, a page at a time.

    When there are more streams than --limit, the command says how to get the
    next page (--after the last id shown).

    Examples:

    conduit streams
    conduit streams --prefix person- --limit 20
    conduit streams --after person-0042 --json
    """
    with open_store(ctx) as store:
        found = list(store.streams(prefix=prefix, after=after, limit=None if every else limit + 1))
    more = not every and len(found) > limit
    if more:
        found = found[:limit]
    if as_json:
        for info in found:
            record = {
                "stream_id": str(info.stream_id),
                "stream_id_is_uuid": isinstance(info.stream_id, uuid.UUID),
                "version": info.version,
            }
            typer.echo(json_line(record))
    elif found:
        listing = table()
        listing.add_column("stream_id", overflow="fold")
        listing.add_column("version", justify="right", no_wrap=True)
        for info in found:
            listing.add_row(str(info.stream_id), str(info.version))
        console().print(listing)
    else:
        console(stderr=True).print(
            "No streams" + (f" starting with {prefix!r}." if prefix else ".")
        )
    if more:
        following = [f"--after {found[-1].stream_id}"]
        if prefix:
            following.insert(0, f"--prefix {prefix}")
        console(stderr=True).print(f"More streams: conduit streams {' '.join(following)}")


def stats(
    ctx: typer.Context,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Skip counting streams and events (an aggregate over every stream); show "
            "only the head position, the size and the projections.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Show a store's events, streams, size, head position and projections' lag.

    Events and streams are counted from the table of streams, in one query
    (an event count is the sum of the streams' versions): the time grows with
    the number of streams, not of events. --fast skips them. The size is
    the SQLite file's, with its write-ahead log; PostgreSQL's is not shown.

    Examples:

    conduit stats
    conduit --store postgresql://app@db/app stats --fast --json
    """
    url = store_url(ctx)
    with open_store(ctx) as store:
        lags = store_lags(store)
        report = _stats(store, url, count=not fast, lags=lags)
    if as_json:
        typer.echo(json_line(report))
        return
    summary = table("Store")
    summary.add_column("", no_wrap=True)
    summary.add_column("", justify="right", no_wrap=True)
    summary.show_header = False
    summary.add_row("engine", str(report["engine"]))
    for key in ("events", "streams"):
        value = report[key]
        summary.add_row(key, "not counted (--fast)" if value is None else f"{value:,}")
    size = report["size_bytes"]
    summary.add_row("size", "not measured" if size is None else _bytes(size))
    summary.add_row("head position", str(report["head_position"]))
    out = console()
    out.print(summary)
    if lags:
        out.print(lag_table(lags))
    else:
        out.print("No projections have recorded a checkpoint in this store.")


def _stats(store: EventStore, url: str, *, count: bool, lags: list[Lag]) -> dict[str, Any]:
    head = store.head_position()
    events = streams = None
    if count:
        # versions run 1, 2, 3… and events are never removed: their sum counts them
        streams, events = store.backend.stream_totals()
    return {
        "engine": store.backend.scheme,
        "events": events,
        "streams": streams,
        "size_bytes": _sqlite_size(url),
        "head_position": head,
        "projections": [lag.record() for lag in lags],
    }


def _sqlite_size(url: str) -> int | None:
    """The bytes of a SQLite store's file and its write-ahead log; None for other engines."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite":
        return None
    path = Path(rest.partition("?")[0][1:])
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists())


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
