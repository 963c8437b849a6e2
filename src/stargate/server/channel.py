"""HTTP/1.1 on the loop: one channel per connection, from bytes in to bytes out.

:class:`HttpChannel` reads requests (:mod:`~stargate.server.reader`: httptools, and the
limits counted on the bytes as received), queues them and answers them in order through
:mod:`~stargate.server.dispatch` (a WSGI app in a worker thread, or a ``Routes`` table on
the loop), writes their output, and hands the transport over
(:mod:`~stargate.server.handover`) once an upgrade is accepted.

What a client can make it spend is bounded at every phase:

- the head: ``max_header_size`` bytes as received, however they were cut into reads (431;
  414 when the request line alone is longer), ``max_headers`` fields, ``header_timeout``
  seconds;
- the body: ``max_body_size`` bytes (refused up front when Content-Length says so), spooled
  to disk past ``body_spool_size``, and ``body_timeout`` seconds without a byte of it; a
  chunked body's framing (chunk lines, extensions, trailers) ``max_header_size`` bytes
  between two bytes of data (413, 431 for trailers);
- pipelining: at most ``max_pipelined`` parsed requests wait, then reading pauses; they are
  answered by a loop (never recursion), which stops while output is waiting on the client;
- output: an ``OutputBuffer`` (memory, then a temporary file) that worker threads fill
  without waiting on the network; ``write_timeout`` seconds without the client taking any
  of it, and the connection is aborted;
- closing: ``linger_timeout`` to flush what is owed, then abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .. import handshake
from ..errors import HandshakeError
from ..protocol import CloseCode
from . import dispatch
from .buffers import OutputBuffer
from .fasthead import read_upgrade_head
from .handover import Refused, extension_names, hand_over, handshake_response, start_handler
from .proxy import ClientView, client_view
from .reader import RequestReader, RequestRefused, body_memory
from .request import HttpRequest
from .response import simple_response
from .state import SHUTDOWN_REASON, ServerState
from .upgrade import Acceptance
from .wsgi import ClientGone

logger = logging.getLogger("stargate.http")

try:  # Linux: the unsent bytes of a socket's send queue (termios' TIOCOUTQ, same number)
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _SIOCOUTQ = None

#: Bytes handed to the transport at a time while draining the output buffer.
_WRITE_CHUNK = 256 * 1024


def _kernel_unsent(transport: asyncio.Transport) -> int:
    """The socket's send queue in bytes (Linux ``SIOCOUTQ``); 0 where it cannot be read."""
    sock = transport.get_extra_info("socket")
    if sock is None or _SIOCOUTQ is None:
        return 0
    try:
        data = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(data, sys.byteorder, signed=True)


#: ``SO_LINGER`` on, with a timeout of 0: closing sends a reset (RST), not a FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """An error response owed, with what the access log says of the refused request."""

    response: bytes
    status: int
    reason: str
    method: str
    target: str
    #: The client as the access log names it (a trusted proxy's word, when there is one).
    remote: tuple[str, int] | None


