"""``WebSocketAwareResource``: a resource that keeps the WebSockets listening to it.

A view accepts a WebSocket and adds it to the resource's listeners; any other view, thread
or task then pushes to all of them with :meth:`~WebSocketAwareResource.send`.  Built on
:class:`stargate.groups.Group`: the message is encoded once per broadcast, a slow listener
never delays the others, a listener stays open after its handler returns, and a closed one
leaves the set by itself.

Whose listeners are whose
-------------------------
The listeners belong to the resource's place in its tree, never to its ``__name__`` alone
(``/jobs/1`` and ``/rooms/1`` are both named ``1``; a push to the job must never reach the
room's clients).  A *located* resource (Pyramid's location awareness: ``__name__`` on every
resource of its lineage, ``__parent__`` up to the root) listens on the group named after

* its tree: the root's ``listener_namespace`` attribute if it has one, else the root's
  class (``module.QualName``), and
* its full resource path (``/jobs/1``, quoted as :func:`pyramid.traversal.resource_path`
  quotes it).

So resources that a root factory builds anew for every request still share their
listeners with the ones built for earlier requests (same tree, same path), and so do the
workers of one app with a broker that spans processes (``--broker redis://...``).  Two
trees in one process with roots of different classes never share.  Two trees of the *same*
root class in one process (one app mounted twice, two tenants) share unless each root says
which tree it is: ``root.listener_namespace = "tenant-a"``.

A resource that is not located (it declares no ``__name__``, or a resource between it and
its root has none) has nothing that names it beyond the object itself: its listeners are
its own (a group local to the object and the process), so it must live as long as its
connections do.

A resource's place is read when its listeners are first used; set ``__name__`` and
``__parent__`` before that, and do not move a resource that has listeners.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING

from pyramid.traversal import quote_path_segment

from ..groups import Group

if TYPE_CHECKING:
    from ..masking import BytesLike
    from ..server.sync import SyncWebSocket
    from ..server.websocket import WebSocket

__all__ = ["WebSocketAwareResource", "listener_group_name"]

_ATTRIBUTE = "_stargate_listeners"
_lock = threading.Lock()
#: Every group name starts so: a resource's group never meets a ``Group("...")`` of the app.
_PREFIX = "pyramid:"
#: Longer names are hashed: a group name is a broker channel (bounded in the envelope).
_MAX_NAME = 256
_MISSING = object()


def _tree_namespace(root: object) -> str:
    """Which tree ``root`` is the root of (see the module docstring)."""
    namespace = getattr(root, "listener_namespace", None)
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            raise TypeError(
                f"{type(root).__qualname__}.listener_namespace must be a non-empty str, "
                f"not {namespace!r}"
            )
        return namespace
    cls = type(root)
    return f"{cls.__module__}.{cls.__qualname__}"


def listener_group_name(resource: object) -> str | None:
    """The name of the group behind ``resource``'s listeners: its tree and full resource
    path, or ``None`` when the resource is not located (then only its identity names it).

    Raises :class:`ValueError` when the ``__parent__`` chain loops.
    """
    names: list[str] = []
    seen: set[int] = set()
    node: object = resource
    while True:
        if id(node) in seen:
            raise ValueError(f"the __parent__ chain of {resource!r} loops")
        seen.add(id(node))
        name = getattr(node, "__name__", _MISSING)
        parent = getattr(node, "__parent__", None)
        if parent is None:
            # The root, named "" or None by convention; a resource of URL dispatch that
            # stands alone with a name is a root located by that name.  A resource that
            # declares no name at all is not located.
            if name is _MISSING and node is resource:
                return None
            if name is _MISSING or name is None:
                name = ""
            if not isinstance(name, str):
                return None
            names.append(name)
            root = node
            break
        if not isinstance(name, str) or not name:
            return None
        names.append(name)
        node = parent
    names.reverse()
    # Pyramid's resource_path: the root's name (usually "") joined with the others, each
    # quoted, so a "/" inside a name cannot make two paths alike.
    path = "/".join(quote_path_segment(name) for name in names) or "/"
    # The namespace's ":" escaped: it cannot make two trees' names alike.
    namespace = _tree_namespace(root).replace("%", "%25").replace(":", "%3A")
    full = f"{_PREFIX}{namespace}:{path}"
    if len(full.encode("utf-8")) > _MAX_NAME:
        digest = hashlib.sha256(full.encode("utf-8")).hexdigest()
        full = f"{_PREFIX}sha256:{digest}"
    return full


class WebSocketAwareResource:
    """Mixin for Pyramid resources (traversal contexts, route factories' results).

    A ``Job(WebSocketAwareResource)`` whose socket view calls ``self.context.add_listener(ws)``
    and whose ``toggle()`` calls ``self.send(self.state)`` pushes every change to every tab
    (see ``examples/jobs``).  The mixin needs no ``__init__`` call: its state is created on
    first use.  Which connections are this resource's listeners is told in the module
    docstring: its tree and resource path, never its ``__name__`` alone.
    """

    @property
    def listener_group(self) -> Group:
        """The :class:`~stargate.groups.Group` behind the listeners (created on first use,
        named by :func:`listener_group_name`; an anonymous group of its own when the
        resource is not located)."""
        group = self.__dict__.get(_ATTRIBUTE)
        if group is None:
            with _lock:
                group = self.__dict__.get(_ATTRIBUTE)
                if group is None:
                    group = Group(listener_group_name(self) or "")
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
        """The open connections listening now, in this process (a snapshot; the async
        :class:`~stargate.server.WebSocket` objects, also for synchronous handlers)."""
        return frozenset(self.listener_group)

    def send(self, message: str | BytesLike) -> None:
        """Send ``message`` (``str``: text, bytes: binary) to every listener; returns at once,
        callable from any view, thread or task."""
        self.listener_group.send(message)
