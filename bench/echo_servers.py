"""Reference echo servers for ``bench_echo.py``: the same job as ``stargate echo``.

    python bench/echo_servers.py websockets|picows|aiohttp [--host H] [--port N]

Each server echoes every message as it came (text as text, binary as binary) at every path,
written the way each library's documentation recommends for speed: no compression, no
keepalive pings (``stargate echo`` runs with ``--ping-interval 0`` in the benchmark), message
limits raised, no access log.  Every server, like ``stargate echo``, runs on uvloop when it is
installed and on asyncio's default loop otherwise, so the comparison is like for like either
way; the line printed once listening says which loop (and, for picows, which transport).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

MAX_MESSAGE = 16 * 1024 * 1024

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional, the loop then is asyncio's
    uvloop = None  # type: ignore[assignment]


def loop_name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _ready(name: str, host: str, port: int, extra: str = "") -> None:
    print(f"{name} echo on ws://{host}:{port}/ ({loop_name()}{extra})", flush=True)


# -- websockets: the asyncio implementation (websockets >= 13) --------------------------------


async def serve_websockets(host: str, port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        echo,
        host,
        port,
        compression=None,
        max_size=MAX_MESSAGE,
        ping_interval=None,
        backlog=1024,
    ):
        _ready("websockets", host, port)
        await _until_signalled()


# -- picows: a listener per connection, echoing each frame from its callback ------------------


async def serve_picows(host: str, port: int) -> None:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        api,
        ws_create_server,
    )

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif msg_type != WSMsgType.PING and msg_type != WSMsgType.PONG:
                # Frame by frame: a fragmented message comes back fragmented the same way.
                transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)

    def listener_factory(request: WSUpgradeRequest) -> WSListener:
        return Echo()

    server = await ws_create_server(
        listener_factory, host, port, max_frame_size=MAX_MESSAGE, backlog=1024
    )
    transport = "aiofastnet" if api._HAS_AIOFASTNET else "loop transports"
    async with server:
        _ready("picows", host, port, f", {transport}")
        await _until_signalled()


# -- aiohttp: web.WebSocketResponse in a handler ------------------------------------------


async def serve_aiohttp(host: str, port: int) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{path:.*}", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        _ready("aiohttp", host, port)
        await _until_signalled()
    finally:
        await runner.cleanup()


SERVERS: dict[str, Callable[[str, int], Coroutine[Any, Any, None]]] = {
    "websockets": serve_websockets,
    "picows": serve_picows,
    "aiohttp": serve_aiohttp,
}


def run(main: Coroutine[Any, Any, None]) -> None:
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    args = parser.parse_args(argv)
    run(SERVERS[args.server](args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
