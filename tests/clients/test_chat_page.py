"""The chat page in a real browser: Debian's headless Chromium driven by
Playwright, against `python -m chat_service` processes.

Synchronous tests: Playwright's sync API runs its own event loop. Every wait
is Playwright's `expect` (it polls the page until its deadline, WAIT).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import jwt
import port_for
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_redis.executor import RedisExecutor

from ..client_process import client_command
from ..helpers import WAIT
from ..redis_helpers import tcp_url
from ..tokens import SECRET, mint
from .live_service import LiveService, live_service

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make chromium`)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container: no user namespace for the sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots for people to look at; kept out of git (.gitignore).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# A page's reconnect waits double from 0.5 s up to 15 s; an instance restart
# on a busy machine takes a few seconds, so a reconnect may take this long.
RECONNECT = 40.0

expect.set_options(timeout=WAIT * 1000)

OpenPage = Callable[..., Page]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Open the chat page as `name` in `rooms`, each page a browser profile of
    its own; at the end, no page may have had a script error or a dialog."""
    problems: list[str] = []
    contexts = []

    def open_page(
        service: LiveService,
        name: str,
        rooms: str,
        *,
        join: bool = True,
        token: str = "",
        token_url: str = "",
        **viewport: int,
    ) -> Page:
        context = browser.new_context(viewport=viewport or None)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"{name}: error {error}"))
        page.on("dialog", lambda dialog: problems.append(f"{name}: dialog {dialog.message}"))
        query = urlencode({"name": "" if token else name, "rooms": rooms, "token_url": token_url})
        page.goto(f"{service.origin}/?{query}")
        page.locator("#login-token").fill(token)
        if not join:
            return page
        page.get_by_role("button", name="Join").click()
        expect(page.locator("#status")).to_have_text(f"Connected as {name}")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert problems == []


def say(page: Page, text: str) -> None:
    """Type `text` and press Enter, as a person would."""
    page.locator("#message").fill(text)
    page.locator("#message").press("Enter")


def bodies(page: Page, room: str) -> list[str]:
    return page.locator(f'.log[data-room="{room}"] .msg:not(.pending) .body').all_inner_texts()


def expect_bodies(page: Page, room: str, expected: list[str], timeout: float = WAIT) -> None:
    """The room's delivered messages are `expected`, in that order (waits for it)."""
    locator = page.locator(f'.log[data-room="{room}"] .msg:not(.pending) .body')
    expect(locator).to_have_text(expected, timeout=timeout * 1000)


def unread(page: Page, room: str) -> str | None:
    badge = page.locator(f'button.room[data-room="{room}"] .unread')
    return None if badge.is_hidden() else badge.inner_text()


def test_two_pages_chat_and_a_page_in_another_room_sees_none_of_it(
    open_page: OpenPage,
) -> None:
    with live_service() as service:
        alice = open_page(service, "alice", "general")
        bob = open_page(service, "bob", "general")
        carol = open_page(service, "carol", "elsewhere")
        say(alice, "hi bob")
        expect_bodies(bob, "general", ["hi bob"])
        say(bob, "hi alice")
        expect_bodies(alice, "general", ["hi bob", "hi alice"])
        expect_bodies(bob, "general", ["hi bob", "hi alice"])
        expect(alice.locator('.log[data-room="general"] .msg .who')).to_have_text(["alice", "bob"])
        # Bob joined after Alice: his page lists both of them as here.
        expect(bob.locator("#people-title")).to_have_text("Here (2)")
        expect(bob.locator("#members li")).to_have_text(["alice", "bob"])
        # Carol's own message reaches her after theirs were published: had
        # theirs been sent to her, they would be there by now.
        say(carol, "anyone?")
        expect_bodies(carol, "elsewhere", ["anyone?"])
        assert carol.locator(".msg").count() == 1


