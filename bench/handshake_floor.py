"""A reference, not a server to use: the least Python a handshake can cost on uvloop.

Per connection it finds the ``Sec-WebSocket-Key`` by a byte search, answers 101 with its
accept key, echoes the client's close frame and closes: what ``bench/run.py``'s handshake
row asks of a server, with no validation, no HTTP parser, no objects but the protocol.  Its
server CPU per handshake, measured with the same client, is what uvloop's transports and the
kernel cost when Python costs next to nothing: the floor under every Python server on
uvloop, and so how much of a server's figure is its own Python::

    cc -O2 -o /tmp/loadgen bench/loadgen.c
    python bench/handshake_floor.py --port 9100 &
    /tmp/loadgen handshake --port 9100 --count 20000 --concurrency 64 --pid $!

It answers only well-formed requests from ``loadgen`` (one read per head, one per frame);
anything else gets the connection closed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
from typing import cast

import uvloop

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY_FIELD = b"\r\nsec-websocket-key:"


class FloorProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if not self.upgraded:
            at = data.lower().find(_KEY_FIELD)
            if at < 0:
                transport.close()
                return
            start = at + len(_KEY_FIELD)
            key = data[start : data.index(b"\r\n", start)].strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
        elif data[0] == 0x88 and len(data) >= 6 and data[1] & 0x7F <= 125:
            length = data[1] & 0x7F
            mask = data[2:6]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[6 : 6 + length]))
            transport.write(bytes([0x88, length]) + payload)
            transport.close()
        else:
            transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"handshake floor listening on 127.0.0.1:{port} (uvloop)", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9100)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
