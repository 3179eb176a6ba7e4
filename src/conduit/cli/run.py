"""``conduit run``: a worker process that drives projections until stopped."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer

from conduit.cli.common import file_options
from conduit.cli.context import settings
from conduit.masking import mask_password
from conduit.store import EventStore
from conduit.subscriptions.drivers import MAX_POLL_INTERVAL, POLL_INTERVAL
from conduit.subscriptions.worker import WorkerFailed, load_projections, run_worker

__all__ = ["run"]


def run(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="The projections to run: a projection, a list of them, or a function "
            "returning them, importable as module:attribute.",
        ),
    ],
    poll_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between looks for events pushed by other processes, while "
            "there are some; each look that finds none doubles it, up to --max-poll-interval.",
            min=0.001,
        ),
    ] = POLL_INTERVAL,
    max_poll_interval: Annotated[
        float,
        typer.Option(
            help="The longest wait between two looks once the log is quiet (pushes "
            "through NOTIFY, on PostgreSQL with notify=true, wake the worker at once).",
            min=0.001,
        ),
    ] = MAX_POLL_INTERVAL,
    lease_ttl: Annotated[
        float,
        typer.Option(
            help="Seconds after which another worker may take over from a dead one "
            "(SQLite; on PostgreSQL takeover is immediate)."
        ),
    ] = 10.0,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Events read (and committed, for SQL read models) at a time "
            "[default: the projection's batch_size, else 100]."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="Read the events from a relay's JetStream stream (nats://host:4222/STREAM) "
            "instead of the store, which then only keeps leases and parked events "
            "[default store: in memory].",
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            help="Split each projection into N partitions by a stable hash of the stream "
            "id: up to N workers drive it at once, sharing the partitions among those "
            "alive (order is kept per stream). A projection whose checkpoints were kept "
            "for another N is refused until rebuilt with --partitions N.",
            min=1,
            max=1024,
        ),
    ] = None,
) -> None:
    """Run projections in this process until SIGTERM or Ctrl-C, resuming from their checkpoints.

    Several workers may run the same projections, on several machines: exactly
    one drives each projection at a time, and another takes over when it dies.
    A projection that cannot go on (an unexpected error in its driver) stops
    the worker with exit status 1, naming it, for its supervisor to restart.

    Examples:

    conduit --store sqlite:///events.db run myapp.read_models:projections
    CONDUIT_URL=postgresql://app@db/app conduit run myapp.read_models:people
    conduit run myapp.read_models:people --partitions 4   # on up to 4 machines

    conduit run myapp.read_models:people --from nats://127.0.0.1:4222/ORDERS
    """
    url = settings(ctx).store_url
    if source is not None:
        _run_from_broker(target, source, url, batch_size=batch_size, lease_ttl=lease_ttl)
        return
    if not url:
        raise typer.BadParameter(
            "no store URL: use --store URL or set CONDUIT_URL", param_hint="--store"
        )
    from rich.console import Console

    sys.path.insert(0, "")  # like python -m: the current directory's modules
    projections = load_projections(target)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console = Console(stderr=True, highlight=False, markup=False)
    names = ", ".join(str(getattr(p, "name", p)) for p in projections)
    console.print(f"Running {names} on {mask_password(url)}; Ctrl-C or SIGTERM stops.")
    store = EventStore(url, **file_options(url, create=False))
    extra: dict[str, Any] = {} if partitions is None else {"partitions": partitions}
    try:
        run_worker(
            store,
            projections,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            lease_ttl=lease_ttl,
            batch_size=batch_size,
            **extra,
        )
    except WorkerFailed as failed:
        for name, error in failed.failures:
            console.print(f"Projection {name} stopped: {error}")
        console.print("Stopped: the worker cannot go on (exit status 1).")
        raise typer.Exit(1) from None
    console.print("Stopped.")


def _run_from_broker(
    target: str, source: str, url: str | None, *, batch_size: int | None, lease_ttl: float
) -> None:
    """``conduit run --from``: each projection driven by :func:`conduit.relay.consume`."""
    import asyncio
    import signal

    from rich.console import Console

    from conduit.async_store import AsyncEventStore
    from conduit.relay.consume import consume

    sys.path.insert(0, "")
    projections = load_projections(target)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console = Console(stderr=True, highlight=False, markup=False)
    names = ", ".join(str(getattr(p, "name", p)) for p in projections)
    console.print(f"Running {names} from {mask_password(source)}; Ctrl-C or SIGTERM stops.")

    async def main() -> None:
        book = AsyncEventStore(url or "memory://", **file_options(url or "", create=False))
        async with book:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await asyncio.gather(
                *(
                    consume(
                        projection,
                        source,
                        book=book,
                        batch_size=batch_size,
                        lease_ttl=lease_ttl,
                        stop=stop,
                    )
                    for projection in projections
                )
            )

    asyncio.run(main())
    console.print("Stopped.")