def test_a_page_shows_who_comes_and_goes(open_page: OpenPage) -> None:
    with live_service(PRESENCE_INTERVAL="0.1") as service:
        alice = open_page(service, "alice", "general")
        expect(alice.locator("#members li")).to_have_text(["alice"])
        bob = open_page(service, "bob", "general")
        expect(alice.locator("#people-title")).to_have_text("Here (2)")
        expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
        bob.close()
        expect(alice.locator("#people-title")).to_have_text("Here (1)")
        expect(alice.locator("#members li")).to_have_text(["alice"])


def test_markup_in_a_body_is_shown_as_text_and_runs_nothing(open_page: OpenPage) -> None:
    attack = "<img src=x onerror=alert(1)>"
    with live_service() as service:
        alice = open_page(service, "alice", "general")
        bob = open_page(service, "bob", "general")
        say(alice, attack)
        for page in (alice, bob):
            expect_bodies(page, "general", [attack])
            assert page.locator(".log img").count() == 0
            assert page.evaluate("document.querySelectorAll('img').length") == 0
    # open_page's teardown: no alert dialog, no script error on either page.


def test_pages_reconnect_after_a_restart_say_so_and_miss_nothing(
    open_page: OpenPage, redis_server: RedisExecutor
) -> None:
    """The pages' instance stops (1001) while another carries on; what was
    said meanwhile reaches them once their instance is back."""
    redis = {"REDIS_URL": tcp_url(redis_server)}
    port = str(port_for.select_random())
    with live_service(**redis) as other:
        carol = open_page(other, "carol", "hall")
        first = live_service(PORT=port, **redis)
        service = first.__enter__()
        try:
            alice = open_page(service, "alice", "hall")
            bob = open_page(service, "bob", "hall")
            say(alice, "before")
            expect_bodies(bob, "hall", ["before"])
            assert service.stop() == 0
            for page in (alice, bob):
                expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
            say(carol, "while away 1")
            say(carol, "while away 2")
            expect_bodies(carol, "hall", ["before", "while away 1", "while away 2"])
        finally:
            first.__exit__(None, None, None)
        with live_service(PORT=port, **redis):
            for page, name in ((alice, "alice"), (bob, "bob")):
                expect(page.locator("#status")).to_have_text(
                    f"Connected as {name}", timeout=RECONNECT * 1000
                )
                expect(page.locator('.log[data-room="hall"] .note')).to_have_text(
                    ["Reconnected: nothing missed."]
                )
                expect_bodies(page, "hall", ["before", "while away 1", "while away 2"])
            say(bob, "back")
            expected = ["before", "while away 1", "while away 2", "back"]
            for page in (alice, bob, carol):
                expect_bodies(page, "hall", expected)
            assert alice.locator(".gap").count() == 0


def test_with_auth_on_a_pasted_token_names_the_user(open_page: OpenPage) -> None:
    with live_service(AUTH_ENABLED="true", AUTH_JWT_SECRET=SECRET) as service:
        dora = open_page(service, "dora", "general", token=mint(SECRET, sub="dora"))
        say(dora, "signed in")
        expect_bodies(dora, "general", ["signed in"])
        expect(dora.locator('.log[data-room="general"] .msg .who')).to_have_text(["dora"])
        # A token the server refuses (401 before the upgrade): the page says
        # it cannot connect, and keeps trying.
        mallory = open_page(service, "mallory", "general", join=False, token="not-a-jwt")
        mallory.get_by_role("button", name="Join").click()
        expect(mallory.locator("#status")).to_have_text(re.compile("^Cannot connect; reconnecting"))


def test_a_page_shows_recent_history_and_loads_older_pages(open_page: OpenPage) -> None:
    said = [f"m{n}" for n in range(1, 121)]
    with live_service(RATE_LIMIT_PER_SECOND="0") as service:
        url = f"ws://127.0.0.1:{service.port}/api/chat-api/ws/archive"
        subprocess.run(
            client_command(url, "--once"),
            input="".join(f"{body}\n" for body in said),
            text=True,
            capture_output=True,
            timeout=WAIT * 3,
            check=True,
        )
        alice = open_page(service, "alice", "archive")
        expect_bodies(alice, "archive", said[-50:])  # the newest page, as context
        older = alice.get_by_role("button", name="Load older messages")
        older.click()
        expect_bodies(alice, "archive", said[-100:])
        older.focus()
        alice.keyboard.press("Enter")
        expect_bodies(alice, "archive", said)
        expect(older).to_be_hidden()  # nothing older is left


