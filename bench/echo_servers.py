"""The servers under test of ``bench/run.py`` and ``bench_echo.py``, one per library.

    python bench/echo_servers.py stargate|stargate-pyramid|websockets|picows|aiohttp
                                 [--host H] [--port N] [--app echo|broadcast|echo-loop]
                                 [--deflate] [--pure-python]

Every server does the same two jobs, written the way each library's documentation recommends
for speed (no keepalive pings, message limits raised to 16 MiB, no access log):

* ``--app echo`` (the default): every message comes back as it came (text as text, binary
  as binary), at every path;
* ``--app broadcast``: a connection to ``/sub`` subscribes; every message received on a
  connection to ``/pub`` is sent to every subscriber.  stargate uses a ``Group`` (the frame
  encoded once), websockets its ``broadcast()``, picows and aiohttp a loop over the
  subscribers' connections, as their documentation shows; other paths echo.

``--app echo-loop`` (stargate and ``stargate-pyramid`` only) echoes from a handler that keeps
running (``async for message in websocket``) instead of an ``on_message`` callback: what a
connection costs while its task lives (``docs/memory.md``).

``stargate-pyramid`` is stargate serving a Pyramid app (``config.include("stargate.pyramid")``)
whose ``WebSocketView`` at ``/ws`` echoes: the upgrade goes through Pyramid's routing and
view lookup in the WSGI thread pool, as in an application.

``--deflate`` offers permessage-deflate with each library's default settings (picows has
none: it refuses the option).  ``--pure-python`` makes stargate run without its C
accelerator (``STARGATE_PURE_PYTHON=1``), as where no compiler was around at install time.

Every server runs on uvloop when it is installed and on asyncio's default loop otherwise; the
line printed once listening says which loop (for picows, which transport; for stargate, which
core: C accelerator or pure-Python fallback).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 16 * 1024 * 1024

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional, the loop then is asyncio's
    uvloop = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    app: str  # "echo", "broadcast" or "echo-loop"
    deflate: bool
    #: stargate: decide upgrades on the event loop (ServerConfig.upgrade_on_loop).
    upgrade_on_loop: bool = False


def loop_name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _ready(name: str, opts: Options, extra: str = "") -> None:
    print(
        f"{name} {opts.app} on ws://{opts.host}:{opts.port}/ ({loop_name()}{extra}"
        f"{', deflate offered' if opts.deflate else ''})",
        flush=True,
    )


# -- stargate: a Routes table, or a Pyramid app ---------------------------------------------


def _stargate_config(opts: Options) -> Any:
    from stargate.extensions.permessage_deflate import PerMessageDeflateOffer
    from stargate.handshake import OriginPolicy
    from stargate.limits import Limits
    from stargate.server import ServerConfig, WebSocketOptions

    options = WebSocketOptions(
        limits=Limits(max_message_size=MAX_MESSAGE, max_frame_size=MAX_MESSAGE),
        compression=PerMessageDeflateOffer() if opts.deflate else None,
        ping_interval=None,
        ping_timeout=None,
        max_send_buffer=2 * MAX_MESSAGE,
    )
    return ServerConfig(
        host=opts.host,
        port=opts.port,
        websocket=options,
        origin_policy=OriginPolicy.any(),  # benchmark peers are not browsers
        max_connections=100_000,
        upgrade_on_loop=opts.upgrade_on_loop,
    )


def _stargate_routes(opts: Options) -> Any:
    from stargate.groups import Hub
    from stargate.server import Routes, WebSocket

    async def echo(ws: WebSocket) -> None:
        # As `stargate echo`: an on_message callback, no task or thread per connection.
        ws.on_message = ws.send_nowait

    if opts.app == "echo":
        return Routes(default=echo)
    if opts.app == "echo-loop":
        return Routes(default=_echo_loop)
    group = Hub().group("bench")

    async def subscribe(ws: WebSocket) -> None:
        group.add(ws)  # the handler returns; the group keeps the connection open

    async def publish(ws: WebSocket) -> None:
        ws.on_message = group.send  # every message to every member, encoded once

    return Routes({"/sub": subscribe, "/pub": publish}, default=echo)


async def _echo_loop(ws: Any) -> None:
    """A handler that keeps running for the connection's lifetime."""
    async for message in ws:
        await ws.send(message)


def _pyramid_app(opts: Options) -> Any:
    from pyramid.config import Configurator

    from stargate.pyramid import WebSocketView
    from stargate.server import WebSocket

    class EchoView(WebSocketView):
        async def handler(self, websocket: WebSocket) -> None:
            websocket.on_message = websocket.send_nowait

    class EchoLoopView(WebSocketView):
        async def handler(self, websocket: WebSocket) -> None:
            await _echo_loop(websocket)

    settings = {
        "stargate.allowed_origins": "*",
        "stargate.ping_interval": "off",
        "stargate.ping_timeout": "off",
        "stargate.compression": "true" if opts.deflate else "false",
        "stargate.max_message_size": str(MAX_MESSAGE),
    }
    with Configurator(settings=settings) as config:
        config.include("stargate.pyramid")
        config.add_route("ws", "/ws")
        view = EchoLoopView if opts.app == "echo-loop" else EchoView
        config.add_view(view, route_name="ws", websocket=True)
        return config.make_wsgi_app()


