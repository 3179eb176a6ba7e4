"""Who may do what: the token, read-only mode, cross-site requests and trusted hosts.

:class:`Guard` is ASGI middleware in front of every route. In order, it

1. refuses a ``Host`` header it does not trust (without a token, only the
   loopback names: a page on another site that rebinds its DNS name to
   127.0.0.1 gets nothing);
2. refuses a state-changing request (``POST``, ``PUT``, ``PATCH``,
   ``DELETE``) that a browser marks as sent by another site (``Origin`` or
   ``Sec-Fetch-Site``);
3. with a token, refuses a request without it: an ``Authorization: Bearer``
   header, or the cookie the login form sets (``/login`` and ``/static/``
   excepted, so that the login form can be shown);
4. in read-only mode, refuses every state-changing request but logging in
   and out, with 403;
5. adds security headers to every answer (a content security policy that
   allows no inline script, no framing, no sniffing).

Forms of the browser also carry a CSRF token (:func:`csrf_token`,
:func:`check_csrf`): a random value kept in a ``SameSite=Strict`` cookie that
the form must repeat.
"""

from __future__ import annotations

import hashlib
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

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Guard",
    "check_csrf",
    "csrf_token",
    "is_api",
    "remember_csrf",
    "safe_next",
    "session_value",
    "token_matches",
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


def session_value(token: str) -> str:
    """The login cookie's value: derived from the token, so the cookie never holds it."""
    return hmac.new(token.encode(), b"conduit browser session v1", hashlib.sha256).hexdigest()


def token_matches(token: str, given: str) -> bool:
    """Compare in constant time."""
    return hmac.compare_digest(token.encode(), given.encode())


def is_api(path: str) -> bool:
    """Whether a path is part of the JSON API (answered in JSON, never redirected)."""
    return path.startswith("/api/") or path in ("/api", "/openapi.json")


class Guard:
    """ASGI middleware: trusted hosts, cross-site requests, the token, read-only mode."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        read_only: bool,
        allowed_hosts: Sequence[str] | None,
    ) -> None:
        self.app = app
        self.token = token
        self.read_only = read_only
        self.session = None if token is None else session_value(token)
        if allowed_hosts is None:
            allowed_hosts = ["*"] if token is not None else ["loopback"]
        self.allowed_hosts = [host.lower() for host in allowed_hosts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

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
        if not self._host_allowed(headers.get("host", "")):
            return _refuse(path, 400, "untrusted_host", "This server does not answer to that host.")
        if method in UNSAFE_METHODS and _cross_site(headers):
            return _refuse(
                path, 403, "cross_site", "A change requested from another site is refused."
            )
        needs_token = (
            self.token is not None and path != "/login" and not path.startswith(OPEN_PATHS)
        )
        if needs_token and not self._authenticated(headers):
            return self._unauthenticated(scope, path, method)
        if self.read_only and method in UNSAFE_METHODS and path not in ("/login", "/logout"):
            return _refuse(path, 403, "read_only", "This server is read-only: --read-only.")
        return None

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

    def _authenticated(self, headers: Headers) -> bool:
        assert self.token is not None
        assert self.session is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given and token_matches(self.token, given.strip()):
            return True
        cookie = Request({"type": "http", "headers": headers.raw}).cookies.get(SESSION_COOKIE)
        return cookie is not None and token_matches(self.session, cookie)

    def _host_allowed(self, host: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        name = _hostname(host)
        if name is None:
            return False
        if "loopback" in self.allowed_hosts and _is_loopback(name):
            return True
        return name in self.allowed_hosts


def _refuse(path: str, status: int, error: str, message: str) -> Response:
    if is_api(path):
        body = json.dumps({"error": error, "message": message, "field": None})
        return Response(body, status_code=status, media_type="application/json")
    return Response(
        f"<!doctype html><title>{status}</title><p>{message}</p>",
        status_code=status,
        media_type="text/html",
    )


def _cross_site(headers: Headers) -> bool:
    # Browsers send Sec-Fetch-Site (and Origin) with every POST; other clients
    # (curl, scripts) send neither and are judged by the token alone.
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() != headers.get("host", "").lower()


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
