"""Reference echo server for validating the Autobahn harness.

This is *not* stargate: it is a known-good peer built on the ``websockets``
library, used to check that ``run_autobahn.py`` drives wstest, parses the
report and gates correctly before ``stargate echo`` exists.  It echoes text
messages as text and binary messages as binary.  permessage-deflate stays at
websockets' default (offered/accepted); ``max_size`` is raised to 16 MiB
because Autobahn section 9 sends messages of up to 16 MiB, and websockets'
limit on fragments per message (4096 by default since websockets 17) is raised
because cases 9.3.1 and 9.4.1 send 4 MiB in 65536 fragments of 64 bytes.

Known reference results (websockets 17.4): see compliance/reference-allowed.md.

Usage::

    python compliance/reference_echo.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import websockets.asyncio.messages
from websockets.asyncio.server import ServerConnection, serve

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_FRAGMENTS = 1 << 17

# Also settable as WEBSOCKETS_MAX_FRAGMENTS, but that is read once at import time; setting
# the module attribute keeps this script self-contained.  Older websockets have no such limit.
if hasattr(websockets.asyncio.messages, "MAX_FRAGMENTS"):
    websockets.asyncio.messages.MAX_FRAGMENTS = max(
        MAX_FRAGMENTS, websockets.asyncio.messages.MAX_FRAGMENTS
    )


async def echo(ws: ServerConnection) -> None:
    """Send every received message back unchanged (str stays text, bytes stay binary)."""
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, host, port, max_size=MAX_MESSAGE_SIZE):
        print(f"reference echo server listening on ws://{host}:{port}", flush=True)
        await stop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.host, args.port))
