"""``stargate``: serve an app, an echo endpoint or the demo from the command line.

Every server option is a setting of :mod:`stargate.settings` under its own name
(``--max-body-size`` is ``max_body_size``), converted there.  ``stargate serve x.ini``
reads the file's ``[server:main]`` section first; options given on the command line
override it (``--host``/``--port`` replace its ``listen``).  What the user can fix (a bad
value, a port in use, a target that cannot be served, a broker that cannot be used) is one
line on stderr, ``stargate: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any, NoReturn

from .brokers import BrokerConfigError
from .client import cli as client_cli
from .extras import install_hint
from .masking import BytesLike
from .server import Routes, ServerConfig, WebSocket
from .server.access import json_lines_alone
from .settings import ServeSettings, SettingsError, as_log_level, serve_settings
from .targets import (
    INI_DEFAULT_PORT,
    TargetError,
    check_target,
    ini_server_settings,
    is_ini,
    load_target,
    use_current_directory,
)
from .workers import (
    ListenError,
    Listening,
    banner,
    leave_stuck_threads,
    run_workers,
    serve_worker,
)

__all__ = ["add_server_options", "config_from_args", "echo", "load_target", "main"]

#: Settings each command starts from, beneath an .ini file's and the command line's.
_DEFAULTS: Mapping[str, Mapping[str, object]] = {
    "serve": {"port": 8000, "access_log": True},
    # Conformance and benchmark peers are not browsers: any Origin.
    "echo": {"port": 9001, "access_log": True, "allowed_origins": "*"},
    "demo": {"port": 8000, "access_log": True},
}
#: Options that are not server settings.
_NOT_SETTINGS = frozenset({"command", "target", "log_level", "reload"})
#: setting name -> its option, for error messages (filled by add_server_options).
_FLAGS: dict[str, str] = {}
#: The format of every other log line (and of text access lines).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def echo(ws: WebSocket) -> None:
    """Echo every message as it came (text as text, binary as binary), on the loop's thread
    as each message arrives: no task or thread per message."""
    send = ws.send_nowait

    def on_message(message: str | BytesLike) -> None:
        send(message)

    ws.on_message = on_message


def _option(
    parser: argparse.ArgumentParser, flag: str, dest: str, help: str, **kwargs: Any
) -> None:
    _FLAGS.setdefault(dest, flag)
    parser.add_argument(flag, dest=dest, help=help, default=argparse.SUPPRESS, **kwargs)


def add_server_options(parser: argparse.ArgumentParser, port: int) -> None:
    """The options every serving command takes (``serve``, ``echo``, ``demo``); each one
    left out is absent from the namespace, so that only what was given overrides."""

    def add(flag: str, help: str, **kwargs: Any) -> None:
        _option(parser, flag, flag[2:].replace("-", "_"), help, **kwargs)

    def switch(flag: str, dest: str, help: str) -> None:
        _option(parser, flag, dest, help, action="store_const", const=False)

    add("--host", "address to listen on (127.0.0.1); '*' for every interface")
    add("--port", f"port to listen on ({port})")
    _option(
        parser,
        "--listen",
        "listen",
        "HOST:PORT to listen on, instead of --host/--port; repeatable "
        "('localhost:8000', '[::1]:8000', '*:8000')",
        action="append",
        metavar="HOST:PORT",
    )
    add("--threads", "WSGI worker threads (32)")
    add("--websocket-threads", "threads of 'def' WebSocket handlers (128)")
    add("--certfile", "TLS certificate (PEM): serve https and wss")
    add("--keyfile", "TLS private key (PEM), if not in the certificate file")
    add("--max-message-size", "bytes per WebSocket message (1MiB)", metavar="SIZE")
    add("--max-frame-size", "bytes per WebSocket frame (max-message-size)", metavar="SIZE")
    add("--max-body-size", "bytes per HTTP request body (16MiB); larger get 413", metavar="SIZE")
    add("--max-header-size", "bytes per HTTP request head (16KiB); larger get 431", metavar="SIZE")
    add("--max-connections", "open connections, HTTP and WebSocket (10000)")
    add("--ping-interval", "keepalive ping seconds; 0 disables (20)", metavar="SECONDS")
    add("--ping-timeout", "seconds to the pong; 0 disables (20)", metavar="SECONDS")
    add("--close-timeout", "seconds for the close handshake (10)", metavar="SECONDS")
    add("--header-timeout", "seconds to receive a request head (10)", metavar="SECONDS")
    add("--body-timeout", "seconds without a byte of a request body (30)", metavar="SECONDS")
    add(
        "--write-timeout",
        "seconds a client may take none of a response before it is aborted (60)",
        metavar="SECONDS",
    )
    add(
        "--keepalive-timeout",
        "seconds an idle HTTP connection is kept (5; 0: no keep-alive)",
        metavar="SECONDS",
    )
    add(
        "--shutdown-timeout",
        "seconds a graceful stop waits for handlers and requests (10)",
        metavar="SECONDS",
    )
    _option(
        parser,
        "--allow-origin",
        "allowed_origins",
        "allow this Origin (exact, host or *.host); '*' allows any; repeatable",
        action="append",
        metavar="ORIGIN",
    )
    _option(
        parser,
        "--trusted-proxy",
        "trusted_proxies",
        "believe forwarding headers from this address or network (CIDR); repeatable",
        action="append",
        metavar="ADDR",
    )
    add(
        "--proxy-headers",
        "the forwarding headers the trusted proxies set: x-forwarded or forwarded (x-forwarded)",
        metavar="FAMILY",
    )
    switch("--no-legacy", "legacy_protocols", "refuse hixie-75/76 clients")
    switch("--no-compression", "compression", "do not offer permessage-deflate")
    switch("--no-access-log", "access_log", "no access log lines (stargate.access)")
    _option(
        parser,
        "--upgrade-on-loop",
        "upgrade_on_loop",
        "decide upgrade requests on the event loop, not in a worker thread (only for an app "
        "whose upgrade decisions never block)",
        action="store_const",
        const=True,
    )
    add("--access-log-format", "text or json (text)", metavar="FORMAT")
    add("--health-path", "a path answered 200 while serving, e.g. /-/ready (off)", metavar="PATH")
    add(
        "--metrics-path", "a path serving Prometheus metrics, e.g. /-/metrics (off)", metavar="PATH"
    )
    parser.add_argument("--log-level", default="info", help="logging level (info)")


def _parser() -> argparse.ArgumentParser:
    # The docstring's first line, without its RST markup (a terminal shows it verbatim).
    description = __doc__.split("\n\n")[0].replace("``", "")
    parser = argparse.ArgumentParser(prog="stargate", description=description)
    parser.add_argument("--version", action="version", version=f"stargate {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve a WSGI app or a Routes table")
    serve_cmd.add_argument(
        "target",
        help="module:attribute of a WSGI app or a Routes table (the current directory is "
        "searched first), or a PasteDeploy .ini file (its [server:main] settings are used)",
    )
    add_server_options(serve_cmd, 8000)
    _option(
        serve_cmd,
        "--workers",
        "workers",
        "server processes sharing the port (1); more than 1 needs --broker",
        metavar="N",
    )
    _option(
        serve_cmd,
        "--broker",
        "broker",
        "group broker: memory:// (default, one process) or redis://HOST:6379/0",
        metavar="URL",
    )
    serve_cmd.add_argument(
        "--reload",
        action="store_true",
        help="restart when a source file (or the .ini) changes; for development "
        f"(needs hupper: {install_hint('reload')})",
    )
    echo_cmd = commands.add_parser("echo", help="echo WebSocket at every path")
    add_server_options(echo_cmd, 9001)
    demo_cmd = commands.add_parser("demo", help="chat page and WebSocket on one port")
    add_server_options(demo_cmd, 8000)
    client_cli.add_arguments(commands.add_parser("client", help=client_cli.HELP))
    return parser


def _version() -> str:
    try:
        return metadata.version("stargate")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _given(args: argparse.Namespace) -> dict[str, object]:
    return {key: value for key, value in vars(args).items() if key not in _NOT_SETTINGS}


def _merge(*layers: Mapping[str, object]) -> dict[str, object]:
    """Later layers win; an address given one way replaces the other way beneath it."""
    merged: dict[str, object] = {}
    for layer in layers:
        if "listen" in layer:
            merged.pop("host", None)
            merged.pop("port", None)
        elif "host" in layer or "port" in layer:
            merged.pop("listen", None)
        merged.update(layer)
    return merged


def _settings(
    command: str,
    given: Mapping[str, object],
    ini: Mapping[str, str] | None = None,
    where: str = "",
) -> ServeSettings:
    """The command's defaults, then the .ini's ``[server:main]``, then the options given;
    an error names the setting as its source spells it."""
    ini = ini or {}

    def label(key: str) -> str:
        if key in ini and key not in given:
            return f"{where} [server:main] {key}"
        return _FLAGS.get(key, f"--{key.replace('_', '-')}")

    return serve_settings(_merge(_DEFAULTS[command], ini, given), label=label)


def config_from_args(args: argparse.Namespace, command: str = "serve") -> ServerConfig:
    """The :class:`~stargate.server.ServerConfig` of :func:`add_server_options`' options."""
    return _settings(command, _given(args)).config


