"""The server: one asyncio listener for HTTP and WebSocket, a bounded worker pool, shutdown.

``Server(app)`` serves a WSGI app (upgrades accepted through the environ) or a
:class:`~stargate.server.routing.Routes` table.  ``serve(app, ...)`` runs it until SIGINT or
SIGTERM, using uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Collection
from typing import Any

from ..errors import ConnectionClosed
from ..handshake import ALL_VERSIONS, RFC_VERSIONS, OriginPolicy
from ..protocol import CloseCode, ProtocolVersion
from .config import ServerConfig
from .http import HttpProtocol
from .routing import Routes
from .sync import SyncWebSocket
from .upgrade import Handler, is_async_handler
from .websocket import WebSocket
from .wsgi import WSGIApp

logger = logging.getLogger("stargate.server")


class Server:
    """Serves one WSGI app or route table on one port, HTTP and WebSocket alike."""

    def __init__(self, app: WSGIApp | Routes, config: ServerConfig | None = None) -> None:
        self.config = config = config or ServerConfig()
        self.routes = app if isinstance(app, Routes) else None
        self.wsgi_app: WSGIApp | None = None if isinstance(app, Routes) else app
        self.origin_policy: OriginPolicy = config.origin_policy
        self.versions: Collection[ProtocolVersion] = (
            ALL_VERSIONS if config.legacy_protocols else RFC_VERSIONS
        )
        self.multiprocess = False
        self.host = config.host
        self.port = config.port
        self.shutting_down = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._handler_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._server: asyncio.Server | None = None
        self._http: set[HttpProtocol] = set()
        self._websockets: set[WebSocket] = set()
        self._handlers: set[asyncio.Future[Any]] = set()
        self._stopped: asyncio.Event | None = None

    # -- state the protocols use -------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        assert self._executor is not None, "server not started"
        return self._executor

    @property
    def websockets(self) -> frozenset[WebSocket]:
        """The open WebSocket connections."""
        return frozenset(self._websockets)

    def _connection_opened(self, protocol: HttpProtocol) -> bool:
        if self.shutting_down:
            return False
        if len(self._http) + len(self._websockets) >= self.config.max_connections:
            logger.warning("max_connections (%d) reached: refusing", self.config.max_connections)
            return False
        self._http.add(protocol)
        return True

    def _connection_closed(self, protocol: HttpProtocol) -> None:
        self._http.discard(protocol)

    def _upgraded(self, protocol: HttpProtocol, ws: WebSocket) -> None:
        self._http.discard(protocol)
        self._websockets.add(ws)
        ws.add_close_callback(self._websockets.discard)

    def _start_handler(self, ws: WebSocket, handler: Handler) -> None:
        """An ``async def`` handler becomes one task; a ``def`` handler one worker thread."""
        if is_async_handler(handler):
            future: asyncio.Future[Any] = self.loop.create_task(self._run_async(handler, ws))
        else:
            sync = SyncWebSocket(ws, self.loop)
            assert self._handler_executor is not None
            future = self.loop.run_in_executor(
                self._handler_executor, self._run_sync, handler, sync
            )
        self._handlers.add(future)
        future.add_done_callback(self._handlers.discard)

    async def _run_async(self, handler: Handler, ws: WebSocket) -> None:
        try:
            await handler(ws)  # type: ignore[arg-type,misc]
        except ConnectionClosed:
            ws._handler_finished()
        except Exception:
            logger.exception("%r: handler failed", ws)
            ws._handler_failed()
        else:
            ws._handler_finished()

    def _run_sync(self, handler: Handler, sync: SyncWebSocket) -> None:
        ws = sync.ws
        try:
            handler(sync)  # type: ignore[arg-type]
        except ConnectionClosed:
            self.loop.call_soon_threadsafe(ws._handler_finished)
        except Exception:
            logger.exception("%r: handler failed", ws)
            self.loop.call_soon_threadsafe(ws._handler_failed)
        else:
            self.loop.call_soon_threadsafe(ws._handler_finished)

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen (on ``sock`` if given, for pre-forked workers) and serve in the background."""
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.threads, thread_name_prefix="stargate-worker"
        )
        self._handler_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.websocket_threads, thread_name_prefix="stargate-websocket"
        )
        self._stopped = asyncio.Event()
        kwargs: dict[str, Any] = {"ssl": self.config.ssl_context, "backlog": 1024}
        if sock is not None:
            self._server = await self._loop.create_server(
                lambda: HttpProtocol(self), sock=sock, **kwargs
            )
        else:
            self._server = await self._loop.create_server(
                lambda: HttpProtocol(self),
                self.config.host,
                self.config.port,
                reuse_address=True,
                **kwargs,
            )
        bound = self._server.sockets[0].getsockname()
        self.host, self.port = bound[0], bound[1]
        logger.info(
            "stargate serving on %s://%s:%d",
            "https" if self.config.ssl_context else "http",
            self.host,
            self.port,
        )

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop: no new connections, WebSockets closed with 1001 (going away),
        in-flight HTTP answered, all within ``timeout`` (default: ``shutdown_timeout``)."""
        if self.shutting_down:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self.shutting_down = True
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        loop = self.loop
        deadline = loop.time() + timeout
        if self._server is not None:
            self._server.close()
        for protocol in list(self._http):
            protocol.close_if_idle()
        for ws in list(self._websockets):
            ws._start_close(CloseCode.GOING_AWAY, "server shutting down")
        waits = [ws.wait_closed() for ws in self._websockets]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), max(0.0, deadline - loop.time()))
        while self._http and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for protocol in list(self._http):
            if protocol.transport is not None:
                protocol.transport.abort()
        for ws in list(self._websockets):
            ws._abort()
        handlers = [h for h in self._handlers if not h.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=max(0.0, deadline - loop.time()))
        for handler in handlers:
            handler.cancel()
        for executor in (self._executor, self._handler_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when the ``uvloop`` extra is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(
    app: WSGIApp | Routes,
    config: ServerConfig | None = None,
    *,
    sock: socket.socket | None = None,
    ready: Callable[[Server], object] | None = None,
) -> None:
    """Run a server until SIGINT or SIGTERM, then shut down gracefully."""
    server = Server(app, config)

    async def main() -> None:
        await server.start(sock)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.shutdown()))
        if ready is not None:
            ready(server)
        await server.wait_stopped()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
