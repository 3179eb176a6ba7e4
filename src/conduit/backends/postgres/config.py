"""A PostgreSQL store's settings: parsed from its URL and options, checked, free of I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from conduit.backends.options import parse_flag
from conduit.backends.postgres.sql import channel
from conduit.errors import ConfigurationError

__all__ = ["MAX_IDENTIFIER_BYTES", "PostgresConfig", "split_url"]

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), channel names included."""

_OPTIONS: dict[str, Any] = {
    "schema": str,
    "pool_size": int,
    "statement_timeout": float,
    "lock_timeout": float,
    "read_your_writes_timeout": float,
    "pool_timeout": float,
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
    schema: str = "conduit"
    pool_size: int = 10
    statement_timeout: float = 30.0
    lock_timeout: float = 10.0
    read_your_writes_timeout: float = 5.0
    pool_timeout: float = 10.0
    notify: bool = False
    group_commit: bool = True

    @classmethod
    def of(cls, url: str, **given: Any) -> PostgresConfig:
        """The settings of ``url`` and the options given (``None`` means not given).

        Raises:
            ConfigurationError: a malformed value, or a name PostgreSQL would cut.
        """
        conninfo, from_url = split_url(url)
        chosen = {**from_url, **{k: v for k, v in given.items() if v is not None}}
        config = cls(conninfo, **chosen)
        config.check()
        return config

    def check(self) -> None:
        """Refuse settings that cannot work.

        Raises:
            ConfigurationError: naming the setting.
        """
        if type(self.pool_size) is not int or self.pool_size < 1:
            raise ConfigurationError("pool_size must be an integer of at least 1")
        for name in ("statement_timeout", "lock_timeout", "read_your_writes_timeout"):
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
        if key in _OPTIONS:
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
