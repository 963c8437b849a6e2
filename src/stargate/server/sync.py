"""A blocking facade over :class:`~stargate.server.websocket.WebSocket` for ``def`` handlers.

A synchronous handler runs in a worker thread; each call here hands its work to the event
loop and waits for it, so the loop never blocks on the handler and the handler sees the same
object model as an ``async def`` one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..endpoint import SyncWebSocketBase
from ..handshake import Request
from .websocket import Message, WebSocket


class SyncWebSocket(SyncWebSocketBase[WebSocket]):
    """The blocking API: ``receive()``, ``send()``, iteration, ``ping()``, ``close()``."""

    def __init__(self, ws: WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        cond = ws._sync_cond = threading.Condition()
        super().__init__(ws, loop, cond)

    @property
    def request(self) -> Request:
        return self.ws.request

    @property
    def path(self) -> str:
        return self.ws.path

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self.ws.remote_address

    @property
    def on_message(self) -> Callable[[Message], object] | None:
        return self.ws.on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Message], object] | None) -> None:
        self.ws.on_message = callback

    def receive(self, timeout: float | None = None) -> Message:
        """The next message; raises ConnectionClosed when closed, TimeoutError on timeout."""
        message = self._pop(timeout)
        if self.ws._reading_paused:
            self._loop.call_soon_threadsafe(self._maybe_resume)
        return message

    def _maybe_resume(self) -> None:
        ws = self.ws
        if ws._reading_paused and len(ws._inbox) <= ws._options.max_queue // 2:
            ws._resume_reading()

    def ping(self, payload: bytes | None = None, timeout: float | None = None) -> float:
        """Ping and wait for the pong; returns the round trip in seconds."""
        return asyncio.run_coroutine_threadsafe(self.ws.ping(payload), self._loop).result(timeout)

    def add_close_callback(self, callback: Callable[[WebSocket], object]) -> None:
        self._loop.call_soon_threadsafe(self.ws.add_close_callback, callback)
