"""``conduit relay``: publish the store's global log to a broker until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from conduit.async_store import AsyncEventStore
from conduit.cli.common import file_options, store_url
from conduit.masking import mask_password
from conduit.relay.messages import DEFAULT_SUBJECT

__all__ = ["register", "relay"]


def register(app: typer.Typer) -> None:
    """Add ``conduit relay`` to the application."""
    app.command(name="relay")(relay)


def relay(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The broker stream: nats://host:4222/STREAM (several servers: "
            "nats://host:4222,host:4223/STREAM; ?replicas=3 when the relay creates it), "
            "redis://host:6379/0?stream=KEY or rabbitmq-stream://user:password@host:5552/STREAM.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="The relay's name: its checkpoint and lease (one relay of a name is active, "
            "the others stand by) [default: relay-SCHEME-STREAM]."
        ),
    ] = None,
    subject: Annotated[
        str,
        typer.Option(
            help="The subject (routing key) of each event: {stream_id}, {category} "
            "(the stream id before its first '-') and {name} are replaced."
        ),
    ] = DEFAULT_SUBJECT,
    names: Annotated[
        list[str] | None,
        typer.Option("--names", help="Relay only events of this name (repeatable)."),
    ] = None,
    stream_prefix: Annotated[
        str | None, typer.Option(help="Relay only events of streams whose id starts so.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Events read and published at a time.", min=1)
    ] = 500,
    lease_ttl: Annotated[
        float,
        typer.Option(
            help="Seconds after which a standing-by relay takes over from a dead one "
            "(SQLite; on PostgreSQL takeover is immediate)."
        ),
    ] = 10.0,
    once: Annotated[
        bool, typer.Option("--once", help="Relay what the store holds now, then exit.")
    ] = False,
) -> None:
    """Relay the global log to NATS JetStream, Redis Streams or RabbitMQ Streams, each event
    once and in order, until SIGTERM or Ctrl-C.

    The relay resumes after the last event the broker holds; its checkpoint (its
    lag in `conduit projections`) follows what the broker acknowledged. When the
    broker is away it retries, backing off, and catches up when it is back.

    Examples:

    conduit --store postgresql://app@db/app relay --to nats://127.0.0.1:4222/ORDERS

    conduit relay --to 'redis://127.0.0.1:6379/0?stream=orders' --names order_placed
    """
    url = store_url(ctx)
    relay_name = name or _default_name(to)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    typer.echo(
        f"Relaying {mask_password(url)} to {mask_password(to)} as {relay_name!r}; "
        "Ctrl-C or SIGTERM stops.",
        err=True,
    )
    relayed = asyncio.run(
        _relay(
            url,
            to,
            name=relay_name,
            subject=subject,
            names=names or None,
            stream_prefix=stream_prefix,
            batch_size=batch_size,
            lease_ttl=lease_ttl,
            once=once,
        )
    )
    typer.echo(f"Stopped: relayed up to position {relayed}.", err=True)


def _default_name(to: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(to)
    stream = parts.path.strip("/") if parts.scheme != "redis" else ""
    stream = stream or parse_qs(parts.query).get("stream", ["CONDUIT"])[-1]
    return f"relay-{parts.scheme}-{stream}"


async def _relay(url: str, to: str, *, name: str, once: bool, **options: object) -> int:
    from conduit.relay import Relay

    async with AsyncEventStore(url, **file_options(url, create=False)) as store:
        relay = Relay(store, to, name=name, **options)  # type: ignore[arg-type]
        if once:
            return await relay.run()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, relay.stop)
        await relay.run_forever()
        return relay.relayed or 0
