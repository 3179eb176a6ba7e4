"""Logging in with the token: a form that sets an HttpOnly cookie, and logging out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conduit.web.auth import SESSION_COOKIE, check_csrf, safe_next, session_value, token_matches
from conduit.web.render import page

__all__ = ["routes"]


def login_form(request: Request) -> Response:
    """GET /login: the form (or, without a token, straight on)."""
    target = safe_next(request.query_params.get("next"))
    if not request.app.state.token_required:
        return RedirectResponse(target, status_code=303)
    return page(request, "login.html", {"title": "Log in", "next": target, "failed": False})


async def login(request: Request) -> Response:
    """POST /login: check the token, set the session cookie, go on to ``next``."""
    fields = await check_csrf(request)
    target = safe_next(fields.get("next"))
    token: str | None = request.app.state.token
    if token is None:
        return RedirectResponse(target, status_code=303)
    if not token_matches(token, fields.get("token", "")):
        context = {"title": "Log in", "next": target, "failed": True}
        return page(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    """POST /logout: forget the session cookie."""
    await check_csrf(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    return response


routes: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
"""Logging in and out."""
