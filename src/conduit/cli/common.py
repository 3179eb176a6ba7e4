"""What the store commands share: opening the store, parsing input, printing events.

Events print the same way everywhere: a table for people, or one JSON object
per line (``--json``) for programs, in the form ``conduit export`` writes and
``conduit import`` reads (:func:`event_record`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import typer

from conduit.cli.context import settings
from conduit.events import Event, StreamId
from conduit.store import EventStore

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "complete_stream",
    "console",
    "event_line",
    "event_record",
    "events_table",
    "json_line",
    "open_store",
    "parse_object",
    "parse_time",
    "progress_bar",
    "say",
    "short_time",
    "store_url",
    "stream_arg",
    "table",
]


def store_url(ctx: typer.Context) -> str:
    """The URL given with ``--store`` or ``CONDUIT_URL``; a usage error when there is none."""
    url = settings(ctx).store_url
    if not url:
        raise typer.BadParameter(
            "no store URL: use --store URL (before the command) or set CONDUIT_URL",
            param_hint="--store",
        )
    return url


@contextmanager
def open_store(
    ctx: typer.Context, *, create: bool = False, read_only: bool = False, sealed: bool = False
) -> Iterator[EventStore]:
    """The store named by ``--store`` or ``CONDUIT_URL``, closed at the end of the block.

    A SQLite file that does not exist is an error unless ``create`` (a mistyped
    path must not make an empty store); ``read_only`` opens it for reading only;
    ``sealed``: reads give personal values encrypted, as stored (exports).
    """
    url = store_url(ctx)
    options = file_options(url, create=create, read_only=read_only)
    with EventStore(url, reveal_personal_data=not sealed, **options) as store:
        yield store


def file_options(url: str, *, create: bool, read_only: bool = False) -> dict[str, Any]:
    """The SQLite options a command opens its store with (other engines take none);
    what the URL itself says (``?create=…``, ``?read_only=…``) wins."""
    if not url.lower().startswith("sqlite:"):
        return {}
    query = url.partition("?")[2]
    given = {part.partition("=")[0] for part in query.split("&") if part}
    options = {"create": create, "read_only": read_only}
    return {key: value for key, value in options.items() if key not in given}


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as given: no markup, emoji codes or guessed highlights.

    For tables; a line of plain text goes out faster with :func:`say`.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=True)


def say(text: str, *, stderr: bool = False) -> None:
    """Print one line of plain text, as given."""
    typer.echo(text, err=stderr)


def stream_arg(text: str) -> StreamId:
    """A stream id typed on the command line.

    A UUID in its canonical form (lowercase, with hyphens, as ``conduit.new_id()``
    prints it) names a UUID stream; anything else is a string stream id. A
    stream is known by its text, so this only matters for a stream's first event.
    """
    try:
        value = uuid.UUID(text)
    except ValueError:
        return text
    return value if str(value) == text else text


def parse_object(text: str, *, param_hint: str) -> dict[str, Any]:
    """A JSON object given on the command line; a usage error otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=param_hint) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f'a JSON object is needed (such as \'{{"first_name": "Kris"}}\'), '
            f"not {type(value).__name__}",
            param_hint=param_hint,
        )
    return value


def parse_time(text: str, *, param_hint: str) -> datetime:
    """An ISO 8601 time with its offset (``2024-05-01T12:00:00+00:00`` or ``…Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time such as 2024-05-01T12:00:00+00:00",
            param_hint=param_hint,
        ) from None
    if moment.utcoffset() is None:
        raise typer.BadParameter(
            f"{text!r} has no timezone, so it is ambiguous: add its offset, "
            "such as 2024-05-01T12:00:00+02:00 or 2024-05-01T10:00:00Z",
            param_hint=param_hint,
        )
    return moment


def event_record(event: Event) -> dict[str, Any]:
    """An event as a JSON object: what ``--json``, ``export`` and ``import`` share."""
    return {
        "id": str(event.id),
        "stream_id": str(event.stream_id),
        "stream_id_is_uuid": isinstance(event.stream_id, uuid.UUID),
        "version": event.version,
        "position": event.position,
        "name": event.name,
        "recorded_at": event.recorded_at.isoformat(),
        "data": event.data,
        "metadata": event.metadata,
        "tags": sorted(event.tags),
    }


def json_line(value: object) -> str:
    """One line of JSON, without its newline; text stays readable (not \\u-escaped)."""
    return orjson.dumps(value).decode()


def event_line(event: Event) -> str:
    """An event as one line of JSON, without its newline."""
    return json_line(event_record(event))


def short_time(moment: datetime) -> str:
    """A UTC time to the millisecond, for tables."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(title: str | None = None, caption: str | None = None) -> Table:
    """A compact table, the same look in every command."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def events_table(events: Iterable[Event], title: str | None = None) -> Table:
    """Events as a table: version, position, name, time, data, metadata and tags."""
    rows = list(events)
    result = table(title, "Times are UTC.")
    result.add_column("version", justify="right", no_wrap=True)
    result.add_column("position", justify="right", no_wrap=True)
    result.add_column("name", no_wrap=True)
    result.add_column("recorded_at", min_width=12)
    result.add_column("data", overflow="fold")
    with_metadata = any(event.metadata for event in rows)
    if with_metadata:
        result.add_column("metadata", overflow="fold")
    with_tags = any(event.tags for event in rows)
    if with_tags:
        result.add_column("tags", overflow="fold")
    for event in rows:
        cells = [
            str(event.version),
            str(event.position),
            event.name,
            short_time(event.recorded_at),
            json_line(event.data),
        ]
        if with_metadata:
            cells.append(json_line(event.metadata))
        if with_tags:
            cells.append(" ".join(sorted(event.tags)))
        result.add_row(*cells)
    return result


def complete_stream(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a STREAM argument: the store's stream ids that start so.

    Completion must never fail loudly: with no store, or a store that cannot be
    opened, it offers nothing.
    """
    root = ctx.find_root()
    url = root.params.get("store") or os.environ.get("CONDUIT_URL")
    if not url:
        return []
    try:
        with EventStore(url, **file_options(url, create=False)) as store:
            return [str(info.stream_id) for info in store.streams(prefix=incomplete, limit=50)]
    except Exception:
        return []


@contextmanager
def progress_bar(
    label: str, total: int | None, wanted: bool | None, *, every: int = 1
) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields ``advance(completed, events)``.

    ``wanted`` None shows it only on a terminal. The bar is redrawn when
    ``events`` is a multiple of ``every`` (callers that advance per event
    pass a larger one), and once more at the end.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    show = err.is_terminal if wanted is None else wanted
    with Progress(
        TextColumn(label),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=err,
        disable=not show,
    ) as bar:
        size = total if total is not None and total > 0 else None
        task = bar.add_task(label, total=size, events=0)
        state = {"completed": 0, "events": 0}

        def advance(completed: int, events: int) -> None:
            state["completed"], state["events"] = completed, events
            if events % every == 0:
                bar.update(task, completed=completed, events=events)

        try:
            yield advance
        finally:
            bar.update(task, completed=state["completed"], events=state["events"])
