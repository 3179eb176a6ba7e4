"""Templates: the jinja2 environment (autoescaping everything) and the page renderer.

Event data is shown as text: :func:`~conduit.web.serialize.pretty` makes a
plain string, which autoescaping turns into inert text inside ``<pre>``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from conduit.events import StreamId
from conduit.web.auth import csrf_token, remember_csrf
from conduit.web.serialize import pretty

__all__ = ["environment", "event_href", "page", "stream_href", "with_query"]

PREVIEW_LENGTH = 120
"""How much of an event's data a list shows."""


def stream_href(stream_id: StreamId) -> str:
    """The page of a stream; its id is quoted whole, slashes included."""
    return "/streams/" + quote(str(stream_id), safe="")


def event_href(event_id: object) -> str:
    """The page of an event."""
    return "/events/" + quote(str(event_id), safe="")


def with_query(path: str, **values: object) -> str:
    """``path`` with the query parameters that are not ``None``."""
    kept = {key: str(value) for key, value in values.items() if value is not None}
    return f"{path}?{urlencode(kept)}" if kept else path


def preview(data: object) -> str:
    """An event's data on one line, cut to :data:`PREVIEW_LENGTH` characters."""
    text = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


def clock(moment: datetime) -> str:
    """A UTC time to the millisecond: ``2024-05-01 12:00:00.123``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def environment() -> jinja2.Environment:
    """The templates' environment: autoescaping on, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conduit.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pretty=pretty, preview=preview, clock=clock)
    env.globals.update(
        stream_href=stream_href, event_href=event_href, with_query=with_query, quote=quote
    )
    return env


def page(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """Render a page, with what every page needs (the CSRF token, the server's mode)."""
    templates: Jinja2Templates = request.app.state.templates
    csrf = csrf_token(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            **context,
            "csrf": csrf,
            "read_only": request.app.state.read_only,
            "token_required": request.app.state.token_required,
            "path": request.url.path,
        },
        status_code=status_code,
    )
    response.headers["cache-control"] = "no-store"
    remember_csrf(request, response)
    return response
