"""What ``stargate serve`` serves: the one importer of ``module:app`` and ``.ini`` targets.

A target is checked (:func:`check_target`) without importing anything, so that the worker
supervisor can refuse a malformed one before it forks; each worker then imports it
(:func:`load_app`) after the fork, so that whatever the app creates at import time (a
module-level ``Group``, its hub, threads, connections) is the worker's own.  An ``.ini``
file's ``[server:main]`` section is read here too (:func:`ini_server_settings`), as text:
:mod:`stargate.settings` converts it.

What the user can fix (a missing module, attribute, file or section; an object that is not
an app) raises :class:`TargetError`, one line.
"""

from __future__ import annotations

import configparser
import importlib
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .extras import install_hint
from .settings import SettingsError

__all__ = [
    "APP_SECTIONS",
    "TargetError",
    "check_target",
    "ini_server_settings",
    "is_ini",
    "load_app",
    "load_ini_app",
    "load_target",
    "use_current_directory",
]

logger = logging.getLogger("stargate.targets")

#: The section kinds PasteDeploy loads an app from (``[app:main]``, ``[pipeline:main]`` ...).
APP_SECTIONS = ("app", "pipeline", "composite", "filter-app")
#: Where an .ini file's app is served when it names no port: Pyramid's (pserve, waitress).
INI_DEFAULT_PORT = 6543


class TargetError(Exception):
    """A target that cannot be served, for a reason its author can fix (one line)."""


def is_ini(target: str) -> bool:
    """Whether ``target`` names a PasteDeploy file (``development.ini[#name]``)."""
    return target.partition("#")[0].endswith(".ini")


def use_current_directory() -> None:
    """Put the current directory first on ``sys.path``, so that ``mymodule:app`` is found
    next to where the command runs, as gunicorn and uvicorn do (the ``stargate`` script's
    own directory is what Python puts there)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _ini(target: str) -> tuple[Path, str, configparser.RawConfigParser]:
    """The file, the app's name (``#name``, default ``main``) and the parsed file."""
    file, _, name = target.partition("#")
    path = Path(file)
    if not path.is_file():
        raise TargetError(f"no such .ini file: {file!r}")
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TargetError(f"{file}: not an .ini file PasteDeploy can read: {first}") from None
    return path, name or "main", parser


def check_target(target: str) -> None:
    """Refuse a malformed target (:class:`TargetError`) without importing anything: a
    ``module:attribute`` spelled wrong, an ``.ini`` file that is missing or has no section
    for the app it names."""
    if is_ini(target):
        path, name, parser = _ini(target)
        sections = [f"{kind}:{name}" for kind in APP_SECTIONS]
        if not any(parser.has_section(section) for section in sections):
            apps = [s for s in parser.sections() if s.partition(":")[0] in APP_SECTIONS]
            raise TargetError(
                f"{path} has no [app:{name}] section (nor pipeline, composite, filter-app); "
                + (
                    f"it has {', '.join(f'[{s}]' for s in apps)}: name one with {path}#NAME"
                    if apps
                    else "add one, e.g. [app:main] with use = egg:myapp"
                )
            )
        return
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"TARGET must be module:attribute or a .ini file, not {target!r}")


def load_target(target: str) -> Any:
    """``module:attribute`` (``attribute`` may be dotted) -> the object; a PasteDeploy file
    (``development.ini`` or ``development.ini#name``) -> its WSGI app."""
    check_target(target)
    if is_ini(target):
        return load_ini_app(target)
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists but fails to import something: its traceback helps
        raise TargetError(
            f"cannot import {module_name!r}: {exc} (looked in {os.getcwd()} and on sys.path)"
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}") from None
    return obj


def load_app(target: str) -> Any:
    """:func:`load_target`, refusing what cannot be served: a WSGI app is a callable
    ``app(environ, start_response)``, a Routes table serves WebSockets alone."""
    from .server.routing import Routes

    app = load_target(target)
    if not isinstance(app, Routes) and not callable(app):
        raise TargetError(
            f"{target!r} is not a WSGI app (a callable app(environ, start_response)) nor a "
            f"stargate.server.Routes table, but an object of type {type(app).__name__}"
        )
    return app


def load_ini_app(config_uri: str) -> Any:
    """The WSGI app of an .ini file (``development.ini`` or ``development.ini#name``), with
    the file's logging configuration applied, as pserve does."""
    try:
        from pyramid.exceptions import ConfigurationExecutionError
        from pyramid.paster import get_app, setup_logging
    except ImportError as exc:
        raise TargetError(
            f"an .ini file needs pyramid ({install_hint('pyramid')}): {exc}"
        ) from None
    path, name, parser = _ini(config_uri)
    if parser.has_section("loggers"):
        setup_logging(str(path))
    try:
        return get_app(str(path), name)
    except LookupError as exc:  # PasteDeploy: no such section, no such entry point
        raise TargetError(f"{path}: {exc}") from None
    except SettingsError as exc:  # the app's stargate.* settings (stargate.pyramid)
        raise TargetError(f"{path}: {exc}") from None
    except ConfigurationExecutionError as exc:  # the same, checked again at the commit
        if isinstance(exc.evalue, SettingsError):
            raise TargetError(f"{path}: {exc.evalue}") from None
        raise


def ini_server_settings(
    target: str, name: str = "main", *, global_conf: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``[server:NAME]`` section of an .ini target as written (``%(here)s`` expanded,
    with ``global_conf`` too: gunicorn's ``--paste-global``), without ``use``; empty if
    the file has no such section.

    A section for another server (``use = egg:waitress#main``) gives only where to listen
    (``host``, ``port``, ``listen``) and ``threads``: its other keys are that server's."""
    path, _, parser = _ini(target)
    section = f"server:{name}"
    if not parser.has_section(section):
        return {}
    here = str(path.resolve().parent)
    # As PasteDeploy: the file's [DEFAULT] over here and __file__, the global ones over all.
    names = {
        "here": here,
        "__file__": str(path.resolve()),
        **parser.defaults(),
        **(global_conf or {}),
    }
    values: dict[str, str] = {}
    for key in parser.options(section):
        raw = parser.get(section, key, raw=True)
        try:
            values[key] = raw % names if "%(" in raw else raw
        except (KeyError, ValueError) as exc:
            raise TargetError(f"{path} [{section}] {key}: cannot expand {raw!r}: {exc}") from None
    for key in list(parser.defaults()):
        values.pop(key, None)  # [DEFAULT] keys are PasteDeploy's globals, not settings
    use = values.pop("use", "egg:stargate")
    if not _is_stargate(use):
        kept = ("host", "port", "listen", "threads")
        left = sorted(key for key in values if key not in kept)
        if left:
            logger.warning(
                "%s [%s] is for %s: its %s not stargate's, left aside (stargate's limits "
                "apply; see stargate serve --help)",
                path,
                section,
                use,
                f"keys {', '.join(left)} are" if len(left) > 1 else f"key {left[0]} is",
            )
        values = {key: value for key, value in values.items() if key in kept}
    return values


def _is_stargate(use: str) -> bool:
    """``egg:stargate``, ``egg:stargate#main`` or ``call:stargate.pyramid.paste:...``."""
    scheme, _, rest = use.strip().partition(":")
    return scheme in ("egg", "call") and rest.partition("#")[0].partition(".")[0] in (
        "stargate",
        "stargate[pyramid]",
    )
