"""``WebSocketView``: a Pyramid view whose ``handler(websocket)`` serves the connection.

The view runs like any other Pyramid view: traversal or URL dispatch found it, its
predicates matched, and Pyramid's security allowed it (a view behind a permission that the
request lacks is never reached: Pyramid answers 403 itself, and the server sends that answer
instead of upgrading).  Calling the view accepts the upgrade; the server then performs the
handshake (checking the Origin) and runs :meth:`WebSocketView.handler`:

* ``async def handler(self, websocket)`` runs on the server's event loop with the async
  :class:`~stargate.server.WebSocket`;
* ``def handler(self, websocket)`` runs in a worker thread with the blocking
  :class:`~stargate.server.SyncWebSocket`, Pyramid's thread locals
  (``get_current_request()``, ``get_current_registry()``) set to this request.

``self.request`` and ``self.context`` stay available in the handler.  The request's own
lifetime is over by then (its response was never sent, its finished callbacks have run): read
what the handler needs from it, such as ``request.authenticated_userid``, but do not keep a
database session from it open for the connection's lifetime.  What only answering it needed,
the unsent ``request.response`` and the queues of callbacks Pyramid has run, is dropped
from the request then (about 2 kB per connection; a later access makes a new one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pyramid.response import Response
from pyramid.threadlocal import manager

from ..handshake import OriginPolicy
from ..server.config import WebSocketOptions
from ..server.sync import SyncWebSocket
from ..server.upgrade import Handler, Upgrade, checked_subprotocols, is_async_handler
from .predicates import is_websocket, websocket_upgrade
from .settings import WebSocketSettings, get_websocket_settings

__all__ = ["WebSocketView"]

#: What a request holds only for answering it; spent once its finished callbacks ran.
_SPENT = ("response", "response_callbacks", "finished_callbacks")


def _forget_spent(request: Any) -> None:
    """A finished callback (Pyramid runs those last, after the response callbacks): the
    handler keeps the view and so its request for the connection's lifetime, and these
    would stay with it (two deques and a Response: about 2 kB per connection)."""
    attributes = vars(request)
    for name in _SPENT:
        attributes.pop(name, None)


class WebSocketView:
    """Subclass, define ``handler(self, websocket)``, register with ``websocket=True``::

        @view_config(context=Job, websocket=True, permission="view")
        class JobSocket(WebSocketView):
            def handler(self, websocket):
                self.context.add_listener(websocket)   # stays open, gets every push
                websocket.send(self.context.state)

    Class attributes override the app's ``stargate.*`` settings for this view:
    :attr:`subprotocols`, :attr:`origin_policy`, :attr:`options`.
    """

    #: Subprotocols this view speaks, in preference order (None: ``stargate.subprotocols``).
    subprotocols: ClassVar[Sequence[str] | None] = None
    #: Which origins may connect (None: the ``stargate.*`` origin settings, else the server's).
    origin_policy: ClassVar[OriginPolicy | None] = None
    #: Limits, keepalive, queues (None: the ``stargate.*`` settings, else the server's).
    options: ClassVar[WebSocketOptions | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's :attr:`subprotocols` is checked when it is defined, not at its
        first upgrade (``"chat"`` instead of ``("chat",)`` would speak "c", "h", ...)."""
        super().__init_subclass__(**kwargs)
        if cls.subprotocols is not None:
            checked_subprotocols(cls.subprotocols)

    def __init__(self, context: Any, request: Any) -> None:
        self.context = context
        self.request = request

    @property
    def upgrade(self) -> Upgrade | None:
        """The server's upgrade object: the request's handshake, offered subprotocols."""
        return websocket_upgrade(self.request)

    def handler(self, websocket: Any) -> object:
        """Serve one connection; ``async def`` or ``def`` in subclasses (see the module)."""
        raise NotImplementedError(f"{type(self).__name__} must define handler(self, websocket)")

    def response_headers(self) -> Sequence[tuple[str, str]]:
        """Extra headers for the 101 response (none by default)."""
        return ()

    def __call__(self) -> Any:
        # Pyramid keeps the view on its request (``request.__view__``) and the view keeps
        # the request: a cycle, left to the cycle collector after every connection.
        # Pyramid's own renderer pops it the same way.
        vars(self.request).pop("__view__", None)
        upgrade = self.upgrade
        if upgrade is None:
            return self.not_upgradable()
        settings: WebSocketSettings = get_websocket_settings(self.request.registry)
        subprotocols = self.subprotocols
        upgrade.accept(
            self._bound_handler(),
            subprotocols=settings.subprotocols if subprotocols is None else subprotocols,
            origin_policy=(
                settings.origin_policy if self.origin_policy is None else self.origin_policy
            ),
            options=settings.options if self.options is None else self.options,
            headers=self.response_headers(),
        )
        self.request.add_finished_callback(_forget_spent)
        # Not sent: the server answers the handshake itself once the upgrade is accepted.
        return self.request.response

    def not_upgradable(self) -> Any:
        """The answer when the view is reached without an upgrade the server can accept.
        Under stargate: 426 to a plain request, 400 to a WebSocket request (the handshake
        lacks what RFC 6455 section 4.2.1 requires).  Under a server that cannot upgrade,
        501 to either (serve with ``use = egg:stargate`` or ``stargate serve``): a 426
        must name the protocol to upgrade to in ``Upgrade``, which such a server could not
        switch to, and which PEP 3333 servers (waitress, wsgiref) refuse from an app."""
        under_stargate = self.request.environ.get("SERVER_SOFTWARE") == "stargate"
        websocket = is_websocket(self.context, self.request)
        if websocket and under_stargate:
            return Response(
                status=400,
                content_type="text/plain",
                charset="utf-8",
                body=b"not a WebSocket handshake: it needs Connection: Upgrade and "
                b"Upgrade: websocket\n",
            )
        if not under_stargate:
            return Response(
                status=501,
                content_type="text/plain",
                charset="utf-8",
                body=b"this server cannot accept WebSocket connections: serve the app with "
                b"stargate (pserve with use = egg:stargate, or stargate serve)\n",
            )
        response = Response(
            status=426,
            content_type="text/plain",
            charset="utf-8",
            body=b"this URL serves WebSocket connections\n",
        )
        response.headers["Upgrade"] = "websocket"
        return response

    def _bound_handler(self) -> Handler:
        handler = self.handler
        if is_async_handler(handler):
            return handler
        request = self.request
        registry = request.registry

        def run(websocket: SyncWebSocket) -> None:
            manager.push({"request": request, "registry": registry})
            try:
                handler(websocket)
            finally:
                manager.pop()

        return run
