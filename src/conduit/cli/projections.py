"""``conduit projections`` (status, ``rebuild``), ``conduit parked`` (list, ``retry``, ``drop``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conduit.cli.common import console, json_line, open_store, short_time, table
from conduit.errors import ConfigurationError, InvalidArgument, ProjectionError
from conduit.events import SubscriptionState
from conduit.importing import needs_extra
from conduit.store import EventStore
from conduit.subscriptions.worker import load_projections

if TYPE_CHECKING:
    from rich.table import Table

    from conduit.projections import SQLProjection

__all__ = [
    "LAG_COUNT_LIMIT",
    "Lag",
    "lag_table",
    "parked_app",
    "projections_app",
    "register",
    "store_lags",
]

LAG_COUNT_LIMIT = 100_000
"""How many events ``projections --app`` counts behind a SQL read model, at most."""

projections_app = typer.Typer(
    name="projections",
    no_args_is_help=False,
)
parked_app = typer.Typer(
    name="parked",
    no_args_is_help=False,
)

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="Your projections, as `conduit run` takes them: a projection, a list of them, "
        "or a function returning them.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line instead of a table.")
]


def register(app: typer.Typer) -> None:
    """Add the ``projections`` and ``parked`` groups to the ``conduit`` application."""
    app.add_typer(projections_app)
    app.add_typer(parked_app)


# -- projections -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lag:
    """Where one projection stands; ``behind`` is at least ``LAG_COUNT_LIMIT`` when capped."""

    name: str
    checkpoint: int
    head: int
    behind: int
    parked: int
    where: str
    capped: bool = False
    partition: str | None = None
    """``index/count`` for one partition of a partitioned projection."""
    state: SubscriptionState | None = None
    """What its driver last said it was doing (relays), kept in the store."""

    def record(self) -> dict[str, Any]:
        """As a JSON object."""
        return {
            "name": self.name,
            "partition": self.partition,
            "checkpoint": self.checkpoint,
            "head": self.head,
            "behind": self.behind,
            "behind_capped": self.capped,
            "parked": self.parked,
            "checkpoint_in": self.where,
            "state": None if self.state is None else self.state.record(),
        }


def store_lags(store: EventStore) -> list[Lag]:
    """Every subscription whose checkpoint is in the store, from ``subscription_status()``."""
    parked = _parked_counts(store)
    return [
        Lag(
            s.name,
            s.checkpoint,
            s.head,
            s.behind,
            parked.get(s.name, 0),
            "store",
            s.capped,
            s.partition,
            s.state,
        )
        for s in store.subscription_status()
    ]


def lag_table(lags: list[Lag]) -> Table:
    """Projections as a table: checkpoint, head, how many events behind, parked events."""
    result = table("Projections")
    result.add_column("name", no_wrap=True)
    partitioned = any(lag.partition for lag in lags)
    if partitioned:
        result.add_column("partition", no_wrap=True)
    result.add_column("checkpoint", justify="right", no_wrap=True)
    result.add_column("head", justify="right", no_wrap=True)
    result.add_column("behind", justify="right", no_wrap=True)
    result.add_column("parked", justify="right", no_wrap=True)
    result.add_column("checkpoint in", no_wrap=True)
    stated = any(lag.state for lag in lags)
    if stated:
        result.add_column("state")
    for lag in lags:
        behind = f"{lag.behind:,}" + ("+" if lag.capped else "")
        cells = [str(lag.checkpoint), str(lag.head), behind, str(lag.parked), lag.where]
        if partitioned:
            cells.insert(0, lag.partition or "")
        if stated:
            cells.append(_state_text(lag.state))
        result.add_row(lag.name, *cells)
    return result


def _state_text(state: SubscriptionState | None) -> str:
    if state is None:
        return ""
    since = short_time(state.updated_at.astimezone(UTC))
    detail = f": {state.detail}" if state.detail else ""
    return f"{state.state} since {since}{detail}"


@projections_app.callback(invoke_without_command=True)
def projections(ctx: typer.Context, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Show each projection's checkpoint and how many events it is behind the log's head.

    Lists the subscriptions whose checkpoints are in the store. SQL read
    models keep theirs in their own database and copy it into the store at
    most once a second; name them with --app to read it from the read model
    itself (their lag is then counted up to 100,000 events).

    Examples:

    conduit projections
    conduit projections --app myapp.read_models:projections --json
    conduit projections rebuild people --app myapp.read_models:projections
    """
    if ctx.invoked_subcommand is not None:
        return
    with open_store(ctx) as store:
        lags = store_lags(store)
        if app is not None:
            # SQLAlchemy only here (the extra is named if it is missing)
            from conduit.projections import SQLProjection

            parked = _parked_counts(store)
            partitioned = {lag.name for lag in lags if lag.partition}
            exact = {
                projection.name: _read_model_lag(store, projection, parked)
                for projection in _load(app)
                if isinstance(projection, SQLProjection) and projection.name not in partitioned
            }
            # A partitioned read model's partitions: as the store's copies show them.
            lags = [lag if lag.partition else exact.pop(lag.name, lag) for lag in lags] + list(
                exact.values()
            )
    if as_json:
        for lag in lags:
            typer.echo(json_line(lag.record()))
    elif lags:
        console().print(lag_table(lags))
    else:
        console(stderr=True).print(
            "No projections have recorded a checkpoint in this store"
            + (" or in their read models." if app else ".")
        )


