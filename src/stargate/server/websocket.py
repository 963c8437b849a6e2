"""The server's WebSocket object: the sans-I/O connection driven by an asyncio transport.

The hot path runs in :meth:`WebSocket._data_received`: parse, write what the connection owes
the peer, hand each message to the :class:`~stargate.endpoint.Inbox` (a waiting ``receive()``
is woken by one future per wait, never a task per message) or to an ``on_message``
callback.  Reading pauses while the handler lags behind
(``max_queue``) and while the transport is above its high-water mark, in every handler mode
(:mod:`stargate.endpoint`); ``send`` waits while the transport is above its high-water mark;
a send that cannot wait (a broadcast, another thread) over ``max_send_buffer`` closes that
connection alone with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Collection
from typing import ClassVar

from ..connection import Connection, ConnectionState
from ..endpoint import SPLIT_SIZE, WebSocketBase
from ..endpoint import Message as Message  # re-exported: the type of a message
from ..events import BinaryMessage, CloseReceived, Pong, ProtocolViolation, TextMessage
from ..frames import FIN_BINARY, FIN_TEXT, build_frame
from ..handshake import Request
from ..masking import BytesLike
from ..protocol import CloseCode
from .config import WebSocketOptions

logger = logging.getLogger("stargate.websocket")

# An enum member's lookup costs ~70 ns on CPython 3.11: the hot paths use these instead.
_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED

_ids = itertools.count(1)


class _PassFlusher:
    """One event loop's connections holding corked frames, written at the end of the pass:
    one callback per loop pass, never one per connection or per message."""

    __slots__ = ("__weakref__", "loop", "pass_id", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the flusher is the value of its loop's entry in the weak-keyed _flushers,
        # and a strong reference would keep every loop that ever served a WebSocket alive.
        self.loop = weakref.ref(loop)
        #: Counts the passes in which something was sent this way (see ``touch``).
        self.pass_id = 0
        self.pending: list[WebSocket] = []
        self.scheduled = False

    def touch(self) -> None:
        """Something was sent in this pass: the pass ends with :meth:`flush`."""
        if not self.scheduled:
            loop = self.loop()
            assert loop is not None  # sends run on the loop: it is alive
            self.scheduled = True
            loop.call_soon(self.flush)

    def add(self, ws: WebSocket) -> None:
        self.pending.append(ws)
        self.touch()

    def flush(self) -> None:
        self.scheduled = False
        self.pass_id += 1
        pending, self.pending = self.pending, []
        for ws in pending:
            ws._uncork()  # private to this module: the flusher is WebSocket's helper


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PassFlusher] = (
    weakref.WeakKeyDictionary()
)


def _flusher(loop: asyncio.AbstractEventLoop) -> _PassFlusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _PassFlusher(loop)
    return flusher


class WebSocket(WebSocketBase[WebSocketOptions]):
    """One accepted WebSocket connection, as the application sees it (async API).

    Every method must be called on the event loop's thread, except :meth:`send_threadsafe`;
    synchronous handlers get a :class:`~stargate.server.sync.SyncWebSocket` instead.
    Groups use :attr:`frame_family`, :meth:`encode_shared`, :meth:`send_encoded`,
    :meth:`hold` and :meth:`release`.
    """

    __slots__ = (
        "_answering",
        "_close_callbacks",
        "_cork",
        "_corked",
        "_flusher",
        "_handler_done",
        "_high_water_fits",
        "_max_send_buffer",
        "_memberships",
        "_pass",
        "_plain_frames",
        "on_message",
        "opened_at",
        "remote_address",
        "request",
        "slow_consumer",
    )

    _logger: ClassVar[logging.Logger] = logger

    def __init__(
        self,
        connection: Connection,
        request: Request,
        *,
        loop: asyncio.AbstractEventLoop,
        options: WebSocketOptions,
        subprotocol: str | None = None,
        remote_address: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(connection, loop=loop, options=options, subprotocol=subprotocol)
        #: A number that tells this connection from the others of this process (in logs,
        #: reprs and ``Group`` membership).
        self.id = next(_ids)
        #: The upgrade request (method, target, headers), as the handshake read it.
        self.request = request
        request.headers.compact()  # read; kept for the application, at a smaller cost
        #: The client's ``(host, port)``: a trusted proxy's forwarded address when one is
        #: configured (``trusted_proxies``), else the peer's; ``None`` when unknown (a Unix
        #: socket).
        self.remote_address = remote_address
        #: Called on the loop's thread with each message nobody is waiting for in
        #: ``receive()``; lets a connection be served without a task or a thread.  The
        #: messages that came before it was set and were not read are its first, in
        #: order.  Set back to ``None`` once the connection is closed (no message comes
        #: any more).
        self.on_message: Callable[[Message], object] | None = None
        self._close_callbacks: list[Callable[[WebSocket], object]] = []
        self._memberships = 0
        self._handler_done = False
        #: A read that ended the open state is being delivered: answers may still be sent.
        self._answering = False
        self._cork: list[bytes] | None = None
        #: Bytes :meth:`send_encoded` corked this pass: not in the transport yet, but owed
        #: to the peer all the same (the slow-consumer policy counts them).
        self._corked = 0
        #: Writes this pass's corked frames at its end (see :meth:`send_encoded`), and
        #: the pass in which this connection last got a frame that way.
        self._flusher = _flusher(loop)
        self._pass = -1
        self._max_send_buffer = options.max_send_buffer
        #: While the transport is below its high-water mark it holds less than
        #: ``max_send_buffer`` (so :meth:`send_encoded_each` need not ask it).
        self._high_water_fits = options.write_high_water <= options.max_send_buffer
        #: A message goes out as one plain frame (no compression, no mask, not hixie), so
        #: :meth:`send_nowait` can build it itself.
        self._plain_frames = connection.plain_frames
        #: Closed by the slow-consumer policy (``max_send_buffer``).
        self.slow_consumer = False
        #: When the handshake completed (``loop.time()``), for the access log's duration.
        self.opened_at = loop.time()

    # -- what the application reads ------------------------------------------------------

    @property
    def path(self) -> str:
        """The path of the upgrade request's target, without its query (``/chat``)."""
        return self.request.path

    @property
    def frame_family(self) -> str:
        """Connections of one family can share an encoded frame (see ``send_encoded``)."""
        return self._conn.frame_family

    def encode_shared(self, message: Message | BytesLike) -> bytes:
        """``message`` as a frame that every connection of this :attr:`frame_family` can be
        sent with :meth:`send_encoded` (a broadcast encodes, and compresses, once).  Raises
        ``TypeError`` for binary data on a hixie connection, which cannot carry it."""
        return self._conn.encode_shared(message)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<WebSocket #{self.id} {self.version.value} {self.request.target!r} {state}>"

    # -- sending ---------------------------------------------------------------------------

    def send_nowait(self, message: Message | BytesLike) -> None:
        """Send without waiting: the slow-consumer policy applies instead of backpressure.

        An echo's inner call, once per message: the common case (a small message on an
        open connection without compression, below ``max_send_buffer``) is framed and
        written here without another call of Python.
        """
        transport = self._transport
        if (
            self._plain_frames
            and transport is not None
            and self._conn.state is _OPEN
            and transport.get_write_buffer_size() + self._corked <= self._max_send_buffer
            and len(message) < SPLIT_SIZE  # last: a full buffer closes whatever was sent
        ):
            frame = build_frame(FIN_TEXT if isinstance(message, str) else FIN_BINARY, message, None)
            self.bytes_out += len(frame)
            self.messages_out += 1
            cork = self._cork
            if cork is None:
                transport.write(frame)
            else:
                cork.append(frame)
            return
        if self._send_buffer_ok():
            self._send_message(message)

    def send_encoded(self, frame: bytes, messages: int = 1) -> None:
        """Send a frame encoded once for many connections of this :attr:`frame_family`
        (``messages``: how many messages ``frame`` holds, when a batch joins several).

        The first frame sent to a connection in a pass of the event loop is written at
        once (a lone broadcast loses no latency); the next ones are corked and written at
        the end of the pass, with everything else sent to this connection meanwhile, in
        order: a broadcast that publishes 16 messages in one pass costs each member two
        writes, not 16 (uWebSockets' cork).

        This is a broadcast's inner loop, once per member: the common case (an open
        connection below ``max_send_buffer``) runs here without another call.
        """
        transport = self._transport
        # (Not OPEN also covers a closed connection: ``_closed`` is set after the state is
        # CLOSED, at ``connection_lost``.)
        if (
            transport is None
            or transport.get_write_buffer_size() + self._corked > self._max_send_buffer
            or self._conn.state is not _OPEN
        ):
            if self._send_buffer_ok():  # the slow-consumer policy, or the closed error
                self._write(frame)
                self.messages_out += messages
            return
        self.bytes_out += len(frame)
        self.messages_out += messages
        cork = self._cork
        if cork is None:
            flusher = self._flusher
            if self._pass != flusher.pass_id:  # first in this pass: at once
                self._pass = flusher.pass_id
                if not flusher.scheduled:
                    flusher.touch()
                transport.write(frame)
                return
            cork = self._cork = []
            flusher.add(self)
        cork.append(frame)
        self._corked += len(frame)

    @staticmethod
    def send_encoded_each(members: Collection[WebSocket], frame: bytes, messages: int) -> None:
        """Send ``frame``, encoded once (:meth:`WebSocket.encode_shared`), to each of
        ``members``: connections of one frame family served by the running loop.  A
        broadcast's inner loop, once per member per message.

        The common member (open, below its high-water mark, sent nothing yet in this loop
        pass, nothing corked) gets its write here, inline: no call of its own, no question to
        its transport.  That is :meth:`WebSocket.send_encoded`'s first case, whose checks it
        makes from the connection's own fields; every other member (corking, the
        slow-consumer policy, a closing connection) goes through that method.  The cost per
        member matters beyond the CPU: the writes of a broadcast to sockets whose readers
        sleep each wake one, and the sooner the next write follows, the more readers are
        still awake to take it.
        """
        if not members:
            return
        flusher = next(iter(members))._flusher
        pass_id = flusher.pass_id
        flusher.touch()  # the pass's end moves ``pass_id`` on: the next pass writes at once
        size = len(frame)
        for ws in tuple(members):
            try:
                transport = ws._transport
                if (
                    ws._pass != pass_id
                    and ws._cork is None  # else behind what a read's answers corked
                    and not ws._write_blocked
                    and ws._high_water_fits
                    and transport is not None
                    and ws._conn.state is _OPEN
                ):
                    ws._pass = pass_id
                    ws.bytes_out += size
                    ws.messages_out += messages
                    transport.write(frame)
                else:
                    ws.send_encoded(frame, messages)
            except Exception:  # a closing member: it leaves by its close callback
                logger.debug("a send to %r skipped", ws)

    def send_threadsafe(self, message: Message | BytesLike) -> None:
        """Send from any thread; dropped silently if the connection closes first."""
        self._loop.call_soon_threadsafe(self._send_soon, message)

    def _send_soon(self, message: Message | BytesLike) -> None:
        if not self._closed.done() and self._conn.state is _OPEN:
            self.send_nowait(message)

    def _write(self, data: bytes) -> None:
        if self._closed.done() or (
            self._conn.state is not _OPEN and not self._answering and self._held is None
        ):
            raise self._closed_error()
        self.bytes_out += len(data)
        cork = self._cork
        if cork is not None:
            cork.append(data)
            return
        transport = self._transport
        assert transport is not None
        transport.write(data)

    def _write_parts(self, header: bytes, payload: bytes) -> None:
        cork = self._cork
        if cork is not None:
            self._write(header)  # checks the state, counts, corks
            self.bytes_out += len(payload)
            cork.append(payload)
            return
        self._cork = cork = []
        try:
            self._write(header)
        finally:
            self._cork = None
        self.bytes_out += len(payload)
        cork.append(payload)
        assert self._transport is not None
        self._transport.writelines(cork)

    def _uncork(self) -> None:
        """End of the loop pass: write what :meth:`send_encoded` corked, in one call."""
        cork, self._cork = self._cork, None
        self._corked = 0
        if cork and self._transport is not None and not self._closed.done():
            self._transport.writelines(cork)

    def _flush_cork(self) -> None:
        """Write what was batched so far (before a close frame, which must follow it)."""
        cork = self._cork
        self._corked = 0
        if cork and self._transport is not None:
            self._transport.writelines(cork)
            cork.clear()

    def _send_buffer_ok(self) -> bool:
        """The slow-consumer policy: while more than ``max_send_buffer`` bytes wait for the
        peer, a send that cannot wait closes the connection with 1008 instead of growing
        the buffer.  One message, however large, never trips it by itself."""
        transport = self._transport
        limit = self._options.max_send_buffer
        if transport is not None and transport.get_write_buffer_size() + self._corked > limit:
            if self._conn.state is _OPEN:
                logger.info("%r: send buffer over %d bytes, closing (slow consumer)", self, limit)
                self.slow_consumer = True
                self.start_close(CloseCode.POLICY_VIOLATION, "slow consumer: send buffer full")
            return False
        return True

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Call ``callback(ws)`` on the loop once the connection is closed (at once if it is)."""
        if self._closed.done():
            self._loop.call_soon(callback, self)
        else:
            self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Undo :meth:`add_close_callback` (nothing happens if ``callback`` was not added
        or was called already)."""
        with contextlib.suppress(ValueError):
            self._close_callbacks.remove(callback)

    # -- lifetime, driven by the server ------------------------------------------------------

    def hold(self) -> None:
        """Keep this connection open after its handler returns (a group holds its members),
        until as many :meth:`release` calls.  On the loop's thread."""
        self._memberships += 1

    def release(self) -> None:
        """Undo one :meth:`hold`; the last one closes the connection (1000) if its handler
        has returned and no ``on_message`` callback listens."""
        self._memberships -= 1
        if self._memberships <= 0 and self._handler_done and self.on_message is None:
            self.start_close(CloseCode.NORMAL_CLOSURE, "")

    def handler_returned(self) -> None:
        """Called by the server when the handler returned: close, unless a group or a
        callback still listens."""
        self._handler_done = True
        unread = self._inbox.discard()
        callback = self.on_message
        if callback is not None:
            # Messages that arrived before the handler installed its callback (a worker
            # thread starts late; the first frames may come with the handshake) are the
            # callback's too: dropping them lost the first messages of a connection.
            self._deliver(callback, unread)
        elif self._memberships <= 0:
            self.start_close(CloseCode.NORMAL_CLOSURE, "")
        if self._held is not None:
            self._flush_held()  # what came before the peer's close is answered, or dropped

    def _deliver(self, callback: Callable[[Message], object], messages: list[Message]) -> None:
        """Hand ``callback`` messages that waited in the inbox, in order, until closed."""
        for message in messages:
            if self._closed.done():
                break
            try:
                callback(message)
            except Exception:
                self._callback_failed()

    def handler_failed(self) -> None:
        """Called by the server when the handler raised: close with 1011."""
        self._handler_done = True
        self._inbox.discard()
        self.start_close(CloseCode.INTERNAL_ERROR, "internal error")

    def _callback_failed(self) -> None:
        """In the ``except`` block of an ``on_message`` call (the log gets its traceback)."""
        logger.exception("%r: on_message callback failed", self)
        self.start_close(CloseCode.INTERNAL_ERROR, "internal error")

    def _data_received(self, data: BytesLike) -> None:
        conn = self._conn
        was_open = conn.state is _OPEN
        self.bytes_in += len(data)
        events = conn.receive_data(data)
        transport = self._transport
        assert transport is not None
        # Replies go out in the order of what they answer.  Pongs the connection queued for
        # pings of this read are flushed before its messages are delivered (the callback's
        # answers come after them).  Messages that arrived before a close or a protocol
        # error in this same read may still be answered (by an on_message callback) before
        # the close frame the connection queued, which is flushed after them.
        answering = self._answering = was_open and conn.state is not _OPEN
        inbox = self._inbox
        # Everything written while this read is handled is batched into one write: an
        # echo-like callback answering 16 messages of one read makes one system call, not
        # 16 (the system call was ~65% of the echo server's CPU).  Frames corked earlier
        # in this loop pass (a broadcast) go first, in order.
        cork = self._cork
        if cork is None:
            cork = self._cork = []
        if conn.has_data_to_send:
            out = conn.data_to_send(before_close=True) if answering else conn.data_to_send()
            if out:
                self.bytes_out += len(out)
                cork.append(out)
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                self.messages_in += 1
                callback = self.on_message
                if callback is None or inbox.waiter is not None:
                    inbox.put(event.data)  # type: ignore[union-attr]
                else:
                    if inbox.messages:
                        # Messages that came before the callback was installed (a thread
                        # sets it late) are its first: RFC 6455 messages keep their order.
                        # (take_all, not discard: the inbox stays open for receive()
                        # should the callback be taken away again.)
                        self._deliver(callback, inbox.take_all())
                    try:
                        callback(event.data)  # type: ignore[union-attr]
                    except Exception:
                        self._callback_failed()
            elif kind is Pong:
                self._on_pong(event.payload)  # type: ignore[union-attr]
            elif kind is ProtocolViolation:
                logger.info("%r: protocol error %s", self, event)
                if self.closed_by is None:
                    self.closed_by = "local"
            elif kind is CloseReceived:
                if self.closed_by is None:
                    self.closed_by = "peer"
                if self._close_timer is None:
                    self._arm_close_timer()
        self._answering = False
        self._cork = None
        self._corked = 0
        if answering:
            # The peer's close (or our answer to an error) is in this read.  Its messages
            # are all queued first: they came before the close, and are in memory already.
            inbox.closing()
        out = conn.data_to_send() if conn.has_data_to_send else b""
        if answering and inbox and self._hold_close(out):
            out = b""  # the handler reads (and may answer) what came before the close first
        if out:
            self.bytes_out += len(out)
            cork.append(out)
        if cork:
            transport.writelines(cork)
        if conn.state is _CLOSED and self._held is None:
            # The server closes TCP first, and the close timer bounds the wait for what the
            # transport holds: a peer that failed the protocol may read none of it.
            self._close_written()

    def _on_pong(self, payload: bytes) -> None:
        entry = self._pong_waiters.pop(payload, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(self._loop.time() - entry[0])

    def start_close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and bound the wait for the peer's answer."""
        if self._closed.done():
            return
        if self._held is not None:
            self._flush_held()  # the peer closed first: our answer is that held close
            return
        conn = self._conn
        self._flush_cork()
        if not conn.close_sent:
            if self.closed_by is None:
                self.closed_by = "local"
            conn.send_close(code, reason)
            out = conn.data_to_send()
            if out and self._transport is not None:
                self.bytes_out += len(out)
                self._transport.write(out)
        if conn.state is _CLOSED and self._transport is not None:
            if not self._answering:  # else the read's answers and our close go out first
                self._transport.close()
        else:
            # The peer's close frame is behind what the handler did not read: without
            # reading on, every close of a lagging handler waited for the close timeout.
            self._inbox.closing()
        if self._close_timer is None:
            self._arm_close_timer()

    def _close_written(self) -> None:
        """RFC 6455 section 7.1.1: once the closing handshake is done, the server closes
        the TCP connection first; in any case the wait for the end is bounded."""
        if self._conn.state is _CLOSED and self._transport is not None:
            self._transport.close()
        if self._close_timer is None:
            self._arm_close_timer()

    def connection_lost(self) -> None:
        """Called by the transport's protocol: the transport is gone; wake everyone waiting,
        then call the close callbacks (a failing one is logged, the others still run)."""
        super().connection_lost()
        # No message comes any more; ``ws.on_message = ws.send_nowait`` would otherwise
        # keep this object in a reference cycle with itself.
        self.on_message = None
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("%r: close callback failed", self)


#: The size of :func:`read_buffer`: what one read can bring (uvloop's own read buffer's).
READ_BUFFER_SIZE = 256 * 1024
_per_thread = threading.local()


def read_buffer() -> memoryview:
    """The buffer this thread's upgraded connections read into.

    One per thread, because an event loop runs in one thread and handles one read at a time:
    the transport fills it, :meth:`WebSocketProtocol.buffer_updated` parses what came, and
    the next read, of any connection, may overwrite it.  So nothing may keep a view of it
    past that call: the protocol core copies what it keeps (a partial frame, a payload).
    Reading into it spares the copy of each read into a bytes object of its own (a large
    message's every byte, once more) and that object's allocation.
    """
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class WebSocketProtocol(asyncio.BufferedProtocol):
    """The asyncio protocol of an upgraded connection: forwards to its :class:`WebSocket`."""

    __slots__ = ("_buffer", "_receive", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        # Bound once: the hot path is one attribute lookup away from the parser.
        self._receive = ws.data_receiver()
        self._buffer = read_buffer()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._receive(self._buffer[:nbytes])

    def data_received(self, data: bytes) -> None:
        """For a loop that cannot read into a buffer.  Also, uvloop replaces the previous
        protocol's ``data_received`` that it keeps only with this one: without it, the
        HTTP channel stayed alive for as long as the WebSocket (5 kB per connection)."""
        self._receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.connection_lost()

    def pause_writing(self) -> None:
        self.ws.pause_writing()

    def resume_writing(self) -> None:
        self.ws.resume_writing()

    def eof_received(self) -> bool | None:
        return None
