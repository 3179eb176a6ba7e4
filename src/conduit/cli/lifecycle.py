"""``conduit delete-stream``, ``conduit truncate``, ``conduit limit`` and ``conduit scavenge``.

Thin wrappers over :meth:`conduit.EventStore.delete_stream`,
:meth:`~conduit.EventStore.truncate_stream`,
:meth:`~conduit.EventStore.set_stream_metadata` and
:meth:`~conduit.EventStore.scavenge`. Each change is recorded in the store's
``conduit.audit`` stream, with the OS user as who did it (or ``--by``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from conduit.cli.common import open_store, progress_bar, say, stream_arg
from conduit.core.lifecycle import DEFAULT_SCAVENGE_BATCH
from conduit.lifecycle import SCAVENGE_CHECKPOINT, ScavengeBatch

__all__ = ["delete_stream", "limit", "register", "scavenge", "truncate"]

By = Annotated[
    str | None,
    typer.Option("--by", metavar="NAME", help="Who asks, for the audit event (default: you)."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``conduit`` application."""
    app.command(name="delete-stream")(delete_stream)
    app.command(name="truncate")(truncate)
    app.command(name="limit")(limit)
    app.command(name="scavenge")(scavenge)


def delete_stream(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(metavar="STREAM", help="The stream's id.")],
    hard: Annotated[
        bool,
        typer.Option("--hard", help="Remove its events now and make its id a tombstone, for ever."),
    ] = False,
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version", metavar="N", min=0, help="Only if the stream is at version N."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation of a hard delete.")
    ] = False,
    by: By = None,
) -> None:
    """Delete a stream: soft (hidden until its next push) or --hard (gone for good).

    A soft-deleted stream reads as empty; its events stay in the global log
    until `conduit scavenge`. A push to it later continues at its next
    version. A hard delete removes its events at once; every later push to it
    fails.

    Examples:

    conduit delete-stream order-17
    conduit delete-stream person-42 --hard --expected-version 5 --yes
    """
    if hard and not yes:
        typer.confirm(f"Remove every event of {stream!r} for good?", abort=True)
    with open_store(ctx) as store:
        event = store.delete_stream(
            stream_arg(stream), expected_version=expected_version, hard=hard, by=by
        )
    how = "hard-deleted (a tombstone)" if hard else "deleted (soft)"
    say(f"{stream} {how} at version {event.data['version']}; recorded at {event.position}.")


def truncate(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(metavar="STREAM", help="The stream's id.")],
    before: Annotated[
        int,
        typer.Option(
            "--before", metavar="VERSION", min=1, help="Remove the versions below this one."
        ),
    ],
    by: By = None,
) -> None:
    """Remove a stream's events below a version, at once (a snapshot stands in for them).

    Examples:

    conduit truncate account-9 --before 1000
    """
    with open_store(ctx) as store:
        event = store.truncate_stream(stream_arg(stream), before, by=by)
    say(f"{stream}: versions below {before} removed; recorded at {event.position}.")


def limit(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(metavar="STREAM", help="The stream's id.")],
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age",
            metavar="SECONDS",
            min=0.000001,
            help="Hide, then scavenge, events older than this.",
        ),
    ] = None,
    max_count: Annotated[
        int | None,
        typer.Option(
            "--max-count", metavar="N", min=1, help="Keep only the stream's N last events."
        ),
    ] = None,
    by: By = None,
) -> None:
    """Set a stream's limits (what is not given is lifted); `conduit scavenge` removes
    what they hide.

    Examples:

    conduit limit telemetry-7 --max-age 86400
    conduit limit cart-3 --max-count 100
    conduit limit cart-3
    """
    age = None if max_age is None else timedelta(seconds=max_age)
    with open_store(ctx) as store:
        store.set_stream_metadata(stream_arg(stream), max_age=age, max_count=max_count, by=by)
    say(f"{stream}: max age {age or 'none'}, max count {max_count or 'none'}.")


def scavenge(
    ctx: typer.Context,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, max=100_000, help="Events examined per transaction."),
    ] = DEFAULT_SCAVENGE_BATCH,
    max_batches: Annotated[
        int | None,
        typer.Option(
            "--max-batches", metavar="N", min=1, help="Stop after N batches (resume later)."
        ),
    ] = None,
    pause: Annotated[
        float,
        typer.Option(
            "--pause", metavar="SECONDS", min=0, help="Wait between batches: room for writers."
        ),
    ] = 0.0,
    leave_to_writers: Annotated[
        float,
        typer.Option(
            "--leave-to-writers",
            metavar="SHARE",
            min=0,
            max=0.99,
            help="Leave writers this share of the time between batches (SQLite: 0.7).",
        ),
    ] = 0.0,
    retention: Annotated[
        float | None,
        typer.Option(
            "--retention",
            metavar="SECONDS",
            min=0.000001,
            help="Also remove every event older than this (the store-wide retention).",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    by: By = None,
) -> None:
    """Remove for good the events reads no longer return: soft-deleted, truncated, beyond
    a stream's limits or older than --retention.

    One pass over the global log in short transactions, safe while writers
    run. An interrupted pass (Ctrl-C, --max-batches) resumes where it stopped.

    Examples:

    conduit scavenge
    conduit scavenge --retention 2592000 --batch-size 5000 --pause 0.01
    conduit scavenge --leave-to-writers 0.7
    """
    from conduit.store import EventStore

    with open_store(ctx) as opened:
        store = opened
        if retention is not None:
            store = EventStore(opened.backend, retention=timedelta(seconds=retention))
        # The bar counts events (positions are not dense on PostgreSQL), from where
        # an interrupted pass stopped.
        start = store.backend.load_checkpoint(SCAVENGE_CHECKPOINT) or 0
        total = store.backend.count_after(start, names=None, wait=False)
        examined = [0]
        with progress_bar("Scavenging", total, progress) as advance:

            def track(batch: ScavengeBatch, _head: int) -> None:
                examined[0] += batch.examined
                advance(min(examined[0], total), examined[0])

            try:
                report = store.scavenge(
                    batch_size=batch_size,
                    max_batches=max_batches,
                    pause=pause,
                    leave_to_writers=leave_to_writers,
                    progress=track,
                    by=by,
                )
            except KeyboardInterrupt:
                say("Interrupted: the next scavenge resumes where this one stopped.", stderr=True)
                raise typer.Exit(130) from None
    state = "done" if report.finished else "stopped early (the next run resumes)"
    say(f"Scavenge {state}: {report.examined:,} events examined, {report.removed:,} removed.")
