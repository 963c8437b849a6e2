"""``WebSocketAwareResource``: a resource that keeps the WebSockets listening to it.

A view accepts a WebSocket and adds it to the resource's listeners; any other view, thread
or task then pushes to all of them with :meth:`~WebSocketAwareResource.send`.  Built on
:class:`stargate.groups.Group`: the message is encoded once per broadcast, a slow listener
never delays the others, a listener stays open after its handler returns, and a closed one
leaves the set by itself.

The listeners live on the resource object, so the resource must live as long as the
connections do: one object per process (a root built once by the app factory, with its
children kept in it), as in the jobs example.  A root factory that builds new resources for
every request would hand each request an empty set.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..groups import Group

if TYPE_CHECKING:
    from ..masking import BytesLike
    from ..server.sync import SyncWebSocket
    from ..server.websocket import WebSocket

__all__ = ["WebSocketAwareResource"]

_ATTRIBUTE = "_stargate_listeners"
_lock = threading.Lock()


class WebSocketAwareResource:
    """Mixin for Pyramid resources (traversal contexts, route factories' results).

    A ``Job(WebSocketAwareResource)`` whose socket view calls ``self.context.add_listener(ws)``
    and whose ``toggle()`` calls ``self.send(self.state)`` pushes every change to every tab
    (see ``examples/jobs``).  The mixin needs no ``__init__`` call: its state is created on
    first use.
    """

    @property
    def listener_group(self) -> Group:
        """The :class:`~stargate.groups.Group` behind the listeners (created on first use,
        named after the resource's ``__name__``)."""
        group = self.__dict__.get(_ATTRIBUTE)
        if group is None:
            with _lock:
                group = self.__dict__.get(_ATTRIBUTE)
                if group is None:
                    name = getattr(self, "__name__", None) or type(self).__name__
                    group = Group(str(name))
                    self.__dict__[_ATTRIBUTE] = group
        assert isinstance(group, Group)
        return group

    def add_listener(self, websocket: WebSocket | SyncWebSocket) -> None:
        """Listen: ``websocket`` gets every :meth:`send` until it closes or is removed, and
        stays open after its handler returns.  Callable from any thread."""
        self.listener_group.add(websocket)

    def remove_listener(self, websocket: WebSocket | SyncWebSocket) -> None:
        """Stop listening (the connection closes if its handler has returned and no other
        group holds it).  Removing a connection that does not listen does nothing."""
        self.listener_group.remove(websocket)

    @property
    def listeners(self) -> frozenset[WebSocket]:
        """The open connections listening now (a snapshot; the async
        :class:`~stargate.server.WebSocket` objects, also for synchronous handlers)."""
        return frozenset(self.listener_group)

    def send(self, message: str | BytesLike) -> None:
        """Send ``message`` (``str``: text, bytes: binary) to every listener; returns at once,
        callable from any view, thread or task."""
        self.listener_group.send(message)
