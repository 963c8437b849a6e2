"""The server: one asyncio listener for HTTP and WebSocket, a bounded worker pool, shutdown.

``Server(app)`` serves a WSGI app (upgrades accepted through the environ) or a
:class:`~stargate.server.routing.Routes` table.  ``serve(app, ...)`` runs it until SIGINT,
SIGTERM or SIGHUP, using uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import socket
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any

from ..handshake import OriginPolicy
from ..protocol import CloseCode, ProtocolVersion
from .channel import HttpChannel
from .config import ServerConfig
from .routing import Routes
from .state import SHUTDOWN_REASON, ServerState
from .tls import TlsHandshake
from .websocket import WebSocket
from .wsgi import WSGIApp

logger = logging.getLogger("stargate.server")


def stop_signals() -> tuple[signal.Signals, ...]:
    """What stops a server gracefully (a second one hurries it): Ctrl+C, a service
    manager's stop, and the terminal closing (there is no reload signal: SIGHUP would
    otherwise kill the process without closing a WebSocket), unless SIGHUP was ignored
    when the process started (``nohup``, hupper's reload worker): that choice stands."""
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (a cancelled wait that nobody awaits)."""
    if not future.cancelled():
        future.exception()


class Server:
    """Serves one WSGI app or route table on one port, HTTP and WebSocket alike."""

    def __init__(self, app: WSGIApp | Routes, config: ServerConfig | None = None) -> None:
        #: What the server's connections share (settings, executors, open connections,
        #: metrics, the access log): the narrow interface of the modules below the listener.
        self.state = ServerState(app, config or ServerConfig())
        self._servers: list[asyncio.Server] = []
        self._stopped: asyncio.Event | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        #: Set by a second stop signal: the graceful waits end at once.
        self._hurry: asyncio.Event | None = None

    # -- what applications and tests read --------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        """The settings this server was made with (``ServerConfig()`` when none were given)."""
        return self.state.config

    @property
    def host(self) -> str:
        """The address listened on (after :meth:`start`: the bound one)."""
        return self.state.host

    @property
    def port(self) -> int:
        """The port listened on (after :meth:`start`: the bound one, for port 0)."""
        return self.state.port

    @property
    def routes(self) -> Routes | None:
        """The route table served, or ``None`` when the server serves a WSGI app."""
        return self.state.routes

    @property
    def wsgi_app(self) -> WSGIApp | None:
        """The WSGI app served, or ``None`` when the server serves a route table."""
        return self.state.wsgi_app

    @property
    def origin_policy(self) -> OriginPolicy:
        """Which browser origins may open WebSockets, unless an upgrade's acceptance
        says otherwise (``config.origin_policy``)."""
        return self.state.origin_policy

    @property
    def versions(self) -> Collection[ProtocolVersion]:
        """The protocol generations accepted: RFC 6455 and its hybi drafts, plus
        hixie-75/76 unless ``legacy_protocols`` is off."""
        return self.state.versions

    @property
    def multiprocess(self) -> bool:
        """``wsgi.multiprocess``: set by the workers supervisor before :meth:`start`."""
        return self.state.multiprocess

    @multiprocess.setter
    def multiprocess(self, value: bool) -> None:
        self.state.multiprocess = value

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shutdown` has begun: no new connection is accepted, and the
        readiness check answers 503."""
        return self.state.shutting_down

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on (after :meth:`start`)."""
        assert self.state.loop is not None, "server not started"
        return self.state.loop

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The WSGI thread pool (requests and upgrade decisions)."""
        assert self.state.executor is not None, "server not started"
        return self.state.executor

    @property
    def websockets(self) -> frozenset[WebSocket]:
        """The open WebSocket connections."""
        return frozenset(self.state.websockets)

    @property
    def http_connections(self) -> int:
        """Connections still speaking HTTP (idle keep-alive ones included)."""
        return len(self.state.channels)

    @property
    def running_handlers(self) -> int:
        """WebSocket handlers still running (tasks and threads)."""
        return len(self.state.handlers)

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self, sock: socket.socket | Sequence[socket.socket] | None = None) -> None:
        """Listen and serve in the background: on ``config.host``/``config.port``, or on
        the given listening socket(s) (pre-forked workers, gunicorn, several addresses;
        TCP or Unix)."""
        loop = asyncio.get_running_loop()
        state = self.state
        if state.shutting_down:
            raise RuntimeError("this server was shut down: make a new one")
        state.start(loop)
        if state.stop is None:
            state.stop = self.stop_soon
        self._stopped = asyncio.Event()
        self._hurry = asyncio.Event()
        # With TLS the listener is plain TCP all the same: the server runs each handshake
        # itself (stargate.server.tls), so that it counts against max_connections.
        factory: Callable[[], asyncio.Protocol]
        if self.config.ssl_context is not None:
            factory = partial(TlsHandshake, state)
        else:
            factory = partial(HttpChannel, state)
        socks = [sock] if isinstance(sock, socket.socket) else list(sock or ())
        if socks:
            for listening in socks:
                self._servers.append(
                    await loop.create_server(factory, sock=listening, backlog=1024)
                )
        else:
            self._servers.append(
                await loop.create_server(
                    factory, self.config.host, self.config.port, reuse_address=True, backlog=1024
                )
            )
        scheme = "https" if self.config.ssl_context else "http"
        for server in self._servers:
            for listening in server.sockets:
                bound = listening.getsockname()
                # A Unix socket's name is a path (str, or bytes in Linux's abstract namespace).
                if not isinstance(bound, tuple):
                    where = f"unix:{bound!r}"
                elif ":" in bound[0]:  # IPv6: bracketed, as in a URL (RFC 3986 section 3.2.2)
                    where = f"[{bound[0]}]:{bound[1]}"
                else:
                    where = f"{bound[0]}:{bound[1]}"
                logger.info("stargate serving on %s://%s", scheme, where)
        first = self._servers[0].sockets[0].getsockname()
        if isinstance(first, tuple):
            state.host, state.port = first[0], first[1]
        else:
            # PEP 3333 wants a SERVER_NAME and SERVER_PORT; the Host header says more.
            state.host, state.port = "localhost", 0

    async def wait_stopped(self) -> None:
        """Wait until :meth:`shutdown` has finished (after :meth:`start`)."""
        assert self._stopped is not None
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop: no new connections, WebSockets closed with 1001 (going away),
        in-flight HTTP answered, all within ``timeout`` (default: ``shutdown_timeout``)."""
        state = self.state
        if state.shutting_down:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        state.shutting_down = True
        if self._stopped is None:  # never started: nothing to stop, and start() is refused
            return
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        loop = self.loop
        deadline = loop.time() + timeout
        for server in self._servers:
            server.close()
        for tls in list(state.tls_handshakes):
            tls.abort()  # no request yet, as an idle connection
        for channel in list(state.channels):
            channel.close_if_idle()
        for ws in list(state.websockets):
            ws.start_close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)
        await self._wait_for_websockets(deadline)
        hurry = self._hurry
        assert hurry is not None
        while state.channels and loop.time() < deadline and not hurry.is_set():
            await asyncio.sleep(0.05)
        # Upgrades the apps decided meanwhile closed as they opened (1001): their close
        # handshakes too.
        await self._wait_for_websockets(deadline)
        for channel in list(state.channels):
            cut, channel.cut_short_by_shutdown = channel.cut_short_by_shutdown, None
            if cut is not None:
                cut()  # the app's thread is left behind: its line now, and only this one
            # Admitted in connection_made, once its transport is set (and never unset).
            assert channel.transport is not None
            channel.transport.abort()
        for tls in list(state.tls_handshakes):
            tls.abort()  # accepted after the first pass (their connection_made was due)
        for ws in list(state.websockets):
            ws.abort()
        handlers = [h for h in state.handlers if not h.done()]
        if handlers:
            await self._wait_until(set(handlers), deadline)
        for handler in handlers:
            handler.cancel()
        state.stop_executors()
        state.log_refusals()  # a burst's count, due at its interval's end, is not lost
        assert self._stopped is not None
        self._stopped.set()

    async def _wait_for_websockets(self, deadline: float) -> None:
        """Until every open WebSocket's close handshake is done, or ``deadline``."""
        websockets = self.state.websockets
        if not websockets:
            return
        closed = asyncio.gather(*(ws.wait_closed() for ws in websockets))
        await self._wait_until({closed}, deadline)
        closed.cancel()
        # Retrieved, or asyncio logs "exception was never retrieved" for the cancel.
        closed.add_done_callback(_retrieve)

    async def _wait_until(self, futures: set[asyncio.Future[Any]], deadline: float) -> None:
        """Wait for all of ``futures`` until ``deadline``, or until a second stop signal."""
        hurry = self._hurry
        assert hurry is not None
        hurried = self.loop.create_task(hurry.wait())
        pending = futures
        try:
            while pending and not hurry.is_set():
                left = deadline - self.loop.time()
                if left <= 0:
                    break
                _, pending = await asyncio.wait(
                    pending | {hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(hurried)
        finally:
            hurried.cancel()

    def stop_signalled(self) -> None:
        """One of :func:`stop_signals`: the first starts a graceful shutdown; another one
        during it (a second Ctrl+C) hurries it (:meth:`hurry`), as uvicorn's does."""
        if not self.state.shutting_down:
            self.stop_soon()
        else:
            self.hurry()

    def hurry(self) -> None:
        """Cut a shutdown's waits short (starting one if none runs): every connection is
        closed at once and the handlers still running are cancelled."""
        if not self.state.shutting_down:
            self.stop_soon()
        if self._hurry is not None and not self._hurry.is_set():
            logger.warning("stopping now: every connection is closed without waiting")
            self._hurry.set()

    def stop_soon(self) -> None:
        """Start a graceful :meth:`shutdown` from a plain callback (a signal handler, a
        handler's ``sys.exit()``); the task is kept until it ends."""
        task = self.loop.create_task(self.shutdown())
        self._stopping.add(task)  # a task only the loop refers to may be collected
        task.add_done_callback(self._stopping.discard)

    def reraise_exit(self) -> None:
        """Once the server has stopped: raise what a handler raised to end the process
        (``sys.exit(5)`` ends it with status 5), if one did."""
        if self.state.exit_exception is not None:
            raise self.state.exit_exception

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
    """Run a server until SIGINT, SIGTERM or SIGHUP, then shut down gracefully.

    Returns once the server is down; worker threads still running app code after
    ``shutdown_timeout`` are left running, and the interpreter waits for them at exit
    (``stargate.workers.leave_stuck_threads`` ends the process without them)."""
    server = Server(app, config)

    async def main() -> None:
        await server.start(sock)
        loop = asyncio.get_running_loop()
        for sig in stop_signals():
            loop.add_signal_handler(sig, server.stop_signalled)
        if ready is not None:
            ready(server)
        await server.wait_stopped()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    server.reraise_exit()