# Tokens that expire soon: the server says so at once (the notice is longer
# than what is left), and the page must refresh before the end.
EXPIRING = {"AUTH_ENABLED": "true", "AUTH_JWT_SECRET": SECRET, "TOKEN_EXPIRY_NOTICE": "25"}


def expect_refreshed(page: Page, token: str) -> None:
    """The page has had `refreshed` for `token`: it shows the new end of its session."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    expect(page.locator("#session")).to_have_attribute("data-exp", str(exp))
    expect(page.locator("#session")).to_contain_text("Signed in until")


def test_a_page_refreshes_its_token_from_its_token_url(open_page: OpenPage) -> None:
    renewed = mint(SECRET, sub="dora", expires_in=600)
    with live_service(**EXPIRING) as service:
        dora = open_page(
            service,
            "dora",
            "general",
            join=False,
            token=mint(SECRET, sub="dora", expires_in=20),
            token_url="/auth/token",
        )
        # The deployment's token endpoint, played by the test.
        dora.route(
            f"{service.origin}/auth/token",
            lambda route: route.fulfill(json={"token": renewed}),
        )
        dora.get_by_role("button", name="Join").click()
        expect_refreshed(dora, renewed)
        expect(dora.locator("#token-banner")).to_be_hidden()
        expect(dora.locator("#status")).to_have_text("Connected as dora")


def test_a_page_without_a_token_url_asks_for_a_new_token(open_page: OpenPage) -> None:
    renewed = mint(SECRET, sub="dora", expires_in=600)
    with live_service(**EXPIRING) as service:
        dora = open_page(
            service, "dora", "general", join=False, token=mint(SECRET, sub="dora", expires_in=20)
        )
        dora.get_by_role("button", name="Join").click()
        banner = dora.locator("#token-banner")
        expect(banner).to_contain_text("paste a new token")
        dora.get_by_label("New token", exact=True).fill(renewed)
        dora.get_by_label("New token", exact=True).press("Enter")
        expect_refreshed(dora, renewed)
        expect(banner).to_be_hidden()


def test_a_page_marks_where_history_could_not_be_recovered(open_page: OpenPage) -> None:
    """Without Redis a restarted instance starts every room in a new epoch:
    what was said before cannot be recovered, and the page says where."""
    port = str(port_for.select_random())
    with live_service(PORT=port) as service:
        alice = open_page(service, "alice", "general")
        say(alice, "before the restart")
        expect_bodies(alice, "general", ["before the restart"])
    with live_service(PORT=port):
        expect(alice.locator("#status")).to_have_text(
            "Connected as alice", timeout=RECONNECT * 1000
        )
        gap = alice.locator('.log[data-room="general"] .gap')
        expect(gap).to_have_text(
            "Messages from before this point could not be recovered (epoch_changed);"
            " some may be missing."
        )
        say(alice, "after it")
        expect_bodies(alice, "general", ["before the restart", "after it"])
        # The marker stands between the two.
        items = alice.locator('.log[data-room="general"] > li')
        expect(items).to_have_count(3)
        assert items.nth(1).get_attribute("class") == "gap"


def test_a_page_in_two_rooms_counts_what_it_has_not_read(open_page: OpenPage) -> None:
    with live_service() as service:
        alice = open_page(service, "alice", "general,random")
        bob = open_page(service, "bob", "random")
        carol = open_page(service, "carol", "general")
        for text in ("one", "two", "three"):
            say(bob, text)
        say(carol, "in the open room")
        expect_bodies(alice, "random", ["one", "two", "three"])
        expect_bodies(alice, "general", ["in the open room"])
        assert unread(alice, "random") == "3"
        assert unread(alice, "general") is None  # the room on screen
        say(alice, "mine do not count")
        expect_bodies(alice, "general", ["in the open room", "mine do not count"])
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=ARTIFACTS / "chat-page.png")
        alice.locator('button.room[data-room="random"]').click()
        expect(alice.locator("#room-title")).to_have_text("#random")
        assert unread(alice, "random") is None
        expect(alice.locator('.log[data-room="random"]')).to_be_visible()
        say(carol, "while you read random")
        expect(alice.locator('button.room[data-room="general"] .unread')).to_have_text("1")
        # Keyboard: Alt+ArrowUp goes back to the room above.
        alice.locator("#message").press("Alt+ArrowUp")
        expect(alice.locator("#room-title")).to_have_text("#general")
        assert unread(alice, "general") is None


def test_the_page_is_usable_at_phone_width(open_page: OpenPage) -> None:
    with live_service() as service:
        alice = open_page(service, "alice", "general,random", width=375, height=740)
        bob = open_page(service, "bob", "general")
        say(bob, "a long line " * 12)
        expect_bodies(alice, "general", ["a long line " * 12])
        scroll_width = alice.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 375  # nothing wider than the screen
        expect(alice.locator("#message")).to_be_in_viewport()
        expect(alice.locator('button.room[data-room="random"]')).to_be_in_viewport()
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=ARTIFACTS / "chat-page-phone.png")


def test_the_page_answers_heartbeats(open_page: OpenPage) -> None:
    """With a 1 s heartbeat and 1 s of patience, a page that did not answer
    would be closed with 4000 within 2 s; it answers every ping and stays."""
    with live_service(HEARTBEAT_INTERVAL="1", HEARTBEAT_TIMEOUT="1") as service:
        alice = open_page(service, "alice", "general", join=False)
        with alice.expect_websocket() as opened:
            alice.get_by_role("button", name="Join").click()
        socket = opened.value
        for _ in range(3):
            socket.wait_for_event("framesent", predicate=lambda payload: '"pong"' in str(payload))
        assert not socket.is_closed()
        expect(alice.locator("#status")).to_have_text("Connected as alice")
        say(alice, "still here")
        expect_bodies(alice, "general", ["still here"])


def test_pages_chat_over_permessage_deflate_without_context_takeover(open_page: OpenPage) -> None:
    """With WS_COMPRESSION, Chromium's offer is accepted without context
    takeover either way: pages chat, answer heartbeats (compressed pongs,
    each inflated on its own) and stay connected."""
    settings = {"WS_COMPRESSION": "true", "HEARTBEAT_INTERVAL": "1", "HEARTBEAT_TIMEOUT": "1"}
    with live_service(**settings) as service:
        bob = open_page(service, "bob", "general")
        alice = open_page(service, "alice", "general", join=False)
        handshakes: list[dict[str, str]] = []
        cdp = alice.context.new_cdp_session(alice)
        cdp.on(
            "Network.webSocketHandshakeResponseReceived",
            lambda event: handshakes.append(
                {name.lower(): value for name, value in event["response"]["headers"].items()}
            ),
        )
        cdp.send("Network.enable")
        with alice.expect_websocket() as opened:
            alice.get_by_role("button", name="Join").click()
        socket = opened.value
        for _ in range(3):
            socket.wait_for_event("framesent", predicate=lambda payload: '"pong"' in str(payload))
        for n in range(3):
            say(alice, f"squeezed {n} " * 20)
        expected = [f"squeezed {n} " * 20 for n in range(3)]
        expect_bodies(bob, "general", [text.strip() for text in expected])
        expect_bodies(alice, "general", [text.strip() for text in expected])
        assert not socket.is_closed()
        (handshake,) = handshakes
        extensions = handshake["sec-websocket-extensions"]
        assert extensions.startswith("permessage-deflate")
        assert "server_no_context_takeover" in extensions
        assert "client_no_context_takeover" in extensions
