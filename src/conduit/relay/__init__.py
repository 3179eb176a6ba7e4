"""Relays: the global log handed to a broker, each event exactly once and in order.

A relay publishes every event of a store's global log to NATS JetStream,
RabbitMQ Streams or Redis Streams, so that services elsewhere (in any
language) receive them without reaching the store; :func:`consume` is the
other side, a projection driven from a JetStream consumer. See docs/relay.md.

    relay = Relay(store, target("nats://127.0.0.1:4222/ORDERS"), name="orders")
    await relay.run_forever()

Each target needs its extra: ``nats``, ``redis`` or ``rabbitmq``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from conduit.errors import ConfigurationError
from conduit.relay.base import BrokerError, LeaseLost, Target
from conduit.relay.messages import DEFAULT_SUBJECT, Message, SubjectTemplate, decode_event
from conduit.relay.pipeline import Relay

__all__ = [
    "DEFAULT_SUBJECT",
    "BrokerError",
    "LeaseLost",
    "Message",
    "Relay",
    "SubjectTemplate",
    "Target",
    "decode_event",
    "target",
]

SCHEMES = ("nats", "redis", "rabbitmq-stream")
"""The URL schemes of :func:`target`."""


def target(
    url: str, *, subject: str = DEFAULT_SUBJECT, source: str = "conduit", window: int | None = None
) -> Target:
    """The broker stream a URL names.

    - ``nats://host:port[,host:port...][/STREAM][?replicas=N]``: a JetStream
      stream (default ``CONDUIT``), created with the subjects of ``subject``
      when missing;
    - ``redis://host:port[/db]?stream=KEY``: a Redis stream;
    - ``rabbitmq-stream://user:password@host:5552/STREAM[?vhost=/]``: a
      RabbitMQ stream (the ``rabbitmq_stream`` plugin), created when missing.

    ``source`` names the relay in the brokers' dedup keys (NATS message ids,
    the RabbitMQ producer's name); ``window`` is how many batches await their
    acknowledgement at once.

    Raises:
        ConfigurationError: an unknown scheme or a malformed URL.
        MissingDependency: the target's extra is not installed.
    """
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, Any] = {} if window is None else {"window": window}
    if parts.scheme == "nats":
        from conduit.relay.nats import NatsTarget

        hosts = parts.netloc.rpartition("@")[2].split(",")
        auth = parts.netloc.rpartition("@")[0]
        servers = [f"nats://{auth + '@' if auth else ''}{host}" for host in hosts if host]
        if not servers:
            raise ConfigurationError(f"{url!r}: no NATS server")
        stream = unquote(parts.path.strip("/")) or "CONDUIT"
        return NatsTarget(
            servers,
            stream=stream,
            subjects=[SubjectTemplate(subject).wildcard],
            source=source,
            replicas=int(query.get("replicas", "1")),
            **options,
        )
    if parts.scheme == "redis":
        from conduit.relay.redis import RedisTarget

        key = query.get("stream")
        if not key:
            raise ConfigurationError(f"{url!r}: name the Redis stream, ?stream=KEY")
        base = parts._replace(query="").geturl()
        return RedisTarget(base, key=key, **options)
    if parts.scheme == "rabbitmq-stream":
        from conduit.relay.rabbitmq import RabbitStreamTarget

        stream = unquote(parts.path.strip("/"))
        if not stream:
            raise ConfigurationError(f"{url!r}: name the RabbitMQ stream, …/STREAM")
        return RabbitStreamTarget(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5552,
            username=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=query.get("vhost", "/"),
            stream=stream,
            producer=source,
            **options,
        )
    raise ConfigurationError(
        f"{url!r}: a relay target is one of {', '.join(s + '://' for s in SCHEMES)}"
    )
