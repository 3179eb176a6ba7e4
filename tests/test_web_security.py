"""Security of ``conduit serve``: tokens, read-only mode, cross-site requests, escaping."""

from __future__ import annotations

import hashlib
import hmac
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conduit import EventStore
from conduit.cli import app as cli
from conduit.cli.serve import is_loopback
from conduit.errors import InvalidArgument
from conduit.web import create_app
from conduit.web import sessions as session_module
from conduit.web.auth import CSRF_COOKIE, SESSION_COOKIE
from conduit.web.limiter import ATTEMPTS, WINDOW, LoginLimiter
from conduit.web.openapi import description
from conduit.web.server import BackgroundServer
from conduit.web.sessions import Sessions

TOKEN = "s3cret-token-for-tests"
BASE = "http://127.0.0.1"
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]
PUBLIC = "https://events.example.com"
EVENT = {"events": [{"name": "x", "data": {}}]}


@pytest.fixture
def store() -> Iterator[EventStore]:
    with EventStore() as store:
        yield store


def client_for(store: EventStore, **options: Any) -> TestClient:
    return TestClient(create_app(store, **options), base_url=BASE, follow_redirects=False)


def operations() -> list[tuple[str, str]]:
    """Every operation of the API, with its path parameters filled in."""
    filled = {
        "{stream_id}": "s",
        "{event_id}": "01900000-0000-7000-8000-000000000000",
        "{parked_id}": "1",
    }
    found = []
    for path, item in description(token=True)["paths"].items():
        for placeholder, value in filled.items():
            path = path.replace(placeholder, value)
        found += [(method.upper(), path) for method in item]
    return found


def log_in(client: TestClient, token: str = TOKEN, **headers: str) -> Any:
    """Post the login form (with its CSRF token); returns the answer."""
    return client.post(
        "/login", data={"csrf": csrf_of(client, "/login"), "token": token}, headers=headers
    )


def session_of(client: TestClient) -> str:
    """The session cookie the client holds."""
    return str(client.cookies[SESSION_COOKIE])


def with_session(store: EventStore, cookie: str, **options: Any) -> TestClient:
    """A client of a new application (``options``) that holds the session cookie ``cookie``."""
    client = client_for(store, **options)
    client.cookies.set(SESSION_COOKIE, cookie)
    return client


def csrf_of(client: TestClient, page: str = "/") -> str:
    """The CSRF token the page's forms carry: the value of the cookie it sets."""
    response = client.get(page)
    match = re.search(r'name="csrf" value="([^"]+)"', response.text)
    token = client.cookies[CSRF_COOKIE]
    assert match is None or match.group(1) == token
    return token


# -- the token ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), operations())
def test_with_a_token_every_api_operation_needs_it(
    store: EventStore, method: str, path: str
) -> None:
    client = client_for(store, token=TOKEN)
    response = client.request(method, path, json={"events": [{"name": "x", "data": {}}]})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert store.head_position() == 0


@pytest.mark.parametrize("page", ["/", "/streams", "/streams/s", "/log", "/projections"])
def test_with_a_token_pages_send_to_the_login_form(store: EventStore, page: str) -> None:
    response = client_for(store, token=TOKEN).get(page)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_the_openapi_description_needs_the_token_too(store: EventStore) -> None:
    assert client_for(store, token=TOKEN).get("/openapi.json").status_code == 401


