"""What ``stargate serve`` serves, and how: the target loader and the server options.

Shared by the command line (:mod:`stargate.cli`) and the worker supervisor
(:mod:`stargate.server.workers`) so that neither imports the other: the supervisor checks a
target's shape (:func:`check_target`) without importing it, and each worker imports it
(:func:`load_target`) after the fork, so that whatever the app creates at import time (a
module-level ``Group``, its hub, threads, connections) is the worker's own.
"""

from __future__ import annotations

import argparse
import importlib
import ssl
from pathlib import Path
from typing import Any

from .extensions.permessage_deflate import PerMessageDeflateOffer
from .handshake import OriginPolicy
from .limits import Limits, MiB
from .server.config import ServerConfig, WebSocketOptions

__all__ = ["add_server_options", "check_target", "config_from_args", "is_ini", "load_target"]


def is_ini(target: str) -> bool:
    """Whether ``target`` names a PasteDeploy file (``development.ini[#name]``)."""
    return target.partition("#")[0].endswith(".ini")


def check_target(target: str) -> None:
    """Refuse a malformed target (:class:`SystemExit` with the reason) without importing
    anything: the supervisor calls it before forking workers that each import the target."""
    if is_ini(target):
        path = Path(target.partition("#")[0])
        if not path.is_file():
            raise SystemExit(f"stargate: no such .ini file: {str(path)!r}")
        return
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"stargate: TARGET must be module:attribute, not {target!r}")


def load_target(target: str) -> Any:
    """``module:attribute`` (``attribute`` may be dotted) -> the object; a PasteDeploy file
    (``development.ini`` or ``development.ini#name``) -> its WSGI app.  What the user can fix
    (a missing module, attribute or file) raises :class:`SystemExit` with a one-line reason."""
    if is_ini(target):
        from .pyramid.paste import load_ini_app

        try:
            return load_ini_app(target)
        except ImportError as exc:
            raise SystemExit(
                f"stargate: an .ini file needs pyramid (pip install 'stargate[pyramid]'): {exc}"
            ) from exc
        except FileNotFoundError as exc:
            raise SystemExit(f"stargate: {exc}") from exc
    check_target(target)
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"stargate: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"stargate: {module_name!r} has no attribute {attribute!r}") from None
    return obj


def add_server_options(parser: argparse.ArgumentParser, port: int) -> None:
    """The options every serving command takes (``serve``, ``echo``, ``demo``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port to listen on ({port})")
    parser.add_argument("--threads", type=int, default=32, help="worker threads (32)")
    parser.add_argument("--certfile", help="TLS certificate (PEM): serve https and wss")
    parser.add_argument("--keyfile", help="TLS private key (PEM)")
    parser.add_argument(
        "--max-message-size", type=int, default=1 * MiB, help="bytes per message (1 MiB)"
    )
    parser.add_argument("--max-frame-size", type=int, help="bytes per frame (max-message-size)")
    parser.add_argument(
        "--ping-interval", type=float, default=20.0, help="keepalive ping seconds; 0 disables"
    )
    parser.add_argument("--ping-timeout", type=float, default=20.0, help="seconds to the pong")
    parser.add_argument("--close-timeout", type=float, default=10.0, help="close handshake s")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this Origin (exact, host or *.host); '*' allows any; repeatable",
    )
    parser.add_argument("--no-legacy", action="store_true", help="refuse hixie-75/76 clients")
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument("--log-level", default="info", help="logging level (info)")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The :class:`~stargate.server.ServerConfig` of :func:`add_server_options`' options."""
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    limits = Limits(
        max_message_size=args.max_message_size,
        max_frame_size=args.max_frame_size or args.max_message_size,
    )
    options = WebSocketOptions(
        limits=limits,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout or None,
        close_timeout=args.close_timeout,
        compression=None if args.no_compression else PerMessageDeflateOffer(),
        # One message, however large, may wait for the peer on top of the usual budget.
        max_send_buffer=max(WebSocketOptions().max_send_buffer, 2 * limits.max_message_size),
    )
    if "*" in args.allow_origin:
        policy = OriginPolicy.any()
    else:
        policy = OriginPolicy(allowed=tuple(args.allow_origin))
    return ServerConfig(
        host=args.host,
        port=args.port,
        threads=args.threads,
        ssl_context=context,
        websocket=options,
        legacy_protocols=not args.no_legacy,
        origin_policy=policy,
    )
