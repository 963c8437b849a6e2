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

Two options add what any real server must do, at the least cost Python allows, to find
where a pure-Python server's figure can be at best:

* ``--validate`` parses the head (two regular expressions) into a dict of fields and checks
  what RFC 6455 section 4.2.1 requires of the common request (GET, HTTP/1.1, one Host, the
  ``websocket`` and ``upgrade`` tokens, version 13, a key of 16 bytes in base64);
* ``--task`` starts an asyncio task per connection for an ``async def`` handler that
  returns at once, as ``bench/echo_servers.py``'s stargate handler does.

It answers only well-formed requests from ``loadgen`` (one read per head, one per frame);
anything else gets the connection closed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import re
import signal
from functools import partial
from typing import cast

import uvloop

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY_FIELD = b"\r\nsec-websocket-key:"
_REQUEST_LINE = re.compile(rb"GET (/[!-~]*) HTTP/1\.1\r\n")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t -~]*?)[ \t]*\r\n")


def _has_token(values: list[bytes], token: bytes) -> bool:
    return any(e.strip(b" \t") == token for v in values for e in v.lower().split(b","))


def checked_key(head: bytes) -> bytes | None:
    """The request's key if it is a valid RFC 6455 upgrade (the common case), else None."""
    line = _REQUEST_LINE.match(head)
    if line is None:
        return None
    fields: dict[bytes, list[bytes]] = {}
    for name, value in _FIELD.findall(head, line.end()):
        fields.setdefault(name.lower(), []).append(value)
    key = fields.get(b"sec-websocket-key", [])
    if (
        len(fields.get(b"host", [])) != 1
        or b"content-length" in fields
        or b"transfer-encoding" in fields
        or not _has_token(fields.get(b"upgrade", []), b"websocket")
        or not _has_token(fields.get(b"connection", []), b"upgrade")
        or fields.get(b"sec-websocket-version") != [b"13"]
        or len(key) != 1
        or len(key[0]) != 24
    ):
        return None
    try:
        if len(binascii.a2b_base64(key[0], strict_mode=True)) != 16:
            return None
    except binascii.Error:
        return None
    return key[0]


async def handler(protocol: FloorProtocol) -> None:
    """What the benchmark's handler does: return at once."""


class FloorProtocol(asyncio.Protocol):
    def __init__(self, *, validate: bool, task: bool) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        #: Parse and check the head; start a handler task per connection.
        self.validate = validate
        self.task = task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if not self.upgraded:
            if self.validate:
                key = checked_key(data)
            else:
                at = data.lower().find(_KEY_FIELD)
                start = at + len(_KEY_FIELD)
                key = data[start : data.index(b"\r\n", start)].strip() if at >= 0 else None
            if key is None:
                transport.close()
                return
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
            if self.task:
                asyncio.get_running_loop().create_task(handler(self))
        elif data[0] == 0x88 and len(data) >= 6 and data[1] & 0x7F <= 125:
            length = data[1] & 0x7F
            mask = data[2:6]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[6 : 6 + length]))
            transport.write(bytes([0x88, length]) + payload)
            transport.close()
        else:
            transport.close()


async def serve(host: str, port: int, *, validate: bool, task: bool) -> None:
    loop = asyncio.get_running_loop()
    factory = partial(FloorProtocol, validate=validate, task=task)
    server = await loop.create_server(factory, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The banner bench/run.py waits for, as it does for echo_servers.py's.
    print(f"handshake floor on ws://{host}:{port}/ (uvloop)", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--validate", action="store_true", help="parse and check the head")
    parser.add_argument("--task", action="store_true", help="a task per connection")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, validate=args.validate, task=args.task))


if __name__ == "__main__":
    main()