def peer_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The client's ``(host, port)``; None for a Unix socket's peer."""
    peer = transport.get_extra_info("peername")
    return (peer[0], peer[1]) if isinstance(peer, tuple) else None


class HttpChannel(asyncio.Protocol):
    """One client connection while it speaks HTTP; hands itself over on upgrade."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config = config = state.config
        assert state.loop is not None, "the server is not started"
        self.loop = state.loop
        self.transport: asyncio.Transport | None = None
        self.peername: tuple[str, int] | None = None
        self.secure = False
        self._reader: RequestReader | None = None
        self.output = OutputBuffer(config.output_buffer_memory, config.output_buffer_max)
        #: Response bytes handed over so far (the access log's size: one request's share is
        #: the difference across it; only the request being answered writes meanwhile).
        self.bytes_queued = 0
        #: Writes the access line of the request (or upgrade decision) in the app, should
        #: the shutdown's deadline pass first (set by stargate.server.dispatch while the
        #: app runs; whoever writes the line takes it away).
        self.cut_short_by_shutdown: Callable[[], None] | None = None
        # Requests parsed and waiting, the one being answered, and an upgrade in progress.
        self._queue: deque[HttpRequest] = deque()
        self._busy = False
        self._processing = False
        self._upgrade: HttpRequest | None = None
        self._pending: tuple[handshake.Request, Acceptance, ClientView] | None = None
        # Output and the connection's end.
        self._write_paused = False
        self._flush_scheduled = False
        self._close_when_flushed = False
        #: A kept-alive connection whose last response is still being written: its idle
        #: deadline starts once the response is all out (see request_done).
        self._idle_after_flush = False
        #: An error response owed once the requests parsed before the error are answered;
        #: set, nothing more is parsed.
        self._refusal: _Refusal | None = None
        self._reading_paused = False
        self._closed = False  # no more requests are answered (refused, closing, upgraded)
        self._lost = False
        self._lingering = False  # refused: discarding input until EOF (see _linger)
        self._eof = False  # the client half-closed: answer what it sent, then close
        self._timer: asyncio.TimerHandle | None = None
        #: No request has begun yet: the header deadline connection_made armed still runs.
        self._first_head = True
        self._write_timer: asyncio.TimerHandle | None = None
        #: The transport's buffered bytes when the write timer was armed.
        self._write_mark = 0

    @property
    def reader(self) -> RequestReader:
        """The connection's request reader, made when first needed: the common upgrade
        request is read without it (:mod:`~stargate.server.fasthead`)."""
        reader = self._reader
        if reader is None:
            reader = self._reader = RequestReader(self.config, self)
        return reader

    def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.stop()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        if not self.state.admit(self):
            self.transport = transport
            self._closed = True
            transport.abort()
            return
        self.start(transport)

    def start(self, transport: asyncio.Transport) -> None:
        """Serve ``transport``, of a connection admitted already: from
        :meth:`connection_made`, or once a TLS handshake is done
        (:mod:`~stargate.server.tls`)."""
        self.transport = transport
        self.peername = peer_address(transport)
        self.secure = transport.get_extra_info("sslcontext") is not None
        if self.state.shutting_down:  # a request on its way: it may still come, briefly
            self._arm_timer(min(self.config.header_timeout, self.config.linger_timeout))
        else:
            self._arm_timer(self.config.header_timeout)

    def data_received(self, data: bytes) -> None:
        # A loop, not recursion: after an ignored upgrade (h2c) the rest of the read goes
        # to a fresh parser, and a client may pipeline any number of those.
        while data:
            if self._lingering or self._refusal is not None:
                return
            if self._closed and self._upgrade is None:
                return
            if self._upgrade is not None:
                self._upgrade.trailing += data
                if len(self._upgrade.trailing) > self.config.max_header_size:
                    self._pause_reading()  # the handshake is not done: no more until it is
                if self._pending is not None:
                    self._try_complete_upgrade()
                return
            if self._reader is None:
                # Nothing was read yet: the common upgrade request skips llhttp.
                upgrade = read_upgrade_head(data, self.config)
                if upgrade is not None:
                    self._first_head = False
                    self.request_read(upgrade[0])
                    self.upgrade_read(upgrade[1])
                    break
            data = self._feed(data)
        if len(self._queue) > self.config.max_pipelined:
            self._pause_reading()
        self._process()

    def _feed(self, data: bytes) -> bytes:
        """Read ``data``; return what follows an ignored upgrade request (else ``b""``)."""
        reader = self.reader
        if reader.in_body:
            self._arm_timer(self.config.body_timeout)  # the body moves: its deadline too
        try:
            return reader.feed(data)
        except RequestRefused as exc:
            self._refuse(exc.status, exc.reason)
            return b""

    def eof_received(self) -> bool:
        """The client half-closed: keep the transport open (return True) while requests it
        sent are still to be answered or their answers flushed."""
        self._eof = True
        if self._lingering or self._closed:
            return False
        if self._refuse_incomplete_key3("before the client ended its side"):
            return False  # the refusal is written: the transport closes after it
        owed = self._busy or bool(self._queue) or self._refusal is not None
        if owed or len(self.output):
            self._close_when_flushed = not owed
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = self._lost = True
        self._cancel_timer()
        self._cancel_write_timer()
        self.output.close()  # wake workers waiting for room; their writes raise ClientGone
        self._stop_reader()
        self.state.release(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._write_timer is None:
            self._arm_write_timer()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._cancel_write_timer()
        # A loop pass later, not inside the transport's write callback: what the flush leads
        # to (the close after the last response, an upgrade's handover to a WebSocket that
        # closes at once) would close the transport in that callback, where asyncio's
        # selector transport, its buffer empty, ends the connection itself too
        # (connection_lost twice: an "Exception in callback" traceback).
        self.loop.call_soon(self._flush)

    # -- what the reader tells (stargate.server.reader.ReaderEvents) ------------------------

    def head_started(self) -> None:
        if self._first_head:
            # The first head's deadline counts from the connection's accept, as armed
            # there (the bytes usually come with it): not a second timer per connection.
            self._first_head = False
        elif not self._busy and not self._queue:
            self._arm_timer(self.config.header_timeout)

    def body_started(self, upgrade: bool) -> None:
        if not upgrade:
            self._arm_timer(self.config.body_timeout)
        self._send_continue_if_owed()

    def request_read(self, request: HttpRequest) -> None:
        self._queue.append(request)
        if not self._busy:
            self._cancel_timer()

    def upgrade_read(self, rest: bytes) -> None:
        request = self._queue[-1]
        request.trailing += rest
        self._upgrade = request
        if len(request.trailing) > self.config.max_header_size:
            self._pause_reading()  # early frames: no more until the handshake is done

    def body_memory_held(self) -> int:
        return body_memory(list(self._queue))

    # -- answering -------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer queued requests in order, as long as each is answered at once (Routes
        mode) and the client keeps taking the output; a loop, never recursion."""
        if self._processing:
            return
        self._processing = True
        try:
            while (
                not self._busy
                and self._queue
                and not self._closed
                and not self._write_paused
                and len(self.output) < self.config.output_buffer_memory
            ):
                request = self._queue.popleft()
                self._busy = True
                if request is self._upgrade:
                    dispatch.decide_upgrade(self, request)
                    if not self._closed and self._timer is None:
                        # Still waiting (the app's decision in a thread, hixie-76's key3,
                        # earlier responses to flush): a header deadline bounds the wait.
                        # A route table's decision, done at once, needs no timer.
                        self._arm_timer(self.config.header_timeout)
                    break
                dispatch.answer(self, request)
            if (
                self._reading_paused
                and self._upgrade is None
                and not self._closed
                and len(self._queue) <= self.config.max_pipelined // 2
            ):
                self._reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self._send_continue_if_owed()
            self._send_refusal_if_due()
        finally:
            self._processing = False

    def _send_continue_if_owed(self) -> None:
        """``100 Continue`` once the request that expects it is the one being answered:
        sooner, its body would be read behind another response."""
        reader = self._reader  # none yet: nothing was read that could expect
        if (
            reader is not None
            and reader.continue_owed
            and reader.in_body
            and not self._busy
            and not self._queue
        ):
            reader.continue_owed = False
            self.respond(b"HTTP/1.1 100 Continue\r\n\r\n")

    def request_done(self, keep_alive: bool) -> None:
        """The current request is answered (its output handed over, maybe not yet sent):
        go on with the next one, or close."""
        self._busy = False
        self._idle_after_flush = False
        if self._lost:
            return
        if not keep_alive or self.state.shutting_down:
            # A response that said "Connection: close" ends the connection: nothing after
            # it, not even a refusal of what the client sent behind it (RFC 9112 9.6).
            self._refusal = None
            self._close_after_flush()
            return
        if self._eof and not self._queue and self._refusal is None:
            self._close_after_flush()
            return
        self._process()
        if not self._busy and not self._closed:
            if self._queue:
                return  # waiting for the client to take the output (resume_writing)
            # The next request may be under way already: its phase sets the deadline.
            if self.reader.in_body:
                self._arm_timer(self.config.body_timeout)
            elif self.reader.in_head:
                self._arm_timer(self.config.header_timeout)
            elif len(self.output) or self._write_paused:
                # The response is still on its way to a slow reader: the connection is not
                # idle, and closing it would cut the response.  write_timeout bounds the
                # wait (the write timer); the idle time starts once it is out (_flush).
                self._cancel_timer()
                self._idle_after_flush = True
            else:
                self._arm_timer(self.config.keepalive_timeout)

    def close_if_idle(self) -> None:
        """Shutdown: an idle keep-alive connection is closed now; a busy one, or one whose
        request's body is still arriving (an upload), after its response."""
        if self._busy or self._closed:
            return
        if self.reader.in_body or self._queue:
            return  # a request in flight: request_done closes after its answer
        self._close_after_flush()

    # -- output ----------------------------------------------------------------------------

    def write_from_thread(self, data: bytes) -> None:
        """A worker thread's response bytes: buffered at once (memory, then disk), so the
        thread does not wait on the client, except past ``output_buffer_max``."""
        output = self.output
        if output.closed:
            raise ClientGone("the connection is closed")
        if len(output) > output.max_size and not output.wait_for_room(self.config.write_timeout):
            self.loop.call_soon_threadsafe(self._abort, "the client took no output in time")
            raise ClientGone("the client did not read the response in time")
        output.append(data)
        self.bytes_queued += len(data)
        with output.cond:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def respond(self, data: bytes) -> None:
        """Bytes from the loop itself, in order after whatever is buffered."""
        self.bytes_queued += len(data)
        if len(self.output) == 0 and not self._write_paused:
            assert self.transport is not None
            self.transport.write(data)
        else:
            self.output.append(data)
            self._flush()

    def _flush(self) -> None:
        """Hand buffered output to the transport until it asks us to pause."""
        output = self.output
        with output.cond:
            self._flush_scheduled = False
        transport = self.transport
        if transport is None or self._lost:
            return
        while not self._write_paused and len(output):
            transport.write(output.take(_WRITE_CHUNK))
        if len(output):
            return
        if self._close_when_flushed:
            self._close_when_flushed = False
            self._close_now()
        elif self._pending is not None and not self._busy:
            self._try_complete_upgrade()
        elif not self._busy and self._queue:
            self._process()
        elif self._idle_after_flush:
            self._idle_after_flush = False
            if not self._busy and not self._closed and self._timer is None:
                self._arm_timer(self.config.keepalive_timeout)

    def _close_after_flush(self, *, linger: bool = False) -> None:
        self._closed = True
        self._queue.clear()
        if linger:
            self._linger()
            return
        if len(self.output):
            self._close_when_flushed = True
            self._flush()
        else:
            self._close_now()

    def reset_on_close(self) -> None:
        """The app's response was cut short after its head: end the connection with a
        reset.  A body delimited by the end of the connection (HTTP/1.0) would otherwise
        end with the same FIN as a whole one, and the client could not tell (RFC 9112
        section 6.3); a reset is an error every client sees."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)

    def _close_now(self) -> None:
        """Close; what the transport still holds gets ``linger_timeout`` to reach a client
        that may not be reading, then the connection is aborted."""
        self._closed = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        self._arm_timer(self.config.linger_timeout)

    def _unsent(self) -> int:
        """Bytes on their way to the client: the transport's buffer and the kernel's send
        queue.  The kernel's queue is where a slow reader's progress shows: the loop hands
        the kernel more only once half of its (possibly megabytes large) buffer is free."""
        transport = self.transport
        if transport is None:
            return 0
        return transport.get_write_buffer_size() + _kernel_unsent(transport)

    def _arm_write_timer(self) -> None:
        """Watch what is on its way to the client for ``write_timeout``: if it shrank, the
        client reads, however slowly, and the watch starts over."""
        self._write_mark = self._unsent()
        self._write_timer = self.loop.call_later(self.config.write_timeout, self._write_stalled)

    def _write_stalled(self) -> None:
        self._write_timer = None
        if self._unsent() < self._write_mark:
            self._arm_write_timer()  # progress: a slow but steady reader is not cut
            return
        self._abort("the client took none of its output for write_timeout")

    def _abort(self, why: str) -> None:
        if self.transport is not None and not self._lost:
            logger.info("%s: aborting the connection: %s", self._peer(), why)
            self.transport.abort()

    def _peer(self) -> str:
        return f"{self.peername[0]}:{self.peername[1]}" if self.peername else "client"

    # -- refusing --------------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we cannot parse or serve with ``status``, then close.

        Parsing stops here; the requests parsed before it (pipelined in the same read) are
        still answered, in order, and the refusal comes after them, so responses never
        interleave nor go to the wrong request.
        """
        self._pause_reading()
        method, target = self.reader.what_was_read()
        # What a trusted proxy said of the client, as far as the head came: every field
        # read is the proxy's, and without its header the peer is named.
        remote = client_view(
            self.reader.fields_read(),
            self.peername,
            secure=self.secure,
            trusted=self.state.trusted_proxies,
        ).remote
        self.reader.stop()
        response = simple_response(status, reason)
        self._refusal = _Refusal(response, status, reason, method, target, remote)
        self._process()

    def _send_refusal_if_due(self) -> None:
        """Send the refusal once every request parsed before it is answered, and only then
        count it in the access log and metrics: a response that closes the connection
        before it is due means it is never sent (RFC 9112 section 9.6)."""
        refusal = self._refusal
        if refusal is None or self._busy or self._queue or self._closed:
            return
        self._refusal = None
        self._closed = True
        self.respond(refusal.response)
        self.state.record_refusal(
            refusal.remote,
            refusal.method,
            refusal.target,
            refusal.status,
            refusal.reason,
            websocket=False,
        )
        self._linger()

    def _send_and_close(self, data: bytes) -> None:
        self._queue.clear()
        self.respond(data)
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
        if len(self.output):
            self._close_when_flushed = True  # a refusal behind a large response: no FIN yet
            self._arm_timer(self.config.linger_timeout + self.config.write_timeout)
            return
        if not transport.can_write_eof():  # TLS: no half-close
            self._close_now()
            return
        self._lingering = True
        transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm_timer(self.config.linger_timeout)

    # -- upgrade ---------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """Whether the client is gone."""
        return self._lost

    def upgrade_accepted(
        self, request: handshake.Request, acceptance: Acceptance, client: ClientView
    ) -> None:
        """The app (or the route table) accepted the upgrade of ``client``: handshake once
        possible."""
        self._busy = False
        if self._lost:
            return
        self._pending = (request, acceptance, client)
        self._try_complete_upgrade()

    def upgrade_refused(
        self, response: bytes, client: ClientView, status: int, reason: str
    ) -> None:
        """The upgrade does not happen: send ``response`` (the app's, or ours) and close."""
        self._busy = False
        if self._lost:
            return
        self._record_upgrade_refusal(client, status, reason)
        self._send_and_close(response)

    def _record_upgrade_refusal(self, client: ClientView, status: int, reason: str) -> None:
        upgrade = self._upgrade
        target = upgrade.target if upgrade is not None else "-"
        self.state.record_refusal(client.remote, "GET", target, status, reason, websocket=True)

    def _refuse_incomplete_key3(self, when: str) -> bool:
        """A hixie-76 handshake whose 8 bytes of key3 did not all come ``when``: refused
        with 400 and the reason, logged and counted like any refusal, rather than closed
        without a word.  False if the connection is not waiting for key3."""
        upgrade, pending = self._upgrade, self._pending
        if upgrade is None or pending is None or len(self.output) or self._write_paused:
            return False
        request, _, client = pending
        needed, got = handshake.key3_length(request), len(upgrade.trailing)
        if got >= needed:
            return False
        self._pending = None
        exc = HandshakeError(400, f"hixie-76 key3 must be {needed} bytes, got {got} {when}")
        self.upgrade_refused(handshake.reject_response(exc), client, exc.status, exc.reason)
        return True

    def _try_complete_upgrade(self) -> None:
        """Handshake once hixie-76's 8 bytes of key3 are in (RFC 6455 needs none) and the
        responses to earlier pipelined requests have left; then hand the transport over."""
        assert self._pending is not None and self._upgrade is not None
        if len(self.output) or self._write_paused:
            return  # _flush calls again once earlier responses are out
        request, acceptance, client = self._pending
        trailing = self._upgrade.trailing
        try:
            needed = handshake.key3_length(request)
        except HandshakeError as exc:
            self._pending = None
            self._record_upgrade_refusal(client, exc.status, exc.reason)
            self._send_and_close(handshake.reject_response(exc))
            return
        if len(trailing) < needed:
            return
        self._pending = None
        accepted = handshake_response(
            self.state,
            request,
            acceptance,
            bytes(trailing[:needed]),
            secure=client.secure,
            authority=client.host,
        )
        if isinstance(accepted, Refused):
            self._record_upgrade_refusal(client, accepted.status, accepted.reason)
            self._send_and_close(accepted.response)
            return
        self._cancel_timer()
        self._cancel_write_timer()
        rest = bytes(trailing[needed:])
        transport = self.transport
        assert transport is not None
        ws = hand_over(
            self.state,
            transport,
            request,
            accepted,
            acceptance,
            remote_address=client.remote,
            write_paused=self._write_paused,
        )
        self._closed = True  # this object is done; the WebSocket owns the transport
        self._stop_reader()
        self.state.upgraded(self, ws)
        self.state.record_websocket_open(ws, extension_names(accepted.extensions))
        if self._reading_paused:
            transport.resume_reading()
        start_handler(self.state, ws, acceptance.handler)
        if rest:
            ws.feed_data(rest)
        if self.state.shutting_down:
            # Decided while the shutdown's close loop ran: this one closes as it opens
            # (the shutdown waits for it, as for the others).
            ws.start_close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)

    # -- timers ------------------------------------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _timed_out(self) -> None:
        """The deadline of the current phase passed: head, body, keep-alive idle, the
        upgrade decision, or closing.  A request being answered has its own bounds."""
        self._timer = None
        transport = self.transport
        if transport is None or self._lost:
            return
        if transport.is_closing() or self._lingering:
            transport.abort()  # closing took longer than linger_timeout: the client is stuck
            return
        if self._refuse_incomplete_key3("within header_timeout"):
            return
        if not self._busy or self._upgrade is not None:
            upgrade = self._upgrade
            if upgrade is not None and self._busy and not len(self.output):
                # The app is still deciding the upgrade (its pool busy, or a slow view):
                # the client hears why, and the refusal is logged and counted.
                reason = "the app did not decide on the upgrade within header_timeout"
                self.cut_short_by_shutdown = None  # this is its line
                client = dispatch.client_of(self, upgrade).remote
                self.state.record_refusal(
                    client, "GET", upgrade.target, 503, reason, websocket=True
                )
                transport.write(simple_response(503, reason))
            self._closed = True
            self._queue.clear()
            transport.close()
            self._arm_timer(self.config.linger_timeout)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
