"""Security of ``conduit serve``: tokens, read-only mode, cross-site requests, escaping."""

from __future__ import annotations

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
from conduit.web import create_app
from conduit.web.auth import CSRF_COOKIE, SESSION_COOKIE
from conduit.web.openapi import description

TOKEN = "s3cret-token-for-tests"
BASE = "http://127.0.0.1"
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


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


def test_serve_without_a_store_says_so() -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"CONDUIT_URL": None})
    assert result.exit_code != 0
    assert "--store" in result.output


def test_serve_serves_on_loopback_until_interrupted(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conduit = Path(sys.executable).parent / "conduit"
    server = subprocess.Popen(
        [
            str(conduit),
            "--store",
            f"sqlite:///{tmp_path / 'events.db'}",
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
