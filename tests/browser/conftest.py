"""Browser tests: headless Chromium (Debian's ``chromium`` package) driven by Playwright.

The browser's own WebSocket (RFC 6455, offering permessage-deflate) is the client; the
examples run on a real :class:`~stargate.server.Server` in a background thread.

Chromium is found at ``/usr/bin/chromium`` (``STARGATE_CHROMIUM`` overrides); Playwright's own
browser downloads are never used.  Without it these tests are skipped with the reason, except
under CI (``CI`` set), where a missing browser is a failure.

No ``__init__.py`` here, as in ``tests/pyramid``: module names must be unique in the tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stargate.pyramid.testing import ServerThread
from stargate.server import ENVIRON_KEY
from tests.machine import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("STARGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module (Playwright gives it a fresh temporary profile, its
    user-data-dir, removed at exit); tests open their own contexts.

    Not per session: Playwright's synchronous API keeps an event loop running in the main
    thread while it is started, and pytest-asyncio's tests after these could not run theirs.
    """
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install playwright (the test extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


class UpgradeRecorder:
    """WSGI middleware: notes the handshake headers of every upgrade request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.upgrades: list[dict[str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if ENVIRON_KEY in environ:
            self.upgrades.append(
                {
                    "path": environ.get("PATH_INFO", ""),
                    "version": environ.get("HTTP_SEC_WEBSOCKET_VERSION", ""),
                    "extensions": environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", ""),
                    "origin": environ.get("HTTP_ORIGIN", ""),
                }
            )
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[ServerThread, UpgradeRecorder]]]:
    """``serve(app, **ServerConfig fields)``: the app behind an :class:`UpgradeRecorder` on a
    real server (an ephemeral port unless ``port=`` says which: a restart on the port of a
    stopped one)."""
    started: list[ServerThread] = []

    def start(app: Any, **config: Any) -> tuple[ServerThread, UpgradeRecorder]:
        recorder = UpgradeRecorder(app)
        server = ServerThread(recorder, **config).start()
        started.append(server)
        return server, recorder

    yield start
    for server in started:
        server.stop()
