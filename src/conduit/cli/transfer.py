"""``conduit export``, ``import`` and ``copy``: move events between files and stores.

All three keep what makes a store the same store: event ids, stream ids (and
whether each is a UUID), versions, names, data, metadata, recorded times and
the order of the global log. Positions are the target's own.

Writing relies on idempotency (docs/design.md §3.5): a batch whose event ids are
already recorded in its stream returns the recorded events and adds nothing.
So importing a file twice adds nothing, and a copy that was interrupted can
simply run again; it also starts where the target's copy of the log ends.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer

from conduit.cli.appending import Appender, Item, resume_position
from conduit.cli.common import (
    console,
    event_line,
    file_options,
    json_line,
    open_store,
    progress_bar,
)
from conduit.cli.personal import key_line, parse_key
from conduit.errors import InvalidArgument
from conduit.events import Event
from conduit.masking import mask_password
from conduit.personal import SubjectKey
from conduit.store import EventStore

__all__ = ["copy", "export", "import_", "register"]

REDRAW_EVERY = 200
"""Events between two redraws of a progress bar (these commands advance it per event)."""

BatchOption = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        max=10_000,
        help="Events of one stream appended per transaction, at most.",
    ),
]
ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show a progress bar on stderr (default: when stderr is a terminal).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``conduit`` application."""
    app.command(name="export")(export)
    app.command(name="import")(import_)
    app.command(name="copy")(copy)


# -- export --------------------------------------------------------------------


def export(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="Where to write the JSON lines; - (the default) is stdout.",
        ),
    ] = "-",
    after: Annotated[
        int,
        typer.Option(
            "--after",
            min=0,
            metavar="POSITION",
            help="Only the events after this position of the global log.",
        ),
    ] = 0,
    progress: ProgressOption = None,
    with_keys: Annotated[
        bool,
        typer.Option(
            "--with-keys",
            help="Also write the subjects' keys, which decrypt their personal data: "
            "whoever holds the file can read it. Without it, personal values stay "
            "encrypted, and only forgotten subjects' tombstones are written.",
        ),
    ] = False,
) -> None:
    """Write every event, in global-log order, as JSON lines: one event per line.

    Each line holds the event's id, stream_id, stream_id_is_uuid, version,
    position, name, recorded_at (ISO 8601, UTC), data, metadata and tags; `conduit
    import` reads it back. A FILE appears only once complete. Personal values
    are written encrypted, as stored; first come lines of subjects' keys
    (with --with-keys) and tombstones of forgotten subjects.

    Examples:

    conduit export events.jsonl
    conduit export --after 1200 | gzip > newer-events.jsonl.gz
    conduit export --with-keys backup.jsonl
    """
    with open_store(ctx, sealed=True) as store:
        total = max(store.head_position() - after, 0)
        count = 0
        with (
            _output(file) as out,
            progress_bar("Exporting", total, progress, every=REDRAW_EVERY) as advance,
        ):
            for key in store.subject_keys():
                if with_keys or key.key is None:
                    out.write(json_line(key_line(key)))
                    out.write("\n")
            for event in store.read_all(after=after):
                out.write(event_line(event))
                out.write("\n")
                count += 1
                advance(event.position - after, count)
    where = "stdout" if file == "-" else file
    console(stderr=True).print(f"Exported {count:,} events to {where}.")


@contextmanager
def _output(file: str) -> Iterator[IO[str]]:
    if file == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(file)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


# -- import --------------------------------------------------------------------


def import_(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="JSON lines as `conduit export` writes them; - reads stdin.",
        ),
    ],
    batch_size: BatchOption = 500,
    progress: ProgressOption = None,
) -> None:
    """Append the events of a JSON lines file, in its order, keeping ids, versions and times.

    Importing is idempotent: events whose ids are already in the store are
    skipped, so importing a file twice adds nothing, and an import that was
    cut short can run again. A stream already holding other events at those
    versions is refused (a wrong expected version).

    Examples:

    conduit --store postgresql://app@db/app import events.jsonl
    gunzip -c newer-events.jsonl.gz | conduit import -
    """
    with open_store(ctx, create=True) as store, _input(file) as (lines, size):
        appender = Appender(store, batch_size, store.head_position())
        name = "stdin" if file == "-" else file
        done = 0
        with (
            _interruptible(appender, "import"),
            progress_bar("Importing", size, progress, every=REDRAW_EVERY) as advance,
        ):
            for number, line in enumerate(lines, 1):
                done += len(line)
                if line.startswith(b'{"subject_key"'):
                    store.add_subject_keys([_parse_key(line, f"{name} line {number}")])
                elif line.strip():
                    try:
                        item = _parse(line, f"{name} line {number}")
                    except InvalidArgument:
                        appender.flush()  # so that every line before the bad one is in
                        raise
                    appender.add(item)
                    advance(done, number)
            appender.flush()
    console().print(
        f"Imported {name}: {appender.added:,} new events, "
        f"{appender.present:,} already in the store."
    )


