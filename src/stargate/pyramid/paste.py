"""PasteDeploy glue: ``pserve development.ini`` and ``stargate serve development.ini``.

``[server:main]`` with ``use = egg:stargate`` selects :func:`server_factory` (entry point
``main`` of the group ``paste.server_factory``)::

    [server:main]
    use = egg:stargate
    host = 127.0.0.1
    port = 6543
    # optional: threads, websocket_threads, certfile, keyfile, legacy_protocols, max_connections,
    # max_header_size, max_body_size, header_timeout, keepalive_timeout, write_timeout,
    # shutdown_timeout, and the WebSocket keys of stargate.pyramid.settings without their
    # "stargate." prefix (allowed_origins, max_message_size, ping_interval ...)

The app's own ``stargate.*`` settings (in ``[app:main]``) override the WebSocket keys for
the upgrades that app accepts.
"""

from __future__ import annotations

import importlib
import os
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..server import ServerConfig, WebSocketOptions, serve
from ..server.app import Server
from ..server.wsgi import WSGIApp
from .settings import (
    LIMIT_KEYS,
    OPTION_KEYS,
    ORIGIN_KEYS,
    as_bool,
    as_seconds,
    as_size,
    parse_settings,
)

__all__ = ["app_factory", "load_ini_app", "server_config", "server_factory"]

_INT_KEYS = ("threads", "websocket_threads", "max_connections", "max_pipelined")
_SIZE_KEYS = ("max_header_size", "max_body_size")
_SECONDS_KEYS = (
    "header_timeout",
    "keepalive_timeout",
    "write_timeout",
    "linger_timeout",
    "shutdown_timeout",
)
_OTHER_KEYS = ("certfile", "keyfile", "legacy_protocols")
#: Every key ``[server:main]`` may carry besides ``use``, ``host`` and ``port``.
SERVER_KEYS = frozenset(
    (*_INT_KEYS, *_SIZE_KEYS, *_SECONDS_KEYS, *_OTHER_KEYS, *ORIGIN_KEYS, *LIMIT_KEYS, *OPTION_KEYS)
)


def server_config(host: str = "127.0.0.1", port: str | int = 6543, **settings: Any) -> ServerConfig:
    """A :class:`~stargate.server.ServerConfig` from the (string) values of an .ini section.

    Raises ValueError for an unknown key (a typo must not pass silently) or a bad value.
    """
    unknown = sorted(set(settings) - SERVER_KEYS)
    if unknown:
        raise ValueError(
            f"stargate server: unknown setting(s) {', '.join(unknown)}; "
            f"known: host, port, {', '.join(sorted(SERVER_KEYS))}"
        )
    values: dict[str, Any] = {"host": str(host), "port": int(port)}
    for key in _INT_KEYS:
        if key in settings:
            number = int(str(settings[key]).strip())
            if number <= 0:
                raise ValueError(f"stargate server: {key} must be positive")
            values[key] = number
    for key in _SIZE_KEYS:
        if key in settings:
            values[key] = as_size(settings[key], key)
    for key in _SECONDS_KEYS:
        if key in settings:
            values[key] = as_seconds(settings[key], key)
    if "legacy_protocols" in settings:
        values["legacy_protocols"] = as_bool(settings["legacy_protocols"], "legacy_protocols")
    certfile = settings.get("certfile")
    if certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certfile), settings.get("keyfile") or None)
        values["ssl_context"] = context
    websocket = parse_settings(settings, prefix="")
    if websocket.options is not None:
        values["websocket"] = websocket.options
    else:
        values["websocket"] = WebSocketOptions()
    if websocket.origin_policy is not None:
        values["origin_policy"] = websocket.origin_policy
    return ServerConfig(**values)


def server_factory(
    global_conf: Mapping[str, Any], host: str = "127.0.0.1", port: str = "6543", **settings: Any
) -> Callable[[WSGIApp], None]:
    """PasteDeploy server factory: ``[server:main] use = egg:stargate``.

    The settings are checked here, when pserve loads the section; the returned ``serve(app)``
    serves the app (HTTP and WebSocket on one port) until SIGINT or SIGTERM.
    """
    config = server_config(host, port, **settings)

    def serve_app(app: WSGIApp) -> None:
        def ready(server: Server) -> None:
            scheme = "https" if config.ssl_context else "http"
            print(
                f"stargate: serving on {scheme}://{server.host}:{server.port}/ "
                "(HTTP and WebSocket)",
                flush=True,
            )

        serve(app, config, ready=ready)

    return serve_app


def load_ini_app(config_uri: str) -> WSGIApp:
    """The WSGI app of an .ini file (``development.ini`` or ``development.ini#name``), with
    the file's logging configuration applied, as pserve does."""
    from pyramid.paster import get_app, setup_logging

    setup_logging(config_uri)
    app: WSGIApp = get_app(config_uri)
    return app


def app_factory(global_conf: Mapping[str, Any], **settings: Any) -> WSGIApp:
    """Load an app that is not installed: ``use = call:stargate.pyramid.paste:app_factory``.

    ``stargate.app_factory = package.module:main`` names the app factory; directories in
    ``stargate.pythonpath`` (whitespace separated, e.g. ``%(here)s/../..``) are put on
    ``sys.path`` first.  The factory gets ``global_conf`` and the other settings, as if it
    were named by ``use`` itself.  This is how the examples in the repository run with
    ``pserve examples/jobs/development.ini`` without being installed.
    """
    target = settings.pop("stargate.app_factory", None)
    if not target or ":" not in str(target):
        raise ValueError("stargate.app_factory = module:callable is required")
    for directory in reversed(str(settings.pop("stargate.pythonpath", "")).split()):
        directory = os.path.abspath(directory)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    module_name, _, attribute = str(target).partition(":")
    factory: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    app: WSGIApp = factory(global_conf, **settings)
    return app