def _ready(command: str) -> Callable[[Listening], None]:
    def ready(listening: Listening) -> None:
        print(banner(command, listening), flush=True)

    return ready


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``stargate`` command and ``python -m stargate``: :func:`main`, then the exit."""
    code = main(argv)
    leave_stuck_threads(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "client":
        return client_cli.run_args(args)
    try:
        level = as_log_level(args.log_level, "--log-level")
        logging.basicConfig(level=level, format=LOG_FORMAT)
        if args.command == "serve":
            return _serve(args, sys.argv[1:] if argv is None else list(argv))
        settings = _settings(args.command, _given(args))
        json_lines_alone(settings.config)
        app: Any
        if args.command == "echo":
            app = Routes(default=echo)
        else:
            from .demo import app
        serve_worker(app, settings.config, listen=settings.listen, ready=_ready(args.command))
        return 0
    except (SettingsError, TargetError, ListenError, BrokerConfigError) as exc:
        print(f"stargate: error: {exc}", file=sys.stderr, flush=True)
        return 2


def serve_target_settings(target: str, given: Mapping[str, object]) -> ServeSettings:
    """What ``stargate serve TARGET`` serves with: the defaults, then an .ini file's
    ``[server:main]``, then the options ``given``."""
    ini = ini_server_settings(target) if is_ini(target) else {}
    if is_ini(target) and not {"port", "listen"} & {*ini, *given}:
        # An .ini file serves where pserve would serve it: Pyramid's port, not ours.
        given = {"port": INI_DEFAULT_PORT, **given}
    return _settings("serve", given, ini, target.partition("#")[0])


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    """``stargate serve``: the target is only checked here, never imported: each worker
    imports it (after the fork, with ``--workers``), so that what it creates at import
    time, a module-level ``Group``'s hub above all, is the worker's own."""
    target: str = args.target
    use_current_directory()
    check_target(target)
    settings = serve_target_settings(target, _given(args))
    json_lines_alone(settings.config)
    if args.reload:
        if settings.workers > 1:
            raise SettingsError("--reload serves with one worker: leave out --workers")
        _reloading(target, argv)
    return run_workers(
        target,
        settings.config,
        settings.workers,
        listen=settings.listen,
        ready=_ready("serve"),
    )


def _reloading(target: str, argv: list[str]) -> None:
    """In the monitor process (first call): never returns, runs ``main(argv)`` in a child
    process that it restarts when a file that child imported changes (hupper, as pserve
    does).  In that child: also watches the .ini file, then returns."""
    try:
        import hupper  # type: ignore[import-untyped]
    except ImportError:
        raise SettingsError(f"--reload needs hupper: {install_hint('reload')}") from None
    if not hupper.is_active():
        hupper.start_reloader("stargate.cli.main", worker_kwargs={"argv": argv})
        raise AssertionError("hupper.start_reloader returned in the monitor")  # pragma: no cover
    if is_ini(target):
        hupper.get_reloader().watch_files([target.partition("#")[0]])


if __name__ == "__main__":
    sys.exit(main())
