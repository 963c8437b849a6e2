"""A blocking facade over :class:`~stargate.server.websocket.WebSocket` for ``def`` handlers.

A synchronous handler runs in a worker thread; each call here hands its work to the event
loop and waits for it, so the loop never blocks on the handler and the handler sees the same
object model as an ``async def`` one.  Messages are taken from the connection's
:class:`~stargate.endpoint.Inbox` directly, on its blocking side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..endpoint import SyncWebSocketBase
from ..handshake import Request
from .websocket import Message, WebSocket


class SyncWebSocket(SyncWebSocketBase[WebSocket]):
    """The blocking API: ``receive()``, ``send()``, iteration, ``ping()``, ``close()``."""

    def __init__(self, ws: WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        """Made on the loop's thread (the server does, before starting the handler)."""
        ws.inbox.allow_blocking()
        super().__init__(ws, loop)

    @property
    def request(self) -> Request:
        """The upgrade request (method, target, headers), as the handshake read it."""
        return self.ws.request

    @property
    def path(self) -> str:
        """The path of the upgrade request's target, without its query (``/chat``)."""
        return self.ws.path

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The client's ``(host, port)`` (a trusted proxy's forwarded one), or ``None``."""
        return self.ws.remote_address

    @property
    def on_message(self) -> Callable[[Message], object] | None:
        """A callback that takes every message from now on instead of :meth:`receive`,
        called on the event loop's thread (not the handler's), so it must not block.  Set
        it and return from the handler: the connection stays open without holding a
        thread (see :attr:`WebSocket.on_message
        <stargate.server.websocket.WebSocket.on_message>`)."""
        return self.ws.on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Message], object] | None) -> None:
        self.ws.on_message = callback

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Call ``callback(ws)`` on the event loop's thread once the connection is closed
        (``ws``: the async :class:`~stargate.server.websocket.WebSocket` this wraps)."""
        self._loop.call_soon_threadsafe(self.ws.add_close_callback, callback)

    def remove_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        """Undo :meth:`add_close_callback` (nothing happens if it was not added or was
        called already)."""
        self._loop.call_soon_threadsafe(self.ws.remove_close_callback, callback)
