"""What the server's and the client's WebSocket objects share, in one place.

Both drive a sans-I/O :class:`~stargate.connection.Connection` from an asyncio transport
with the same machinery: the :class:`Inbox` of received messages (bounded; read by a
coroutine or by a blocking thread), ``send`` that waits while the transport is above its
high-water mark, ``ping`` and keepalive pings, answering the messages that came before a
close, the close timer and the cleanup once the transport is gone.  Reading pauses for
either of two reasons, kept apart so that each is lifted on its own: the inbox is full
(``max_queue``), or the transport is above ``write_high_water``.  The second one is what
bounds what a peer that does not read can make us owe it (pongs, the close echo) whatever
the application does: without it, a peer sending pings and never reading grew the write
buffer without bound in every handler mode but ``on_message``.
That machinery lives here, once, so that a fix reaches both roles.

What differs stays in the subclasses (:class:`~stargate.server.websocket.WebSocket`,
:class:`~stargate.client.websocket.ClientWebSocket`): the hot path (``_data_received``,
``_write``), kept free of extra call layers; how a pong is matched; how a close starts
and what follows a close frame written (the server closes TCP, the client waits for it).
:class:`SyncWebSocketBase` is the same for the blocking facades.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any, ClassVar, Generic, Self, TypeVar

from .connection import Connection, ConnectionState
from .errors import ConnectionClosed
from .inbox import Inbox as Inbox  # re-exported: it was defined here
from .inbox import Message as Message  # re-exported: the type of a message
from .masking import BytesLike
from .options import EndpointOptions as EndpointOptions  # re-exported: it was defined here
from .protocol import CloseCode, ProtocolVersion

_Waiter = asyncio.Future[None] | concurrent.futures.Future[None]


#: The options of a role: :class:`~stargate.options.EndpointOptions` (what this module
#: reads) and that role's extras.
OptionsT = TypeVar("OptionsT", bound=EndpointOptions[Any])


#: How long a close frame (our echo of the peer's, or our answer to a protocol error) is
#: held back while the application still has messages to read that arrived before it.
#: Reading them and answering (an echo, an acknowledgement) then still reaches the peer;
#: the close goes out as soon as the application asks for the next message.
ANSWER_GRACE = 0.5

#: Messages at least this long (characters or bytes) are written as header and payload
#: apart: past a few KiB, not copying the payload into a frame buffer wins.
SPLIT_SIZE = 16 * 1024

#: Bytes a connection that inflates (permessage-deflate) parses at a time, so that reading
#: pauses at ``max_queue`` messages within one read, not after it (see
#: ``_data_received_metered``).
INFLATE_SLICE = 4096


class WebSocketBase(Generic[OptionsT]):
    """The role-independent part of an open WebSocket connection (async API).

    Subclasses provide ``_data_received``, ``_write``, ``start_close``,
    ``_close_written`` and ``_on_pong``, and set :attr:`id` and :attr:`_logger`.

    What other modules need of a connection is public: :attr:`loop`, :attr:`inbox` (what
    the blocking facades read), :meth:`attach` and :meth:`feed_data` (the handover from the
    opening handshake).
    """

    # Slots: one of these lives as long as its connection, thousands at a time.
    __slots__ = (
        "__weakref__",
        "_close_timer",
        "_closed",
        "_conn",
        "_drain_waiters",
        "_held",
        "_held_timer",
        "_inbox",
        "_loop",
        "_messages_at_ping",
        "_options",
        "_pong_waiters",
        "_timers",
        "_transport",
        "_unread",
        "_write_blocked",
        "_write_notified",
        "bytes_in",
        "bytes_out",
        "closed_by",
        "id",
        "messages_in",
        "messages_out",
        "subprotocol",
    )

    #: Where this role logs (kept per role: ``stargate.websocket``, ``stargate.client``).
    _logger: ClassVar[logging.Logger]
    #: A number that tells this connection from the others of its role in this process
    #: (in logs and reprs; a group's broker uses the hub's own ids).
    id: int

    def __init__(
        self,
        connection: Connection,
        *,
        loop: asyncio.AbstractEventLoop,
        options: OptionsT,
        subprotocol: str | None,
    ) -> None:
        #: The subprotocol both sides agreed on in the opening handshake
        #: (``Sec-WebSocket-Protocol``), or ``None``.
        self.subprotocol = subprotocol
        self._conn = connection
        self._loop = loop
        self._options = options
        self._transport: asyncio.Transport | None = None
        #: Compressed bytes read but not parsed yet: they wait for room in the inbox
        #: (see :meth:`_data_received_metered`).
        self._unread = b""
        self._inbox = Inbox(
            loop,
            options.max_queue,
            pause=self._pause_reading,
            resume=self._resume_reading,
            closed_error=self._closed_error,
        )
        #: The transport is above its high-water mark: ``send`` waits and reading pauses.
        self._write_blocked = False
        #: The transport has told this object its write state itself (see :meth:`attach`).
        self._write_notified = False
        self._drain_waiters: list[_Waiter] = []
        self._pong_waiters: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._closed: asyncio.Future[None] = loop.create_future()
        self._timers: list[asyncio.TimerHandle] = []
        self._close_timer: asyncio.TimerHandle | None = None
        #: Our close frame, held back while the application reads (and may answer) the
        #: messages that came before it (see ``_hold_close``); ``_write`` accepts data then.
        self._held: bytes | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        # Traffic so far, for access logs and metrics.
        #: Whole messages received (after reassembly).
        self.messages_in = 0
        #: Whole messages sent (a batch sent as one frame counts each message in it).
        self.messages_out = 0
        #: Bytes read from the wire since the handshake (frames, control frames included).
        self.bytes_in = 0
        #: Bytes written to the wire since the handshake (frames, control frames included).
        self.bytes_out = 0
        #: Who started the closing handshake: ``"peer"``, ``"local"`` (us: the
        #: application, a protocol error, a timeout, the slow-consumer policy), or ``None``
        #: while open and when the connection dropped without one.
        self.closed_by: str | None = None
        #: ``messages_in + messages_out`` at the last keepalive tick (see there).
        self._messages_at_ping = -1

    # Provided by the subclasses (the hot path and what differs between the roles).

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _write_parts(self, header: bytes, payload: bytes) -> None:
        """Write a frame given as header and payload (:meth:`_send_message` for large ones)."""
        raise NotImplementedError

    def _send_message(self, message: Message | BytesLike) -> None:
        """Frame and write one message.  A large one goes out as header and payload side by
        side (``transport.writelines``), so its payload is not copied into a frame buffer
        (uvloop writes both with one ``writev``)."""
        conn = self._conn
        if len(message) < SPLIT_SIZE:
            self._write(conn.encode_message(message))
        else:
            self._write_parts(*conn.encode_message_parts(message))
        self.messages_out += 1

    def start_close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` (once) and return at once; the
        closing handshake goes on in the background, bounded by ``close_timeout``.  What
        :meth:`close` does without waiting; does nothing once closed."""
        raise NotImplementedError

    def _close_written(self) -> None:
        """Our close frame is on its way (after ``_flush_held``): what follows it."""
        raise NotImplementedError

    # -- what other modules need of a connection ------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this connection runs on: every method but the blocking facade's
        and ``send_threadsafe`` is called on its thread."""
        return self._loop

    @property
    def inbox(self) -> Inbox:
        """The messages received and not read yet (what ``receive`` takes from)."""
        return self._inbox

    # -- what the application reads ------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        """The protocol generation the connection speaks (RFC 6455, or a hixie or hybi
        draft): hixie connections carry text only and have no ping."""
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
        """The reason that came with :attr:`close_code` (``""`` when there was none)."""
        return self._conn.close_reason

    # -- receiving -------------------------------------------------------------------------

    def receive(self) -> Coroutine[Any, Any, Message]:
        """The next message: ``str`` for text, ``bytes`` for binary (``await`` it).

        Raises :class:`~stargate.errors.ConnectionClosed` once the connection is closed and
        every message received before is consumed.
        """
        # The inbox's coroutine itself: no second coroutine frame per message.
        return self._inbox.get()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """``async for message in ws`` ends when the connection closes, whatever the code
        (read :attr:`close_code` to tell a normal end from a failure)."""
        try:
            return await self._inbox.get()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: Message | BytesLike) -> None:
        """Send a text (``str``) or binary message; waits while the peer is slow to read.

        Raises :class:`~stargate.errors.ConnectionClosed` when called once the closing
        handshake has started or the connection is closed, and while waiting, when the
        connection closes (a peer that reads nothing: ``close_timeout`` after the closing
        handshake starts).
        """
        self._send_message(message)
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
            self._send_message(message)
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
        waiters = self._pong_waiters
        waiters[payload] = (self._loop.time(), waiter)
        try:
            return await waiter
        finally:
            # Cancelled (a timeout around the ping): the entry goes too, or it would refuse
            # this payload forever and the waiters would grow with every timed-out ping.
            entry = waiters.get(payload)
            if entry is not None and entry[1] is waiter:
                del waiters[payload]

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait until the connection is closed, at most
        ``close_timeout`` seconds, after which the transport is aborted.  Calling it on a
        closed connection does nothing."""
        self.start_close(code, reason)
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side)."""
        await asyncio.shield(self._closed)

    # -- lifetime, driven by the protocol ---------------------------------------------------

    def attach(self, transport: asyncio.Transport, *, writing_paused: bool = False) -> None:
        """Take over ``transport`` once the opening handshake is done (whoever ran it then
        forwards the protocol callbacks).  ``writing_paused``: whether the transport is above
        its high-water mark as the previous protocol last heard it; a transport tells only
        changes, so a pause told to the previous protocol is never told to this one."""
        self._transport = transport
        transport.set_write_buffer_limits(high=self._options.write_high_water)
        # Setting the limits may have told us the write state itself (pause_writing): that
        # word is newer than the previous protocol's.
        if writing_paused and not self._write_notified:
            self.pause_writing()
        # Whoever hands the transport over may resume reading it after this call (the HTTP
        # protocol does, when it had paused it for itself): settle our pause once the
        # handover is done, before the loop reads again.
        self._loop.call_soon(self._settle_reading)
        if self._options.ping_interval and not self.version.is_hixie:
            self._schedule_ping()

    def feed_data(self, data: bytes) -> None:
        """Bytes read from the transport before :meth:`attach` (frames that came with the
        handshake), as if they had been read after it."""
        self.data_receiver()(data)

    def data_receiver(self) -> Callable[[BytesLike], None]:
        """What the transport's protocol calls with each read: the parser itself, or, for a
        connection that inflates, the parser fed a slice at a time."""
        return self._data_received_metered if self._conn.inflates else self._data_received

    def _data_received(self, data: BytesLike) -> None:
        raise NotImplementedError

    def _data_received_metered(self, data: BytesLike) -> None:
        """Parse a read in slices of :data:`INFLATE_SLICE` bytes, and keep what comes after
        the slice that filled the inbox (``max_queue``) unparsed until it has room.

        Under permessage-deflate a 1 MiB message can arrive in 1 KiB: one read could hold
        dozens, each inflated and queued before reading could pause, so that ``max_queue``
        no longer bounded the memory a peer makes us hold.  Deflate expands at most about
        1,032 times, so a slice inflates to at most about 4 MiB past the bound."""
        if self._unread:
            data = self._unread + bytes(data)
            self._unread = b""
        view = memoryview(data)
        inbox = self._inbox
        for start in range(0, len(view), INFLATE_SLICE):
            if inbox.paused:
                self._unread = bytes(view[start:])
                return
            self._data_received(view[start : start + INFLATE_SLICE])

    @property
    def _reading_paused(self) -> bool:
        """Whether reading is paused because the inbox is full (``max_queue``)."""
        return self._inbox.paused

    def _settle_reading(self) -> None:
        """Pause reading again if either reason holds (see ``_attach``)."""
        transport = self._transport
        if (
            (self._inbox.paused or self._write_blocked)
            and transport is not None
            and not transport.is_closing()
        ):
            transport.pause_reading()

    def _pause_reading(self) -> None:
        """The inbox is full: stop reading (unless the write state already did)."""
        transport = self._transport
        if not self._write_blocked and transport is not None:
            transport.pause_reading()

    def _resume_reading(self) -> None:
        """The inbox has room again: parse what was read and kept back first, then read on,
        unless the inbox filled again or the transport is above its high-water mark (then
        ``resume_writing`` will)."""
        if self._unread:
            self._data_received_metered(b"")
            if self._inbox.paused:
                return
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
        messages = self.messages_in + self.messages_out
        if messages == self._messages_at_ping:
            # No message either way for a whole interval: an idle connection gives back
            # what it need not hold (a permessage-deflate zlib state is tens of KiB).
            # Messages, not bytes: the peer's pong to our last ping is traffic too, and
            # every peer that follows RFC 6455 section 5.5.2 sends one.
            self._conn.release_memory()
        self._messages_at_ping = messages
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
            self.start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _arm_close_timer(self) -> None:
        self._close_timer = self._loop.call_later(self._options.close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (a close that timed
        out, a server that must stop)."""
        if self._transport is not None and not self._closed.done():
            self._transport.abort()

    def pause_writing(self) -> None:
        """Called by the transport's protocol: the transport is above ``write_high_water``;
        stop reading too, whatever the
        handler mode.  Every read can make us owe the peer replies (a pong per ping, the
        close echo) and, in ``on_message`` mode, the callback's answers; none of them waits
        in ``send``, so only not reading bounds them: at most one read's worth past the
        high-water mark."""
        self._write_blocked = True
        self._write_notified = True
        transport = self._transport
        if not self._inbox.paused and transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        """Called by the transport's protocol: the transport drained to its low-water mark;
        wake the senders, and read on
        unless the inbox is still full (then ``_resume_reading`` will)."""
        self._write_blocked = False
        self._write_notified = True
        if not self._inbox.paused:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _hold_close(self, data: bytes) -> bool:
        """A read ended the open state (the peer's close, or a protocol error: ``data`` is
        our close frame) after messages the application has not read yet: hold ``data``
        back until it has read them and asks for more, so that what it answers still
        reaches the peer, at most ``ANSWER_GRACE`` seconds.  ``False``: nothing is unread,
        send it now.  One mechanism for both roles: an ``on_message`` callback answers
        during the read itself, so nothing is left unread for it."""
        if not self._inbox.call_when_read(self._flush_held):
            return False
        self._held = data
        self._held_timer = self._loop.call_later(ANSWER_GRACE, self._flush_held)
        return True

    def _flush_held(self) -> None:
        """Send the close held back by ``_hold_close`` (the messages were read, the grace
        passed, or the application closes)."""
        held, self._held = self._held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        if held is None or self._closed.done():
            return
        if held and self._transport is not None:
            self.bytes_out += len(held)
            self._transport.write(held)
        self._close_written()

    def connection_lost(self) -> None:
        """Called by the transport's protocol: the transport is gone; stop the timers and
        wake everyone waiting."""
        self._conn.receive_eof()
        # Kept compressed for want of room in the inbox: the peer is gone, and the closing
        # inbox would drop past max_queue what they hold; their memory goes now.
        self._unread = b""
        for timer in self._timers:
            timer.cancel()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._held_timer is not None:
            self._held_timer.cancel()
        self._held = None
        if not self._closed.done():
            self._closed.set_result(None)
        if self._drain_waiters or self._pong_waiters:  # the error only for someone waiting
            error = self._closed_error()
            for waiter in self._drain_waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            self._drain_waiters = []
            for _, pong in self._pong_waiters.values():
                if not pong.done():
                    pong.set_exception(error)
            self._pong_waiters.clear()
        # The code and reason are final now: the inbox's error needs no reference back here.
        self._inbox.close(partial(ConnectionClosed, *self._close_status()))

    def _close_status(self) -> tuple[int, str]:
        code = self._conn.close_code
        return code if code is not None else CloseCode.ABNORMAL_CLOSURE, self._conn.close_reason

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(*self._close_status())


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
    coroutine.  Messages are read from the connection's :class:`Inbox` directly (its
    blocking side), without a hop through the loop.

    Build it on the loop's thread, or after ``ws.inbox.allow_blocking()`` was called there.
    """

    def __init__(self, ws: WsT, loop: asyncio.AbstractEventLoop) -> None:
        #: The async connection this facade wraps (its methods are for the loop's thread).
        self.ws = ws
        self._loop = loop
        self._inbox = ws.inbox

    @property
    def id(self) -> int:
        """The wrapped connection's :attr:`~WebSocketBase.id`."""
        return self.ws.id

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed on in the opening handshake, or ``None``."""
        return self.ws.subprotocol

    @property
    def version(self) -> ProtocolVersion:
        """The protocol generation the connection speaks (RFC 6455, or a legacy draft)."""
        return self.ws.version

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (the transport is gone)."""
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        """The close code once closed (see :attr:`WebSocketBase.close_code`), else ``None``."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with :attr:`close_code` (``""`` when there was none)."""
        return self.ws.close_reason

    def __repr__(self) -> str:
        return "<Sync" + repr(self.ws)[1:]  # <SyncWebSocket #1 13 '/path' open>

    def receive(self, timeout: float | None = None) -> Message:
        """The next message (``str`` or ``bytes``).  Raises
        :class:`~stargate.errors.ConnectionClosed` once closed and every message before
        is read, ``TimeoutError`` when none came within ``timeout`` seconds."""
        return self._inbox.get_blocking(timeout)

    def __iter__(self) -> Iterator[Message]:
        """Every message until the connection closes (whatever the close code)."""
        while True:
            try:
                yield self.receive()
            except ConnectionClosed:
                return

    def send(self, message: Message | BytesLike) -> None:
        """Send a text (``str``) or binary message; returns once the transport is below its
        high-water mark (the peer reads).  Raises ConnectionClosed when called once the
        closing handshake has started, and while waiting, when the connection closes (a
        peer that reads nothing: ``close_timeout`` after the closing handshake starts)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self.ws._send_blocking, message, done)
        done.result()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close and wait until the connection is closed (at most ``close_timeout``)."""
        asyncio.run_coroutine_threadsafe(self.ws.close(code, reason), self._loop).result()

    def ping(self, payload: bytes | None = None, timeout: float | None = None) -> float:
        """Ping and wait for the pong; returns the round trip in seconds, or raises
        ``TimeoutError`` after ``timeout`` seconds (the ping is then given up: its payload
        may be pinged again)."""
        future = asyncio.run_coroutine_threadsafe(self.ws.ping(payload), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # takes the pong waiter along (see WebSocketBase.ping)
            raise TimeoutError("no pong within the timeout") from None
