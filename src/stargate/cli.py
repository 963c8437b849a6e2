"""``stargate``: serve an app, an echo endpoint or the demo from the command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import ssl
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .client import cli as client_cli
from .extensions.permessage_deflate import PerMessageDeflateOffer
from .handshake import OriginPolicy
from .limits import Limits, MiB
from .masking import BytesLike
from .server import Routes, ServerConfig, WebSocket, WebSocketOptions, serve


def load_target(target: str) -> Any:
    """``module:attribute`` (``attribute`` may be dotted) -> the object; a PasteDeploy file
    (``development.ini`` or ``development.ini#name``) -> its WSGI app."""
    if target.partition("#")[0].endswith(".ini"):
        from .pyramid.paste import load_ini_app

        try:
            return load_ini_app(target)
        except ImportError as exc:
            raise SystemExit(
                f"stargate: an .ini file needs pyramid (pip install 'stargate[pyramid]'): {exc}"
            ) from exc
        except FileNotFoundError as exc:
            raise SystemExit(f"stargate: {exc}") from exc
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"stargate: TARGET must be module:attribute, not {target!r}")
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


async def echo(ws: WebSocket) -> None:
    """Echo every message as it came (text as text, binary as binary), on the loop's thread
    as each message arrives: no task or thread per message."""
    send = ws.send_nowait

    def on_message(message: str | BytesLike) -> None:
        send(message)

    ws.on_message = on_message


def _add_server_options(parser: argparse.ArgumentParser, port: int) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stargate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve a WSGI app or a Routes table")
    serve_cmd.add_argument(
        "target", help="module:attribute of a WSGI app or a Routes table, or a .ini file"
    )
    _add_server_options(serve_cmd, 8000)
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (1); more than 1 needs --broker",
    )
    serve_cmd.add_argument(
        "--broker",
        metavar="URL",
        help="group broker: memory:// (default, one process) or redis://HOST:6379/0",
    )
    echo_cmd = commands.add_parser("echo", help="echo WebSocket at every path")
    _add_server_options(echo_cmd, 9001)
    demo_cmd = commands.add_parser("demo", help="chat page and WebSocket on one port")
    _add_server_options(demo_cmd, 8000)
    client_cli.add_arguments(commands.add_parser("client", help=client_cli.HELP))
    args = parser.parse_args(argv)
    if args.command == "client":
        return client_cli.run_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = config_from_args(args)
    app: Any
    if args.command == "serve":
        app = load_target(args.target)
    elif args.command == "echo":
        # Conformance and benchmark peers are not browsers: accept any Origin.
        config = replace(config, origin_policy=OriginPolicy.any())
        app = Routes(default=echo)
    else:
        from .demo import app

    def ready(server: Any) -> None:
        scheme = "https" if config.ssl_context else "http"
        print(f"stargate {args.command}: {scheme}://{server.host}:{server.port}/", flush=True)

    if args.command == "serve":
        from .server.workers import run_workers

        config = replace(config, broker_url=args.broker)
        return run_workers(args.target, config, args.workers, args.broker, ready=ready)
    serve(app, config, ready=ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
