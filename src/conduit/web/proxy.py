"""Origins and reverse proxies: what a browser calls this server, and who the client is.

Behind a reverse proxy the ``Host`` header, the scheme and the peer address
are the proxy's, not the browser's. A proxy that the operator trusts
(``create_app(trusted_proxy=True)``, ``conduit serve --trusted-proxy``) tells
the browser's through ``X-Forwarded-Host``, ``X-Forwarded-Proto`` and
``X-Forwarded-For``; of each, the last value counts (the one the nearest
proxy wrote). Untrusted, these headers are ignored: any client can send them.

Everything here is pure: it reads headers and returns values.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import Scope

from conduit.errors import InvalidArgument

__all__ = [
    "client_address",
    "forwarded_scope",
    "last_value",
    "normalize_origin",
    "public_origins",
    "request_host",
    "request_origin",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_ADDRESS = 100


def normalize_origin(text: str) -> str | None:
    """``scheme://host[:port]`` in lower case, without a default port; ``None`` if not one.

    ``null``, another scheme, a user name, a path beyond ``/``, a query or a
    fragment are not origins.
    """
    try:
        parts = urlsplit(text.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        shown += f":{port}"
    return f"{scheme}://{shown}"


def public_origins(urls: str | Iterable[str] | None) -> frozenset[str]:
    """The origins of the URLs browsers reach the server at (``public_url``).

    Raises:
        InvalidArgument: a URL that is not an origin such as ``https://events.example.com``.
    """
    if urls is None:
        return frozenset()
    found = set()
    for url in [urls] if isinstance(urls, str) else urls:
        origin = normalize_origin(url)
        if origin is None:
            raise InvalidArgument(
                f"public_url: {url!r} is not an origin such as https://events.example.com "
                "(a scheme and a host, no path)",
                field="public_url",
            )
        found.add(origin)
    return frozenset(found)


def last_value(headers: Headers, name: str) -> str | None:
    """The last comma-separated value of a header (over all its lines), or ``None``."""
    values = [v.strip() for line in headers.getlist(name) for v in line.split(",")]
    values = [v for v in values if v]
    return values[-1] if values else None


def forwarded_scope(scope: Scope) -> Scope:
    """The scope with the scheme and the client the trusted proxy says the browser used."""
    headers = Headers(scope=scope)
    changed = dict(scope)
    proto = (last_value(headers, "x-forwarded-proto") or "").lower()
    if proto in _DEFAULT_PORTS:
        if scope["type"] == "websocket":
            proto = "wss" if proto == "https" else "ws"
        changed["scheme"] = proto
    client = last_value(headers, "x-forwarded-for")
    if client:
        changed["client"] = (client[:_MAX_ADDRESS], 0)
    return changed


def request_host(headers: Headers, *, trusted_proxy: bool) -> str:
    """The host the browser asked for: ``X-Forwarded-Host`` from a trusted proxy, or ``Host``."""
    if trusted_proxy:
        forwarded = last_value(headers, "x-forwarded-host")
        if forwarded:
            return forwarded
    return headers.get("host", "")


def request_origin(scheme: str, host: str) -> str | None:
    """The origin of a request: its scheme (``ws`` as ``http``) and host."""
    web = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return normalize_origin(f"{web}://{host}") if host else None


def client_address(scope: Scope) -> str:
    """The client's address (from a trusted proxy once :func:`forwarded_scope` ran)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
