"""Who may do what: the token, read-only mode, cross-site requests and trusted hosts.

:class:`Guard` is ASGI middleware in front of every route. In order, it

1. behind a trusted proxy, takes the scheme and the client's address from
   ``X-Forwarded-Proto`` and ``X-Forwarded-For`` (:mod:`conduit.web.proxy`);
2. refuses a host it does not trust (``Host``, or ``X-Forwarded-Host`` from a
   trusted proxy; without a token, only the loopback names and the public
   URL's: a page on another site that rebinds its DNS name to 127.0.0.1 gets
   nothing);
3. refuses a state-changing request (``POST``, ``PUT``, ``PATCH``,
   ``DELETE``) that a browser marks as sent by another site: ``Sec-Fetch-Site``,
   or an ``Origin`` that is not the public URL's (by default: the origin the
   request was addressed to);
4. with a token, refuses a request without it: an ``Authorization: Bearer``
   header, or a live session cookie (:mod:`conduit.web.sessions`) that the
   login form sets (``/login`` and ``/static/`` excepted, so that the login
   form can be shown); a client that sent too many wrong tokens is answered
   429 (:mod:`conduit.web.limiter`);
5. in read-only mode, refuses every state-changing request but logging in
   and out, with 403;
6. adds security headers to every answer (a content security policy that
   allows no inline script, no framing, no sniffing).

Forms of the browser also carry a CSRF token (:func:`csrf_token`,
:func:`check_csrf`): a random value kept in a ``SameSite=Strict`` cookie that
the form must repeat.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conduit.errors import InvalidArgument
from conduit.web.limiter import LoginLimiter
from conduit.web.proxy import (
    client_address,
    forwarded_scope,
    normalize_origin,
    request_host,
    request_origin,
)
from conduit.web.sessions import Sessions

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Guard",
    "check_csrf",
    "csrf_token",
    "is_api",
    "remember_csrf",
    "safe_next",
    "token_matches",
    "too_many_attempts",
]

SESSION_COOKIE = "conduit_session"
CSRF_COOKIE = "conduit_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/static/",)
LOOPBACK_NAMES = frozenset({"localhost"})

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def token_matches(token: str, given: str) -> bool:
    """Compare in constant time."""
    return hmac.compare_digest(token.encode(), given.encode())


def is_api(path: str) -> bool:
    """Whether a path is part of the JSON API (answered in JSON, never redirected)."""
    return path.startswith("/api/") or path in ("/api", "/openapi.json")


class Guard:
    """ASGI middleware: trusted hosts, cross-site requests, the token, read-only mode.

    Args:
        app: the application it guards.
        token: the token every request needs, or ``None``.
        read_only: refuse every change.
        allowed_hosts: see :func:`conduit.web.create_app`.
        sessions: the session cookies (with a token).
        limiter: counts wrong tokens per client.
        public_origins: the origins browsers reach the server at; empty: the
            origin each request was addressed to.
        trusted_proxy: believe ``X-Forwarded-Host``, ``-Proto`` and ``-For``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        read_only: bool,
        allowed_hosts: Sequence[str] | None,
        sessions: Sessions | None,
        limiter: LoginLimiter,
        public_origins: frozenset[str] = frozenset(),
        trusted_proxy: bool = False,
    ) -> None:
        self.app = app
        self.token = token
        self.read_only = read_only
        self.sessions = sessions
        self.limiter = limiter
        self.public_origins = public_origins
        self.trusted_proxy = trusted_proxy
        if allowed_hosts is None:
            allowed_hosts = ["*"] if token is not None else ["loopback"]
        public_hosts = [_hostname(origin.partition("://")[2]) for origin in public_origins]
        self.allowed_hosts = [host.lower() for host in allowed_hosts] + [
            host for host in public_hosts if host is not None
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.trusted_proxy:
            scope = forwarded_scope(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        """The answer to a request that may not go on, or ``None``."""
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        host = request_host(headers, trusted_proxy=self.trusted_proxy)
        if not self._host_allowed(host):
            return _refuse(path, 400, "untrusted_host", "This server does not answer to that host.")
        if method in UNSAFE_METHODS and self._cross_site(headers, scope["scheme"], host):
            return _refuse(
                path, 403, "cross_site", "A change requested from another site is refused."
            )
        needs_token = (
            self.token is not None and path != "/login" and not path.startswith(OPEN_PATHS)
        )
        if needs_token:
            refused = self._credentials_refusal(scope, headers, path, method)
            if refused is not None:
                return refused
        if self.read_only and method in UNSAFE_METHODS and path not in ("/login", "/logout"):
            return _refuse(path, 403, "read_only", "This server is read-only: --read-only.")
        return None

    def _credentials_refusal(
        self, scope: Scope, headers: Headers, path: str, method: str
    ) -> Response | None:
        assert self.token is not None
        assert self.sessions is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            # A token is a guess until it matches: counted, and refused when too many failed.
            client = client_address(scope)
            wait = self.limiter.retry_after(client)
            if wait is not None:
                return too_many_attempts(path, wait)
            if token_matches(self.token, given.strip()):
                return None
            self.limiter.failed(client)
            return self._unauthenticated(scope, path, method)
        cookie = Request({"type": "http", "headers": headers.raw}).cookies.get(SESSION_COOKIE)
        if cookie is not None and self.sessions.valid(cookie):
            return None
        return self._unauthenticated(scope, path, method)

    def _unauthenticated(self, scope: Scope, path: str, method: str) -> Response:
        if is_api(path) or method != "GET":
            response = _refuse(
                path, 401, "unauthorized", "A token is needed: Authorization: Bearer T."
            )
            response.headers["www-authenticate"] = 'Bearer realm="conduit"'
            return response
        query: bytes = scope["query_string"]
        target = path + ("?" + query.decode("latin-1") if query else "")
        return Response(
            status_code=303, headers={"location": f"/login?next={quote(target, safe='')}"}
        )

    def _cross_site(self, headers: Headers, scheme: str, host: str) -> bool:
        # Browsers send Sec-Fetch-Site (and Origin) with every POST; other clients
        # (curl, scripts) send neither and are judged by the token alone.
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        given = normalize_origin(origin)
        if given is None:  # "null": a sandboxed frame, a redirect from elsewhere, a file
            return True
        if self.public_origins:
            return given not in self.public_origins
        return given != request_origin(scheme, host)

    def _host_allowed(self, host: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        name = _hostname(host)
        if name is None:
            return False
        if "loopback" in self.allowed_hosts and _is_loopback(name):
            return True
        return name in self.allowed_hosts


def too_many_attempts(path: str, wait: int) -> Response:
    """429, with ``Retry-After``: the client sent too many wrong tokens of late."""
    response = _refuse(
        path,
        429,
        "too_many_attempts",
        f"Too many wrong tokens from this address: try again in {wait} s.",
    )
    response.headers["retry-after"] = str(wait)
    return response


def _refuse(path: str, status: int, error: str, message: str) -> Response:
    if is_api(path):
        body = json.dumps({"error": error, "message": message, "field": None})
        return Response(body, status_code=status, media_type="application/json")
    return Response(
        f"<!doctype html><title>{status}</title><p>{message}</p>",
        status_code=status,
        media_type="text/html",
    )


def _hostname(host: str) -> str | None:
    if not host:
        return None
    try:
        parts = urlsplit(f"//{host}")
        return parts.hostname
    except ValueError:
        return None


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def csrf_token(request: Request) -> str:
    """The CSRF token forms of this browser carry: its cookie's value, or a new one."""
    known = request.cookies.get(CSRF_COOKIE)
    if known and len(known) == 43 and known.isascii():
        return known
    made: str | None = getattr(request.state, "new_csrf", None)
    if made is None:
        made = secrets.token_urlsafe(32)
        request.state.new_csrf = made
    return made


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie on ``response`` when :func:`csrf_token` made a new one."""
    made: str | None = getattr(request.state, "new_csrf", None)
    if made is not None:
        response.set_cookie(
            CSRF_COOKIE,
            made,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


async def check_csrf(request: Request) -> dict[str, str]:
    """Read a form (URL-encoded) and check its CSRF token against the cookie; returns its fields.

    Raises:
        InvalidArgument: the form lacks the token or carries another one (403).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body() if content_type == "application/x-www-form-urlencoded" else b""
    try:
        pairs = parse_qsl(body.decode(), max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        pairs = []
    fields = dict(pairs)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = fields.get("csrf", "")
    if not cookie or not given or not token_matches(cookie, given):
        raise CsrfRefused("csrf: the form is stale or came from elsewhere; reload the page")
    return fields


class CsrfRefused(InvalidArgument):
    """A form without the CSRF token of this browser: answered with 403."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="csrf")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target
