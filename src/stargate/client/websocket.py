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
import itertools
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from ..connection import Connection, ConnectionState
from ..endpoint import ANSWER_GRACE as ANSWER_GRACE  # re-exported: it was defined here
from ..endpoint import Message as Message  # re-exported: the type of a message
from ..endpoint import WebSocketBase
from ..errors import ConnectionClosed
from ..events import BinaryMessage, CloseReceived, Pong, ProtocolViolation, TextMessage
from ..extensions.permessage_deflate import PerMessageDeflateClientOffer
from ..handshake import Response
from ..masking import BytesLike
from ..options import EndpointOptions
from ..protocol import CloseCode

logger = logging.getLogger("stargate.client")

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ClientOptions(EndpointOptions[PerMessageDeflateClientOffer]):
    """Per-connection behaviour of a client (made by
    :class:`~stargate.client.params.ConnectParams` from the keywords of
    :func:`stargate.connect`).

    The fields both roles share, and their defaults, are those of
    :class:`~stargate.options.EndpointOptions` (the server's
    :class:`~stargate.server.WebSocketOptions` has the same ones); for a client,
    ``close_timeout`` also bounds the wait for the server to close TCP.  The client adds
    ``open_timeout``.
    """

    #: permessage-deflate offered to the server (RFC 7692); ``None`` turns compression off.
    compression: PerMessageDeflateClientOffer | None = field(
        default_factory=PerMessageDeflateClientOffer
    )
    #: Bounds everything before the connection is open (DNS, TCP, TLS and the opening
    #: handshake); ``None`` waits forever.
    open_timeout: float | None = 10.0


class ClientWebSocket(WebSocketBase[ClientOptions]):
    """One open client connection (async API); made by :func:`stargate.connect`.

    Every method must be called on the event loop's thread that opened it; the blocking
    client (:mod:`stargate.client.sync`) wraps it for other threads.
    """

    __slots__ = ("extensions", "response", "url")

    _logger: ClassVar[logging.Logger] = logger

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
        super().__init__(connection, loop=loop, options=options, subprotocol=subprotocol)
        #: A number that tells this connection from the other client connections of this
        #: process (in logs and reprs).
        self.id = next(_ids)
        #: The URL this connection was opened with (after redirects, the last one).
        self.url = url
        #: The server's 101 response: ``response.headers`` has every header it sent.
        self.response = response
        #: The negotiated ``Sec-WebSocket-Extensions`` value, or ``None`` (no compression).
        self.extensions = extensions

    # -- what the application reads ------------------------------------------------------

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return self.extensions is not None

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The server's address (``(host, port)`` or the IPv6 4-tuple's first two)."""
        return self._address("peername")

    @property
    def local_address(self) -> tuple[str, int] | None:
        """This end's address (``(host, port)``), or ``None`` when unknown."""
        return self._address("sockname")

    def _address(self, name: str) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        address = self._transport.get_extra_info(name)
        return (address[0], address[1]) if isinstance(address, tuple) else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ClientWebSocket #{self.id} {self.version.value} {self.url!r} {state}>"

    # -- sending ---------------------------------------------------------------------------

    def send_nowait(self, message: Message | BytesLike) -> None:
        """Send without waiting for the server to read (the transport buffers it)."""
        self._send_message(message)

    def _write(self, data: bytes) -> None:
        if self._closed.done() or (
            self._conn.state is not ConnectionState.OPEN and self._held is None
        ):
            raise self._closed_error()
        transport = self._transport
        assert transport is not None
        self.bytes_out += len(data)
        transport.write(data)

    def _write_parts(self, header: bytes, payload: bytes) -> None:
        if self._closed.done() or (
            self._conn.state is not ConnectionState.OPEN and self._held is None
        ):
            raise self._closed_error()
        transport = self._transport
        assert transport is not None
        self.bytes_out += len(header) + len(payload)
        transport.writelines((header, payload))

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

    def _data_received(self, data: BytesLike) -> None:
        conn = self._conn
        was_open = conn.state is ConnectionState.OPEN
        self.bytes_in += len(data)
        events = conn.receive_data(data)
        ended = was_open and conn.state is not ConnectionState.OPEN
        put = self._inbox.put
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                self.messages_in += 1
                put(event.data)  # type: ignore[union-attr]
            elif kind is Pong:
                self._on_pong(event.payload)  # type: ignore[union-attr]
            elif kind is ProtocolViolation:
                logger.info("%r: protocol error %s", self, event)
                if self.closed_by is None:
                    self.closed_by = "local"
            elif kind is CloseReceived:
                logger.debug("%r: close frame received %s", self, event)
                if self.closed_by is None:
                    self.closed_by = "peer"
        if ended:
            # The server's close (or our answer to an error) is in this read.  Its messages
            # are all queued first: they came before the close, and are in memory already.
            self._inbox.closing()
            # The pongs of this read go out now; only our close frame waits for the answers.
            pongs = conn.data_to_send(before_close=True)
            if pongs and self._transport is not None:
                self.bytes_out += len(pongs)
                self._transport.write(pongs)
        out = conn.data_to_send()
        if ended and self._inbox and self._hold_close(out):
            return  # the application reads (and may answer) what came before the close
        if out:
            assert self._transport is not None
            self.bytes_out += len(out)
            self._transport.write(out)
        if conn.state is ConnectionState.CLOSED and self._close_timer is None:
            # RFC 6455 section 7.1.1: the server closes TCP first; bound the wait.
            self._arm_close_timer()

    def _close_written(self) -> None:
        """RFC 6455 section 7.1.1: the server closes TCP first; bound the wait for it."""
        if self._close_timer is None:
            self._arm_close_timer()

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

    def start_close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and bound the wait for the server's answer."""
        if self._closed.done():
            return
        if self._held is not None:
            self._flush_held()
            return
        conn = self._conn
        if not conn.close_sent:
            if self.closed_by is None:
                self.closed_by = "local"
            conn.send_close(code, reason)
            out = conn.data_to_send()
            if out and self._transport is not None:
                self.bytes_out += len(out)
                self._transport.write(out)
            if conn.state is ConnectionState.CLOSED and self._transport is not None:
                # hixie-75 has no closing handshake: we close TCP ourselves.
                self._transport.close()
        # The server's close frame is behind what the application did not read.
        self._inbox.closing()
        if self._close_timer is None:
            self._arm_close_timer()
