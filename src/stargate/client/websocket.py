"""The client's WebSocket object: the sans-I/O connection driven by an asyncio transport.

It mirrors the server's :class:`~stargate.server.websocket.WebSocket`: ``receive()`` and
``async for``, ``send()`` that waits while the peer is slow to read, ``ping()``, ``close()``,
``close_code``/``close_reason``, a bounded receive queue (reading pauses when it is full),
keepalive pings and a bounded closing handshake.  Where the roles differ the client follows
RFC 6455: it masks what it sends (the core does that for ``Role.CLIENT``) and, once the
closing handshake is done, waits for the server to close the TCP connection (section 7.1.1)
for at most ``close_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field

from ..connection import Connection, ConnectionState
from ..errors import ConnectionClosed
from ..events import BinaryMessage, CloseReceived, Pong, ProtocolViolation, TextMessage
from ..extensions.permessage_deflate import PerMessageDeflateClientOffer
from ..handshake import Response
from ..limits import KiB, Limits
from ..masking import BytesLike
from ..protocol import CloseCode, ProtocolVersion

logger = logging.getLogger("stargate.client")

Message = str | bytes
_ids = itertools.count(1)
_Waiter = asyncio.Future[None] | concurrent.futures.Future[None]

#: How long a close frame (our echo of the server's, or our answer to a protocol error) is
#: held back while the application still has messages to read that arrived before it.
#: Reading them and answering (an echo, an acknowledgement) then still reaches the server;
#: the close goes out as soon as the application asks for the next message.
ANSWER_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Per-connection behaviour of a client; the same settings as the server's
    :class:`~stargate.server.WebSocketOptions` where they apply.

    ``open_timeout`` bounds everything before the connection is open (DNS, TCP, TLS and the
    opening handshake); ``None`` waits forever.  ``close_timeout`` bounds the closing
    handshake and the wait for the server to close TCP.  Keepalive: a ping every
    ``ping_interval`` seconds, and a close with 1011 when its pong is not back within
    ``ping_timeout`` (``None`` turns either off; hixie connections have no pings).
    ``max_queue`` messages received but not read pause reading from the server;
    ``send()`` waits while more than ``write_high_water`` bytes wait to be written.
    """

    limits: Limits = field(default_factory=Limits)
    #: permessage-deflate offered to the server (RFC 7692); ``None`` turns compression off.
    compression: PerMessageDeflateClientOffer | None = field(
        default_factory=PerMessageDeflateClientOffer
    )
    open_timeout: float | None = 10.0
    close_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_queue: int = 32
    write_high_water: int = 64 * KiB

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.close_timeout <= 0:
            raise ValueError("close_timeout must be positive")


