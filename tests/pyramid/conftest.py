"""Fixtures of the Pyramid integration tests.

This directory has no ``__init__.py`` on purpose: as a package named ``pyramid`` under a
``tests`` directory that pytest puts on ``sys.path``, it would shadow Pyramid itself.  So
its test modules need names unique in the whole test tree.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stargate.handshake import Request
from stargate.headers import Headers
from stargate.pyramid.testing import ServerThread
from stargate.server import ENVIRON_KEY, Upgrade

#: The repository root: the examples are imported from there (``examples.jobs``).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_upgrade(path: str = "/", *headers: tuple[str, str]) -> Upgrade:
    """The object the server puts in the environ of an upgrade request."""
    fields = [
        ("Host", "localhost"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        *headers,
    ]
    return Upgrade(Request("GET", path, Headers(fields)))


@pytest.fixture
def upgrade_environ() -> Callable[..., dict[str, Any]]:
    """``upgrade_environ(path, *headers)``: extra environ of a WebSocket upgrade request,
    for WebTest's ``extra_environ`` (the Upgrade object is at ``environ[ENVIRON_KEY]``)."""

    def make(path: str = "/", *headers: tuple[str, str]) -> dict[str, Any]:
        return {
            ENVIRON_KEY: make_upgrade(path, *headers),
            "HTTP_UPGRADE": "websocket",
            "HTTP_CONNECTION": "Upgrade",
        }

    return make


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    """``serve(app, **ServerConfig fields)``: the app on a real server in a background
    thread (an ephemeral port of 127.0.0.1), stopped after the test."""
    started: list[ServerThread] = []

    def start(app: Any, **config: Any) -> ServerThread:
        server = ServerThread(app, **config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
