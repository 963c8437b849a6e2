"""The chat example in Chromium: two people, each in a tab of their own browser context (the
name is in a login cookie), see each other join, talk and leave."""

from __future__ import annotations

import re
import time
from typing import Any

from examples import chat
from examples.chat import views as chat_views
from playwright.sync_api import Browser, Page, expect

WITHIN = 1.0
SETTINGS = {"pyramid.includes": "stargate.pyramid", "chat.secret": "browser-test-secret"}


def enter(browser: Browser, url: str, name: str) -> Page:
    """A new person: open the chat, give a name, land in the lobby, connected."""
    tab = browser.new_context().new_page()
    tab.goto(url)
    tab.fill("input[name=name]", name)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/rooms/lobby")
    expect(tab.locator("body")).to_have_attribute("data-connected", "")
    expect(tab.locator("#me")).to_have_text(name)
    return tab


def last(tab: Page, kind: str) -> Any:
    return tab.locator(f"#log p.{kind}").last


def say(tab: Page, text: str) -> float:
    tab.bring_to_front()
    start = time.monotonic()
    tab.fill("#text", text)
    tab.press("#text", "Enter")
    return start


def test_two_people_chat(browser: Browser, serve: Any) -> None:
    server, recorder = serve(chat.main({}, **SETTINGS))
    ada = enter(browser, server.url("/"), "Ada")
    try:
        expect(last(ada, "notice")).to_have_text("Ada joined")
        start = time.monotonic()
        bob = enter(browser, server.url("/"), "Bob")
        expect(last(ada, "notice")).to_have_text("Bob joined", timeout=WITHIN * 1000)
        for tab in (ada, bob):
            expect(tab.locator("#people")).to_have_text("Ada, Bob")
        assert time.monotonic() - start < 10  # (the login round trips are in there)

        start = say(ada, "hello Bob")
        for tab in (ada, bob):
            expect(last(tab, "message")).to_have_text("Ada: hello Bob", timeout=WITHIN * 1000)
        assert time.monotonic() - start < WITHIN
        assert ada.locator("#text").input_value() == ""

        start = say(bob, "hi Ada <b>not bold</b>")
        for tab in (ada, bob):
            expect(last(tab, "message")).to_have_text(
                "Bob: hi Ada <b>not bold</b>", timeout=WITHIN * 1000
            )
        assert time.monotonic() - start < WITHIN
        assert bob.locator("#log b").count() == 0  # text, never markup

        start = time.monotonic()
        bob.context.close()
        expect(last(ada, "notice")).to_have_text("Bob left", timeout=WITHIN * 1000)
        expect(ada.locator("#people")).to_have_text("Ada")
        assert time.monotonic() - start < WITHIN

        origin = server.url("/").rstrip("/")
        assert [u["path"] for u in recorder.upgrades] == ["/rooms/lobby", "/rooms/lobby"]
        for upgrade in recorder.upgrades:
            assert upgrade["version"] == "13"
            assert "permessage-deflate" in upgrade["extensions"]
            assert upgrade["origin"] == origin
    finally:
        ada.context.close()


def test_anonymous_visitor_is_sent_to_the_name_form(browser: Browser, serve: Any) -> None:
    server, recorder = serve(chat.main({}, **SETTINGS))
    tab = browser.new_context().new_page()
    try:
        tab.goto(server.url("/rooms/random"))
        expect(tab.locator("input[name=name]")).to_be_visible()
        assert recorder.upgrades == []  # the room's page, and so its WebSocket, never opened
        tab.fill("input[name=name]", "Cy")
        tab.click("button[type=submit]")
        tab.wait_for_url("**/rooms/random")
        expect(tab.locator("body")).to_have_attribute("data-connected", "")
    finally:
        tab.context.close()


def test_a_restart_keeps_unsent_text_and_refreshes_who_is_here(
    browser: Browser, serve: Any
) -> None:
    """The server restarts under two open tabs: each says so and reconnects by itself; what
    Ada typed meanwhile stays in her box (and is sent once she is back); the people list
    is the new server's."""
    server, _ = serve(chat.main({}, **SETTINGS))
    port = server.port
    ada = enter(browser, server.url("/"), "Ada")
    bob = enter(browser, server.url("/"), "Bob")
    try:
        for tab in (ada, bob):
            expect(tab.locator("#people")).to_have_text("Ada, Bob")
            expect(tab.locator("#status")).to_have_attribute("data-state", "connected")

        server.stop()
        for tab in (ada, bob):
            expect(tab.locator("body")).not_to_have_attribute("data-connected", "")
            expect(tab.locator("#status")).to_have_text(
                re.compile(r"reconnecting in \d+ s$"), timeout=10_000
            )
            expect(last(tab, "notice")).to_have_text(
                "disconnected: closed 1001 (server shutting down)"
            )

        say(ada, "said while the server was down")
        expect(ada.locator("#problem")).to_contain_text("not connected")
        assert ada.locator("#text").input_value() == "said while the server was down"

        # The same secret: the login cookies stay valid on the new server.
        serve(chat.main({}, **SETTINGS), port=port)
        for tab in (ada, bob):
            expect(tab.locator("body")).to_have_attribute("data-connected", "", timeout=30_000)
            expect(tab.locator("#status")).to_have_text("connected")
            expect(tab.locator("#people")).to_have_text("Ada, Bob", timeout=10_000)

        ada.bring_to_front()
        ada.press("#text", "Enter")
        for tab in (ada, bob):
            expect(last(tab, "message")).to_have_text("Ada: said while the server was down")
        assert ada.locator("#text").input_value() == ""
        expect(ada.locator("#problem")).to_have_text("")
    finally:
        ada.context.close()
        bob.context.close()


def test_a_message_over_the_limit_is_refused_and_kept(browser: Browser, serve: Any) -> None:
    server, _ = serve(chat.main({}, **SETTINGS))
    ada = enter(browser, server.url("/"), "Ada")
    try:
        too_long = "x" * (chat_views.MAX_CHARS + 1)
        say(ada, too_long)
        expect(ada.locator("#problem")).to_contain_text(f"over the limit of {chat_views.MAX_CHARS}")
        assert ada.locator("#text").input_value() == too_long  # no maxlength cut it short
        expect(ada.locator("#log p.message")).to_have_count(0)
    finally:
        ada.context.close()
