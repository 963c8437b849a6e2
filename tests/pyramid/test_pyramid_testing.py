"""The Pyramid test helper (stargate.pyramid.testing): a real server in a background
thread, started and stopped around a test, reporting what went wrong at start.

(Named apart from tests/test_testing.py: this directory is no package, see the conftest.)
"""

from __future__ import annotations

import errno
import socket
import threading
import urllib.request
from typing import Any

import pytest
from pyramid.config import Configurator
from websockets.sync.client import connect

from stargate.pyramid.testing import ServerThread
from stargate.server import Routes, ServerConfig, WebSocket

TIMEOUT = 5.0


def pyramid_app() -> Any:
    with Configurator() as config:
        config.include("stargate.pyramid")

        def home(request: object) -> str:
            return "home"

        config.add_route("home", "/")
        config.add_view(home, route_name="home", renderer="string")
        return config.make_wsgi_app()


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def test_serves_http_and_websockets_until_stopped() -> None:
    """As a context manager: the app's pages over HTTP, WebSockets on the same port; after
    the block the port is free again and a second ``stop`` does nothing."""
    with ServerThread(pyramid_app()) as server:
        with urllib.request.urlopen(server.url("/"), timeout=TIMEOUT) as page:
            assert page.read() == b"home"
        port = server.port
    with (
        ServerThread(Routes({"/echo": echo})) as sockets,
        connect(sockets.ws_url("/echo"), open_timeout=TIMEOUT) as ws,
    ):
        ws.send("over the test server")
        assert ws.recv(TIMEOUT) == "over the test server"
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def test_urls_name_the_host_it_serves_on() -> None:
    """An IPv6 host (bracketed) or a wildcard (its loopback): the URLs reach the server."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with ServerThread(pyramid_app(), host="::1") as server:
        assert server.url("/") == f"http://[::1]:{server.port}/"
        with urllib.request.urlopen(server.url("/"), timeout=TIMEOUT) as page:
            assert page.read() == b"home"
    with ServerThread(pyramid_app(), host="0.0.0.0") as server:
        assert server.ws_url("/x") == f"ws://127.0.0.1:{server.port}/x"


def test_settings_from_a_config_with_overrides_and_code_on_its_loop() -> None:
    """A given ``ServerConfig`` with keyword overrides (``port=0``, ``threads``); ``call``
    runs a function on the server's loop, from the test's thread."""
    ran: list[str] = []
    done = threading.Event()
    server = ServerThread(Routes({"/echo": echo}), ServerConfig(threads=3), port=0)
    assert (server.server.config.threads, server.server.config.port) == (3, 0)
    with server:

        def on_loop(name: str) -> None:
            ran.append(f"{name} on {threading.current_thread().name}")
            done.set()

        server.call(on_loop, "called")
        assert done.wait(TIMEOUT)
    assert ran == ["called on stargate-test-server"]


def test_a_config_without_overrides_is_used_as_given() -> None:
    """A ``ServerConfig`` alone is the server's, unchanged; stopping a server that never
    started does nothing."""
    config = ServerConfig(port=0, threads=2)
    server = ServerThread(Routes({"/echo": echo}), config)
    assert server.server.config is config
    server.stop()  # never started: nothing to stop


def test_a_port_in_use_is_raised_by_start() -> None:
    """The server cannot start (its port is taken): ``start`` raises that error in the
    test's thread rather than leaving a dead thread behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerThread(Routes({"/echo": echo}), port=port)
        with pytest.raises(OSError) as info:
            server.start()
    assert info.value.errno == errno.EADDRINUSE
