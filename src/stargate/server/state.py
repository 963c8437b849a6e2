"""What the connections of one server share, and the one way they report to it.

The listener (:class:`~stargate.server.app.Server`) makes one :class:`ServerState`; each HTTP
channel and each WebSocket it hands over reports here (admitted, released, upgraded, a
handler started), so the modules below the listener never import it (uvicorn's
``ServerState`` plays the same part).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..handshake import ALL_VERSIONS, RFC_VERSIONS, OriginPolicy
from ..protocol import ProtocolVersion
from .access import AccessLog
from .config import ServerConfig
from .metrics import Metrics, close_code_label
from .proxy import TrustedProxies
from .routing import Routes
from .wsgi import WSGIApp

if TYPE_CHECKING:
    from .channel import HttpChannel
    from .tls import TlsHandshake
    from .websocket import WebSocket

logger = logging.getLogger("stargate.server")


#: How the server's thread pools name their threads (WSGI apps; ``def`` WebSocket handlers).
POOL_THREAD_NAMES = ("stargate-worker", "stargate-websocket")
#: Seconds between two log lines about connections refused at ``max_connections``.
REFUSAL_LOG_INTERVAL = 10.0
#: The close reason a graceful shutdown gives its WebSockets (code 1001, going away).
SHUTDOWN_REASON = "server shutting down"


class ServerState:
    """Settings, executors and the open connections of one server process."""

    def __init__(self, app: WSGIApp | Routes, config: ServerConfig) -> None:
        self.config = config
        #: A route table (pure WebSocket server) or a WSGI app: exactly one is set.
        self.routes = app if isinstance(app, Routes) else None
        self.wsgi_app: WSGIApp | None = None if isinstance(app, Routes) else app
        self.origin_policy: OriginPolicy = config.origin_policy
        self.versions: Collection[ProtocolVersion] = (
            ALL_VERSIONS if config.legacy_protocols else RFC_VERSIONS
        )
        #: Whose forwarding headers are believed (checked here: a bad entry fails at start).
        self.trusted_proxies = TrustedProxies(config.trusted_proxies, config.proxy_headers)
        #: Where the server listens, once bound (port 0 becomes the real port).
        self.host = config.host
        self.port = config.port
        #: ``wsgi.multiprocess``: several worker processes serve the same app.
        self.multiprocess = False
        self.shutting_down = False
        self.loop: asyncio.AbstractEventLoop | None = None
        #: WSGI requests and upgrade decisions run here (``threads``).
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        #: ``def`` WebSocket handlers run here (``websocket_threads``), apart from the WSGI
        #: pool so that long-lived handlers cannot starve plain HTTP.
        self.handler_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.channels: set[HttpChannel] = set()
        self.websockets: set[WebSocket] = set()
        #: Connections to a TLS listener still in their TLS handshake (counted as well).
        self.tls_handshakes: set[TlsHandshake] = set()
        #: Running handlers: a task per ``async def`` handler, a future per ``def`` one.
        self.handlers: set[asyncio.Future[Any]] = set()
        self.metrics = Metrics()
        #: When the last line about refused connections was logged, and refusals since.
        self._refusal_logged_at = -REFUSAL_LOG_INTERVAL
        self._refusals_unlogged = 0
        self._refusal_timer: asyncio.TimerHandle | None = None
        self.access = AccessLog(config.access_log, config.access_log_format)
        #: ``() -> (gaps, connected)`` of the group broker serving this process, set by
        #: whoever runs a hub beside the server (the workers supervisor, the gunicorn
        #: worker): read by the metrics and the readiness check.
        self.broker_health: Callable[[], tuple[int, bool]] | None = None
        #: What a handler raised to end the process (``sys.exit()``, KeyboardInterrupt); the
        #: server stops gracefully first, then whoever runs it re-raises this.
        self.exit_exception: SystemExit | KeyboardInterrupt | None = None
        #: Starts the graceful stop: set by whoever runs the server (a signal handler's job).
        self.stop: Callable[[], object] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.threads, thread_name_prefix=POOL_THREAD_NAMES[0]
        )
        self.handler_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.websocket_threads, thread_name_prefix=POOL_THREAD_NAMES[1]
        )

    def run_in_thread(
        self, call: Callable[[], object], done: Callable[[BaseException | None], object]
    ) -> None:
        """Run ``call`` (the WSGI app) in the thread pool, then ``done`` on the loop with
        what it raised: ``None``, or what :func:`~stargate.server.wsgi.run_wsgi` lets through
        (an app's ``SystemExit``).  One hop each way: ``run_in_executor``'s asyncio future
        and its chain of callbacks cost as much again (11 against 5.5 µs of CPU a round
        trip, on uvloop)."""
        loop = self.loop
        assert loop is not None and self.executor is not None

        def work() -> None:
            error: BaseException | None = None
            try:
                call()
            except BaseException as exc:  # SystemExit too: the loop decides what follows
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(done, error)

        self.executor.submit(work)

    def stop_executors(self) -> None:
        for executor in (self.executor, self.handler_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    @property
    def secure(self) -> bool:
        """Whether the listener speaks TLS."""
        return self.config.ssl_context is not None

    # -- what the connections report -------------------------------------------------------

    def admit(self, channel: HttpChannel) -> bool:
        """A new connection: False (refuse it) at ``max_connections``.  One accepted while
        shutting down (it was on its way when the listener closed) is admitted and answered
        with ``Connection: close``, rather than reset."""
        if self._full():
            return False
        self.channels.add(channel)
        return True

    def admit_tls(self, handshake: TlsHandshake) -> bool:
        """A new connection to a TLS listener, before its handshake: as :meth:`admit`."""
        if self._full():
            return False
        self.tls_handshakes.add(handshake)
        return True

    def tls_established(self, handshake: TlsHandshake, channel: HttpChannel) -> None:
        """``handshake`` is done: its connection, already counted, is ``channel``'s now."""
        self.tls_handshakes.discard(handshake)
        self.channels.add(channel)

    def tls_ended(self, handshake: TlsHandshake) -> None:
        """``handshake`` failed or was given up: its connection is gone."""
        self.tls_handshakes.discard(handshake)

    def _full(self) -> bool:
        """Whether ``max_connections`` are open; if so, the refusal about to be made is
        counted and logged."""
        open_ = len(self.channels) + len(self.websockets) + len(self.tls_handshakes)
        if open_ >= self.config.max_connections:
            self.metrics.refused_connections += 1
            self._refusals_unlogged += 1
            now = time.monotonic()
            # Each refusal is a client's doing: one line per interval, not one per refusal;
            # those of an interval are told at its end, whether or not another one comes.
            if now >= self._refusal_logged_at + REFUSAL_LOG_INTERVAL:
                self.log_refusals()
            elif self._refusal_timer is None and self.loop is not None:
                self._refusal_timer = self.loop.call_later(
                    self._refusal_logged_at + REFUSAL_LOG_INTERVAL - now, self.log_refusals
                )
            return True
        return False

    def log_refusals(self) -> None:
        """Log the refusals at ``max_connections`` not logged yet, if any (the timer's
        callback, and the shutdown's last step)."""
        if self._refusal_timer is not None:
            self._refusal_timer.cancel()
            self._refusal_timer = None
        if self._refusals_unlogged:
            logger.warning(
                "max_connections (%d) reached: refused %d connection(s)",
                self.config.max_connections,
                self._refusals_unlogged,
            )
        self._refusal_logged_at = time.monotonic()
        self._refusals_unlogged = 0

    def release(self, channel: HttpChannel) -> None:
        """The connection is gone (or handed over: see :meth:`upgraded`)."""
        self.channels.discard(channel)

    def upgraded(self, channel: HttpChannel, ws: WebSocket) -> None:
        """``channel``'s transport now belongs to ``ws``; it counts as a WebSocket."""
        self.channels.discard(channel)
        self.websockets.add(ws)
        ws.add_close_callback(self._websocket_closed)

    def _websocket_closed(self, ws: WebSocket) -> None:
        """``ws`` is closed: count it, log its close line, fold its traffic into the totals."""
        self.websockets.discard(ws)
        metrics = self.metrics
        code = ws.close_code if ws.close_code is not None else 1006
        metrics.websocket_closes[close_code_label(code)] += 1
        metrics.messages_in += ws.messages_in
        metrics.messages_out += ws.messages_out
        metrics.bytes_in += ws.bytes_in
        metrics.bytes_out += ws.bytes_out
        if ws.slow_consumer:
            metrics.slow_consumer_closes += 1
        if self.access.enabled:
            by = {"peer": "client", "local": "server"}.get(ws.closed_by or "", "nobody")
            assert self.loop is not None
            self.access.websocket_close(
                ws.remote_address,
                ws.request.target,
                code,
                ws.close_reason,
                by,
                self.loop.time() - ws.opened_at,
                (ws.messages_in, ws.bytes_in, ws.messages_out, ws.bytes_out),
            )

    @property
    def ready(self) -> bool:
        """Whether the server takes work: not shutting down, its broker (if any) up."""
        if self.shutting_down:
            return False
        return self.broker_health is None or self.broker_health()[1]

    def record_http(
        self,
        remote: tuple[str, int] | None,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        started: float,
        cut: bool = False,
    ) -> None:
        """A request was answered (``started``: ``time.monotonic()`` when it was taken), or
        ``cut`` by the shutdown's deadline."""
        self.metrics.http_responses[status] += 1
        duration = time.monotonic() - started
        self.access.http(remote, method, target, version, status, size, duration, cut)

    def record_refusal(
        self,
        remote: tuple[str, int] | None,
        method: str,
        target: str,
        status: int,
        reason: str,
        *,
        websocket: bool,
    ) -> None:
        """A request refused by the server, or an upgrade refused by anyone."""
        if websocket:
            self.metrics.handshakes[str(status)] += 1
        else:
            self.metrics.http_responses[status] += 1
        self.access.refused(remote, method, target, status, reason, websocket=websocket)

    def record_websocket_open(self, ws: WebSocket, extensions: list[str]) -> None:
        """A handshake succeeded: ``ws`` is open with these negotiated extensions."""
        self.metrics.handshakes["accepted"] += 1
        self.access.websocket_open(ws.remote_address, ws.request.target, ws.subprotocol, extensions)

    def traffic(self) -> tuple[int, int, int, int]:
        """Messages and bytes in, messages and bytes out, of every WebSocket so far."""
        metrics = self.metrics
        totals = [metrics.messages_in, metrics.bytes_in, metrics.messages_out, metrics.bytes_out]
        for ws in self.websockets:  # and what the open ones did so far
            totals[0] += ws.messages_in
            totals[1] += ws.bytes_in
            totals[2] += ws.messages_out
            totals[3] += ws.bytes_out
        return totals[0], totals[1], totals[2], totals[3]

    def handler_exits(
        self, exc: SystemExit | KeyboardInterrupt, who: str = "a WebSocket handler"
    ) -> None:
        """A handler (or the WSGI app: ``who``) asked for the process to end.  Left to escape
        the event loop, the exception would stop it in the middle of a step (with uvloop a
        cancelled task can then wait forever, and the process never exits): the server stops
        gracefully instead."""
        if self.exit_exception is None:
            self.exit_exception = exc
            logger.warning("%s raised %r: stopping the server", who, exc)
        if self.stop is not None:
            self.stop()

    def app_done(self, error: BaseException | None) -> None:
        """What escaped :func:`~stargate.server.wsgi.run_wsgi` (its client got a 500): an
        app's ``sys.exit()`` or KeyboardInterrupt stops the server as a handler's does."""
        if isinstance(error, SystemExit | KeyboardInterrupt):
            self.handler_exits(error, "the WSGI application")

    def track_handler(self, future: asyncio.Future[Any]) -> None:
        """Keep a running handler until it ends (shutdown waits for it)."""
        self.handlers.add(future)
        future.add_done_callback(self.handlers.discard)
