"""The ``websocket`` view predicate: one URL serves the HTML page and its WebSocket.

``@view_config(route_name="room", websocket=True)`` matches only a WebSocket upgrade request,
``websocket=False`` only a plain one; a view without the predicate matches both, and Pyramid
tries the view with more predicates first, so a page view and a WebSocket view can share a
route or a context without more ado.
"""

from __future__ import annotations

from typing import Any

from ..headers import has_token
from ..server.upgrade import ENVIRON_KEY, Upgrade
from .settings import as_bool

__all__ = ["WebSocketPredicate", "is_websocket", "websocket_upgrade"]


def websocket_upgrade(request: Any) -> Upgrade | None:
    """The server's :class:`~stargate.server.Upgrade` of this request (None if there is none:
    a plain request, or a server that cannot upgrade)."""
    upgrade = request.environ.get(ENVIRON_KEY)
    return upgrade if isinstance(upgrade, Upgrade) else None


def is_websocket(context: object, request: Any) -> bool:
    """Whether ``request`` asks for a WebSocket.

    True when the stargate server offers the upgrade, and also when the request carries
    ``Upgrade: websocket`` under a server that cannot upgrade (waitress, gunicorn ...): the
    WebSocket view is then reached and answers 501 with a reason, instead of the page view
    answering a WebSocket client with HTML.  The signature is the one of Pyramid 1's custom
    predicates, kept for old code; Pyramid 2 code writes ``websocket=True``.
    """
    environ = request.environ
    if ENVIRON_KEY in environ:
        return True
    upgrade = environ.get("HTTP_UPGRADE")
    return upgrade is not None and has_token([upgrade], "websocket")


class WebSocketPredicate:
    """``websocket=True`` / ``websocket=False`` in ``add_view`` and ``view_config``."""

    def __init__(self, value: object, info: object) -> None:
        self.value = as_bool(value, "websocket")

    def text(self) -> str:
        return f"websocket = {self.value}"

    phash = text

    def __call__(self, context: object, request: Any) -> bool:
        return is_websocket(context, request) is self.value
