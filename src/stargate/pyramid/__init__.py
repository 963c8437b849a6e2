"""Stargate for Pyramid 2: WebSockets on the same port, routes, resources and security.

``config.include("stargate.pyramid")`` (or ``pyramid.includes = stargate.pyramid`` in an .ini)
adds:

* the ``websocket`` view predicate: ``add_view(..., websocket=True)`` matches WebSocket
  upgrade requests only, so one route or context serves the page and its WebSocket;
* ``request.is_websocket`` and ``request.websocket_upgrade`` (the server's
  :class:`~stargate.server.Upgrade`, or None);
* the ``stargate.*`` settings (origins, subprotocols, limits, keepalive; see
  :mod:`stargate.pyramid.settings`), parsed once: a bad value fails at startup.

With :class:`WebSocketView` (a view class whose ``handler(self, websocket)`` serves the
connection) and :class:`WebSocketAwareResource` (a resource that keeps its listeners and
sends to them all).  Serve the app with ``pserve`` and ``[server:main] use = egg:stargate``
(:func:`stargate.pyramid.paste.server_factory`) or ``stargate serve development.ini``.
"""

from __future__ import annotations

from typing import Any

from .predicates import WebSocketPredicate, is_websocket, websocket_upgrade
from .resources import WebSocketAwareResource
from .settings import REGISTRY_KEY, SettingsError, WebSocketSettings, parse_settings
from .views import WebSocketView

__all__ = [
    "WebSocketAwareResource",
    "WebSocketPredicate",
    "WebSocketSettings",
    "WebSocketView",
    "includeme",
    "is_websocket",
    "websocket_upgrade",
]


def _request_is_websocket(request: Any) -> bool:
    return is_websocket(None, request)


def includeme(config: Any) -> None:
    """Pyramid's include hook: the predicate, the request properties, the settings."""
    from pyramid.exceptions import ConfigurationError

    config.add_view_predicate("websocket", WebSocketPredicate)
    config.add_request_method(_request_is_websocket, "is_websocket", reify=True)
    config.add_request_method(websocket_upgrade, "websocket_upgrade", reify=True)
    try:
        parsed = parse_settings(config.get_settings())
    except SettingsError as exc:
        raise ConfigurationError(str(exc)) from None
    config.registry[REGISTRY_KEY] = parsed