def test_a_bearer_token_opens_the_api(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    right = client.get("/api/log", headers={"authorization": f"Bearer {TOKEN}"})
    wrong = client.get("/api/log", headers={"authorization": "Bearer not-it"})
    assert (right.status_code, wrong.status_code) == (200, 401)


def test_the_login_form_sets_an_httponly_cookie_that_opens_pages(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    csrf = csrf_of(client, "/login")
    response = client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/projections"})
    assert response.status_code == 303
    assert response.headers["location"] == "/projections"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    assert client.get("/projections").status_code == 200
    assert client.get("/api/projections").status_code == 200


def test_a_wrong_token_in_the_login_form_is_refused(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    response = client.post("/login", data={"csrf": csrf_of(client, "/login"), "token": "guess"})
    assert response.status_code == 401
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_after_login_the_next_page_is_never_another_site(store: EventStore, target: str) -> None:
    client = client_for(store, token=TOKEN)
    response = client.post(
        "/login", data={"csrf": csrf_of(client, "/login"), "token": TOKEN, "next": target}
    )
    assert response.headers["location"] == "/"


def test_logging_out_forgets_the_cookie(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    client.post("/login", data={"csrf": csrf_of(client, "/login"), "token": TOKEN})
    client.post("/logout", data={"csrf": csrf_of(client, "/")})
    assert client.get("/").status_code == 303


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(EventStore(), token=" ")


# -- sessions -------------------------------------------------------------------------


def test_the_session_cookie_lasts_session_max_age(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(store, token=TOKEN, session_max_age=600)
    sessions: Sessions = client.app.state.sessions  # type: ignore[attr-defined]
    start = time.time()
    monkeypatch.setattr(sessions, "clock", lambda: start)
    response = log_in(client)
    assert "max-age=600" in response.headers["set-cookie"].lower()
    monkeypatch.setattr(sessions, "clock", lambda: start + 590)
    assert client.get("/").status_code == 200
    monkeypatch.setattr(sessions, "clock", lambda: start + 601)
    assert client.get("/").status_code == 303
    assert client.get("/api/log").status_code == 401


def test_a_session_cookie_whose_expiry_was_moved_is_refused(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    log_in(client)
    expires, session_id, signature = session_of(client).split(".")
    later = f"{int(expires) + 86400}.{session_id}.{signature}"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, f"{expires}.{session_id}.{signature}")
    assert client.get("/").status_code == 200
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, later)
    assert client.get("/").status_code == 303


def test_a_session_cookie_from_another_process_secret_is_refused(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    log_in(client)
    cookie = session_of(client)
    assert client.get("/").status_code == 200
    # Another process (a restart) with the same token has another secret.
    assert with_session(store, cookie, token=TOKEN).get("/").status_code == 303


def test_processes_given_the_same_session_secret_share_sessions_of_the_same_token(
    store: EventStore,
) -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    client = client_for(store, token=TOKEN, session_secret=secret)
    log_in(client)
    cookie = session_of(client)
    assert (
        with_session(store, cookie, token=TOKEN, session_secret=secret).get("/").status_code == 200
    )
    rotated = with_session(store, cookie, token="another-token-x", session_secret=secret)
    assert rotated.get("/").status_code == 303  # a new token ends every session


def test_the_former_constant_cookie_opens_nothing(store: EventStore) -> None:
    # Before: the cookie was this HMAC of the token, the same for every login, forever.
    constant = hmac.new(TOKEN.encode(), b"conduit browser session v1", hashlib.sha256).hexdigest()
    assert with_session(store, constant, token=TOKEN).get("/").status_code == 303
    assert with_session(store, constant, token=TOKEN).get("/api/log").status_code == 401


def test_logging_out_ends_the_session_on_the_server(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    log_in(client)
    cookie = session_of(client)
    other = TestClient(client.app, base_url=BASE, follow_redirects=False)
    log_in(other)
    client.post("/logout", data={"csrf": csrf_of(client, "/")})
    assert SESSION_COOKIE not in client.cookies
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy kept of the cookie
    assert client.get("/").status_code == 303
    assert other.get("/").status_code == 200  # another login goes on


def test_ended_sessions_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "MAX_ENDED", 3)
    sessions = Sessions(TOKEN, max_age=60)
    cookies = [sessions.issue() for _ in range(5)]
    for cookie in cookies[:3]:
        sessions.end(cookie)
    assert [sessions.valid(c) for c in cookies] == [False, False, False, True, True]
    sessions.end(cookies[3])  # one too many to remember: every session ends
    assert not any(sessions.valid(c) for c in cookies)
    assert sessions.valid(sessions.issue())


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"session_max_age": 0}, "session_max_age"),
        ({"session_secret": b"short"}, "session_secret"),
        ({"public_url": "https://events.example.com/conduit"}, "public_url"),
        ({"public_url": ["ftp://events.example.com"]}, "public_url"),
    ],
)
def test_create_app_refuses_bad_session_and_proxy_options(
    store: EventStore, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument, match=field) as caught:
        create_app(store, token=TOKEN, **options)
    assert caught.value.field == field


# -- attempts at the token ------------------------------------------------------------


def test_after_too_many_wrong_logins_even_the_right_token_gets_429(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    for _ in range(ATTEMPTS):
        assert log_in(client, "guess").status_code == 401
    response = log_in(client)
    assert response.status_code == 429
    assert 0 < int(response.headers["retry-after"]) <= WINDOW
    assert "try again in" in response.text
    assert SESSION_COOKIE not in client.cookies


def test_after_too_many_wrong_bearer_tokens_the_api_answers_429(store: EventStore) -> None:
    client = client_for(store, token=TOKEN)
    for _ in range(ATTEMPTS):
        wrong = client.get("/api/log", headers={"authorization": "Bearer guess"})
        assert wrong.status_code == 401
    response = client.get("/api/log", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_attempts"
    assert int(response.headers["retry-after"]) > 0
    assert log_in(client).status_code == 429  # the same count as the login form's


def test_a_locked_out_client_may_try_again_once_the_window_passed(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(store, token=TOKEN)
    limiter: LoginLimiter = client.app.state.login_limiter  # type: ignore[attr-defined]
    start = time.monotonic()
    monkeypatch.setattr(limiter, "clock", lambda: start)
    for _ in range(ATTEMPTS):
        log_in(client, "guess")
    assert log_in(client).status_code == 429
    monkeypatch.setattr(limiter, "clock", lambda: start + WINDOW - 1)
    assert log_in(client).status_code == 429
    monkeypatch.setattr(limiter, "clock", lambda: start + WINDOW + 1)
    assert log_in(client).status_code == 303


def test_a_wrong_token_counts_against_its_own_client_only() -> None:
    limiter = LoginLimiter(attempts=2, window=60, clock=lambda: 1000.0)
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None


def test_the_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = LoginLimiter(attempts=1, window=60, max_clients=3, clock=lambda: 1000.0)
    for n in range(10):
        limiter.failed(f"10.0.0.{n}")
    locked = [n for n in range(10) if limiter.retry_after(f"10.0.0.{n}") is not None]
    assert locked == [7, 8, 9]


@pytest.mark.parametrize(("trusted", "locked"), [(False, True), (True, False)])
def test_forwarded_client_addresses_count_only_from_a_trusted_proxy(
    store: EventStore, trusted: bool, locked: bool
) -> None:
    client = client_for(store, token=TOKEN, trusted_proxy=trusted)
    for n in range(ATTEMPTS):
        log_in(client, "guess", **{"x-forwarded-for": f"203.0.113.{n}"})
    response = log_in(client, **{"x-forwarded-for": "203.0.113.99"})
    assert (response.status_code == 429) is locked


# -- behind a reverse proxy -----------------------------------------------------------


def proxied(origin: str, **more: str) -> dict[str, str]:
    """The headers of a browser's POST that a proxy passes on with Host rewritten."""
    return {
        "host": "127.0.0.1:8400",
        "x-forwarded-host": "events.example.com",
        "x-forwarded-proto": "https",
        "origin": origin,
        "sec-fetch-site": "same-origin",
        "authorization": f"Bearer {TOKEN}",
        **more,
    }


@pytest.mark.parametrize(("trusted", "status"), [(False, 403), (True, 201)])
def test_behind_a_proxy_that_rewrites_host_a_same_site_change_needs_the_proxy_trusted(
    store: EventStore, trusted: bool, status: int
) -> None:
    client = client_for(store, token=TOKEN, trusted_proxy=trusted)
    response = client.post("/api/streams/s/events", json=EVENT, headers=proxied(PUBLIC))
    assert response.status_code == status


@pytest.mark.parametrize(
    "options", [{"trusted_proxy": False}, {"trusted_proxy": True}, {"public_url": PUBLIC}]
)
def test_behind_a_proxy_a_change_from_another_site_is_still_refused(
    store: EventStore, options: dict[str, Any]
) -> None:
    client = client_for(store, token=TOKEN, **options)
    for headers in [
        proxied("https://evil.example"),
        proxied("https://events.example.com.evil.example"),
        proxied("http://events.example.com"),  # another scheme, another origin
        proxied(PUBLIC, **{"sec-fetch-site": "cross-site"}),
    ]:
        response = client.post("/api/streams/s/events", json=EVENT, headers=headers)
        assert response.status_code == 403, headers
    assert store.head_position() == 0


def test_with_a_public_url_changes_come_from_its_origin_only(store: EventStore) -> None:
    client = client_for(store, token=TOKEN, public_url=[PUBLIC])
    good = client.post("/api/streams/s/events", json=EVENT, headers=proxied(PUBLIC + ":443"))
    assert good.status_code == 201
    # The Host header alone no longer makes an origin this server's.
    as_host = proxied("http://127.0.0.1:8400")
    assert client.post("/api/streams/s/events", json=EVENT, headers=as_host).status_code == 403


def test_a_trusted_proxy_without_a_token_answers_only_the_public_host(store: EventStore) -> None:
    client = client_for(store, trusted_proxy=True, public_url=PUBLIC)
    public = {"host": "127.0.0.1:8400", "x-forwarded-host": "events.example.com"}
    rebound = {"host": "127.0.0.1:8400", "x-forwarded-host": "evil.example"}
    assert client.get("/api/log", headers=public).status_code == 200
    assert client.get("/api/log", headers=rebound).status_code == 400


@pytest.mark.parametrize(("trusted", "secure"), [(False, False), (True, True)])
def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_https(
    store: EventStore, trusted: bool, secure: bool
) -> None:
    client = client_for(store, token=TOKEN, trusted_proxy=trusted)
    response = log_in(client, **{"x-forwarded-proto": "https"})
    assert response.status_code == 303
    assert ("secure" in response.headers["set-cookie"].lower()) is secure


def test_the_server_itself_believes_no_forwarded_header(store: EventStore) -> None:
    # uvicorn, left to itself, would believe X-Forwarded-* sent from 127.0.0.1.
    with BackgroundServer(create_app(store, token=TOKEN)) as server:
        with httpx2.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
            client.get("/login")
            csrf = client.cookies[CSRF_COOKIE]
            for n in range(ATTEMPTS):
                spoofed = {"x-forwarded-for": f"203.0.113.{n}", "x-forwarded-proto": "https"}
                wrong = client.post("/login", data={"csrf": csrf, "token": "x"}, headers=spoofed)
                assert wrong.status_code == 401
            locked = client.post(
                "/login",
                data={"csrf": csrf, "token": TOKEN},
                headers={"x-forwarded-for": "1.2.3.4"},
            )
            assert locked.status_code == 429


def test_the_description_tells_of_429_when_a_token_is_needed() -> None:
    assert "429" in description(token=True)["paths"]["/api/log"]["get"]["responses"]
    assert "429" not in description(token=False)["paths"]["/api/log"]["get"]["responses"]


# -- read-only ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p in operations() if m != "GET"])
def test_read_only_refuses_every_write_and_admin_action(
    store: EventStore, method: str, path: str
) -> None:
    response = client_for(store, read_only=True).request(
        method, path, json={"events": [{"name": "x", "data": {}}]}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "read_only"
    assert store.head_position() == 0


def test_read_only_refuses_the_pages_forms_and_hides_their_buttons(store: EventStore) -> None:
    class Failing:
        def on_happened(self, event: object) -> None:
            raise RuntimeError("no")

    store.subscribe(Failing(), name="failing", max_attempts=1, backoff=0)
    store.push("happened", "s", {})
    client = client_for(store, read_only=True)
    page = client.get("/projections")
    assert page.status_code == 200
    assert "Retry" not in page.text
    assert "read-only" in page.text
    [parked] = store.parked()
    response = client.post(f"/projections/parked/{parked.id}/retry", data={"csrf": "x"})
    assert response.status_code == 403
    assert not next(store.parked()).retry_requested


def test_read_only_still_reads(store: EventStore) -> None:
    store.push("happened", "s", {})
    client = client_for(store, read_only=True)
    assert client.get("/api/streams/s/events").status_code == 200
    assert client.get("/streams/s").status_code == 200


# -- cross-site requests --------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://127.0.0.1"},  # another scheme: another origin
        {"origin": "http://127.0.0.1:8400"},  # another port
    ],
)
def test_a_change_sent_from_another_site_is_refused(
    store: EventStore, headers: dict[str, str]
) -> None:
    response = client_for(store).post(
        "/api/streams/s/events", json={"events": [{"name": "x", "data": {}}]}, headers=headers
    )
    assert response.status_code == 403
    assert store.head_position() == 0


def test_a_change_from_this_site_goes_through(store: EventStore) -> None:
    response = client_for(store).post(
        "/api/streams/s/events",
        json={"events": [{"name": "x", "data": {}}]},
        headers={"origin": BASE, "sec-fetch-site": "same-origin"},
    )
    assert response.status_code == 201


def test_a_form_without_its_csrf_token_is_refused(store: EventStore) -> None:
    client = client_for(store)
    csrf_of(client)  # the browser has the cookie, but the form lacks the field
    response = client.post("/projections/retry", data={"subscription": "x"})
    assert response.status_code == 403
    forged = client.post("/projections/retry", data={"csrf": "forged", "subscription": "x"})
    assert forged.status_code == 403
    good = client.post("/projections/retry", data={"csrf": client.cookies[CSRF_COOKIE]})
    assert good.status_code == 303


def test_a_body_that_is_not_json_is_refused_by_the_api(store: EventStore) -> None:
    # A cross-site HTML form can post text/plain without a preflight: never accepted.
    response = client_for(store).post(
        "/api/streams/s/events",
        content=b'{"events": [{"name": "x", "data": {}}]}',
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 415
    assert store.head_position() == 0


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8400", "192.168.1.5"])
def test_without_a_token_only_loopback_host_names_are_answered(
    store: EventStore, host: str
) -> None:
    # A page that rebinds its DNS name to 127.0.0.1 still sends its own name.
    response = client_for(store).get("/api/log", headers={"host": host})
    assert response.status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8400", "localhost", "[::1]:8400", "127.0.0.2"])
def test_loopback_host_names_are_answered(store: EventStore, host: str) -> None:
    assert client_for(store).get("/api/log", headers={"host": host}).status_code == 200


# -- escaping -------------------------------------------------------------------------


@pytest.mark.parametrize("payload", XSS)
def test_event_data_is_shown_as_text_on_every_page(store: EventStore, payload: str) -> None:
    event = store.push(
        "happened", payload, {"note": payload, payload: 1}, metadata={"correlation_id": payload}
    )
    client = client_for(store)
    pages = ["/", "/log", f"/streams/{payload}", f"/events/{event.id}", f"/correlations/{payload}"]
    for page in pages:
        response = client.get(page, params={"prefix": payload} if page == "/" else None)
        assert response.status_code == 200, page
        assert payload not in response.text, page
        assert payload.replace("<", "&lt;").replace(">", "&gt;") in response.text, page


def test_pages_forbid_inline_scripts_and_framing(store: EventStore) -> None:
    response = client_for(store).get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_storage_failure_answers_503_without_the_driver_message(tmp_path: Any) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.close()  # every read now fails in the engine
    response = client_for(store).get("/api/log")
    assert response.status_code == 503
    assert response.json()["error"] == "backend_error"
    assert "closed" not in response.text
    assert client_for(store).get("/log").status_code == 503


# -- conduit serve --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_serve_refuses_to_start_elsewhere_than_loopback_without_a_token(host: str) -> None:
    result = CliRunner().invoke(
        cli, ["--store", "memory://", "serve", "--host", host], env={"CONDUIT_TOKEN": None}
    )
    assert result.exit_code == 1
    assert "without a token" in result.output
    assert "Traceback" not in result.output


def test_serve_passes_on_its_proxy_and_session_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[Any] = []

    async def serve(app: Any, **where: Any) -> None:
        served.append(app)

    monkeypatch.setattr("conduit.web.server.serve", serve)
    options = ["--trusted-proxy", "--public-url", PUBLIC, "--session-max-age", "90"]
    result = CliRunner().invoke(
        cli, ["--store", "memory://", "serve", *options], env={"CONDUIT_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    [app] = served
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    response = log_in(
        client,
        **{
            "host": "127.0.0.1:8400",
            "x-forwarded-host": "events.example.com",
            "x-forwarded-proto": "https",
            "origin": PUBLIC,
        },
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "max-age=90" in cookie
    assert "secure" in cookie


def test_serve_refuses_a_public_url_that_is_not_an_origin() -> None:
    result = CliRunner().invoke(
        cli, ["--store", "memory://", "serve", "--public-url", PUBLIC + "/conduit"]
    )
    assert result.exit_code == 1
    assert "public_url" in result.output
    assert "Traceback" not in result.output


def test_serve_without_a_store_says_so() -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"CONDUIT_URL": None})
    assert result.exit_code != 0
    assert "--store" in result.output


def test_serve_serves_on_loopback_until_interrupted(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conduit = Path(sys.executable).parent / "conduit"
    url = f"sqlite:///{tmp_path / 'events.db'}"
    EventStore(url).close()  # serve shows an existing store; a missing file is an error
    server = subprocess.Popen(
        [
            str(conduit),
            "--store",
            url,
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx2.get(f"http://127.0.0.1:{port}/api/log", timeout=1)
                break
            except httpx2.TransportError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "conduit serve did not start"
                time.sleep(0.1)
        assert response.json() == {"events": [], "next_after": 0}
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    assert server.returncode == 0
    assert f"http://127.0.0.1:{port}/" in err


def test_serve_refuses_a_missing_sqlite_file_and_makes_none(tmp_path: Path) -> None:
    conduit = Path(sys.executable).parent / "conduit"
    missing = tmp_path / "evnts.db"
    done = subprocess.run(
        [str(conduit), "--store", f"sqlite:///{missing}", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no SQLite store" in done.stderr
    assert not missing.exists()