@contextmanager
def _input(file: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
    if file == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            yield iter(stream), None
        else:
            yield (line.encode() for line in sys.stdin), None
        return
    path = Path(file)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {file}: {exc.strerror}", field="FILE") from None
    with handle:
        yield iter(handle), path.stat().st_size


_REQUIRED = ("id", "stream_id", "version", "name", "recorded_at", "data")


def _parse_key(line: bytes, where: str) -> SubjectKey:
    try:
        return parse_key(orjson.loads(line))
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument(f"{where}: not a subject's key ({exc})") from None


def _parse(line: bytes, where: str) -> Item:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InvalidArgument(f"{where}: an event is a JSON object")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise InvalidArgument(f"{where}: missing {', '.join(missing)}")
    stream_id = record["stream_id"]
    version = record["version"]
    if not isinstance(stream_id, str):
        raise InvalidArgument(f"{where}: stream_id is text")
    if type(version) is not int or version < 1:
        raise InvalidArgument(f"{where}: version is an integer of 1 or more")
    if record.get("stream_id_is_uuid", False) is True:
        try:
            stream_id = uuid.UUID(stream_id)
        except ValueError:
            raise InvalidArgument(f"{where}: stream_id is not a UUID") from None
    try:
        recorded_at = datetime.fromisoformat(str(record["recorded_at"]))
    except ValueError:
        raise InvalidArgument(f"{where}: recorded_at is not an ISO 8601 time") from None
    if recorded_at.utcoffset() is None:
        raise InvalidArgument(f"{where}: recorded_at has no timezone")
    event = {
        "id": record["id"],
        "name": record["name"],
        "data": record["data"],
        "metadata": record.get("metadata") or {},
        "recorded_at": recorded_at,
        "tags": record.get("tags") or [],
    }
    return Item(where, stream_id, version, event)


# -- copy ----------------------------------------------------------------------


def copy(
    source_url: Annotated[
        str, typer.Argument(metavar="SOURCE_URL", help="The store to copy from.")
    ],
    target_url: Annotated[
        str,
        typer.Argument(
            metavar="TARGET_URL",
            help="The store to copy to; its schema must exist (`conduit init TARGET_URL`).",
        ),
    ],
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=0,
            metavar="N",
            help="Copy at most N events, then stop; run the command again to go on.",
            show_default=False,
        ),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start",
            help="Go over the whole source log, skipping events already in the target, "
            "instead of resuming where the target's copy ends.",
        ),
    ] = False,
    batch_size: BatchOption = 500,
    progress: ProgressOption = None,
) -> None:
    """Copy every event of one store into another, such as SQLite into PostgreSQL.

    Event ids, versions, names, data, metadata, recorded times and the order
    of the global log are kept. An interrupted copy resumes where the target's
    copy of the log ends; events already copied are never appended twice.
    Subjects' keys (and forgotten subjects' tombstones) are copied first, and
    personal values stay encrypted on the way. Subscriptions' checkpoints and
    parked events are not copied: positions differ between stores, so rebuild
    projections on the target.

    Examples:

    conduit init postgresql://app@db/app
    conduit copy sqlite:///events.db postgresql://app@db/app
    """
    read = 0
    with (
        EventStore(
            source_url, reveal_personal_data=False, **file_options(source_url, create=False)
        ) as source,
        EventStore(
            target_url, reveal_personal_data=False, **file_options(target_url, create=True)
        ) as target,
    ):
        keys: list[SubjectKey] = []
        for key in source.subject_keys():
            keys.append(key)
            if len(keys) == batch_size:
                target.add_subject_keys(keys)
                keys = []
        target.add_subject_keys(keys)
        start = 0 if from_start else resume_position(source, target)
        total = max(source.head_position() - start, 0)
        appender = Appender(target, batch_size, target.head_position())
        last = start
        with (
            _interruptible(appender, "copy"),
            progress_bar("Copying", total, progress, every=REDRAW_EVERY) as advance,
        ):
            for event in source.read_all(after=start, limit=limit):
                appender.add(_from_event(event))
                read += 1
                last = event.position
                advance(event.position - start, read)
            appender.flush()
    out = console()
    if start:
        out.print(f"Resumed after source position {start}, where the target's copy ended.")
    already = f", {appender.present:,} were already there" if appender.present else ""
    out.print(
        f"Copied {appender.added:,} events from {mask_password(source_url)} to "
        f"{mask_password(target_url)}{already}."
    )
    if limit is not None and read >= limit:
        out.print(f"Stopped at --limit {limit} (source position {last}); run it again to go on.")


def _from_event(event: Event) -> Item:
    pending = {
        "id": event.id,
        "name": event.name,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
        "tags": event.tags,
    }
    return Item(f"source position {event.position}", event.stream_id, event.version, pending)


# -- progress ------------------------------------------------------------------


@contextmanager
def _interruptible(appender: Appender, what: str) -> Iterator[None]:
    """Ctrl-C stops cleanly: say what was done and that running again goes on."""
    try:
        yield
    except KeyboardInterrupt:
        console(stderr=True).print(
            f"Interrupted: {appender.added:,} events appended. Run the same {what} "
            "again to go on; nothing is appended twice."
        )
        raise typer.Exit(130) from None
