"""Groups: named sets of connections that a message is sent to at once.

A group send encodes the frame once per frame family (RFC 6455 or hixie) and writes those
bytes to every member; it can be called from any thread or task.  A member that is slow to
read is handled by its own connection's overflow policy and never delays the others.
Membership cleans itself up when a connection closes, and a connection that belongs to a
group stays open after its handler returns (the seed's "listeners").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .masking import BytesLike

if TYPE_CHECKING:
    from .server.sync import SyncWebSocket
    from .server.websocket import WebSocket

logger = logging.getLogger("stargate.groups")


def _unwrap(ws: WebSocket | SyncWebSocket) -> WebSocket:
    inner = getattr(ws, "ws", None)
    return inner if inner is not None else ws  # type: ignore[return-value]


class Group:
    """A named set of WebSocket connections served by one event loop."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._members: dict[int, WebSocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Group {self.name!r} members={len(self._members)}>"

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, ws: object) -> bool:
        inner = getattr(ws, "ws", ws)
        return getattr(inner, "id", None) in self._members

    def __iter__(self) -> Iterator[WebSocket]:
        return iter(list(self._members.values()))

    def _call(self, loop: asyncio.AbstractEventLoop, func: object, *args: object) -> None:
        """Run ``func`` on ``loop``: now if we are on it, else as soon as it can."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            func(*args)  # type: ignore[operator]
        else:
            loop.call_soon_threadsafe(func, *args)  # type: ignore[arg-type]

    def add(self, ws: WebSocket | SyncWebSocket) -> None:
        """Add a connection; it leaves by itself when it closes."""
        inner = _unwrap(ws)
        with self._lock:
            if self._loop is None or (self._loop is not inner._loop and not self._members):
                # An empty group follows the loop of its next member: a module-level group
                # (the demo's room) outlives a server's loop (tests, a restarted server).
                self._loop = inner._loop
            elif self._loop is not inner._loop:
                raise ValueError("a group serves the connections of one event loop")
        self._call(inner._loop, self._add, inner)

    def _add(self, ws: WebSocket) -> None:
        if ws.id in self._members:
            return
        if ws.closed:
            return
        self._members[ws.id] = ws
        ws._retain()
        ws.add_close_callback(self._closed)

    def _closed(self, ws: WebSocket) -> None:
        self._members.pop(ws.id, None)

    def remove(self, ws: WebSocket | SyncWebSocket) -> None:
        inner = _unwrap(ws)
        self._call(inner._loop, self._remove, inner)

    def _remove(self, ws: WebSocket) -> None:
        if self._members.pop(ws.id, None) is not None:
            ws.remove_close_callback(self._closed)
            ws._release()

    def send(self, message: str | BytesLike) -> None:
        """Send ``message`` to every member; returns at once, from any thread or task."""
        if not isinstance(message, str):
            message = bytes(message)
        loop = self._loop
        if loop is not None:
            self._call(loop, self._send, message)

    def _send(self, message: str | bytes) -> None:
        frames: dict[str, bytes | None] = {}
        for ws in list(self._members.values()):
            family = ws.frame_family
            frame = frames.get(family, b"")
            if frame == b"":
                try:
                    frame = ws._conn.encode_shared(message)
                except TypeError:
                    frame = None  # binary to a hixie connection: it cannot carry it
                frames[family] = frame
            if frame is None:
                continue
            try:
                ws.send_encoded(frame)
            except Exception:  # a closing member: it leaves by its close callback
                logger.debug("%r: send to %r skipped", self, ws)
