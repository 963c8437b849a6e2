"""Fixtures shared by every test directory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

import stargate.endpoint
from stargate.brokers.testing import RedisServer
from stargate.server import Server, ServerConfig
from tests.machine import unavailable


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own; skipped without the binary, failed under CI."""
    try:
        import redis  # noqa: F401

        server = RedisServer()
    except (ImportError, FileNotFoundError) as exc:
        unavailable(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def long_answer_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A held close waits a minute for the application to read (``ANSWER_GRACE``), not
    half a second: for tests of what comes before the close, which a loaded machine's
    slow thread must not turn into tests of the grace."""
    monkeypatch.setattr(stargate.endpoint, "ANSWER_GRACE", 60.0)


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """``await start_server(app, **config)``: a :class:`Server` on an ephemeral port of
    127.0.0.1, running on the test's loop; every server started is shut down after the test."""
    servers: list[Server] = []

    async def start(app: Any, **config: Any) -> Server:
        server = Server(app, ServerConfig(port=0, **config))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(timeout=2.0)


@pytest.fixture
def cyclic_garbage() -> Iterator[Callable[[Callable[[object], bool]], list[str]]]:
    """``cyclic_garbage(keep)``: the type names of what the cycle collector would have had
    to free during the test, among the objects ``keep`` selects.  Objects that reference
    counting should free, a connection's, must not be among them."""

    def found(keep: Callable[[object], bool]) -> list[str]:
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage if keep(o)})

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