class ClientWebSocket:
    """One open client connection (async API); made by :func:`stargate.connect`.

    Every method must be called on the event loop's thread that opened it; the blocking
    client (:mod:`stargate.client.sync`) wraps it for other threads.
    """

    def __init__(
        self,
        connection: Connection,
        response: Response,
        *,
        url: str,
        loop: asyncio.AbstractEventLoop,
        options: ClientOptions,
        subprotocol: str | None = None,
        extensions: str | None = None,
    ) -> None:
        self.id = next(_ids)
        #: The URL this connection was opened with (after redirects, the last one).
        self.url = url
        #: The server's 101 response: ``response.headers`` has every header it sent.
        self.response = response
        #: The subprotocol the server selected among those offered, or ``None``.
        self.subprotocol = subprotocol
        #: The negotiated ``Sec-WebSocket-Extensions`` value, or ``None`` (no compression).
        self.extensions = extensions
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
        self._closed: asyncio.Future[None] = loop.create_future()
        self._timers: list[asyncio.TimerHandle] = []
        self._close_timer: asyncio.TimerHandle | None = None
        # A close frame held back while older messages are unread (see ANSWER_GRACE).
        self._held: bytes | None = None
        self._held_messages = 0
        self._held_timer: asyncio.TimerHandle | None = None

    # -- what the application reads ------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        return self._conn.version

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return self.extensions is not None

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (the transport is gone)."""
        return self._closed.done()

    @property
    def close_code(self) -> int | None:
        """The close code once closed: the server's (or ours, if we closed first), 1005
        for a close frame without a code, 1006 when the transport ended abruptly."""
        return self._conn.close_code if self._closed.done() else None

    @property
    def close_reason(self) -> str:
        return self._conn.close_reason

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The server's address (``(host, port)`` or the IPv6 4-tuple's first two)."""
        return self._address("peername")

    @property
    def local_address(self) -> tuple[str, int] | None:
        return self._address("sockname")

    def _address(self, name: str) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        address = self._transport.get_extra_info(name)
        return (address[0], address[1]) if isinstance(address, tuple) else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ClientWebSocket #{self.id} {self.version.value} {self.url!r} {state}>"

    # -- receiving -------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~stargate.errors.ConnectionClosed` once the connection is closed and
        every message received before is consumed.
        """
        self._maybe_flush_held()
        while not self._inbox:
            if self._closed.done():
                raise self._closed_error()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._take()

    def _take(self) -> Message:
        """Pop the next message (the inbox is not empty); resume reading if it was paused."""
        message = self._inbox.popleft()
        if self._held is not None:
            self._held_messages -= 1
        if self._reading_paused and len(self._inbox) <= self._options.max_queue // 2:
            self._resume_reading()
        return message

    def __aiter__(self) -> ClientWebSocket:
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
        """Send a text (``str``) or binary message; waits while the server is slow to read.

        Raises :class:`~stargate.errors.ConnectionClosed` once the closing handshake has
        started or the connection is closed.
        """
        self._write(self._conn.encode_message(message))
        if self._writing_paused:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def send_nowait(self, message: Message | BytesLike) -> None:
        """Send without waiting for the server to read (the transport buffers it)."""
        self._write(self._conn.encode_message(message))

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
        if self._writing_paused:
            self._drain_waiters.append(done)
        else:
            done.set_result(None)

    def _write(self, data: bytes) -> None:
        if self._closed.done() or (
            self._conn.state is not ConnectionState.OPEN and self._held is None
        ):
            raise self._closed_error()
        transport = self._transport
        assert transport is not None
        transport.write(data)

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds.

        A pong also answers every earlier ping still waiting (RFC 6455 section 5.5.3 lets a
        peer answer only the most recent one).  Not available on hixie connections.
        """
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

    async def __aenter__(self) -> ClientWebSocket:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Close normally (1000); with 1011 when the block raised (except for a
        ``ConnectionClosed``, where there is nothing left to close)."""
        if exc_type is None or issubclass(exc_type, ConnectionClosed):
            await self.close()
        else:
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- lifetime, driven by the protocol ---------------------------------------------------

    def _attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=self._options.write_high_water)
        if self._options.ping_interval and not self.version.is_hixie:
            self._schedule_ping()

    def _data_received(self, data: bytes) -> None:
        conn = self._conn
        was_open = conn.state is ConnectionState.OPEN
        events = conn.receive_data(data)
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                self._deliver(event.data)  # type: ignore[union-attr]
            elif kind is Pong:
                self._on_pong(event.payload)  # type: ignore[union-attr]
            elif kind is ProtocolViolation:
                logger.info("%r: protocol error %s", self, event)
            elif kind is CloseReceived:
                logger.debug("%r: close frame received %s", self, event)
        out = conn.data_to_send()
        if was_open and conn.state is ConnectionState.CLOSED and self._inbox:
            # The close (our echo, or our answer to a protocol error) waits until the
            # application has read the messages that came before it, so that it can still
            # answer them; bounded by ANSWER_GRACE.
            self._held = out
            self._held_messages = len(self._inbox)
            self._held_timer = self._loop.call_later(ANSWER_GRACE, self._flush_held)
            return
        if out:
            assert self._transport is not None
            self._transport.write(out)
        if conn.state is ConnectionState.CLOSED and self._close_timer is None:
            # RFC 6455 section 7.1.1: the server closes TCP first; bound the wait.
            self._arm_close_timer()

    def _flush_held(self) -> None:
        held, self._held = self._held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        if held is None or self._closed.done():
            return
        if held and self._transport is not None:
            self._transport.write(held)
        if self._close_timer is None:
            self._arm_close_timer()

    def _maybe_flush_held(self) -> None:
        """Flush the held close once every message that arrived before it was read."""
        if self._held is not None and self._held_messages <= 0:
            self._flush_held()

    def _deliver(self, message: Message) -> None:
        if (
            self._conn.state is not ConnectionState.OPEN
            and len(self._inbox) >= self._options.max_queue
        ):
            # Closing: reading goes on (the server's close frame must be read), so what
            # the application does not keep up with is dropped.
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
        if payload not in self._pong_waiters:
            return  # unsolicited (section 5.5.3: a unidirectional heartbeat), or stale
        now = self._loop.time()
        # Dicts keep insertion order: every ping sent before this one is answered too.
        while self._pong_waiters:
            key, (sent, waiter) = next(iter(self._pong_waiters.items()))
            del self._pong_waiters[key]
            if not waiter.done():
                waiter.set_result(now - sent)
            if key == payload:
                break

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
            logger.info("%r: no pong within the ping timeout, closing", self)
            self._start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _start_close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and bound the wait for the server's answer."""
        if self._closed.done():
            return
        if self._held is not None:
            self._flush_held()
            return
        conn = self._conn
        if not conn.close_sent:
            conn.send_close(code, reason)
            out = conn.data_to_send()
            if out and self._transport is not None:
                self._transport.write(out)
            if conn.state is ConnectionState.CLOSED and self._transport is not None:
                # hixie-75 has no closing handshake: we close TCP ourselves.
                self._transport.close()
        if self._reading_paused:
            # The server's close frame is behind what the application did not read.
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

    def _resume_writing(self) -> None:
        self._writing_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _connection_lost(self) -> None:
        self._conn.receive_eof()
        for timer in self._timers:
            timer.cancel()
        for handle in (self._close_timer, self._held_timer):
            if handle is not None:
                handle.cancel()
        self._held = None
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
