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

from pyramid.exceptions import ConfigurationError

from .predicates import WebSocketPredicate, is_websocket, websocket_upgrade
from .resources import WebSocketAwareResource
from .settings import REGISTRY_KEY, SettingsError, WebSocketSettings, parse_settings
from .views import WebSocketView

__all__ = [
    "SettingsConfigurationError",
    "WebSocketAwareResource",
    "WebSocketPredicate",
    "WebSocketSettings",
    "WebSocketView",
    "includeme",
    "is_websocket",
    "websocket_upgrade",
]


class SettingsConfigurationError(ConfigurationError, SettingsError):  # type: ignore[misc]
    """An unusable ``stargate.*`` setting: Pyramid's kind of configuration error, and a
    :class:`~stargate.settings.SettingsError`, which ``stargate serve`` says in one line."""


#: After every directive of default order (``set_request_factory`` among them): the request
#: factory the application ended up with is the one given the two properties.
_AFTER_THE_APP = 10


def _with_websocket_properties(base: Any) -> Any:
    """``base`` (a request class) with ``is_websocket`` and ``websocket_upgrade`` as class
    properties.  Pyramid's ``add_request_method(..., reify=True)`` would make a new class for
    every request (``InstancePropertyHelper.apply_properties``: about 40 us of each request,
    pages included); this class is made once."""
    return type(
        base.__name__,
        (base,),
        {
            "__module__": base.__module__,
            "__doc__": base.__doc__,
            "is_websocket": property(
                lambda request: is_websocket(None, request),
                doc="Whether the request asks for a WebSocket (stargate.pyramid).",
            ),
            "websocket_upgrade": property(
                websocket_upgrade,
                doc="The server's Upgrade for a WebSocket request, else None (stargate.pyramid).",
            ),
            "_stargate_properties": True,
        },
    )


def _install_request_factory(registry: Any) -> None:
    from pyramid.exceptions import ConfigurationError
    from pyramid.interfaces import IRequestFactory
    from pyramid.request import Request

    base = registry.queryUtility(IRequestFactory, default=Request)
    if getattr(base, "_stargate_properties", False):
        return
    if not isinstance(base, type):
        raise ConfigurationError(
            "stargate.pyramid adds request.is_websocket and request.websocket_upgrade to the "
            f"request factory, which must be a class (a pyramid.request.Request), not {base!r}"
        )
    registry.registerUtility(_with_websocket_properties(base), IRequestFactory)


def includeme(config: Any) -> None:
    """Pyramid's include hook: the predicate, the request properties, the settings."""
    config.add_view_predicate("websocket", WebSocketPredicate)
    config.action(
        ("stargate.pyramid", "request-factory"),
        _install_request_factory,
        args=(config.registry,),
        order=_AFTER_THE_APP,
    )
    # Now, so that a bad value fails at the include; again at the commit, so that settings
    # added after the include (config.add_settings) are not silently left out.
    _parse_settings(config.registry)
    config.action(
        ("stargate.pyramid", "settings"),
        _parse_settings,
        args=(config.registry,),
        order=_AFTER_THE_APP,
    )


def _parse_settings(registry: Any) -> None:
    try:
        parsed = parse_settings(registry.settings)
    except SettingsError as exc:
        raise SettingsConfigurationError(str(exc)) from None
    registry[REGISTRY_KEY] = parsed
