"""What the server's and the client's WebSocket objects share, in one place.

Both drive a sans-I/O :class:`~stargate.connection.Connection` from an asyncio transport
with the same machinery: the bounded receive queue and its waiter, ``send`` that waits while
the transport is above its high-water mark, ``ping`` and keepalive pings, the close timer and
the cleanup once the transport is gone.  Reading pauses for either of two reasons, kept apart
so that each is lifted on its own: the receive queue is full (``max_queue``), or the transport
is above ``write_high_water``.  The second one is what bounds what a peer that does not read
can make us owe it (pongs, the close echo) whatever the application does: without it, a peer
sending pings and never reading grew the write buffer without bound in every handler mode
but ``on_message``.
That machinery lives here, once, so that a fix reaches both roles.

What differs stays in the subclasses (:class:`~stargate.server.websocket.WebSocket`,
:class:`~stargate.client.websocket.ClientWebSocket`): the hot path (``_data_received``,
``_deliver``, ``_write``), kept free of extra call layers; how a pong is matched; how a
close starts.  :class:`SyncWebSocketBase` is the same for the blocking facades.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from .connection import Connection, ConnectionState
from .errors import ConnectionClosed
from .masking import BytesLike
from .protocol import CloseCode, ProtocolVersion

Message = str | bytes
_Waiter = asyncio.Future[None] | concurrent.futures.Future[None]


class EndpointOptions(Protocol):
    """The per-connection settings the shared machinery reads (the server's
    :class:`~stargate.server.WebSocketOptions` and the client's ``ClientOptions``)."""

    @property
    def ping_interval(self) -> float | None: ...

    @property
    def ping_timeout(self) -> float | None: ...

    @property
    def close_timeout(self) -> float: ...

    @property
    def max_queue(self) -> int: ...

    @property
    def write_high_water(self) -> int: ...


OptionsT = TypeVar("OptionsT", bound=EndpointOptions)


class WebSocketBase(Generic[OptionsT]):
    """The role-independent part of an open WebSocket connection (async API).

    Subclasses provide ``_data_received``, ``_deliver``, ``_write``, ``_start_close`` and
    ``_on_pong``, and set :attr:`id` and :attr:`_logger`.
    """

    #: Where this role logs (kept per role: ``stargate.websocket``, ``stargate.client``).
    _logger: ClassVar[logging.Logger]
    id: int

    def __init__(
        self,
        connection: Connection,
        *,
        loop: asyncio.AbstractEventLoop,
        options: OptionsT,
        subprotocol: str | None,
    ) -> None:
        self.subprotocol = subprotocol
        self._conn = connection
        self._loop = loop
        self._options = options
        self._transport: asyncio.Transport | None = None
        self._inbox: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._sync_cond: threading.Condition | None = None
        #: Reading paused because the inbox is full (``max_queue``).
        self._reading_paused = False
        #: The transport is above its high-water mark: ``send`` waits and reading pauses.
        self._write_blocked = False
        #: The transport has told this object its write state since ``_attach`` (see
        #: ``_writing_paused``).
        self._write_notified = False
        self._drain_waiters: list[_Waiter] = []
        self._pong_waiters: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._closed: asyncio.Future[None] = loop.create_future()
        self._timers: list[asyncio.TimerHandle] = []
        self._close_timer: asyncio.TimerHandle | None = None

    # Provided by the subclasses (the hot path and what differs between the roles).

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _start_close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    # -- what the application reads ------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        return self._conn.version

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (the transport is gone)."""
        return self._closed.done()

    @property
    def close_code(self) -> int | None:
        """The close code once closed: the peer's (or ours, if we closed first), 1005 for
        a close frame without a code, 1006 when the transport ended abruptly."""
        return self._conn.close_code if self._closed.done() else None

    @property
    def close_reason(self) -> str:
        return self._conn.close_reason

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

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """``async for message in ws`` ends when the connection closes, whatever the code
        (read :attr:`close_code` to tell a normal end from a failure)."""
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: Message | BytesLike) -> None:
        """Send a text (``str``) or binary message; waits while the peer is slow to read.

        Raises :class:`~stargate.errors.ConnectionClosed` once the closing handshake has
        started or the connection is closed.
        """
        self._write(self._conn.encode_message(message))
        if self._write_blocked:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _send_blocking(
        self, message: Message | BytesLike, done: concurrent.futures.Future[None]
    ) -> None:
        """The loop side of a blocking ``send``: ``done`` resolves once the transport is
        below its high-water mark again."""
        try:
            self._write(self._conn.encode_message(message))
        except BaseException as exc:
            done.set_exception(exc)
            return
        if self._write_blocked:
            self._drain_waiters.append(done)
        else:
            done.set_result(None)

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds.
        Not available on hixie connections."""
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
        """Start the closing handshake and wait until the connection is closed, at most
        ``close_timeout`` seconds, after which the transport is aborted.  Calling it on a
        closed connection does nothing."""
        self._start_close(code, reason)
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side)."""
        await asyncio.shield(self._closed)

    # -- lifetime, driven by the protocol ---------------------------------------------------

    def _attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=self._options.write_high_water)
        # Whoever hands the transport over may resume reading it after this call (the HTTP
        # protocol does, when it had paused it for itself): settle our pause once the
        # handover is done, before the loop reads again.
        self._loop.call_soon(self._settle_reading)
        if self._options.ping_interval and not self.version.is_hixie:
            self._schedule_ping()

    @property
    def _writing_paused(self) -> bool:
        """Whether the transport is above its high-water mark (``send`` waits)."""
        return self._write_blocked

    @_writing_paused.setter
    def _writing_paused(self, paused: bool) -> None:
        """The handover's word on the transport's write state (the HTTP protocol sets it
        right after ``_attach``, from its own ``pause_writing``): a transport tells only a
        change, so a pause it told the previous protocol is never told to us.  Once the
        transport has told us itself (``set_write_buffer_limits`` in ``_attach`` may), its
        word is the newer one."""
        if self._write_notified:
            return
        if paused:
            self._pause_writing()
        else:
            self._write_blocked = False

    def _settle_reading(self) -> None:
        """Pause reading again if either reason holds (see ``_attach``)."""
        transport = self._transport
        if (
            (self._reading_paused or self._write_blocked)
            and transport is not None
            and not transport.is_closing()
        ):
            transport.pause_reading()

    def _resume_reading(self) -> None:
        """The inbox has room again: read on, unless the transport is above its high-water
        mark (then ``_resume_writing`` will)."""
        self._reading_paused = False
        if not self._write_blocked:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _schedule_ping(self) -> None:
        interval = self._options.ping_interval
        assert interval is not None
        self._timers.append(self._loop.call_later(interval, self._keepalive_ping))

    def _keepalive_ping(self) -> None:
        now = self._loop.time()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > now]
        if self._closed.done() or self._conn.state is not ConnectionState.OPEN:
            return
        payload = os.urandom(4)
        while payload in self._pong_waiters:
            payload = os.urandom(4)
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pong_waiters[payload] = (now, waiter)
        self._conn.send_ping(payload)
        self._write(self._conn.data_to_send())
        timeout = self._options.ping_timeout
        if timeout:
            timer = self._loop.call_later(timeout, self._keepalive_timeout, waiter)
            waiter.add_done_callback(lambda done: _settled(done, timer))
            self._timers.append(timer)
        else:
            waiter.add_done_callback(_settled)
        self._schedule_ping()

    def _keepalive_timeout(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.done():
            self._logger.info("%r: no pong within the ping timeout, closing", self)
            self._start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _arm_close_timer(self) -> None:
        self._close_timer = self._loop.call_later(self._options.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._transport is not None and not self._closed.done():
            self._transport.abort()

    def _pause_writing(self) -> None:
        """The transport is above ``write_high_water``: stop reading too, whatever the
        handler mode.  Every read can make us owe the peer replies (a pong per ping, the
        close echo) and, in ``on_message`` mode, the callback's answers; none of them waits
        in ``send``, so only not reading bounds them: at most one read's worth past the
        high-water mark."""
        self._write_blocked = True
        self._write_notified = True
        transport = self._transport
        if not self._reading_paused and transport is not None:
            transport.pause_reading()

    def _resume_writing(self) -> None:
        """The transport drained to its low-water mark: wake the senders, and read on
        unless the inbox is still full (then ``_resume_reading`` will)."""
        self._write_blocked = False
        self._write_notified = True
        if not self._reading_paused:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _connection_lost(self) -> None:
        """The transport is gone: stop the timers and wake everyone waiting."""
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

    def _closed_error(self) -> ConnectionClosed:
        code = self._conn.close_code
        return ConnectionClosed(
            code if code is not None else CloseCode.ABNORMAL_CLOSURE, self._conn.close_reason
        )


def _settled(waiter: asyncio.Future[float], timer: asyncio.TimerHandle | None = None) -> None:
    """A keepalive ping's waiter is done: nobody awaits it, so its exception (the connection
    closed) is retrieved here rather than logged as never retrieved."""
    if timer is not None:
        timer.cancel()
    if not waiter.cancelled():
        waiter.exception()


WsT = TypeVar("WsT", bound=WebSocketBase[Any])


class SyncWebSocketBase(Generic[WsT]):
    """The blocking facade both roles share: each call hands its work to the event loop
    the connection runs on and waits, so a thread sees the same object model as a
    coroutine.  The connection's deliveries notify ``cond`` (its ``_sync_cond``)."""

    def __init__(self, ws: WsT, loop: asyncio.AbstractEventLoop, cond: threading.Condition) -> None:
        self.ws = ws
        self._loop = loop
        self._cond = cond

    @property
    def id(self) -> int:
        return self.ws.id

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    @property
    def version(self) -> ProtocolVersion:
        return self.ws.version

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason

    def __repr__(self) -> str:
        return "<Sync" + repr(self.ws)[1:]  # <SyncWebSocket #1 13 '/path' open>

    def _pop(self, timeout: float | None) -> Message:
        """Pop the next message from the connection's queue, waiting at most ``timeout``;
        raises ConnectionClosed when closed, TimeoutError on timeout."""
        ws = self.ws
        with self._cond:
            if not ws._inbox and not ws.closed:
                self._cond.wait_for(lambda: bool(ws._inbox) or ws.closed, timeout)
            if ws._inbox:
                return ws._inbox.popleft()
            if ws.closed:
                raise ws._closed_error()
            raise TimeoutError("no message within the timeout")

    def receive(self, timeout: float | None = None) -> Message:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Message]:
        """Every message until the connection closes (whatever the close code)."""
        while True:
            try:
                yield self.receive()
            except ConnectionClosed:
                return

    def send(self, message: Message | BytesLike) -> None:
        """Send a text (``str``) or binary message; returns once the transport is below its
        high-water mark (the peer reads); raises ConnectionClosed once closing."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self.ws._send_blocking, message, done)
        done.result()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close and wait until the connection is closed (at most ``close_timeout``)."""
        asyncio.run_coroutine_threadsafe(self.ws.close(code, reason), self._loop).result()
