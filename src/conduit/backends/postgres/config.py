"""A PostgreSQL store's settings: parsed from its URL and options, checked, free of I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from conduit.backends.options import parse_flag
from conduit.backends.postgres.sql import channel
from conduit.errors import ConfigurationError
from conduit.masking import mask_password

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "PostgresConfig",
    "replica_conninfo",
    "replica_pool_options",
    "split_url",
]

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), channel names included."""

_OPTIONS: dict[str, Any] = {
    "schema": str,
    "pool_size": int,
    "statement_timeout": float,
    "lock_timeout": float,
    "read_your_writes_timeout": float,
    "pool_timeout": float,
    "replica_timeout": float,
    "notify": lambda text: parse_flag("notify", text),
    "group_commit": lambda text: parse_flag("group_commit", text),
}


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """Everything a PostgreSQL engine needs to know before it connects.

    Built by :meth:`of` from a URL (whose query string may carry Conduit's
    own options, ``?schema=app&pool_size=20``) and keyword options, which win.
    """

    conninfo: str
    replicas: tuple[str, ...] = ()
    """The connection URLs of the read replicas (hot standbys), in the order given."""
    schema: str = "conduit"
    pool_size: int = 10
    statement_timeout: float = 30.0
    lock_timeout: float = 10.0
    read_your_writes_timeout: float = 5.0
    pool_timeout: float = 10.0
    replica_timeout: float = 1.0
    notify: bool = False
    group_commit: bool = True

    @classmethod
    def of(cls, url: str, **given: Any) -> PostgresConfig:
        """The settings of ``url`` and the options given (``None`` means not given).

        Raises:
            ConfigurationError: a malformed value, or a name PostgreSQL would cut.
        """
        conninfo, from_url = split_url(url)
        named = list(from_url.pop("replicas", ()))
        extra = given.pop("replicas", None)
        if extra is not None:
            if isinstance(extra, str) or not all(isinstance(item, str) for item in extra):
                raise ConfigurationError("replicas: a list of URLs (or host:port) of replicas")
            named.extend(extra)
        replicas = tuple(replica_conninfo(conninfo, item) for item in named)
        chosen = {**from_url, **{k: v for k, v in given.items() if v is not None}}
        config = cls(conninfo, replicas, **chosen)
        config.check()
        return config

    def check(self) -> None:
        """Refuse settings that cannot work.

        Raises:
            ConfigurationError: naming the setting.
        """
        if type(self.pool_size) is not int or self.pool_size < 1:
            raise ConfigurationError("pool_size must be an integer of at least 1")
        for name in (
            "statement_timeout",
            "lock_timeout",
            "read_your_writes_timeout",
            "replica_timeout",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name} is a number of seconds (0 or more)")
        schema = self.schema
        if not isinstance(schema, str) or not schema or "\x00" in schema:
            raise ConfigurationError("schema: a non-empty name without NUL characters")
        if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
            raise ConfigurationError(
                f"schema: {schema!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes "
                "for a name (it would be cut short, and two stores could share one schema)"
            )
        name = channel(schema)
        if self.notify and len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise ConfigurationError(
                f"notify: the channel {name!r} of schema {schema!r} is longer than "
                f"PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes, so every append would fail; use a "
                f"schema name of at most {MAX_IDENTIFIER_BYTES - len('conduit.')} bytes, "
                "or notify=False"
            )

    def session_settings(self) -> str:
        """The statement every new connection runs first.

        ``jit = off``: every statement of the engine is a short indexed read or
        write; a generic plan's cost estimate (an unknown name's rows) can pass
        ``jit_above_cost`` and spend milliseconds compiling for a read of
        microseconds.
        """
        return (
            "SET default_transaction_isolation = 'read committed';"
            " SET TimeZone = 'UTC';"
            " SET jit = off;"
            f" SET statement_timeout = {int(self.statement_timeout * 1000)};"
            f" SET lock_timeout = {int(self.lock_timeout * 1000)}"
        )


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """Separate Conduit's options from the libpq connection URL.

    Raises:
        ConfigurationError: an option of Conduit's with a malformed value.
    """
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "replica":  # repeated: one per replica
            ours.setdefault("replicas", []).append(value)
        elif key in _OPTIONS:
            try:
                ours[key] = _OPTIONS[key](value)
            except ValueError:
                raise ConfigurationError(f"{key}={value!r} in the store URL is not valid") from None
        else:
            theirs.append((key, value))
    # quote, not urlencode's default quote_plus: libpq reads "+" as a plus sign,
    # so a space written "+" would reach the server as one ("-c+search_path").
    query = urlencode(theirs, quote_via=quote)
    return urlunsplit(("postgresql", parts.netloc, parts.path, query, "")), ours


def replica_pool_options(config: PostgresConfig, index: int) -> dict[str, Any]:
    """The options of a replica's connection pool (either face's): a read waits at most
    ``replica_timeout`` for one of its connections before it goes elsewhere."""
    connect_timeout = max(1, math.ceil(config.replica_timeout))
    return {
        "min_size": 1,
        "max_size": config.pool_size,
        "kwargs": {"autocommit": True, "connect_timeout": connect_timeout},
        "timeout": config.replica_timeout,
        "name": f"conduit-{config.schema}-replica{index + 1}",
    }


def replica_conninfo(primary: str, replica: str) -> str:
    """The connection URL of a replica named in a store's settings.

    ``replica`` is a whole URL (``postgresql://app@replica1/app``) or only its
    hosts (``replica1:5433``, or ``r1,r2`` for libpq to pick), which then take
    the primary URL's user, password, database and connection parameters, all
    but ``target_session_attrs`` (which would send a read-write-only URL away
    from every standby).

    Raises:
        ConfigurationError: a replica URL carrying Conduit's options, or not
            a PostgreSQL URL.
    """
    if not replica.strip():
        raise ConfigurationError("replica: an empty replica URL")
    if "://" in replica:
        scheme = replica.partition("://")[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(f"replica: {mask_password(replica)!r} is not a PostgreSQL URL")
        conninfo, ours = split_url(replica)
        if ours:
            raise ConfigurationError(
                f"replica: the options {', '.join(sorted(ours))} belong in the store's own URL, "
                "not in a replica's"
            )
        return conninfo
    parts = urlsplit(primary)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@{replica}" if user else replica
    query = urlencode(
        [
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key != "target_session_attrs"
        ],
        quote_via=quote,
    )
    return urlunsplit(("postgresql", netloc, parts.path, query, ""))
