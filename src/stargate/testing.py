"""Helpers for testing applications that use Stargate.

A real server on a free port of 127.0.0.1 around your app, with clients connected to it::

    from stargate.testing import serve_app

    async def test_chat():                       # with pytest-asyncio
        async with serve_app(app) as server:
            async with server.connect("/chat") as ws:
                await ws.send("hello")
                assert await ws.receive() == "hello"

The same for synchronous tests (the server runs in a background thread)::

    from stargate.testing import run_app

    def test_chat():
        with run_app(app) as server, server.connect("/chat") as ws:
            ws.send("hello")
            assert ws.receive(timeout=5) == "hello"

``app`` is anything :class:`~stargate.server.Server` serves: a WSGI app or a
:class:`~stargate.server.Routes` table.  Keyword arguments are
:class:`~stargate.server.ServerConfig` fields (``port`` defaults to 0: a free port).

And without any I/O, a client and a server :class:`~stargate.connection.Connection` wired
back to back (:func:`connection_pair`, :func:`transfer`) to test code that drives the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from .client.opening import Connect, connect
from .client.sync import SyncClientWebSocket
from .client.sync import connect as sync_connect
from .connection import Connection
from .events import Event
from .extensions.permessage_deflate import (
    PerMessageDeflate,
    PerMessageDeflateClientOffer,
    PerMessageDeflateOffer,
)
from .headers import parse_extensions
from .limits import Limits
from .protocol import ProtocolVersion, Role
from .server import Routes, Server, ServerConfig
from .server.wsgi import WSGIApp

__all__ = [
    "AppServer",
    "SyncAppServer",
    "connection_pair",
    "run_app",
    "serve_app",
    "transfer",
]


def _config(config: ServerConfig | None, fields: dict[str, Any]) -> ServerConfig:
    if config is None:
        return ServerConfig(**{"port": 0, **fields})
    return replace(config, **fields) if fields else config


class AppServer:
    """A server running on the test's event loop (what :func:`serve_app` yields)."""

    def __init__(self, server: Server) -> None:
        #: The :class:`~stargate.server.Server` itself (``server.websockets`` are the open
        #: connections).
        self.server = server

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/", *, scheme: str | None = None) -> str:
        """``ws://127.0.0.1:PORT/path`` (``wss`` when the server has TLS; ``scheme="http"``
        for the same app's pages)."""
        if scheme is None:
            scheme = "wss" if self.server.config.ssl_context is not None else "ws"
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{self.host}:{self.port}{path}"

    def connect(self, path: str = "/", **kwargs: Any) -> Connect:
        """:func:`stargate.connect` to ``path``: ``async with server.connect("/x") as ws``.
        Keyword arguments are :func:`stargate.connect`'s."""
        return connect(self.url(path), **kwargs)


@contextlib.asynccontextmanager
async def serve_app(
    app: WSGIApp | Routes,
    config: ServerConfig | None = None,
    *,
    shutdown_timeout: float = 5.0,
    **fields: Any,
) -> AsyncIterator[AppServer]:
    """Run ``app`` on a free port for the duration of the block (on the running loop)."""
    server = Server(app, _config(config, fields))
    await server.start()
    try:
        yield AppServer(server)
    finally:
        await server.shutdown(timeout=shutdown_timeout)


class SyncAppServer(AppServer):
    """A server running in a background thread (what :func:`run_app` yields)."""

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(server)
        #: The server's event loop (in its own thread).
        self.loop = loop

    def connect(self, path: str = "/", **kwargs: Any) -> SyncClientWebSocket:  # type: ignore[override]
        """A blocking client connected to ``path`` (use it in a ``with`` block).
        Keyword arguments are :func:`stargate.connect`'s."""
        return sync_connect(self.url(path), **kwargs)


@contextlib.contextmanager
def run_app(
    app: WSGIApp | Routes,
    config: ServerConfig | None = None,
    *,
    shutdown_timeout: float = 5.0,
    **fields: Any,
) -> Iterator[SyncAppServer]:
    """Run ``app`` on a free port in a background thread for the duration of the block."""
    server = Server(app, _config(config, fields))
    loop = asyncio.new_event_loop()
    started: list[BaseException | None] = []
    ready = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            await server.start()
        except BaseException as exc:
            started.append(exc)
            ready.set()
            return
        started.append(None)
        ready.set()
        await stop.wait()
        await server.shutdown(timeout=shutdown_timeout)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="stargate-test-server", daemon=True)
    thread.start()
    ready.wait()
    if started[0] is not None:
        thread.join()
        raise started[0]
    try:
        yield SyncAppServer(server, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(shutdown_timeout + 5.0)


# -- in memory ---------------------------------------------------------------------------------


def connection_pair(
    version: ProtocolVersion = ProtocolVersion.RFC6455,
    *,
    compression: bool = False,
    limits: Limits | None = None,
) -> tuple[Connection, Connection]:
    """A client and a server :class:`Connection`, as after a handshake (with
    permessage-deflate negotiated by the default offers when ``compression``); move bytes
    between them with :func:`transfer`."""
    client_ext: list[PerMessageDeflate] = []
    server_ext: list[object] = []
    if compression:
        offer = PerMessageDeflateClientOffer()
        ((_, params),) = parse_extensions([offer.header_value()])
        accepted = PerMessageDeflateOffer().accept(params)
        assert accepted is not None
        response, session = accepted
        ((_, response_params),) = parse_extensions([response])
        client_ext.append(offer.accept_response(response_params))
        server_ext.append(session)
    client = Connection(Role.CLIENT, version, limits=limits, extensions=client_ext)
    server = Connection(Role.SERVER, version, limits=limits, extensions=server_ext)
    return client, server


def transfer(source: Connection, destination: Connection) -> list[Event]:
    """Deliver what ``source`` has to send to ``destination``; returns its events."""
    return destination.receive_data(source.data_to_send())
