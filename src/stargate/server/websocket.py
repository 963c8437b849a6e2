"""The server's WebSocket object: the sans-I/O connection driven by an asyncio transport.

The hot path runs in :meth:`WebSocket._data_received`: parse, write what the connection owes
the peer, hand each message to a waiting ``receive()`` (one future per wait, never a task per
message) or to an ``on_message`` callback.  Reading pauses while the handler lags behind
(``max_queue``); ``send`` waits while the transport is above its high-water mark; a send that
cannot wait (a broadcast, another thread) over ``max_send_buffer`` closes that connection alone
with 1008.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable

from ..connection import Connection, ConnectionState
from ..errors import ConnectionClosed
from ..events import BinaryMessage, CloseReceived, Pong, ProtocolViolation, TextMessage
from ..handshake import Request
from ..masking import BytesLike
from ..protocol import CloseCode, ProtocolVersion
from .config import WebSocketOptions

logger = logging.getLogger("stargate.websocket")

Message = str | bytes
_ids = itertools.count(1)
_Waiter = asyncio.Future[None] | concurrent.futures.Future[None]


class WebSocket:
    """One accepted WebSocket connection, as the application sees it (async API).

    Every method must be called on the event loop's thread, except :meth:`send_threadsafe`;
    synchronous handlers get a :class:`~stargate.server.sync.SyncWebSocket` instead.
    """

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
        self.id = next(_ids)
        self.request = request
        self.subprotocol = subprotocol
        self.remote_address = remote_address
        #: Called on the loop's thread with each message nobody is waiting for in
        #: ``receive()``; lets a connection be served without a task or a thread.
        self.on_message: Callable[[Message], object] | None = None
        self._conn = connection
        self._loop = loop
        self._options = options
        self._transport: asyncio.Transport | None = None
        self._inbox: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._sync_cond: threading.Condition | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[_Waiter] = []
        self._pong_waiters: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._closed = loop.create_future()
        self._close_callbacks: list[Callable[[WebSocket], object]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._memberships = 0
        self._handler_done = False
        self._answering = False
        self._cork: list[bytes] | None = None

    # -- what the application reads ------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        return self._conn.version

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 when the transport ended abruptly)."""
        return self._conn.close_code if self._closed.done() else None

    @property
    def close_reason(self) -> str:
        return self._conn.close_reason

    @property
    def frame_family(self) -> str:
        """Connections of one family can share an encoded frame (see ``send_encoded``)."""
        return self._conn.frame_family

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<WebSocket #{self.id} {self.version.value} {self.request.target!r} {state}>"

    # -- receiving -------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~stargate.errors.ConnectionClosed` once the connection is closed and
        every message received before is consumed.
        """
        while not self._inbox:
            if self._closed.done():
                raise self._closed_error()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = self._inbox.popleft()
        if self._reading_paused and len(self._inbox) <= self._options.max_queue // 2:
            self._resume_reading()
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: Message | BytesLike) -> None:
        """Send a text (``str``) or binary message; waits while the peer is slow to read."""
        self._write(self._conn.encode_message(message))
        if self._writing_paused:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def send_nowait(self, message: Message | BytesLike) -> None:
        """Send without waiting: the slow-consumer policy applies instead of backpressure."""
        if self._send_buffer_ok():
            self._write(self._conn.encode_message(message))

    def send_encoded(self, frame: bytes) -> None:
        """Send a frame encoded once for many connections of this :attr:`frame_family`."""
        if self._send_buffer_ok():
            self._write(frame)

    def send_threadsafe(self, message: Message | BytesLike) -> None:
        """Send from any thread; dropped silently if the connection closes first."""
        self._loop.call_soon_threadsafe(self._send_soon, message)

    def _send_soon(self, message: Message | BytesLike) -> None:
        if not self._closed.done() and self._conn.state is ConnectionState.OPEN:
            self.send_nowait(message)

    def _send_blocking(
        self, message: Message | BytesLike, done: concurrent.futures.Future[None]
    ) -> None:
        """The loop side of a synchronous ``send``: ``done`` resolves once the transport is
        below its high-water mark again."""
        try:
            self._write(self._conn.encode_message(message))
        except BaseException as exc:
            done.set_exception(exc)
            return
        if self._writing_paused:
            self._drain_waiters.append(done)
        else:
            done.set_result(None)

    def _write(self, data: bytes) -> None:
        if self._closed.done() or (
            self._conn.state is not ConnectionState.OPEN and not self._answering
        ):
            raise self._closed_error()
        cork = self._cork
        if cork is not None:
            cork.append(data)
            return
        transport = self._transport
        assert transport is not None
        transport.write(data)

    def _flush_cork(self) -> None:
        """Write what was batched so far (before a close frame, which must follow it)."""
        cork = self._cork
        if cork and self._transport is not None:
            self._transport.writelines(cork)
            cork.clear()

    def _send_buffer_ok(self) -> bool:
        """The slow-consumer policy: while more than ``max_send_buffer`` bytes wait for the
        peer, a send that cannot wait closes the connection with 1008 instead of growing
        the buffer.  One message, however large, never trips it by itself."""
        transport = self._transport
        limit = self._options.max_send_buffer
        if transport is not None and transport.get_write_buffer_size() > limit:
            if self._conn.state is ConnectionState.OPEN:
                logger.info("%r: send buffer over %d bytes, closing (slow consumer)", self, limit)
                self._start_close(CloseCode.POLICY_VIOLATION, "slow consumer: send buffer full")
            return False
        return True

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        if payload is None:
            payload = os.urandom(4)
        if payload in self._pong_waiters:
            raise ValueError("a ping with this payload is already waiting for its pong")
        self._conn.send_ping(payload)
        self._write(self._conn.data_to_send())
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pong_waiters[payload] = (self._loop.time(), waiter)
        return await waiter

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait until the connection is closed (bounded by
        the close timeout, after which the transport is aborted)."""
        self._start_close(code, reason)
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Call ``callback(ws)`` on the loop once the connection is closed (at once if it is)."""
        if self._closed.done():
            self._loop.call_soon(callback, self)
        else:
            self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        with contextlib.suppress(ValueError):
            self._close_callbacks.remove(callback)

    # -- lifetime, driven by the server ------------------------------------------------------

    def _attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=self._options.write_high_water)
        if self._options.ping_interval and not self.version.is_hixie:
            self._schedule_ping()

    def _retain(self) -> None:
        """A group holds this connection: it stays open after its handler returns."""
        self._memberships += 1

    def _release(self) -> None:
        self._memberships -= 1
        if self._memberships <= 0 and self._handler_done and self.on_message is None:
            self._start_close(CloseCode.NORMAL_CLOSURE, "")

    def _handler_finished(self) -> None:
        """The handler returned: close, unless a group or a callback still listens."""
        self._handler_done = True
        unread, self._inbox = self._inbox, deque()
        if self._reading_paused:
            self._resume_reading()
        callback = self.on_message
        if callback is not None:
            # Messages that arrived before the handler installed its callback (a worker
            # thread starts late; the first frames may come with the handshake) are the
            # callback's too: dropping them lost the first messages of a connection.
            for message in unread:
                if self._closed.done():
                    break
                self._deliver(message)
        elif self._memberships <= 0:
            self._start_close(CloseCode.NORMAL_CLOSURE, "")

    def _handler_failed(self) -> None:
        self._handler_done = True
        self._inbox.clear()
        self._start_close(CloseCode.INTERNAL_ERROR, "internal error")

    def _data_received(self, data: bytes) -> None:
        conn = self._conn
        was_open = conn.state is ConnectionState.OPEN
        events = conn.receive_data(data)
        transport = self._transport
        assert transport is not None
        # Replies go out in the order of what they answer.  Pongs the connection queued for
        # pings that came before a message are flushed before the message is delivered.
        # Messages that arrived before a close or a protocol error in this same read may
        # still be answered (by an on_message callback) before the close frame the
        # connection queued, which is flushed after them.
        answering = self._answering = was_open and conn.state is not ConnectionState.OPEN
        # Everything written while this read is handled is batched into one write: an
        # echo-like callback answering 16 messages of one read makes one system call, not
        # 16 (the system call was ~65% of the echo server's CPU).
        cork: list[bytes] = []
        self._cork = cork
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                if not answering:
                    out = conn.data_to_send()
                    if out:
                        cork.append(out)
                self._deliver(event.data)  # type: ignore[union-attr]
            elif kind is Pong:
                self._on_pong(event.payload)  # type: ignore[union-attr]
            elif kind is ProtocolViolation:
                logger.info("%r: protocol error %s", self, event)
            elif kind is CloseReceived and self._close_timer is None:
                self._arm_close_timer()
        self._answering = False
        self._cork = None
        out = conn.data_to_send()
        if out:
            cork.append(out)
        if cork:
            transport.writelines(cork)
        if conn.state is ConnectionState.CLOSED:
            # RFC 6455 section 7.1.1: the server closes the TCP connection first.
            transport.close()

    def _deliver(self, message: Message) -> None:
        callback = self.on_message
        if self._waiter is None and callback is not None:
            try:
                callback(message)
            except Exception:
                logger.exception("%r: on_message callback failed", self)
                self._start_close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        if self._handler_done:
            return  # nobody will read it
        if (
            self._conn.state is not ConnectionState.OPEN
            and len(self._inbox) >= self._options.max_queue
        ):
            # Closing: reading goes on (the peer's close frame must be read, see
            # _start_close), so what the handler does not keep up with is dropped.
            return
        cond = self._sync_cond
        if cond is not None:
            with cond:
                self._inbox.append(message)
                cond.notify()
        else:
            self._inbox.append(message)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if (
            not self._reading_paused
            and len(self._inbox) >= self._options.max_queue
            and self._conn.state is ConnectionState.OPEN
        ):
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _on_pong(self, payload: bytes) -> None:
        entry = self._pong_waiters.pop(payload, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(self._loop.time() - entry[0])

    def _schedule_ping(self) -> None:
        interval = self._options.ping_interval
        assert interval is not None
        self._timers.append(self._loop.call_later(interval, self._keepalive_ping))

    def _keepalive_ping(self) -> None:
        self._timers = [
            t for t in self._timers if not t.cancelled() and t.when() > self._loop.time()
        ]
        if self._closed.done() or self._conn.state is not ConnectionState.OPEN:
            return
        payload = os.urandom(4)
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pong_waiters[payload] = (self._loop.time(), waiter)
        self._conn.send_ping(payload)
        self._write(self._conn.data_to_send())
        timeout = self._options.ping_timeout
        if timeout:
            timer = self._loop.call_later(timeout, self._keepalive_timeout, waiter)
            # Retrieve the outcome too: a connection lost while the ping waits sets an
            # exception nobody else reads ("Future exception was never retrieved").
            waiter.add_done_callback(lambda f: _ping_settled(f, timer))
            self._timers.append(timer)
        self._schedule_ping()

    def _keepalive_timeout(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.done():
            logger.info("%r: no pong within the ping timeout, closing", self)
            self._start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _start_close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and bound the wait for the peer's answer."""
        if self._closed.done():
            return
        conn = self._conn
        self._flush_cork()
        if not conn.close_sent:
            conn.send_close(code, reason)
            out = conn.data_to_send()
            if out and self._transport is not None:
                self._transport.write(out)
        if conn.state is ConnectionState.CLOSED and self._transport is not None:
            self._transport.close()
        elif self._reading_paused:
            # The peer's close frame is behind what the handler did not read: without
            # reading on, every close of a lagging handler waited for the close timeout.
            self._resume_reading()
        if self._close_timer is None:
            self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        self._close_timer = self._loop.call_later(self._options.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._transport is not None and not self._closed.done():
            self._transport.abort()

    def _pause_writing(self) -> None:
        self._writing_paused = True
        if self.on_message is not None and self._transport is not None:
            # Callback mode has nobody to wait in send(): stop reading instead, so an
            # echo-like callback cannot outrun a peer that does not read.
            self._transport.pause_reading()

    def _resume_writing(self) -> None:
        self._writing_paused = False
        if self.on_message is not None and not self._reading_paused and self._transport is not None:
            self._transport.resume_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _connection_lost(self) -> None:
        self._conn.receive_eof()
        for timer in self._timers:
            timer.cancel()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._closed.done():
            self._closed.set_result(None)
        error = self._closed_error()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._drain_waiters = []
        for _, pong in self._pong_waiters.values():
            if not pong.done():
                pong.set_exception(error)
        self._pong_waiters.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._sync_cond is not None:
            with self._sync_cond:
                self._sync_cond.notify_all()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("%r: close callback failed", self)

    def _closed_error(self) -> ConnectionClosed:
        code = self._conn.close_code
        return ConnectionClosed(
            code if code is not None else CloseCode.ABNORMAL_CLOSURE, self._conn.close_reason
        )


class WebSocketProtocol(asyncio.Protocol):
    """The asyncio protocol of an upgraded connection: forwards to its :class:`WebSocket`."""

    __slots__ = ("data_received", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        # Bound once: the hot path is one attribute lookup away from the parser.
        self.data_received = ws._data_received  # type: ignore[method-assign]

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws._connection_lost()

    def pause_writing(self) -> None:
        self.ws._pause_writing()

    def resume_writing(self) -> None:
        self.ws._resume_writing()

    def eof_received(self) -> bool | None:
        return None


def _ping_settled(waiter: asyncio.Future[float], timer: asyncio.TimerHandle) -> None:
    timer.cancel()
    if not waiter.cancelled():
        waiter.exception()
