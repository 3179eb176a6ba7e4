"""``conduit demo``: the story of people registered, renamed and retired, on SQLite."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conduit.importing import needs_extra

if TYPE_CHECKING:
    from rich.table import Table

    from conduit.demo import PersonRow
    from conduit.events import Event

__all__ = ["demo"]


def demo(
    path: Annotated[
        Path | None,
        typer.Option(
            "--path",
            metavar="FILE",
            dir_okay=False,
            help="The SQLite event file to create (it must not exist); the read model "
            "goes next to it. Default: a new temporary directory.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run Conduit's story end to end on an embedded SQLite file.

    People are registered, renamed and retired; a projection keeps a `people`
    table up to date in a second SQLite file through SQLAlchemy. At the end the
    demo prints one person's event stream and the projected table, and where
    both files are. It always uses SQLite files of its own: --store is ignored.

    Examples:

    conduit demo
    conduit demo --path ./demo/events.db
    """
    with needs_extra("conduit demo"):
        from conduit import demo as story  # SQLAlchemy: loaded for this command only
    from rich.console import Console

    if path is None:
        path = Path(tempfile.mkdtemp(prefix="conduit-demo-")) / "conduit-demo.db"
    result = story.run(path)

    console = Console(highlight=False, markup=False, emoji=False)
    console.rule("Conduit demo")
    console.print("What happened, in the order it was recorded:")
    for number, line in enumerate(result.story, 1):
        console.print(f"  {number}. {line}")
    console.print()
    console.print(_stream_table(result.featured.name, result.stream))
    console.print()
    console.print(_people_table(result.people))
    console.print()
    console.print(
        f"{result.event_count} events in the event store: {result.event_file}", soft_wrap=True
    )
    console.print(f"The people table (read model): {result.read_model_file}", soft_wrap=True)
    console.print(
        f"Look inside: sqlite3 {result.read_model_file} 'SELECT * FROM people'", soft_wrap=True
    )


def _stream_table(name: str, events: list[Event]) -> Table:
    stream_id = events[0].stream_id if events else ""
    table = _table(f"The event stream of {name} ({stream_id})")
    table.add_column("version", justify="right", no_wrap=True, min_width=7)
    table.add_column("name", no_wrap=True)
    table.add_column("recorded_at", min_width=12)
    table.add_column("data")
    for event in events:
        table.add_row(
            str(event.version),
            event.name,
            _time(event.recorded_at),
            json.dumps(event.data, ensure_ascii=False),
        )
    return table


def _people_table(people: list[PersonRow]) -> Table:
    table = _table("The people table (read model)")
    table.add_column("id", overflow="fold", min_width=18)
    for column in ("first_name", "last_name", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("updated_at", min_width=12)
    table.add_column("version", justify="right", no_wrap=True, min_width=7)
    for person in people:
        table.add_row(
            person.id,
            person.first_name,
            person.last_name,
            person.status,
            _time(person.updated_at),
            str(person.version),
        )
    return table


def _table(title: str) -> Table:
    from rich import box
    from rich.table import Table

    # Compact, so that both tables fit an 80-column terminal.
    return Table(
        title=title,
        title_justify="left",
        caption="Times are UTC.",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
