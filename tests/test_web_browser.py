"""The event browser in real headless Chromium (Debian's, driven by Playwright).

The server runs in a thread of the test process (uvicorn on a free loopback
port, in the event loop of the ``AsyncEventStore`` it serves) over an SQLite
store that the tests also push to directly (through the kit's blocking
adapter, on that loop), so that the live tail and the parked events can be
watched changing. Other tests push from another store over the same file, as
another process would, and serve an ``EventStore``.

Screenshots of the main pages are taken every run; with
``CONDUIT_SCREENSHOTS=docs/screenshots`` they are written there, for the
docs and the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from conduit import AsyncEventStore, EventStore
from conduit.events import Event
from conduit.testing.aio import LoopThread, blocking
from conduit.web import create_app
from conduit.web.server import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = {"note": "<script>alert(1)</script>", "image": "<img src=x onerror=alert(1)>"}
TIMEOUT = 20_000  # ms: the most any expectation waits (the machine may be loaded)


class Mailer:
    """A projection that fails on events marked ``undeliverable`` until it is fixed."""

    def __init__(self) -> None:
        self.broken = True
        self.sent: list[str] = []

    def on_order_placed(self, event: Event) -> None:
        if self.broken and event.data.get("undeliverable"):
            raise ConnectionError("SMTP server refused the recipient")
        self.sent.append(str(event.stream_id))


class People:
    """A projection that handles everything."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def on_person_registered(self, event: Event) -> None:
        self.names[str(event.stream_id)] = event.data["first_name"]


@dataclass
class Site:
    """The running server, its store, and what the seed made.

    ``store`` is the ``AsyncEventStore`` the server serves, called from the
    tests as an ``EventStore`` is (:func:`conduit.testing.aio.blocking`: its
    calls run on the store's loop); ``database`` is the store's URL.
    """

    url: str
    store: Any
    database: str
    mailer: Mailer
    order: list[Event] = field(default_factory=list)
    xss: Event | None = None


