"""Stargate's own Python per handshake, without the kernel: a fake transport, no sockets.

``bench/run.py``'s handshake row measures a whole server process over loopback TCP, where
half the CPU is the kernel's and moves with how often the client sleeps.  This script drives
the server's connection path alone, as the event loop would: a new ``HttpChannel`` per
connection, the upgrade request in one read, the handler's task, the client's close frame,
``connection_lost``.  What it reports is the Python that runs per handshake (and about 2 µs
of this script's own: the fake transport and the checks), so a change to that path shows up
even on a busy machine::

    python bench/bench_handshake.py                     # routes, pyramid, pyramid-loop
    python bench/bench_handshake.py --apps routes       # one of them
    python bench/bench_handshake.py --instructions      # instructions per handshake (callgrind)

The app is ``bench/echo_servers.py``'s (the same ``ServerConfig``, the same echo handler,
the same Pyramid view).  Every connection must get a 101 with the right
``Sec-WebSocket-Accept``, the close frame back, and its transport closed, or the run stops.

``--instructions`` runs each app twice under valgrind's callgrind (with two numbers of
handshakes) and reports the difference per handshake: the same figure on a loaded machine as
on an idle one, for before/after comparisons.  Needs ``valgrind`` on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from echo_servers import Options, _pyramid_app, _stargate_config, _stargate_routes, run

APPS = ("routes", "pyramid", "pyramid-loop")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = base64.b64encode(b"stargate-bench-k").decode()
_ACCEPT = base64.b64encode(hashlib.sha1(_KEY.encode() + _GUID).digest())
_MASK = b"\x11\x22\x33\x44"
#: The client's close frame: code 1000, masked (RFC 6455 section 5.3).
_CLOSE = bytes([0x88, 0x82]) + _MASK + bytes(b ^ _MASK[i] for i, b in enumerate(b"\x03\xe8"))


class FakeTransport(asyncio.Transport):
    """What a connection's transport does for the server, minus the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol | None = None
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.written.extend(bytes(data) for data in list_of_data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 9000)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol


def upgrade_request(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def check(transport: FakeTransport) -> None:
    """The connection went as a client expects, or the benchmark measured something else."""
    head = transport.written[0] if transport.written else b""
    accept = re.search(rb"\r\nSec-WebSocket-Accept: ([^\r]*)\r\n", head)
    if not head.startswith(b"HTTP/1.1 101 ") or accept is None or accept[1] != _ACCEPT:
        raise SystemExit(f"not a valid 101 response: {head[:200]!r}")
    if transport.written[-1][:1] != b"\x88" or not transport.closed:
        raise SystemExit(f"no close frame back, or not closed: {transport.written!r}")


async def measure(app_name: str, count: int, rounds: int, figures: list[float]) -> None:
    """CPU microseconds per handshake (the process's: worker threads too) into ``figures``,
    one per round of ``count`` handshakes."""
    from stargate.server import Server
    from stargate.server.channel import HttpChannel

    opts = Options("127.0.0.1", 0, "echo", False, upgrade_on_loop=app_name == "pyramid-loop")
    app = _stargate_routes(opts) if app_name == "routes" else _pyramid_app(opts)
    server = Server(app, _stargate_config(opts))
    await server.start()
    request = upgrade_request("/" if app_name == "routes" else "/ws")
    threaded = app_name == "pyramid"  # the decision comes back from a worker thread

    async def connections(n: int) -> None:
        transports = []
        for _ in range(n):
            transport = FakeTransport()
            channel = HttpChannel(server.state)
            transport.protocol = channel
            channel.connection_made(transport)
            channel.data_received(request)
            transports.append(transport)
        while threaded and not all(t.written for t in transports):
            await asyncio.sleep(0.001)  # the loop waits in epoll, as a server's would
        await asyncio.sleep(0)  # the handlers' tasks run
        for transport in transports:
            protocol = transport.get_protocol()
            assert isinstance(protocol, asyncio.BufferedProtocol)  # as the loop reads:
            memoryview(protocol.get_buffer(-1))[: len(_CLOSE)] = _CLOSE
            protocol.buffer_updated(len(_CLOSE))
            check(transport)
            protocol.connection_lost(None)
            transport.protocol = None  # as uvloop's transports do after connection_lost
        await asyncio.sleep(0)

    await connections(200)  # warm-up: imports, caches, the interpreter's specialisation
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count // 100):
            await connections(100)
        figures.append((time.process_time() - start) / (count // 100 * 100) * 1e6)
    await server.shutdown(1.0)


def instructions(app_name: str, small: int, large: int) -> float:
    """Instructions per handshake: callgrind's totals at two counts, their difference."""
    totals = []
    for count in (small, large):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, os.path.abspath(__file__), "--apps", app_name]
        command += ["--count", str(count), "--rounds", "1"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"callgrind run failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
        totals.append(int(found[1]))
    return (totals[1] - totals[0]) / (large - small)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--apps", default=",".join(APPS), help="of: %(default)s")
    parser.add_argument("--count", type=int, default=5000, help="handshakes per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind's callgrind)"
    )
    args = parser.parse_args(argv)
    apps = args.apps.split(",")
    if unknown := set(apps) - set(APPS):
        parser.error(f"unknown app(s): {', '.join(sorted(unknown))}")
    for app_name in apps:
        if args.instructions:
            n = instructions(app_name, 500, 1500)
            print(f"{app_name:13} {n / 1000:8.1f}k instructions per handshake")
            continue
        figures: list[float] = []
        run(measure(app_name, args.count, args.rounds, figures))
        print(
            f"{app_name:13} {statistics.median(figures):6.1f} µs of CPU per handshake "
            f"(median of {len(figures)} rounds of {args.count // 100 * 100}; "
            f"fastest {min(figures):.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