@projections_app.command(name="rebuild")
def rebuild_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The projection's name.")],
    app: Annotated[
        str,
        typer.Option(
            "--app",
            metavar="MODULE:ATTRIBUTE",
            help="Your projections, as `conduit run` takes them.",
            show_default=False,
        ),
    ],
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Events applied per transaction (default: the projection's batch_size).",
            show_default=False,
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            max=1024,
            help="The number of partitions the projection runs with from now on "
            "(`conduit run --partitions N`): the rebuild leaves one checkpoint per partition.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rebuild a SQL read model from the first event; readers never see it half built.

    The events are applied to fresh tables beside the live ones, which keep
    serving; once caught up, the fresh content replaces the live one in one
    transaction. Only SQL read models (conduit.projections.SQLProjection) can be
    rebuilt.

    Examples:

    conduit projections rebuild people --app myapp.read_models:projections
    conduit projections rebuild people --app myapp.read_models:projections --partitions 4
    """
    with needs_extra("conduit projections rebuild"):
        import sqlalchemy.exc

        from conduit.projections import SQLProjection, rebuild

    projection = _find(_load(app), name, app)
    if not isinstance(projection, SQLProjection):
        raise ProjectionError(
            f"projection {name!r} is a {type(projection).__name__}, not a SQL read model "
            "(conduit.projections.SQLProjection): only SQL read models can be rebuilt"
        )
    with open_store(ctx) as store:
        try:
            count = rebuild(store, projection, batch_size=batch_size, partitions=partitions)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise ProjectionError(f"rebuilding {name!r} failed: {exc}") from exc
    console().print(f"Rebuilt {name} from {count:,} events.")


def _load(spec: str) -> list[Any]:
    if "" not in sys.path:
        sys.path.insert(0, "")  # like python -m and `conduit run`: the current directory
    return load_projections(spec)


def _find(projections: list[Any], name: str, spec: str) -> Any:
    for projection in projections:
        if projection.name == name:
            return projection
    names = ", ".join(sorted(str(p.name) for p in projections)) or "none"
    raise ConfigurationError(f"{spec} has no projection named {name!r} (it has: {names})")


def _read_model_lag(store: EventStore, projection: SQLProjection, parked: dict[str, int]) -> Lag:
    import sqlalchemy.exc

    try:
        checkpoint = projection.load_checkpoint()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise ProjectionError(
            f"cannot read the checkpoint of {projection.name!r} in its read model: "
            f"{' '.join(str(exc).split())[:200]}"
        ) from exc
    head = store.head_position()
    # No count in the public API for an arbitrary position: count, up to a limit.
    behind = sum(1 for _ in store.read_all(after=checkpoint, limit=LAG_COUNT_LIMIT))
    return Lag(
        projection.name,
        checkpoint,
        head,
        behind,
        parked.get(projection.name, 0),
        "read model",
        capped=behind >= LAG_COUNT_LIMIT,
    )


def _parked_counts(store: EventStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    for parked in store.parked():
        counts[parked.subscription] = counts.get(parked.subscription, 0) + 1
    return counts


# -- parked ------------------------------------------------------------------


@parked_app.callback(invoke_without_command=True)
def parked(
    ctx: typer.Context,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription",
            metavar="NAME",
            help="Only this subscription's parked events.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the events subscriptions gave up on, with their errors, oldest first.

    A parked event stays until a retry succeeds (`conduit parked retry`) or it
    is dropped (`conduit parked drop`). --json includes the tracebacks.

    Examples:

    conduit parked
    conduit parked --subscription people --json
    conduit parked retry 7
    """
    if ctx.invoked_subcommand is not None:
        return
    with open_store(ctx) as store:
        found = list(store.parked(subscription))
    if as_json:
        for item in found:
            typer.echo(
                json_line(
                    {
                        "id": item.id,
                        "subscription": item.subscription,
                        "event_id": str(item.event_id),
                        "position": item.position,
                        "attempts": item.attempts,
                        "parked_at": item.parked_at.isoformat(),
                        "retry_requested": item.retry_requested,
                        "error": item.error,
                        "traceback": item.traceback,
                    }
                )
            )
        return
    if not found:
        console(stderr=True).print("No parked events.")
        return
    listing = table("Parked events", "Times are UTC.")
    listing.add_column("id", justify="right", no_wrap=True)
    listing.add_column("subscription", no_wrap=True)
    listing.add_column("position", justify="right", no_wrap=True)
    listing.add_column("event_id", no_wrap=True)
    listing.add_column("attempts", justify="right", no_wrap=True)
    listing.add_column("parked_at", min_width=12)
    listing.add_column("retry", no_wrap=True)
    listing.add_column("error", overflow="fold")
    for item in found:
        listing.add_row(
            str(item.id),
            item.subscription,
            str(item.position),
            str(item.event_id),
            str(item.attempts),
            short_time(item.parked_at),
            "requested" if item.retry_requested else "",
            item.error,
        )
    console().print(listing)


@parked_app.command(name="retry")
def retry(
    ctx: typer.Context,
    parked_id: Annotated[
        int | None,
        typer.Argument(metavar="ID", help="The parked event's id, as `conduit parked` shows."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Retry every parked event.")] = False,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription",
            metavar="NAME",
            help="With --all: only this subscription's parked events.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Ask for parked events to be tried again by their subscription's driver.

    The driver (`conduit run`, or the application's own) applies the event
    again; it leaves the parked list once its handler succeeds.

    Examples:

    conduit parked retry 7
    conduit parked retry --all --subscription people
    """
    if (parked_id is None) == (not every):
        raise typer.BadParameter("give either a parked event's ID or --all", param_hint="ID")
    if parked_id is not None and subscription is not None:
        raise typer.BadParameter("--subscription goes with --all", param_hint="--subscription")
    with open_store(ctx) as store:
        count = store.retry_parked(parked_id, subscription=subscription)
    if parked_id is not None and count == 0:
        raise InvalidArgument(f"no parked event with id {parked_id} (conduit parked lists them)")
    console().print(
        f"{count} parked event{'s' if count != 1 else ''} marked for retry"
        + ("; their subscriptions' drivers will try them again." if count else ".")
    )


@parked_app.command(name="drop")
def drop(
    ctx: typer.Context,
    parked_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="The parked event's id, as `conduit parked` shows."),
    ],
) -> None:
    """Forget a parked event for good: its subscription will never apply it.

    Examples:

    conduit parked drop 7
    """
    with open_store(ctx) as store:
        dropped = store.drop_parked(parked_id)
    if not dropped:
        raise InvalidArgument(f"no parked event with id {parked_id} (conduit parked lists them)")
    console().print(f"Dropped parked event {parked_id}.")
