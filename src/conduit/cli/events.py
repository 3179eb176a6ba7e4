"""``conduit push``, ``get``, ``read`` and ``tail``: write and read events."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Annotated

import typer

from conduit.cli.common import (
    complete_stream,
    console,
    event_line,
    events_table,
    json_line,
    open_store,
    parse_object,
    parse_time,
    say,
    short_time,
    stream_arg,
)
from conduit.events import Event

__all__ = ["get", "push", "read", "register", "tail"]

StreamArgument = Annotated[
    str,
    typer.Argument(
        metavar="STREAM",
        help="The stream id; a canonical UUID names a UUID stream.",
        autocompletion=complete_stream,
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line instead of a table.")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="Only events recorded at or after this ISO 8601 time, with its timezone "
        "(2024-05-01T12:00:00+00:00 or 2024-05-01T12:00:00Z).",
        show_default=False,
    ),
]
FromVersionOption = Annotated[
    int | None,
    typer.Option(
        "--from-version",
        min=1,
        metavar="VERSION",
        help="Start at this version (with --backwards: it and earlier ones).",
        show_default=False,
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=0, metavar="N", help="At most N events.", show_default=False),
]
BackwardsOption = Annotated[
    bool, typer.Option("--backwards", help="From the last event to the first.")
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``conduit`` application."""
    app.command(name="push")(push)
    app.command(name="get")(get)
    app.command(name="read")(read)
    app.command(name="tail")(tail)


def push(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The event's name, such as person_registered.")
    ],
    stream: StreamArgument,
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA|-",
            help="The event's data, a JSON object; - reads it from stdin. Default: {}.",
            show_default=False,
        ),
    ] = None,
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version",
            min=0,
            metavar="VERSION",
            help="Refuse unless the stream's last version is this one (0: a new stream).",
            show_default=False,
        ),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            metavar="JSON",
            help="The event's metadata, a JSON object (who, correlation, causation).",
            show_default=False,
        ),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="UUID",
            help="The event's id, so that pushing it again is harmless. Default: a new one.",
            show_default=False,
        ),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="TAG",
            help="A tag of the event, such as course:c1 (repeat for several).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the recorded event as a JSON object.")
    ] = False,
) -> None:
    """Push one event to the end of a stream and print what was recorded.

    Pushing again an event with the same --id to the same stream records
    nothing and prints the event already recorded.

    Examples:

    conduit push person_registered p-1 '{"first_name": "Kris"}' --expected-version 0
    conduit push student_enrolled c-1 '{}' --tag course:c1 --tag student:s7
    echo '{"last_name": "Jones"}' | conduit push person_renamed p-1 - --metadata '{"user": "admin"}'
    """
    text = sys.stdin.read() if data == "-" else ("{}" if data is None else data)
    payload = parse_object(text, param_hint="DATA")
    extra = None if metadata is None else parse_object(metadata, param_hint="--metadata")
    with open_store(ctx) as store:
        event = store.push(
            name,
            stream_arg(stream),
            payload,
            metadata=extra,
            expected_version=expected_version,
            event_id=event_id,
            tags=tags or None,
        )
    if as_json:
        typer.echo(event_line(event))
        return
    say(
        f"{event.name} recorded in stream {event.stream_id} at version {event.version} "
        f"(position {event.position}, id {event.id})."
    )


def get(ctx: typer.Context, stream: StreamArgument, as_json: JsonOption = False) -> None:
    """Print every event of a stream, in version order.

    The whole stream; `conduit read` takes options to read part of it.

    Examples:

    conduit get p-1
    conduit get p-1 --json | jq .data
    """
    with open_store(ctx) as store:
        _print_stream(stream, store.read(stream_arg(stream)), as_json)


def read(
    ctx: typer.Context,
    stream: StreamArgument,
    since: SinceOption = None,
    from_version: FromVersionOption = None,
    limit: LimitOption = None,
    backwards: BackwardsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Print a stream's events, or some of them: since a time, from a version, backwards.

    Examples:

    conduit read p-1 --since 2024-05-01T00:00:00Z
    conduit read p-1 --backwards --limit 1
    conduit read p-1 --from-version 3 --json
    """
    moment = None if since is None else parse_time(since, param_hint="--since")
    with open_store(ctx) as store:
        events = store.read(
            stream_arg(stream),
            since=moment,
            from_version=from_version,
            limit=limit,
            backwards=backwards,
        )
        _print_stream(stream, events, as_json)


def _print_stream(stream: str, events: Iterable[Event], as_json: bool) -> None:
    if as_json:
        for event in events:
            typer.echo(event_line(event))
        return
    found = list(events)
    if not found:
        say(f"No events in stream {stream} (as asked).", stderr=True)
        return
    console().print(events_table(found, f"Stream {stream}"))


def tail(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--names",
            metavar="NAME[,NAME…]",
            help="Only events with these names; repeat the option or separate with commas.",
            show_default=False,
        ),
    ] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Print the whole log first, then follow it.")
    ] = False,
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            min=0,
            metavar="POSITION",
            help="Start right after this position of the global log. Default: its head.",
            show_default=False,
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.01, help="Seconds between looks.")
    ] = 0.25,
    as_json: JsonOption = False,
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, hidden=True, help="Stop after N events.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, hidden=True, help="Stop after this many seconds."),
    ] = None,
) -> None:
    """Follow the global log: print events as they are recorded, until Ctrl-C.

    Starts at the log's head (only new events), right after --after POSITION,
    or at the first event with --from-start. Each line shows the event's
    position, time, stream, version, name and data.

    Examples:

    conduit tail
    conduit tail --names person_registered,person_retired
    conduit tail --from-start --json
    """
    wanted = None
    if names:
        wanted = [part.strip() for item in names for part in item.split(",") if part.strip()]
    if from_start and after is not None:
        raise typer.BadParameter("give --from-start or --after, not both", param_hint="--after")
    out = console()
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    with open_store(ctx) as store:
        if after is not None:
            position = after
        elif from_start:
            position = 0
        else:
            position = store.head_position()
        try:
            while True:
                for event in store.read_all(after=position, names=wanted):
                    position = event.position
                    if as_json:
                        typer.echo(event_line(event))
                    else:
                        out.print(_tail_line(event))
                    seen += 1
                    if max_events is not None and seen >= max_events:
                        return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                _wait(poll_interval)
        except KeyboardInterrupt:
            console(stderr=True).print(f"Stopped after position {position}.")


def _wait(seconds: float) -> None:
    """Sleep between two looks at the log (tests replace it)."""
    time.sleep(seconds)


def _tail_line(event: Event) -> str:
    return (
        f"{event.position}  {short_time(event.recorded_at)}  {event.stream_id} "
        f"v{event.version}  {event.name}  {json_line(event.data)}"
        + (f"  [{' '.join(sorted(event.tags))}]" if event.tags else "")
    )
