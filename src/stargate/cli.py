"""``stargate``: serve an app, an echo endpoint or the demo from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .brokers import make_broker
from .client import cli as client_cli
from .handshake import OriginPolicy
from .masking import BytesLike
from .redact import redact_url
from .server import Routes, ServerConfig, WebSocket, serve
from .server.workers import Listening, run_workers
from .targets import add_server_options, check_target, config_from_args, load_target

__all__ = ["config_from_args", "echo", "load_target", "main"]

#: The name tests and older code import (the options live in :mod:`stargate.targets`).
_add_server_options = add_server_options


async def echo(ws: WebSocket) -> None:
    """Echo every message as it came (text as text, binary as binary), on the loop's thread
    as each message arrives: no task or thread per message."""
    send = ws.send_nowait

    def on_message(message: str | BytesLike) -> None:
        send(message)

    ws.on_message = on_message


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
    if args.command == "serve":
        return _serve(args, config)
    app: Any
    if args.command == "echo":
        # Conformance and benchmark peers are not browsers: accept any Origin.
        config = replace(config, origin_policy=OriginPolicy.any())
        app = Routes(default=echo)
    else:
        from .demo import app

    serve(app, config, ready=_ready(args.command, config))
    return 0


def _ready(command: str, config: ServerConfig) -> Callable[[Any], None]:
    """The line that says where we listen (tests and scripts read the port from it)."""

    def ready(server: Any) -> None:
        scheme = "https" if config.ssl_context else "http"
        line = f"stargate {command}: {scheme}://{server.host}:{server.port}/"
        if isinstance(server, Listening):
            line += f" ({server.workers} workers, supervisor pid {os.getpid()})"
        print(line, flush=True)

    return ready


def _serve(args: argparse.Namespace, config: ServerConfig) -> int:
    """``stargate serve``: the target is only checked here, never imported: each worker
    imports it (after the fork, with ``--workers``), so that what it creates at import
    time, a module-level ``Group``'s hub above all, is the worker's own."""
    check_target(args.target)
    try:
        make_broker(args.broker)  # an unknown scheme, or redis-py missing: say so now
    except ValueError as exc:
        reason = str(exc)
        if args.broker:
            reason = reason.replace(args.broker, redact_url(args.broker))
        print(f"stargate: error: {reason}", file=sys.stderr, flush=True)
        return 2
    config = replace(config, broker_url=args.broker)
    return run_workers(
        args.target, config, args.workers, args.broker, ready=_ready("serve", config)
    )


if __name__ == "__main__":
    sys.exit(main())
