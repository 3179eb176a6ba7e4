"""Choosing an engine by URL: ``memory://``, ``sqlite:///path``, ``postgresql://…``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conduit.backends.base import Backend
from conduit.backends.options import check_options, parse_flag
from conduit.errors import ConfigurationError
from conduit.importing import needs_extra
from conduit.masking import mask_password

__all__ = ["SCHEMES", "mask_password", "open_async_backend", "open_backend"]

SCHEMES = ("memory://", "sqlite:///path/to/file.db", "postgresql://user@host:port/database")


def _unsupported(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"cannot open store {mask_password(url)!r}: {why}; supported URLs are " + ", ".join(SCHEMES)
    )


def open_backend(url: str, **options: Any) -> Backend:
    """Open the engine a URL names, for ``EventStore``.

    Raises:
        ConfigurationError: the URL is malformed or names no known engine; the
            message lists the supported schemes.
        MissingDependency: the engine's driver is not installed (PostgreSQL:
            the ``postgres`` extra); a ConfigurationError too.
    """
    backend: Backend = _open(url, options, aio=False)
    return backend


def open_async_backend(url: str, options: dict[str, Any], executor: Any = None) -> Any:
    """Open the engine a URL names, for ``AsyncEventStore``: PostgreSQL's async engine,
    or the memory and SQLite engines (which the store runs on ``executor``).

    Raises:
        ConfigurationError: as :func:`open_backend`.
    """
    return _open(url, dict(options), aio=True)


def _open(url: str, options: dict[str, Any], *, aio: bool) -> Any:
    if not isinstance(url, str):
        raise _unsupported(repr(url), "a store URL is a string")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _unsupported(url, "it has no scheme")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest.strip("/"):
            raise _unsupported(url, "memory:// takes no path")
        from conduit.backends.memory import MemoryBackend

        check_options(MemoryBackend, options)
        return MemoryBackend(**options)
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if not path.startswith("/") or len(path) < 2:
            raise _unsupported(
                url, "a SQLite URL names a file: sqlite:///relative.db or sqlite:////abs/path.db"
            )
        params = dict(parse_qsl(query, keep_blank_values=True))
        unknown = set(params) - {"synchronous", "busy_timeout", "create", "read_only"}
        if unknown:
            raise _unsupported(url, f"unknown SQLite option(s) {', '.join(sorted(unknown))}")
        if "synchronous" in params:
            options.setdefault("synchronous", params["synchronous"].lower())
        if "busy_timeout" in params:
            try:
                options.setdefault("busy_timeout", float(params["busy_timeout"]))
            except ValueError:
                raise _unsupported(url, "busy_timeout is a number of seconds") from None
        for flag in ("create", "read_only"):
            if flag in params:
                options.setdefault(flag, parse_flag(flag, params[flag]))
        from conduit.backends.sqlite import SQLiteBackend

        check_options(SQLiteBackend, options, skip=1)
        try:
            return SQLiteBackend(path[1:], **options)
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise _unsupported(url, str(exc)) from exc
    if scheme in ("postgresql", "postgres"):
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as exc:  # such as an unclosed "[" of an IPv6 address
            raise _unsupported(url, f"it is not a valid URL ({exc})") from None
        if not parts.path.strip("/") and not host:
            raise _unsupported(url, "a PostgreSQL URL names a server and a database")
        with needs_extra("the PostgreSQL engine"):
            from conduit.backends.postgres import PostgresBackend

        check_options(PostgresBackend, options, skip=1)
        if aio:
            from conduit.backends.postgres.aio import AsyncPostgresBackend

            return AsyncPostgresBackend(url, **options)
        return PostgresBackend(url, **options)
    raise _unsupported(url, f"unknown scheme {scheme!r}")