def seed(store: Any) -> tuple[list[Event], Event]:
    """A small shop: people, orders with their correlated payments and shipments."""
    people = [("Kris", "Smith"), ("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]
    for number, (first, last) in enumerate(people, 1001):
        store.push(
            "person_registered",
            f"person-{number}",
            {"first_name": first, "last_name": last, "email": f"{first.lower()}@example.com"},
            metadata={"user": "admin"},
            expected_version=0,
        )
    store.push("person_renamed", "person-1001", {"last_name": "Jones"}, expected_version=1)
    chain: list[Event] = []
    for number in range(5001, 5004):
        correlation = f"checkout-{number}"
        placed = store.push(
            "order_placed",
            f"order-{number}",
            {"customer": "person-1002", "lines": [{"sku": "BK-42", "quantity": 2}], "total": 59.8},
            metadata={"correlation_id": correlation, "user": "person-1002"},
        )
        paid = store.push(
            "payment_received",
            f"payment-{number}",
            {"order": f"order-{number}", "amount": 59.8, "method": "card"},
            metadata={"correlation_id": correlation, "causation_id": str(placed.id)},
        )
        shipped = store.push(
            "order_shipped",
            f"order-{number}",
            {"carrier": "DHL", "tracking": f"JD0146{number}"},
            metadata={"correlation_id": correlation, "causation_id": str(paid.id)},
        )
        if not chain:
            chain = [placed, paid, shipped]
    xss = store.push("note_added", "notes/<script>", XSS, metadata={"correlation_id": XSS["note"]})
    return chain, xss


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    database = f"sqlite:///{tmp_path_factory.mktemp('web') / 'events.db'}"
    loop = LoopThread()
    served = loop.call(lambda: AsyncEventStore(database))
    store = blocking(served, loop)
    mailer = Mailer()
    store.subscribe(People(), name="people")
    store.subscribe(mailer, name="mailer", max_attempts=1, backoff=0)
    order, xss = seed(store)
    try:
        with BackgroundServer(create_app(served), loop=loop.loop) as server:
            yield Site(server.url, store, database, mailer, order, xss)
    finally:
        store.close()
        loop.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/ensure-chromium"
    expect.set_options(timeout=TIMEOUT)  # expectations wait for a condition, with this deadline
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(
        base_url=site.url, viewport={"width": 1280, "height": 800}, locale="en-GB"
    )
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", refuse)
    yield page
    context.close()
    assert dialogs == [], "a page opened a dialog"


def test_overview_search_a_stream_open_it_and_follow_the_correlation(
    page: Page, site: Site
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#head")).to_have_text(str(site.store.head_position()))
    expect(page.get_by_role("cell", name="people", exact=True)).to_be_visible()

    page.get_by_label("stream id prefix").fill("order-")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/streams\?prefix=order-"))
    expect(page.locator("table.streams tbody tr")).to_have_count(3)
    page.get_by_role("link", name="order-5001").click()

    expect(page.locator("h1")).to_contain_text("order-5001")
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("order_placed")
    expect(rows.first.locator("pre")).to_contain_text('"sku": "BK-42"')
    rows.nth(1).get_by_role("link", name="order_shipped").click()

    placed, paid, shipped = site.order
    expect(page).to_have_url(re.compile(f"/events/{shipped.id}"))
    expect(page.locator("a.correlation")).to_have_text("checkout-5001")
    related = page.locator("#correlated tbody tr")
    expect(related).to_have_count(2)  # the order placed and its payment
    related.filter(has_text="payment_received").get_by_role("link", name="payment_received").click()

    expect(page).to_have_url(re.compile(f"/events/{paid.id}"))
    expect(page.locator("#data")).to_contain_text('"method": "card"')
    page.locator("a.causation").click()  # the payment was caused by the order
    expect(page).to_have_url(re.compile(f"/events/{placed.id}"))


def test_the_live_tail_shows_an_event_pushed_during_the_test(page: Page, site: Site) -> None:
    page.goto("/log")
    expect(page.locator("#tail-status")).to_have_attribute("data-state", "live")
    site.store.push("person_registered", "person-2001", {"first_name": "Live"})
    newest = page.locator("#log-rows tr").first
    expect(newest).to_contain_text("person-2001")
    expect(newest).to_contain_text('"first_name": "Live"')


def test_the_live_tail_shows_an_event_another_process_pushed(page: Page, site: Site) -> None:
    page.goto("/log")
    expect(page.locator("#tail-status")).to_have_attribute("data-state", "live")
    with EventStore(site.database) as elsewhere:  # another store over the file: it looks
        elsewhere.push("person_registered", "person-2003", {"first_name": "Far"})
    expect(page.locator("#log-rows tr").first).to_contain_text("person-2003")


def test_the_live_tail_falls_back_to_polling(page: Page, site: Site) -> None:
    page.goto("/log?tail=poll")
    expect(page.locator("#tail-status")).to_have_attribute("data-state", "polling")
    site.store.push("person_registered", "person-2002", {"first_name": "Polled"})
    expect(page.locator("#log-rows tr").first).to_contain_text("person-2002")


def test_retry_a_parked_event_with_its_button(page: Page, site: Site) -> None:
    site.mailer.broken = True
    event = site.store.push("order_placed", "order-6001", {"undeliverable": True})
    parked = next(p for p in site.store.parked() if p.event_id == event.id)
    page.goto("/projections")
    row = page.locator(f"#parked-{parked.id}")
    expect(row).to_contain_text("SMTP server refused the recipient")

    site.mailer.broken = False  # the fix is deployed
    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status")).to_contain_text(
        f"Retry requested for parked event {parked.id}"
    )
    expect(page.locator(f"#parked-{parked.id}")).to_have_count(0)
    assert "order-6001" in site.mailer.sent
    assert all(p.id != parked.id for p in site.store.parked())


def test_the_xss_payload_renders_as_text_and_opens_no_dialog(page: Page, site: Site) -> None:
    assert site.xss is not None
    for path in [f"/events/{site.xss.id}", "/streams/notes%2F%3Cscript%3E", "/log", "/"]:
        page.goto(path)
        expect(page.locator("main")).to_contain_text("<script>alert(1)</script>")
        expect(page.locator("main")).to_contain_text("<img src=x onerror=alert(1)>")
        assert page.locator("main img").count() == 0
        assert page.locator("main script").count() == 0
    page.goto(f"/events/{site.xss.id}")
    assert '"note": "<script>alert(1)</script>"' in page.locator("#data").inner_text()
    # The page fixture fails the test if any dialog opened.


def test_log_in_with_the_token_and_log_out_for_good(browser: Browser, site: Site) -> None:
    """Served from an ``EventStore``, as applications built around one are."""
    token = "a-token-for-the-browser-test"
    with (
        EventStore(site.database) as store,
        BackgroundServer(create_app(store, token=token)) as server,
    ):
        context = browser.new_context(base_url=server.url)
        context.set_default_timeout(TIMEOUT)
        try:
            page = context.new_page()
            page.goto("/projections")
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.get_by_label("Token").fill("not-the-token")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_contain_text("That is not the token")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(re.compile(r"/projections$"))
            [session] = [c for c in context.cookies() if c["name"] == "conduit_session"]
            assert session["httpOnly"]
            assert session["expires"] > 0  # a cookie with an end, not for the browser's life
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/login"))
            # A copy of the cookie, kept from before, no longer opens anything.
            context.add_cookies(
                [{"name": session["name"], "value": session["value"], "url": server.url}]
            )
            page.goto("/projections")
            expect(page).to_have_url(re.compile(r"/login\?next="))
        finally:
            context.close()


def test_screenshots_of_the_main_pages(page: Page, site: Site, tmp_path: Path) -> None:
    site.mailer.broken = True
    site.store.push("order_placed", "order-6002", {"undeliverable": True, "total": 12.5})
    shots: list[tuple[str, str]] = [
        ("overview", "/"),
        ("stream", "/streams/order-5001"),
        ("event", f"/events/{site.order[2].id}"),
        ("log", "/log"),
        ("projections", "/projections"),
    ]
    folder = Path(os.environ.get("CONDUIT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in shots:
        page.goto(path)
        if name == "log":
            expect(page.locator("#tail-status")).to_have_attribute("data-state", "live")
        page.locator("footer").wait_for()
        target = folder / f"{name}.png"
        page.screenshot(path=str(target), full_page=name in ("stream", "event"))
        assert target.read_bytes().startswith(b"\x89PNG"), name
