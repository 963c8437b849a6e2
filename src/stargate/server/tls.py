"""TLS run by the server itself, so that a connection counts from its accept.

With ``create_server(ssl=...)`` the event loop runs each connection's TLS handshake before
it calls the protocol: until then the connection is invisible to ``max_connections`` and
holds the TLS layer's buffers (about 50 KiB each on uvloop, 300 KiB on asyncio's loop,
measured on 2026-12-06), so a client that opened connections and never finished a
handshake held as many as it could open, each for ``header_timeout``.  Here the listener is
plain TCP: :class:`TlsHandshake` admits the connection at once (or refuses it at the limit,
as any other), waits for the client's first bytes (no TLS layer before them: a connection
that sent none costs 1-3 KiB), runs the handshake with ``loop.start_tls``, and gives the
TLS transport to an :class:`~stargate.server.channel.HttpChannel`.  Seeing the first bytes
also lets the server answer a plain HTTP request sent to its TLS port with a 400 that says
so, as nginx does, where the loop's TLS layer could only drop the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from .channel import HttpChannel, peer_address
from .response import simple_response

if TYPE_CHECKING:
    from .state import ServerState

logger = logging.getLogger("stargate.server")

#: What a client that sent plain HTTP to the TLS port reads (nginx says the same).
PLAIN_HTTP_REASON = "the plain HTTP request was sent to an HTTPS port"


class TlsHandshake(asyncio.Protocol):
    """A connection to a TLS listener until its channel takes over.

    It is the TCP transport's protocol until ``start_tls`` takes the transport, then the
    TLS layer's until the channel starts.  Both times it keeps what comes in:

    * uvloop starts reading as soon as :meth:`connection_made` returns, before the
      handshake's task can run, so the ClientHello may be read here first; those bytes go
      to the TLS layer once it holds the transport, ahead of anything read after them;
    * the layer passes on what it decrypts as soon as the handshake is done, before the
      coroutine awaiting the handshake runs again, so a request sent with the client's
      last handshake message (and the connection's end) waits here for the channel.
    """

    __slots__ = (
        "_channel",
        "_early",
        "_eof",
        "_hello",
        "_lost",
        "_task",
        "_timer",
        "_transport",
        "state",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Bytes read before the TLS layer took the transport (None once it has).
        self._hello: list[bytes] | None = []
        #: Bytes the TLS layer decrypted before the channel started.
        self._early: list[bytes] = []
        self._eof = False
        self._lost = False
        #: The channel, once it took over.
        self._channel: HttpChannel | None = None

    # -- the TCP transport's protocol, then the TLS layer's ----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        if not self.state.admit_tls(self):
            transport.abort()
            return
        self._transport = transport
        loop = self.state.loop
        assert loop is not None
        # One deadline from the accept to the handshake's end, as for a request's head.
        self._timer = loop.call_later(self.state.config.header_timeout, self.abort)

    def data_received(self, data: bytes) -> None:
        hello = self._hello
        if hello is None:
            self._early.append(data)
            return
        transport = self._transport
        assert transport is not None
        if not hello and (data[:1].isalpha() or data[:1] in b"\r\n"):
            # A request line's method (a letter: RFC 9110's are upper case, a lower-case
            # one is a wrong method, not TLS), or the empty line a request may come after
            # (RFC 9112 section 2.2), where a ClientHello belongs, whose first byte is 0x16
            # (RFC 8446 section 5.1; an SSLv2-style hello's is 0x80 or more): plain HTTP.
            self._refuse_plain_http(transport)
            return
        # The client spoke first, as a TLS client does: the TLS layer reads the rest.
        transport.pause_reading()
        hello.append(data)
        if self._task is None and not self._lost:
            loop = self.state.loop
            assert loop is not None
            self._task = loop.create_task(self._handshake(transport))

    def eof_received(self) -> None:
        self._eof = True  # TLS has no half-close: the layer closes; the channel hears of it

    def connection_lost(self, exc: Exception | None) -> None:
        channel = self._channel
        if channel is not None:
            # The TLS layer schedules this call with the protocol of the moment: on
            # asyncio's loop the connection can fail in the read that ends the handshake
            # (a reset, a bad record after the client's Finished), and the call then comes
            # after the channel took over.  It is the channel's to hear, or it stays counted.
            channel.connection_lost(exc)
            return
        self.abort()

    # -- the handshake -----------------------------------------------------------------------

    def abort(self) -> None:
        """The connection ends before its channel starts (the client left, the handshake
        failed or took longer than ``header_timeout``, the server shuts down): closed,
        and no longer counted."""
        if self._lost or self._channel is not None:
            return
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
        # Let go of the task first: a cancelled task's traceback holds this object (a
        # cycle that kept the transport and the TLS layer's buffers until a collection).
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        if self._transport is not None:
            self._transport.abort()
        self.state.tls_ended(self)

    def _refuse_plain_http(self, transport: asyncio.Transport) -> None:
        self._hello = None  # nothing more is read as TLS
        self.state.record_refusal(
            peer_address(transport), "-", "-", 400, PLAIN_HTTP_REASON, websocket=False
        )
        transport.write(simple_response(400, PLAIN_HTTP_REASON))
        transport.close()  # once the response is out; connection_lost then uncounts it

    async def _handshake(self, transport: asyncio.Transport) -> None:
        state = self.state
        loop = state.loop
        context = state.config.ssl_context
        assert loop is not None and context is not None
        # The handshake's own timeout is the loop's default (60 s): this object's timer
        # ends it first.
        starting = loop.create_task(loop.start_tls(transport, self, context, server_side=True))
        try:
            # start_tls hands the transport over to the TLS layer in its first step (the
            # next loop pass), then waits for the handshake: feed it what was read before.
            while transport.get_protocol() is self and not starting.done():
                await asyncio.sleep(0)
            if not starting.done():  # else it failed before: awaiting it raises why
                self._give_hello(transport.get_protocol())
            tls = await starting
        except Exception as exc:
            # A failed handshake (a client not speaking TLS, a reset) usually ends in
            # abort() first: the TLS layer closes the transport, connection_lost follows
            # and cancels this task.  When the failure reaches this await first: the
            # client's doing, so no traceback, as none from the loop's own TLS server (an
            # error of another kind keeps its traceback, at the same level).
            logger.debug("TLS handshake failed: %r", exc, exc_info=not isinstance(exc, OSError))
            self.abort()
            exc.__traceback__ = None  # it holds this frame, which holds it: no cycle
            return
        finally:
            if not starting.done():  # this task was cancelled: so is the handshake
                starting.cancel()
        assert tls is not None  # both loops return the TLS transport (their stubs allow None)
        assert self._timer is not None  # armed in connection_made, before any byte came
        self._timer.cancel()
        channel = self._channel = HttpChannel(state)
        tls.set_protocol(channel)
        state.tls_established(self, channel)
        channel.start(tls)
        for data in self._early:
            channel.data_received(data)
        self._early.clear()
        if self._eof:
            channel.eof_received()

    def _give_hello(self, layer: asyncio.BaseProtocol) -> None:
        """Hand the TLS layer the bytes read before it held the transport, as the
        transport would have (the layer only queues them until its handshake starts).
        Both loops' layers read into their own buffer; uvloop's implements that interface
        without subclassing asyncio.BufferedProtocol."""
        hello, self._hello = self._hello, None
        assert hello  # the handshake's task starts when the first bytes come
        layer = cast(asyncio.BufferedProtocol, layer)
        data = memoryview(b"".join(hello))
        while data:
            buffer = memoryview(layer.get_buffer(len(data)))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            layer.buffer_updated(size)
            data = data[size:]
