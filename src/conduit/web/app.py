"""``create_app``: the Starlette application of the browser and the JSON API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from conduit.async_store import AsyncEventStore
from conduit.errors import BackendError, ConduitError, InvalidArgument
from conduit.store import EventStore
from conduit.web import api, login, pages
from conduit.web.api import UnsupportedMediaType, error_response
from conduit.web.auth import CsrfRefused, Guard, is_api
from conduit.web.limiter import LoginLimiter
from conduit.web.openapi import description, openapi
from conduit.web.proxy import public_origins
from conduit.web.render import environment, page
from conduit.web.sessions import DEFAULT_MAX_AGE, Sessions
from conduit.web.stopping import Stopping
from conduit.web.stores import ServedStore

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger("conduit.web")

MAX_BODY = 16 * 1024 * 1024
"""The largest request body accepted (413 beyond)."""


def create_app(
    store: AsyncEventStore | EventStore,
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    public_url: str | Sequence[str] | None = None,
    trusted_proxy: bool = False,
    session_max_age: int = DEFAULT_MAX_AGE,
    session_secret: bytes | None = None,
) -> Starlette:
    """The event browser and its JSON API over ``store``, as an ASGI application.

    Every route is a coroutine awaiting an :class:`~conduit.AsyncEventStore`:
    none runs in a thread pool. Serve the application with its lifespan
    (uvicorn does, and ``with TestClient(app)``): it opens the store there
    and, at shutdown, ends the live tails and closes what it opened.

    Args:
        store: the store to show; the application reads and writes only
            through its public API, and does not close it. An
            ``AsyncEventStore`` is served as it is (opened in the lifespan if
            it is not yet). An ``EventStore`` is served through an
            ``AsyncEventStore`` the application makes over the same storage
            (the same backend object; on PostgreSQL the same engine, with an
            async connection pool of its own) and closes at shutdown; there
            subscriptions made on the ``EventStore`` pick up retries
            requested through the application when they next catch up (see
            :mod:`conduit.web.stores`).
        token: when given, every request needs it (``Authorization: Bearer``
            or the session cookie the login form sets).
        read_only: refuse every write and admin action with 403.
        allowed_hosts: the host names the server answers to (``Host``
            header). By default: only loopback names (``localhost``,
            ``127.0.0.1``, ``::1``) without a token, which defeats DNS
            rebinding; any host with a token. ``"loopback"`` stands for the
            loopback names, ``"*"`` for any. The hosts of ``public_url`` are
            always answered.
        public_url: the URL (or URLs) browsers reach the server at, such as
            ``https://events.example.com`` behind a reverse proxy. A change a
            browser sends is accepted only from these origins. By default:
            from the origin the request was addressed to (``Host``, or the
            forwarded host and scheme of a trusted proxy).
        trusted_proxy: believe ``X-Forwarded-Host``, ``X-Forwarded-Proto``
            and ``X-Forwarded-For`` (the last value of each): only for a
            server that nothing but the proxy can reach.
        session_max_age: seconds a browser's login lasts.
        session_secret: the secret session cookies are signed with (at least
            16 bytes), for several processes that share their sessions. By
            default a random one: a restart ends every session.

    Raises:
        InvalidArgument: an empty token, a ``public_url`` that is not an
            origin, a ``session_max_age`` below 1, a short ``session_secret``,
            or a ``store`` that is not a store.
    """
    if token is not None and not token.strip():
        raise InvalidArgument("token: an empty token protects nothing", field="token")
    if type(session_max_age) is not int or session_max_age < 1:
        raise InvalidArgument(
            "session_max_age: a number of seconds, 1 or more", field="session_max_age"
        )
    if session_secret is not None and len(session_secret) < 16:
        raise InvalidArgument("session_secret: at least 16 random bytes", field="session_secret")
    origins = public_origins(public_url)
    served = ServedStore(store)
    sessions = (
        None if token is None else Sessions(token, max_age=session_max_age, secret=session_secret)
    )
    limiter = LoginLimiter()
    templates = Jinja2Templates(env=environment())
    app = Starlette(
        routes=[
            *api.routes,
            Route("/openapi.json", openapi, methods=["GET"]),
            *login.routes,
            *pages.routes,
            Mount("/static", StaticFiles(packages=[("conduit.web", "static")]), name="static"),
        ],
        middleware=[
            Middleware(
                Guard,
                token=token,
                read_only=read_only,
                allowed_hosts=allowed_hosts,
                sessions=sessions,
                limiter=limiter,
                public_origins=origins,
                trusted_proxy=trusted_proxy,
            )
        ],
        exception_handlers={ConduitError: _conduit_error, HTTPException: _http_error},
        max_body_size=MAX_BODY,
        lifespan=_lifespan,
    )
    app.state.served = served
    app.state.store = served.store
    app.state.templates = templates
    app.state.token = token
    app.state.token_required = token is not None
    app.state.read_only = read_only
    app.state.sessions = sessions
    app.state.login_limiter = limiter
    app.state.openapi = description(token=token is not None)
    app.state.stopping = Stopping()  # set when the server stops: live tails end
    return app


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    served: ServedStore = app.state.served
    await served.open()
    try:
        yield
    finally:
        app.state.stopping.set()
        await served.close()


async def _conduit_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BackendError):
        log.error(
            "%s %s: the storage engine failed", request.method, request.url.path, exc_info=exc
        )
    if isinstance(exc, UnsupportedMediaType):
        return JSONResponse(
            {"error": "unsupported_media_type", "message": str(exc), "field": "content-type"},
            status_code=415,
        )
    if is_api(request.url.path):
        if isinstance(exc, CsrfRefused):
            return JSONResponse(
                {"error": "csrf", "message": str(exc), "field": "csrf"}, status_code=403
            )
        return error_response(exc)
    if isinstance(exc, CsrfRefused):
        status, title = 403, "Refused"
    elif isinstance(exc, InvalidArgument):
        status, title = 422, "Not valid"
    elif isinstance(exc, BackendError):
        status, title = 503, "The store is not answering"
    else:
        status, title = 500, "Something failed"
    message = "The storage engine failed; see the server's log." if status == 503 else str(exc)
    return page(request, "error.html", {"title": title, "message": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    if is_api(request.url.path):
        error = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": error, "message": exc.detail, "field": None},
            status_code=exc.status_code,
            headers=headers,
        )
    response = page(
        request,
        "error.html",
        {"title": exc.detail, "message": f"{exc.status_code}: {exc.detail}"},
        status_code=exc.status_code,
    )
    response.headers.update(headers)
    return response
