"""HTTP/1.1 on the loop: parse with httptools, answer with the WSGI app, upgrade in place.

httptools (llhttp, the parser of Node.js) is used rather than a hand-written parser: it is
fast, maintained, handles chunked bodies and pipelining, and reports an upgrade request with
the offset where the WebSocket bytes (hixie-76's key3, early frames) begin.

Requests on one connection are answered strictly in order; parsing runs ahead by at most
``max_pipelined`` requests, then reading pauses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from .. import handshake
from ..connection import Connection
from ..errors import HandshakeError
from ..headers import Headers, has_token
from ..protocol import Role
from .upgrade import ENVIRON_KEY, Acceptance, Upgrade
from .websocket import WebSocket, WebSocketProtocol
from .wsgi import HttpRequest, WSGIResponse, build_environ, run_wsgi, simple_response

if TYPE_CHECKING:
    from .app import Server

logger = logging.getLogger("stargate.http")


class _Refuse(Exception):
    """Stops the parser: the request is answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _BufferSink:
    """Collects an app's response to an upgrade request it did not accept."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write_from_thread(self, data: bytes) -> None:
        self.data += data


class HttpProtocol(asyncio.Protocol):
    """One client connection while it speaks HTTP; hands itself over on upgrade."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peername: tuple[str, int] | None = None
        self.secure = False
        self.parser = httptools.HttpRequestParser(self)
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._raw_head = 0
        self._body = bytearray()
        self._in_head = False
        self._queue: deque[HttpRequest] = deque()
        self._busy = False
        self._reading_paused = False
        self._upgrade: HttpRequest | None = None
        self._pending: tuple[handshake.Request, Acceptance] | None = None
        self._closed = False
        self._lingering = False  # refused: discarding input until EOF (see _linger)
        self._eof = False  # the client half-closed: answer what it sent, then close
        self._raw_head = 0  # raw bytes received inside the current head, after its first read
        self._timer: asyncio.TimerHandle | None = None
        self._can_write = threading.Event()
        self._can_write.set()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peername = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.secure = transport.get_extra_info("sslcontext") is not None
        if not self.server._connection_opened(self):
            transport.abort()
            return
        self._arm_timer(self.config.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._upgrade is not None:
            self._upgrade.trailing += data
            if len(self._upgrade.trailing) > self.config.max_header_size:
                self._pause_reading()  # the handshake is not done: no more until it is
            if self._pending is not None:
                self._try_complete_upgrade()
            return
        if self._in_head:
            # httptools reports a header only once complete: count raw bytes too, so a
            # never-ending header line cannot grow the parser's buffer without bound.  A
            # counter of its own: added to the callbacks' count, every byte of a head that
            # spans reads was counted twice and heads well under the limit got 431.
            self._raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            request = self._queue[-1]
            rest = data[exc.args[0] :]
            protocols = [value for name, value in request.headers if name.lower() == "upgrade"]
            if not has_token(protocols, "websocket"):
                # Another protocol (curl --http2 sends "Upgrade: h2c"): RFC 7230 section 6.7
                # lets a server ignore Upgrade, so it is a plain request for the app, and
                # HTTP/1.1 parsing goes on with a fresh parser (llhttp stops at an upgrade).
                request.upgrade = False
                self.parser = httptools.HttpRequestParser(self)
                if rest:
                    self.data_received(rest)
                    return
            else:
                request.trailing += rest
                self._upgrade = request
        except _Refuse as exc:
            self._refuse(exc.status, exc.reason)
            return
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raises: a _Refuse arrives as the context of
            # an HttpParserCallbackError, and must keep its status (431, 413), not 400.
            refusal = exc.__context__
            if isinstance(refusal, _Refuse):
                self._refuse(refusal.status, refusal.reason)
            else:
                self._refuse(400, f"bad request: {exc}")
            return
        if self._in_head and max(self._head_size, self._raw_head) > self.config.max_header_size:
            self._refuse(431, "request header block too large")
            return
        if len(self._queue) > self.config.max_pipelined:
            self._pause_reading()
        self._process_next()

    def eof_received(self) -> bool:
        """The client half-closed: keep the transport open (return True) while requests it
        sent are still to be answered; ``_request_done`` closes after the last one."""
        self._eof = True
        if self._lingering or self._closed:
            return False
        return self._busy or bool(self._queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        self._can_write.set()  # wake workers; their writes are dropped
        self.server._connection_closed(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url.clear()
        self._headers = []
        self._head_size = 0
        self._raw_head = 0
        self._body = bytearray()
        if self._timer is None or not self._queue:
            self._arm_timer(self.config.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.config.max_header_size:
            raise _Refuse(431, "request header block too large")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_timer()
        if (
            not self._queue
            and not self._busy
            and any(n.lower() == "expect" and v.lower() == "100-continue" for n, v in self._headers)
        ):
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self.config.max_body_size:
            raise _Refuse(413, "request body too large")

    def on_message_complete(self) -> None:
        parser = self.parser
        self._queue.append(
            HttpRequest(
                method=parser.get_method().decode("latin-1"),
                target=self._url.decode("latin-1"),
                http_version=parser.get_http_version(),
                headers=self._headers,
                body=bytes(self._body),
                keep_alive=parser.should_keep_alive(),
                upgrade=parser.should_upgrade(),
            )
        )

    # -- answering -------------------------------------------------------------------------

    def _process_next(self) -> None:
        if self._busy or not self._queue or self._closed:
            return
        request = self._queue.popleft()
        self._busy = True
        self._cancel_timer()
        if request.upgrade:
            self._handle_upgrade(request)
        else:
            self._handle_http(request)

    def _environ(self, request: HttpRequest) -> dict[str, Any]:
        return build_environ(
            request,
            server_name=self.server.host,
            server_port=self.server.port,
            remote=self.peername,
            url_scheme="https" if self.secure else "http",
            multiprocess=self.server.multiprocess,
        )

    def _handle_http(self, request: HttpRequest) -> None:
        routes = self.server.routes
        if routes is not None:
            # The client's keep-alive decides (HTTP/1.0, Connection: close), as for the app.
            keep_alive = request.keep_alive
            path = request.target.partition("?")[0]
            if routes.resolve(path) is None:
                data = simple_response(404, f"no route for {path}", keep_alive=keep_alive)
            else:
                data = simple_response(
                    426,
                    "this URL serves WebSocket connections only",
                    keep_alive=keep_alive,
                    headers=[("Upgrade", "websocket")],
                )
            self._answer(data, keep_alive)
            return
        app = self.server.wsgi_app
        assert app is not None
        response = WSGIResponse(self, request)
        future = self.loop.run_in_executor(
            self.server.executor, run_wsgi, app, self._environ(request), response
        )
        future.add_done_callback(
            lambda f: self._request_done(response.keep_alive and not f.exception())
        )

    def _answer(self, data: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self._request_done(keep_alive)

    def write_from_thread(self, data: bytes) -> None:
        """Called by worker threads: waits while the client is slow to read, then writes."""
        if not self._can_write.wait(self.config.write_timeout):
            self.loop.call_soon_threadsafe(self._abort)
            raise TimeoutError("client did not read the response in time")
        if not self._closed:
            self.loop.call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _request_done(self, keep_alive: bool) -> None:
        self._busy = False
        if self._closed or self.transport is None:
            return
        if not keep_alive or self.server.shutting_down or (self._eof and not self._queue):
            self.transport.close()
            return
        if self._reading_paused and len(self._queue) <= self.config.max_pipelined // 2:
            self._reading_paused = False
            self.transport.resume_reading()
        if self._queue:
            self._process_next()
        elif not self._in_head:
            self._arm_timer(self.config.keepalive_timeout)
        else:
            self._arm_timer(self.config.header_timeout)

    def close_if_idle(self) -> None:
        """Shutdown: an idle keep-alive connection is closed now, a busy one after its
        response."""
        if not self._busy and self.transport is not None:
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we cannot serve with ``status`` and close the connection.

        A parse error while an earlier pipelined request is still being answered closes
        without a response of its own: it must not interleave with that response.
        """
        self._send_and_close(simple_response(status, reason), in_flight_ok=False)

    def _send_and_close(self, data: bytes, *, in_flight_ok: bool = True) -> None:
        assert self.transport is not None
        self._queue.clear()
        if in_flight_ok or not self._busy:
            self.transport.write(data)
        self._closed = True
        self._linger()

    def _linger(self) -> None:
        """Close without losing the response just written.

        Closing a socket whose receive buffer holds unread bytes (the rest of a refused
        head or body) makes the kernel send RST, and the client may then drop our response
        unread.  So: half-close (FIN after the response), discard what the client still
        sends until its EOF, and close for good after ``linger_timeout`` at the latest.
        """
        transport = self.transport
        assert transport is not None
        if self._lingering or transport.is_closing():
            return
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        self._lingering = True
        transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm_timer(self.config.linger_timeout)

    # -- upgrade ---------------------------------------------------------------------------

    def _handle_upgrade(self, request: HttpRequest) -> None:
        hs_request = handshake.Request(
            method=request.method,
            target=request.target,
            headers=Headers(request.headers),
            http_version=request.http_version,
        )
        self._arm_timer(self.config.header_timeout)  # bounds the app's decision and key3
        routes = self.server.routes
        if routes is not None:
            acceptance = routes.resolve(hs_request.path)
            if acceptance is None:
                self._send_and_close(
                    simple_response(404, f"no WebSocket route for {hs_request.path}")
                )
                return
            self._pending = (hs_request, acceptance)
            self._try_complete_upgrade()
            return
        app = self.server.wsgi_app
        assert app is not None
        upgrade = Upgrade(hs_request)
        environ = self._environ(request)
        environ[ENVIRON_KEY] = upgrade
        sink = _BufferSink()
        response = WSGIResponse(sink, request)
        response.upgrade_accepted = lambda: upgrade.acceptance is not None
        future = self.loop.run_in_executor(self.server.executor, run_wsgi, app, environ, response)

        def decided(_: asyncio.Future[None]) -> None:
            if self._closed:
                return
            if upgrade.acceptance is not None:
                self._pending = (hs_request, upgrade.acceptance)
                self._try_complete_upgrade()
            elif response.status_code >= 400:
                self._send_and_close(bytes(sink.data))
            else:
                self._send_and_close(
                    simple_response(404, f"no WebSocket handler for {hs_request.path}")
                )

        future.add_done_callback(decided)

    def _try_complete_upgrade(self) -> None:
        """Handshake once hixie-76's 8 bytes of key3 are in (RFC 6455 needs none)."""
        assert self._pending is not None and self._upgrade is not None
        request, acceptance = self._pending
        options = acceptance.options or self.config.websocket
        compression = options.compression
        try:
            needed = handshake.key3_length(request)
            trailing = self._upgrade.trailing
            if len(trailing) < needed:
                return
            accepted = handshake.accept(
                request,
                key3=bytes(trailing[:needed]),
                secure=self.secure,
                subprotocols=acceptance.subprotocols,
                origin_policy=acceptance.origin_policy or self.server.origin_policy,
                versions=self.server.versions,
                extra_headers=acceptance.headers,
                extensions=[compression] if compression is not None else [],
            )
        except HandshakeError as exc:
            self._pending = None
            self._send_and_close(handshake.reject_response(exc))
            return
        except ValueError as exc:  # the app's extra headers cannot be sent (CR/LF in them)
            logger.error("cannot accept the upgrade of %s: %s", request.target, exc)
            self._pending = None
            self._send_and_close(simple_response(500, "invalid handshake headers from the app"))
            return
        self._pending = None
        self._cancel_timer()
        rest = bytes(self._upgrade.trailing[needed:])
        connection = Connection(
            Role.SERVER, accepted.version, limits=options.limits, extensions=accepted.extensions
        )
        ws = WebSocket(
            connection,
            request,
            loop=self.loop,
            options=options,
            subprotocol=accepted.subprotocol,
            remote_address=self.peername,
        )
        transport = self.transport
        assert transport is not None
        transport.write(accepted.response)
        transport.set_protocol(WebSocketProtocol(ws))
        ws._attach(transport)
        ws._writing_paused = not self._can_write.is_set()
        self._closed = True  # this object is done; the WebSocket owns the transport
        self.server._upgraded(self, ws)
        if self._reading_paused:
            transport.resume_reading()
        self.server._start_handler(ws, acceptance.handler)
        if rest:
            ws._data_received(rest)

    # -- timers ------------------------------------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        """Header, handshake or keep-alive idle timeout: drop the connection (slowloris)."""
        self._timer = None
        if self._lingering and self.transport is not None:
            self.transport.close()
            return
        if self.transport is not None and (not self._busy or self._upgrade is not None):
            self.transport.close()
            self._closed = True

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
