"""The jobs example in Chromium: a click in one tab shows in every tab within a second."""

from __future__ import annotations

import time
from typing import Any

from examples import jobs
from playwright.sync_api import Browser, Page, expect

#: The promise: every open tab shows a change within a second of the click.
WITHIN = 1.0


def state(tab: Page, job: str) -> Any:
    return tab.locator(f'li[data-job="{job}"] .state')


def open_tabs(browser: Browser, url: str, count: int) -> list[Page]:
    context = browser.new_context()
    tabs = [context.new_page() for _ in range(count)]
    for tab in tabs:
        tab.goto(url)
    for tab in tabs:
        # "live": the job's WebSocket is open and its first state arrived.
        expect(tab.locator("li[data-job]").first).to_be_visible()
        expect(tab.locator("li[data-job]:not([data-live])")).to_have_count(0)
        # Marks this document: an update that needed a reload would lose it.
        tab.evaluate("window.notReloaded = true")
    return tabs


def click_and_see(tabs: list[Page], clicker: Page, job: str, new_state: str) -> float:
    """Click in ``clicker`` (brought to the front first, as a person switches tabs: a
    background tab's clicks wait for its throttled animation frames); the seconds until
    every tab shows ``new_state``."""
    clicker.bring_to_front()
    start = time.monotonic()
    clicker.click(f'li[data-job="{job}"] button')
    for tab in tabs:
        expect(state(tab, job)).to_have_text(new_state, timeout=WITHIN * 1000)
    return time.monotonic() - start


def test_two_tabs_see_a_toggle_within_a_second(browser: Browser, serve: Any) -> None:
    server, recorder = serve(jobs.main({}))
    tabs = open_tabs(browser, server.url("/"), 2)
    try:
        for tab in tabs:
            expect(state(tab, "build")).to_have_text("stopped")

        assert click_and_see(tabs, tabs[0], "build", "running") < WITHIN
        assert click_and_see(tabs, tabs[1], "build", "stopped") < WITHIN  # and back, from tab 2
        assert click_and_see(tabs, tabs[1], "deploy", "running") < WITHIN

        for tab in tabs:
            assert tab.evaluate("window.notReloaded") is True  # pushed, not reloaded
            expect(state(tab, "build")).to_have_text("stopped")
            expect(state(tab, "test")).to_have_text("stopped")  # untouched
            expect(state(tab, "deploy")).to_have_text("running")

        # A tab opened now renders the current state and goes live.
        (late,) = open_tabs(browser, server.url("/"), 1)
        expect(state(late, "deploy")).to_have_text("running")
        assert click_and_see([*tabs, late], late, "test", "running") < WITHIN

        # The browser's own WebSocket: RFC 6455 (version 13), offering permessage-deflate,
        # from the page's origin (accepted by the same-origin default).
        assert len(recorder.upgrades) == 3 * len(jobs.DEFAULT_JOBS)
        origin = server.url("/").rstrip("/")
        for upgrade in recorder.upgrades:
            assert upgrade["version"] == "13"
            assert "permessage-deflate" in upgrade["extensions"]
            assert upgrade["origin"] == origin
    finally:
        for tab in tabs:
            tab.context.close()


def test_job_page_is_also_its_websocket(browser: Browser, serve: Any) -> None:
    """``/<job>/`` is the job's page for a browser and its WebSocket for the page's script."""
    server, recorder = serve(jobs.main({}))
    tabs = open_tabs(browser, server.url("/test/"), 1) + open_tabs(browser, server.url("/"), 1)
    try:
        assert tabs[0].locator("li[data-job]").count() == 1
        assert click_and_see(tabs, tabs[0], "test", "running") < WITHIN
        assert {u["path"] for u in recorder.upgrades} == {"/test/", "/build/", "/deploy/"}
    finally:
        for tab in tabs:
            tab.context.close()


def test_a_restarted_server_state_replaces_the_old_one(browser: Browser, serve: Any) -> None:
    """After a restart the versions count from 0 again: each tab takes the new server's
    snapshot when it reconnects, instead of keeping the old state as the newer one."""
    server, _ = serve(jobs.main({}))
    port = server.port
    (tab,) = open_tabs(browser, server.url("/"), 1)
    try:
        assert click_and_see([tab], tab, "build", "running") < WITHIN
        assert click_and_see([tab], tab, "build", "stopped") < WITHIN
        assert click_and_see([tab], tab, "build", "running") < WITHIN  # version 3

        server.stop()
        expect(tab.locator("li[data-job][data-live]")).to_have_count(0, timeout=10_000)
        expect(tab.locator('li[data-job="build"] .live')).to_contain_text(
            "closed 1001 (server shutting down), reconnecting in"
        )
        expect(state(tab, "build")).to_have_text("running")  # the last state it heard

        serve(jobs.main({}), port=port)  # a new app: every job stopped, version 0
        expect(tab.locator("li[data-job]:not([data-live])")).to_have_count(0, timeout=30_000)
        expect(state(tab, "build")).to_have_text("stopped")
        assert tab.evaluate("window.notReloaded") is True  # reconnected, not reloaded
        # And it is live on the new server: a toggle there shows at once.
        assert click_and_see([tab], tab, "build", "running") < WITHIN
    finally:
        tab.context.close()