async def _serve_stargate(opts: Options, app: Any, name: str) -> None:
    import stargate.masking
    from stargate.server import Server

    server = Server(app, _stargate_config(opts))
    await server.start()
    masking = "C accelerator" if stargate.masking.ACCELERATED else "pure-Python fallback"
    _ready(name, opts, f", {masking}")
    try:
        await _until_signalled()
    finally:
        await server.shutdown(2.0)


async def serve_stargate(opts: Options) -> None:
    await _serve_stargate(opts, _stargate_routes(opts), "stargate")


async def serve_stargate_pyramid(opts: Options) -> None:
    if opts.app not in ("echo", "echo-loop"):
        raise SystemExit("stargate-pyramid serves the echo apps only")
    await _serve_stargate(opts, _pyramid_app(opts), "stargate-pyramid")


# -- websockets: the asyncio implementation (websockets >= 13) --------------------------------


async def serve_websockets(opts: Options) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if opts.app == "broadcast" and path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
        elif opts.app == "broadcast" and path == "/pub":
            async for message in ws:
                broadcast(subscribers, message)
        else:
            async for message in ws:
                await ws.send(message)

    async with serve(
        handler,
        opts.host,
        opts.port,
        compression="deflate" if opts.deflate else None,
        max_size=MAX_MESSAGE,
        ping_interval=None,
        backlog=1024,
    ):
        _ready("websockets", opts)
        await _until_signalled()


# -- picows: a listener per connection, echoing each frame from its callback ------------------


async def serve_picows(opts: Options) -> None:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        api,
        ws_create_server,
    )

    if opts.deflate:
        raise SystemExit("picows does not implement permessage-deflate")
    subscribers: set[WSTransport] = set()

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif msg_type != WSMsgType.PING and msg_type != WSMsgType.PONG:
                # Frame by frame: a fragmented message comes back fragmented the same way.
                transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)

    class Subscriber(Echo):
        def on_ws_connected(self, transport: WSTransport) -> None:
            subscribers.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            subscribers.discard(transport)

    class Publisher(Echo):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY:
                payload = frame.get_payload_as_memoryview()
                for subscriber in subscribers:
                    subscriber.send(msg_type, payload)
            else:
                super().on_ws_frame(transport, frame)

    def listener_factory(request: WSUpgradeRequest) -> WSListener:
        path: str | bytes = request.path
        if isinstance(path, bytes):
            path = path.decode("latin-1")
        if opts.app == "broadcast" and path == "/sub":
            return Subscriber()
        if opts.app == "broadcast" and path == "/pub":
            return Publisher()
        return Echo()

    server = await ws_create_server(
        listener_factory, opts.host, opts.port, max_frame_size=MAX_MESSAGE, backlog=1024
    )
    transport = "aiofastnet" if api._HAS_AIOFASTNET else "loop transports"
    async with server:
        _ready("picows", opts, f", {transport}")
        await _until_signalled()


# -- aiohttp: web.WebSocketResponse in a handler ------------------------------------------


async def serve_aiohttp(opts: Options) -> None:
    from aiohttp import WSMsgType, web

    subscribers: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=opts.deflate, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        if opts.app == "broadcast" and request.path == "/sub":
            subscribers.add(ws)
            try:
                async for _ in ws:
                    pass
            finally:
                subscribers.discard(ws)
        elif opts.app == "broadcast" and request.path == "/pub":
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    for subscriber in list(subscribers):
                        await subscriber.send_bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    for subscriber in list(subscribers):
                        await subscriber.send_str(msg.data)
        else:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, opts.host, opts.port, backlog=1024).start()
        _ready("aiohttp", opts)
        await _until_signalled()
    finally:
        await runner.cleanup()


SERVERS: dict[str, Callable[[Options], Coroutine[Any, Any, None]]] = {
    "stargate": serve_stargate,
    "stargate-pyramid": serve_stargate_pyramid,
    "websockets": serve_websockets,
    "picows": serve_picows,
    "aiohttp": serve_aiohttp,
}


def disable_stargate_speedups() -> None:
    """Make stargate take its pure-Python fallback for everything its C accelerator does
    (``STARGATE_PURE_PYTHON=1``, read when ``stargate.masking`` is imported)."""
    if "stargate.masking" in sys.modules:
        raise RuntimeError("stargate.masking is already imported")
    os.environ["STARGATE_PURE_PYTHON"] = "1"


def run(main: Coroutine[Any, Any, None]) -> None:
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--app", choices=("echo", "broadcast", "echo-loop"), default="echo")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument(
        "--pure-python", action="store_true", help="stargate without its C accelerator"
    )
    parser.add_argument(
        "--upgrade-on-loop",
        action="store_true",
        help="stargate: decide upgrades on the event loop (no thread hop)",
    )
    args = parser.parse_args(argv)
    if args.upgrade_on_loop and not args.server.startswith("stargate"):
        parser.error("--upgrade-on-loop applies to stargate only")
    if args.app == "echo-loop" and not args.server.startswith("stargate"):
        parser.error("--app echo-loop applies to stargate only")
    if args.pure_python:
        if not args.server.startswith("stargate"):
            parser.error("--pure-python applies to stargate only")
        disable_stargate_speedups()
    options = Options(args.host, args.port, args.app, args.deflate, args.upgrade_on_loop)
    run(SERVERS[args.server](options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
