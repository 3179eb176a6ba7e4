"""``conduit migrate-events``: rewrite stored events to today's schema versions, once.

A thin wrapper over :meth:`conduit.EventStore.migrate_events`: the upcasters
come from the application (``module:attribute``, as ``conduit run`` takes its
projections), the store from ``--store`` or ``CONDUIT_URL``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from conduit.cli.common import console, file_options, progress_bar, store_url, table
from conduit.errors import ConfigurationError, EventDecodeError
from conduit.importing import import_attribute
from conduit.masking import mask_password
from conduit.migration import MigrationReport, planned_start
from conduit.store import EventStore
from conduit.typed import TypeRegistry
from conduit.upcasting import Upcasters

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["load_types", "migrate_events", "register", "report_table"]


def register(app: typer.Typer) -> None:
    """Add ``migrate-events`` to the ``conduit`` application."""
    app.command(name="migrate-events")(migrate_events)


def migrate_events(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="Your upcasters, importable as module:attribute: a TypeRegistry, an "
            "Upcasters object, a list of typed event classes, or a function returning one.",
        ),
    ],
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            max=10_000,
            help="Events read, and rewritten at most, per transaction.",
        ),
    ] = 500,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only report what would change; write nothing."),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start at the beginning of the log, not where the last run stopped.",
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rewrite stored events that upcasters change to their current versions, in batches.

    Each event the upcasters would change on read is rewritten in place, as
    reading gives it: same id, stream, version, position and time; today's
    name, data and schema_version. Each batch is one transaction. An
    interrupted run (Ctrl-C, a failing upcaster) resumes where it stopped; a
    run after a complete one looks only at the events pushed since, unless
    the upcasters changed (then, or with --restart, it starts over).
    --dry-run writes nothing.

    Examples:

    conduit --store sqlite:///events.db migrate-events myapp.events:types --dry-run
    CONDUIT_URL=postgresql://app@db/app conduit migrate-events myapp.events:types
    """
    url = store_url(ctx)
    types = load_types(target)
    out = console()
    if not types.upcasters:
        out.print(f"{target} has no upcasters: nothing to do.")
        return
    with EventStore(url, types=types, **file_options(url, create=False)) as store:
        start = planned_start(store, restart=restart)
        head = store.head_position()
        seen: list[MigrationReport] = []
        try:
            with progress_bar("Migrating", head - start, progress) as advance:

                def track(report: MigrationReport) -> None:
                    seen[:] = [report]
                    advance(report.last_position - start, report.scanned)

                report = store.migrate_events(
                    batch_size=batch_size, dry_run=dry_run, restart=restart, progress=track
                )
        except KeyboardInterrupt:
            _stopped(seen, dry_run, "Interrupted")
            raise typer.Exit(130) from None
        except EventDecodeError:
            _stopped(seen, dry_run, "Stopped")
            raise
    if report.started_after:
        out.print(f"Resumed after position {report.started_after}, where the last run stopped.")
    if report.changes:
        out.print(report_table(report))
    where = mask_password(url)
    if dry_run:
        out.print(
            f"Dry run on {where}: {report.rewritten:,} of {report.scanned:,} events scanned "
            "would be rewritten; nothing was written."
        )
    elif report.rewritten:
        out.print(
            f"Rewrote {report.rewritten:,} of {report.scanned:,} events scanned in {where}, "
            f"in {report.batches:,} {'batch' if report.batches == 1 else 'batches'}."
        )
    else:
        out.print(
            f"Nothing to rewrite in {where}: the {report.scanned:,} events scanned are "
            "at their current versions."
        )


def report_table(report: MigrationReport) -> Table:
    """The changes of a migration as a table: stored name and version, new ones, count."""
    title = "Would rewrite (dry run)" if report.dry_run else "Rewritten"
    result = table(title)
    result.add_column("stored as", no_wrap=True)
    result.add_column("version", justify="right", no_wrap=True)
    result.add_column("now", no_wrap=True)
    result.add_column("version", justify="right", no_wrap=True)
    result.add_column("events", justify="right", no_wrap=True)
    for change in report.changes:
        result.add_row(
            change.name,
            str(change.version),
            change.new_name,
            str(change.new_version),
            f"{change.count:,}",
        )
    return result


def load_types(spec: str) -> TypeRegistry:
    """Import ``module:attribute`` as ``conduit run`` does, and make a registry of it.

    The attribute is a :class:`~conduit.TypeRegistry`, an
    :class:`~conduit.Upcasters`, a list (or tuple) of typed event classes, or
    a function returning one of these.

    Raises:
        ConfigurationError: the module or attribute cannot be found, or holds
            something else.
    """
    if "" not in sys.path:
        sys.path.insert(0, "")  # like python -m and `conduit run`: the current directory
    target = import_attribute(spec, "myapp.events:types")
    if callable(target) and not isinstance(target, type | TypeRegistry | Upcasters):
        target = target()  # a function making them
    if isinstance(target, TypeRegistry):
        return target
    if isinstance(target, Upcasters):
        return TypeRegistry(upcasters=target)
    if isinstance(target, list | tuple) and all(isinstance(cls, type) for cls in target):
        return TypeRegistry(target)
    raise ConfigurationError(
        f"{spec} is a {type(target).__name__}: give a TypeRegistry, an Upcasters object "
        "or a list of typed event classes"
    )


def _stopped(seen: list[MigrationReport], dry_run: bool, how: str) -> None:
    """Say what an unfinished run did, and that running again resumes."""
    done = seen[0] if seen else None
    err = console(stderr=True)
    if done is None:
        err.print(f"{how} before the first batch was done.")
    elif dry_run:
        err.print(f"{how}: {done.scanned:,} events scanned (dry run: nothing written).")
    else:
        err.print(
            f"{how}: {done.rewritten:,} events rewritten, up to position "
            f"{done.last_position}. Run the same command again to resume there."
        )
