"""PasteDeploy glue: ``pserve development.ini`` and ``stargate serve development.ini``.

``[server:main]`` with ``use = egg:stargate`` selects :func:`server_factory` (entry point
``main`` of the group ``paste.server_factory``)::

    [server:main]
    use = egg:stargate
    listen = localhost:6543
    # or: host = 127.0.0.1 and port = 6543; optional: threads, max_body_size, certfile ...,
    # and the WebSocket settings (allowed_origins, max_message_size, ping_interval ...)

Every key is a setting of :mod:`stargate.settings`, converted there (as the command line's
options are); ``stargate serve development.ini`` reads the same section.  The app's own
``stargate.*`` settings (in ``[app:main]``) override the WebSocket keys for the upgrades
that app accepts.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..server import ServerConfig
from ..server.access import json_lines_alone
from ..server.wsgi import WSGIApp
from ..settings import SERVER_KEYS, ServeSettings, SettingsError, as_count, serve_settings
from ..targets import INI_DEFAULT_PORT, load_ini_app
from ..workers import Listening, banner, leave_stuck_threads, serve_worker

__all__ = ["SERVER_KEYS", "app_factory", "load_ini_app", "server_config", "server_factory"]


def _serve_settings(settings: Mapping[str, Any]) -> ServeSettings:
    values = {key: value for key, value in settings.items() if value is not None}
    if "listen" not in values:
        values.setdefault("host", "127.0.0.1")
    values.setdefault("port", INI_DEFAULT_PORT)
    label = "[server:main] workers"
    workers = as_count(values["workers"], label) if "workers" in values else 1
    if workers > 1:  # said before anything else: no broker would make it work under pserve
        raise SettingsError(
            f"{label} = {workers}: pserve loads the app before the server, so its workers "
            "could not each import their own; run stargate serve development.ini (which "
            "reads this section) instead"
        )
    return serve_settings(values, label=lambda key: f"[server:main] {key}")


def server_config(
    host: str | None = None, port: str | int | None = None, **settings: Any
) -> ServerConfig:
    """A :class:`~stargate.server.ServerConfig` from the (string) values of an .ini section
    (``host`` and ``port`` default to 127.0.0.1 and 6543).

    Raises :class:`~stargate.settings.SettingsError` (a ValueError) for an unknown key (a
    typo must not pass silently) or a bad value.
    """
    return _serve_settings({"host": host, "port": port, **settings}).config


def server_factory(global_conf: Mapping[str, Any], **settings: Any) -> Callable[[WSGIApp], None]:
    """PasteDeploy server factory: ``[server:main] use = egg:stargate``.

    The settings are checked here, when pserve loads the section; the returned ``serve(app)``
    serves the app (HTTP and WebSocket on one port) until SIGINT or SIGTERM.
    """
    parsed = _serve_settings(settings)

    def serve_app(app: WSGIApp) -> None:
        def ready(listening: Listening) -> None:
            print(banner("serve", listening), flush=True)

        json_lines_alone(parsed.config)  # as stargate serve does
        serve_worker(app, parsed.config, listen=parsed.listen, ready=ready)
        # pserve ends the process when this returns: a def handler or a view still in the
        # app must not keep it past shutdown_timeout, as with stargate serve.
        leave_stuck_threads(0)

    return serve_app


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
