"""Fixtures of the server tests: a server on the test's event loop, shut down after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from stargate.server import Server, ServerConfig

from .support import StartServer


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[StartServer]:
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
