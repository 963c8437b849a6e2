"""``stargate client URL``: an interactive WebSocket client for the terminal.

Each line typed (or piped) on stdin is sent as a text message; each message received is
printed on stdout: text as it is, binary as ``[binary N bytes] <hex>`` (the first 32 bytes).
Status lines (connected, closed, errors) go to stderr, so stdout carries only messages.
End of input (Ctrl-D, or the end of a pipe) or Ctrl-C closes the connection normally (1000)
and exits with status 0; a failure to connect, or a connection that ends with another close
code, exits with 1.  ``python -m stargate.client.cli URL`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from ..errors import ConnectionClosed
from ..extensions.permessage_deflate import PerMessageDeflateClientOffer
from ..limits import Limits, MiB
from ..protocol import CloseCode, ProtocolVersion
from .errors import ConnectError
from .opening import open_connection
from .params import ConnectParams
from .websocket import ClientWebSocket, Message

HELP = "interactive WebSocket client: stdin lines out, messages in on stdout"
#: Bytes of a binary message shown in hex.
HEX_BYTES = 32
_NORMAL_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the client's options to ``parser`` (the ``client`` subcommand's)."""
    parser.add_argument("url", help="ws:// or wss:// URL to connect to")
    parser.add_argument(
        "-p",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable, in order of preference)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    parser.add_argument("--origin", help="send this Origin header")
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="wss://: do not verify the server's certificate (self-signed test servers)",
    )
    parser.add_argument("--cafile", help="wss://: trust the CA certificates in this PEM file")
    parser.add_argument(
        "--hixie76", action="store_true", help="speak the legacy hixie-76 draft (text only)"
    )
    parser.add_argument(
        "--max-message-size", type=int, default=1 * MiB, help="bytes per message (1 MiB)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=20.0, help="keepalive ping seconds; 0 disables"
    )
    parser.add_argument(
        "--open-timeout", type=float, default=10.0, help="seconds to open the connection"
    )
    parser.set_defaults(client_main=run_args)


def format_message(message: Message) -> str:
    """How a received message is printed: text as is, binary as a hex summary."""
    if isinstance(message, str):
        return message
    shown = message[:HEX_BYTES].hex(" ")
    more = " ..." if len(message) > HEX_BYTES else ""
    return f"[binary {len(message)} bytes] {shown}{more}".rstrip()


def _headers(values: Sequence[str]) -> list[tuple[str, str]]:
    headers = []
    for value in values:
        name, colon, content = value.partition(":")
        if not colon or not name.strip():
            raise SystemExit(f"stargate client: --header must be 'Name: value', not {value!r}")
        headers.append((name.strip(), content.strip()))
    return headers


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.lower().startswith("wss:"):
        return None
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_lines(
    stdin: TextIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]
) -> None:
    """In a daemon thread: every stdin line into ``queue``, then ``None`` at end of input."""
    try:
        for line in stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
    except (OSError, ValueError):  # stdin closed under us
        pass
    with contextlib.suppress(RuntimeError):  # the loop is gone already
        loop.call_soon_threadsafe(queue.put_nowait, None)


def connect_params(args: argparse.Namespace) -> ConnectParams:
    """What the options ask of the connection: the keywords of :func:`stargate.connect`."""
    return ConnectParams(
        subprotocols=args.subprotocol,
        extra_headers=_headers(args.header),
        origin=args.origin,
        compression=None if args.no_compression else PerMessageDeflateClientOffer(),
        limits=Limits(max_message_size=args.max_message_size),
        ssl=_ssl_context(args),
        version=ProtocolVersion.HIXIE_76 if args.hixie76 else ProtocolVersion.RFC6455,
        open_timeout=args.open_timeout or None,
        ping_interval=args.ping_interval or None,
    )


async def session(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Connect, then pump stdin to the server and the server to stdout until either ends."""
    try:
        ws = await open_connection(args.url, connect_params(args))
    except ConnectError as exc:
        print(f"stargate client: {exc}", file=stderr, flush=True)
        return 1
    details = [f"subprotocol {ws.subprotocol}"] if ws.subprotocol else []
    details.append("compression" if ws.compression else "no compression")
    print(f"connected to {ws.url} ({', '.join(details)})", file=stderr, flush=True)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    reader = threading.Thread(
        target=_read_lines, args=(stdin, loop, lines), name="stargate-stdin", daemon=True
    )
    reader.start()
    outgoing = asyncio.create_task(_send_lines(ws, lines))
    try:
        async for message in ws:
            print(format_message(message), file=stdout, flush=True)
    except asyncio.CancelledError:  # Ctrl-C: close normally
        await ws.close()
    finally:
        outgoing.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await outgoing
    await ws.wait_closed()
    code = ws.close_code
    reason = f" {ws.close_reason}" if ws.close_reason else ""
    print(f"connection closed: {code}{reason}", file=stderr, flush=True)
    return 0 if code in _NORMAL_CODES or code == CloseCode.NO_STATUS_RCVD else 1


async def _send_lines(ws: ClientWebSocket, lines: asyncio.Queue[str | None]) -> None:
    while (line := await lines.get()) is not None:
        await ws.send(line)
    await ws.close()  # end of input: a normal close


def run_args(args: argparse.Namespace) -> int:
    """Run the client with parsed arguments; the exit status."""
    # A process started in the background by a non-interactive shell inherits SIGINT
    # ignored; Ctrl-C (and the SIGINT of a supervisor) must still close the session.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(session(args, sys.stdin, sys.stdout, sys.stderr))
    except KeyboardInterrupt:  # a second Ctrl-C while closing
        return 130


def run(argv: Sequence[str] | None = None) -> int:
    """``stargate client URL [options]``: parse ``argv`` (without the command) and run."""
    parser = argparse.ArgumentParser(prog="stargate client", description=HELP)
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
