"""The blocking client, for scripts and threads: ``stargate.sync_connect(url)``.

::

    with stargate.sync_connect("ws://localhost:8000/echo") as ws:
        ws.send("hello")
        print(ws.receive(timeout=5))
        for message in ws:
            ...

Why a background event loop rather than plain blocking sockets: a WebSocket needs work done
while the application is not calling it (answering pings, keepalive pings and their
timeout, the closing handshake's timer, reading the server's close frame), so a plain-socket
client needs a thread per connection anyway.  Instead, every blocking connection of the
process is an asyncio :class:`~stargate.client.websocket.ClientWebSocket` on one shared
daemon thread running an event loop, and each blocking call hands its work to that loop and
waits, exactly as the server's ``def`` handlers do
(:class:`~stargate.server.SyncWebSocket`).  The async and blocking clients therefore share
one implementation of the handshake, TLS, timeouts, keepalive, flow control and the error
classes; a blocking call costs one thread hop (tens of microseconds).

Every method may be called from any thread, but a connection's messages should be read by
one thread at a time.
"""

from __future__ import annotations

import asyncio
import os
import threading
from types import TracebackType

from ..endpoint import SyncWebSocketBase
from ..errors import ConnectionClosed
from ..handshake import Response
from ..protocol import CloseCode
from .opening import open_connection
from .params import ConnectParams, keywords_of
from .websocket import ClientWebSocket

__all__ = ["SyncClientWebSocket", "connect"]


class _LoopThread:
    """The process's background event loop for blocking clients, started on first use
    (and again in a forked child, which does not inherit threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if (
                self._loop is None
                or self._pid != os.getpid()
                or self._thread is None
                or not self._thread.is_alive()
            ):
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name="stargate-client", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()


_loop_thread = _LoopThread()


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop the blocking clients run on (a daemon thread; started if needed)."""
    return _loop_thread.get()


class SyncClientWebSocket(SyncWebSocketBase[ClientWebSocket]):
    """A blocking client connection: ``receive()``, ``send()``, iteration, ``ping()``,
    ``close()``, a ``with`` block.  The same semantics as the async
    :class:`~stargate.client.websocket.ClientWebSocket` it wraps (``ws``)."""

    def __init__(self, ws: ClientWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        """``ws`` was opened by :func:`connect` (which lets its inbox serve threads)."""
        super().__init__(ws, loop)

    # -- what the application reads ------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL the connection was opened with (after redirects, the last one)."""
        return self.ws.url

    @property
    def response(self) -> Response:
        """The server's 101 response: ``response.headers`` has every header it sent."""
        return self.ws.response

    @property
    def extensions(self) -> str | None:
        """The negotiated ``Sec-WebSocket-Extensions`` value, or ``None``."""
        return self.ws.extensions

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return self.ws.compression

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The server's address (``(host, port)``), or ``None`` when unknown."""
        return self.ws.remote_address

    @property
    def local_address(self) -> tuple[str, int] | None:
        """This end's address (``(host, port)``), or ``None`` when unknown."""
        return self.ws.local_address

    def __enter__(self) -> SyncClientWebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or issubclass(exc_type, ConnectionClosed):
            self.close()
        else:
            self.close(CloseCode.INTERNAL_ERROR, "internal error")


async def _open(url: str, params: ConnectParams) -> ClientWebSocket:
    ws = await open_connection(url, params)
    # On the loop, before any later message is delivered: from now on deliveries wake a
    # blocking reader.
    ws.inbox.allow_blocking()
    return ws


@keywords_of(ConnectParams)
def connect(url: str, params: ConnectParams) -> SyncClientWebSocket:
    """Open a blocking WebSocket connection (``stargate.sync_connect``).

    The keywords are the fields of :class:`~stargate.client.params.ConnectParams`, as for
    :func:`stargate.connect`, and so are the exceptions; the result is open (use it in a
    ``with`` block to close it at the end).
    """
    loop = background_loop()
    future = asyncio.run_coroutine_threadsafe(_open(url, params), loop)
    try:
        ws = future.result()
    except BaseException:
        future.cancel()  # interrupted (Ctrl-C): the attempt is cancelled and cleaned up
        raise
    return SyncClientWebSocket(ws, loop)
