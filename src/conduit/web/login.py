"""Logging in with the token: a form that sets a session cookie, and logging out.

The cookie is a signed session that expires (:mod:`conduit.web.sessions`);
wrong tokens count against the client's address, and too many answer 429
(:mod:`conduit.web.limiter`). Logging out ends the session on the server.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conduit.web.auth import SESSION_COOKIE, check_csrf, safe_next, token_matches
from conduit.web.limiter import LoginLimiter
from conduit.web.proxy import client_address
from conduit.web.render import page
from conduit.web.sessions import Sessions

__all__ = ["routes"]


async def login_form(request: Request) -> Response:
    """GET /login: the form (or, without a token, straight on)."""
    target = safe_next(request.query_params.get("next"))
    if not request.app.state.token_required:
        return RedirectResponse(target, status_code=303)
    return page(
        request, "login.html", {"title": "Log in", "next": target, "failed": False, "wait": None}
    )


async def login(request: Request) -> Response:
    """POST /login: check the token, set the session cookie, go on to ``next``."""
    fields = await check_csrf(request)
    target = safe_next(fields.get("next"))
    token: str | None = request.app.state.token
    if token is None:
        return RedirectResponse(target, status_code=303)
    limiter: LoginLimiter = request.app.state.login_limiter
    client = client_address(request.scope)
    wait = limiter.retry_after(client)
    if wait is not None:
        # Even the right token waits: a locked client cannot go on guessing.
        context = {"title": "Log in", "next": target, "failed": False, "wait": wait}
        response = page(request, "login.html", context, status_code=429)
        response.headers["retry-after"] = str(wait)
        return response
    if not token_matches(token, fields.get("token", "")):
        limiter.failed(client)
        context = {"title": "Log in", "next": target, "failed": True, "wait": None}
        return page(request, "login.html", context, status_code=401)
    sessions: Sessions = request.app.state.sessions
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(),
        max_age=sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    """POST /logout: end the session, on the server and in the browser."""
    await check_csrf(request)
    sessions: Sessions | None = request.app.state.sessions
    cookie = request.cookies.get(SESSION_COOKIE)
    if sessions is not None and cookie is not None:
        sessions.end(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


routes: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
"""Logging in and out."""
