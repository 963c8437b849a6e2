"""A group: a handle on a named set of connections of the process's hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..masking import BytesLike
from .hub import Hub, default_hub
from .members import GroupState, normalize, unwrap

if TYPE_CHECKING:
    from ..server.sync import SyncWebSocket
    from ..server.websocket import WebSocket


class Group:
    """A named set of WebSocket connections (a handle on its :class:`Hub`'s group).

    ``Group("room")`` is the group ``room`` of the process's :func:`default_hub` (or of
    ``hub``): every handle of one name is the same group, in this process and, with a broker
    that spans processes, in all of them.  ``Group()`` is an anonymous group of this process
    only.  ``len``, ``in`` and iteration see the local members.
    """

    __slots__ = ("_anonymous", "hub", "name")

    def __init__(self, name: str = "", *, hub: Hub | None = None) -> None:
        #: The group's name, the same in every process (``""``: an anonymous group).
        self.name = name
        #: The hub whose group this handle is (the process's :func:`default_hub` unless
        #: ``hub=`` was given).
        self.hub = hub if hub is not None else default_hub()
        self._anonymous: GroupState | None = None if name else self.hub.local_group()

    def _peek(self) -> GroupState | None:
        if self._anonymous is not None:
            return self._anonymous
        return self.hub.lookup(self.name)

    @property
    def local(self) -> bool:
        """Whether the group is of this process only (an anonymous group)."""
        return self._anonymous is not None

    def __repr__(self) -> str:
        return f"<Group {self.name!r} members={len(self)}>"

    def __len__(self) -> int:
        state = self._peek()
        return 0 if state is None else len(state.members)

    def __contains__(self, ws: object) -> bool:
        state = self._peek()
        inner = getattr(ws, "ws", ws)
        return state is not None and getattr(inner, "id", None) in state.members

    def __iter__(self) -> Iterator[WebSocket]:
        state = self._peek()
        return iter(() if state is None else list(state.members.values()))

    def add(self, ws: WebSocket | SyncWebSocket) -> None:
        """Add a connection (from any thread); it leaves by itself when it closes, and it
        stays open after its handler returns while it belongs to a group."""
        self.hub.join(self._anonymous or self.name, unwrap(ws))

    def remove(self, ws: WebSocket | SyncWebSocket) -> None:
        """Take a connection out (from any thread); if its handler has returned and no other
        group holds it, it is closed (1000)."""
        state = self._peek()
        if state is not None:
            self.hub.leave(state, unwrap(ws))

    def send(self, message: str | BytesLike) -> None:
        """Send ``message`` (``str``: text, bytes: binary) to every member in every process;
        returns at once, from any thread or task.  Raises :class:`ValueError` if it is too
        large for the broker, or if the group's name is longer than an envelope carries
        (1,024 bytes of UTF-8)."""
        self.hub.send_group(self._peek(), self.name, normalize(message))

    def is_subscribed(self) -> bool:
        """Whether other processes' messages to this group reach this one now."""
        return self._anonymous is not None or self.hub.is_subscribed(self.name)

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until other processes' messages to this group reach this one (after the
        first local member joined); ``False`` after ``timeout`` seconds."""
        if self._anonymous is not None:
            return True
        return await self.hub.wait_subscribed(self.name, timeout)
