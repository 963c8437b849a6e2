"""The demo (``stargate demo``) in Chromium: it reconnects by itself after a server restart,
says so, keeps what was typed meanwhile, shows close codes with their reasons, refuses a
message over the limit visibly, and wraps long words."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from stargate import demo

#: Bounds of page conditions: generous for a loaded machine (the backoff after a restart is
#: 1 + 2 + 4 s at worst before the server is back), never slept.
CONNECTED_WITHIN = 30_000
WITHIN = 10_000


def open_demo(browser: Browser, url: str) -> Page:
    tab = browser.new_context().new_page()
    tab.goto(url)
    expect(tab.locator("#status")).to_have_attribute("data-state", "connected", timeout=WITHIN)
    expect(tab.locator("#status")).to_have_text(re.compile(r"^connected as guest-\d+$"))
    return tab


def say(tab: Page, text: str) -> None:
    tab.bring_to_front()
    tab.fill("#text", text)
    tab.press("#text", "Enter")


def messages(tab: Page) -> Any:
    return tab.locator("#log p.message")


def test_reconnects_after_a_restart_and_sends_what_was_typed_meanwhile(
    browser: Browser, serve: Any
) -> None:
    server, _ = serve(demo.app)
    port = server.port
    ann = open_demo(browser, server.url("/"))
    bob = open_demo(browser, server.url("/"))
    try:
        say(ann, "before the restart")
        for tab in (ann, bob):
            expect(messages(tab).last).to_have_text(re.compile(r"guest-\d+: before the restart"))

        server.stop()  # a graceful stop: 1001 with its reason
        for tab in (ann, bob):
            status = tab.locator("#status")
            expect(status).to_have_attribute("data-state", "reconnecting", timeout=WITHIN)
            expect(status).to_have_text(re.compile(r"reconnecting in \d+ s$"), timeout=WITHIN)
            expect(tab.locator("#log p.notice").last).to_have_text(
                "disconnected (closed 1001 going away: \u201cserver shutting down\u201d)"
            )
            expect(tab.locator("#retry")).to_be_visible()

        # Typed while the server is down: queued, shown as kept, not lost.
        say(ann, "typed while the server was down")
        pending = ann.locator("#log p.pending")
        expect(pending).to_have_text("you: typed while the server was down")
        assert ann.locator("#text").input_value() == ""
        kept = pending.evaluate("p => getComputedStyle(p, '::after').content")
        assert "kept: sent once the page reconnects" in kept

        serve(demo.app, port=port)  # the server is back, on the same port
        for tab in (ann, bob):
            expect(tab.locator("#status")).to_have_attribute(
                "data-state", "connected", timeout=CONNECTED_WITHIN
            )
            expect(tab.locator("#status")).to_have_text(re.compile(r"^connected as guest-\d+$"))
            expect(messages(tab).last).to_have_text(
                re.compile(r"guest-\d+: typed while the server was down"), timeout=WITHIN
            )
            expect(messages(tab).filter(has_text="typed while the server was down")).to_have_count(
                1
            )
        expect(ann.locator("#log p.pending")).to_have_count(0)
        expect(ann.locator("#retry")).to_be_hidden()
    finally:
        ann.context.close()
        bob.context.close()


def test_a_message_over_the_limit_is_refused_visibly_and_kept(browser: Browser, serve: Any) -> None:
    server, _ = serve(demo.app)
    tab = open_demo(browser, server.url("/"))
    try:
        limit = demo.MAX_CHARS
        expect(tab.locator("#limit")).to_have_text(f"{limit:,}")
        too_long = "x" * (limit + 1)
        tab.fill("#text", too_long)
        expect(tab.locator("#count")).to_have_text(f"{limit + 1:,}")
        expect(tab.locator("#count")).to_have_attribute("data-over", "")
        tab.press("#text", "Enter")
        expect(tab.locator("#problem")).to_have_text(
            f"Not sent: {limit + 1:,} characters, over the limit of {limit:,}. "
            "Your text is still in the box: shorten it."
        )
        assert tab.locator("#text").input_value() == too_long  # nothing cut, nothing lost
        expect(tab.locator("#log p.pending, #log p.message")).to_have_count(0)

        # Exactly the limit goes through whole.
        say(tab, "y" * limit)
        expect(messages(tab).last).to_have_text(re.compile(rf"guest-\d+: y{{{limit}}}$"))

        # Should the page's check be passed (an older page, a larger limit), the server
        # refuses too, and the page shows the refusal with the text.
        tab.evaluate("limit = 10 * limit")
        say(tab, too_long)
        refused = tab.locator("#log p.refused")
        expect(refused).to_have_text(
            f"not sent ({limit + 1} characters: over the limit of {limit}, not sent): {too_long}"
        )
        expect(tab.locator("#problem")).to_contain_text("over the limit")
        expect(tab.locator("#log p.pending")).to_have_count(0)
    finally:
        tab.context.close()


def test_long_words_wrap_inside_the_log(browser: Browser, serve: Any) -> None:
    server, _ = serve(demo.app)
    tab = open_demo(browser, server.url("/"))
    try:
        word = "w" * 600
        say(tab, word)
        line = messages(tab).last
        expect(line).to_have_text(re.compile(rf"guest-\d+: {word}$"))
        log_box = tab.locator("#log").evaluate(
            "log => ({scroll: log.scrollWidth, client: log.clientWidth})"
        )
        assert log_box["scroll"] <= log_box["client"]  # no horizontal overflow
        line_box = line.bounding_box()
        text_line_height = tab.locator("#log p.notice").first.bounding_box()
        assert line_box is not None and text_line_height is not None
        assert line_box["height"] > 2 * text_line_height["height"]  # wrapped onto lines
    finally:
        tab.context.close()
