"""Group fan-out benchmark: one publisher, many subscribers, stargate against websockets.

    python bench/bench_groups.py [--subscribers 1000,10000] [--servers stargate,websockets]
                                 [--size 64] [--deliveries 2000000] [--clients 4]
                                 [--rounds 1] [--loop uvloop|asyncio] [--binary] [--json FILE]

For each subscriber count and each server, in a fresh server process:

* ``--clients`` client processes open the subscribers: real TCP connections that perform a
  RFC 6455 handshake (no extension offered, so no compression on either side), then read
  and discard on an epoll loop, counting bytes (raw sockets: a subscriber costs the harness
  almost nothing);
* once the server counts every subscriber, one publisher task in the server sends
  ``deliveries / subscribers`` messages of ``--size`` bytes, one at a time with an
  ``await asyncio.sleep(0)`` between two, to every subscriber:
  stargate with ``Group.send`` (the frame encoded once per broadcast), websockets with its
  ``broadcast()`` (which frames the message once per connection);
* the server's time runs from the first send until every message is written to the kernel
  (every transport's buffer empty); the clients check that every subscriber received every
  byte, and the end-to-end time runs to the last byte read by the last client.

Reported: deliveries per second (messages x subscribers / server time), the end-to-end
figure, the server process's peak RSS (``ru_maxrss``, connections included), and the ratio
stargate / websockets.  RLIMIT_NOFILE is raised to its hard limit in every process; the
subscriber count must stay below it.  Keepalive pings are off in both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve()
HOST = "127.0.0.1"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def frame_size(size: int) -> int:
    return size + (2 if size <= 125 else 4 if size < 65536 else 10)


# -- server processes ---------------------------------------------------------------------------


class Target:
    """What the publisher needs of a server: count, publish one message, bytes buffered."""

    count: Callable[[], int]
    publish: Callable[[str | bytes], None]
    threaded: Callable[[str | bytes], object]
    buffered: Callable[[], int]


async def stargate_target(port: int, subscribers: int) -> Target:
    from stargate.groups import Hub
    from stargate.server import Routes, Server, ServerConfig, WebSocket, WebSocketOptions

    hub = Hub()
    group = hub.group("bench")

    async def member(ws: WebSocket) -> None:
        group.add(ws)  # the handler returns; the group keeps the connection

    options = WebSocketOptions(ping_interval=None, compression=None)
    config = ServerConfig(
        host=HOST, port=port, max_connections=subscribers + 1000, websocket=options
    )
    server = Server(Routes(default=member), config)
    await server.start()
    target = Target()
    target.count = lambda: len(group)
    target.publish = group.send
    target.threaded = group.send  # callable from any thread

    def buffered() -> int:
        return sum(
            ws._transport.get_write_buffer_size() for ws in group if ws._transport is not None
        )

    target.buffered = buffered
    target.server = server  # type: ignore[attr-defined]  # kept alive
    return target


async def websockets_target(port: int, subscribers: int) -> Target:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    server = await serve(handler, HOST, port, ping_interval=None, compression=None, backlog=1024)
    target = Target()
    target.count = lambda: len(connections)
    target.publish = lambda message: broadcast(connections, message)
    loop = asyncio.get_running_loop()
    # broadcast() must run on the loop: from a thread, one call_soon_threadsafe per message.
    target.threaded = lambda message: loop.call_soon_threadsafe(broadcast, connections, message)
    target.buffered = lambda: sum(c.transport.get_write_buffer_size() for c in connections)
    target.server = server  # type: ignore[attr-defined]
    return target


TARGETS: dict[str, Callable[[int, int], Awaitable[Target]]] = {
    "stargate": stargate_target,
    "websockets": websockets_target,
}


def publish_from_thread(
    threaded: Callable[[str | bytes], object], message: str | bytes, count: int
) -> None:
    for _ in range(count):
        threaded(message)


async def serve_commands(kind: str, port: int, subscribers: int) -> None:
    """Server mode: commands on stdin (``count``, ``publish N SIZE BINARY``, ``quit``),
    answers on stdout."""
    loop = asyncio.get_running_loop()
    target = await TARGETS[kind](port, subscribers)
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    print("listening", flush=True)
    while True:
        command, *args = (await commands.get()).split()
        if command == "count":
            print(target.count(), flush=True)
        elif command == "publish":
            count, size, binary = int(args[0]), int(args[1]), args[2] == "1"
            message: str | bytes = b"b" * size if binary else "t" * size
            publish = target.publish
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.monotonic()
            if args[3] == "loop":  # a task on the loop, one message per loop iteration
                for _ in range(count):
                    publish(message)
                    await asyncio.sleep(0)
            else:  # a thread (a WSGI view), as fast as it can
                await asyncio.to_thread(publish_from_thread, target.threaded, message, count)
                marker = loop.create_future()
                loop.call_soon_threadsafe(marker.set_result, None)  # after what was posted
                await marker
            sent = time.monotonic()
            while target.buffered():
                await asyncio.sleep(0.0005)
            end = time.monotonic()
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            print(f"done {start} {sent} {end} {after.ru_maxrss} {cpu}", flush=True)
        elif command == "quit":
            return


# -- client processes ---------------------------------------------------------------------------


def run_client(port: int, connections: int, expected: int, timeout: float) -> None:
    """Client mode: ``connections`` subscribers; reports ``ready``, then ``done T OK``."""
    raise_nofile()
    request = (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    remaining: dict[int, int] = {}
    socks: dict[int, socket.socket] = {}
    for _ in range(connections):
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("connection closed during the handshake")
            head += chunk
        response, _, rest = head.partition(b"\r\n\r\n")
        if not response.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {response[:80]!r}")
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        remaining[sock.fileno()] = expected - len(rest)
    print("ready", flush=True)
    poller = select.epoll()
    for fd in socks:
        poller.register(fd, select.EPOLLIN)
    buffer = bytearray(1 << 16)
    last = 0.0
    errors = 0
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            try:
                n = socks[fd].recv_into(buffer)
            except BlockingIOError:
                continue
            if n == 0:
                errors += 1
                n = remaining[fd]
            left = remaining[fd] = remaining[fd] - n
            if left <= 0:
                if left < 0:
                    errors += 1
                del remaining[fd]
                poller.unregister(fd)
                last = time.monotonic()
    errors += len(remaining)
    print(f"done {last} {errors}", flush=True)
    for sock in socks.values():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()


# -- the orchestrator ---------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    publisher: str
    subscribers: int
    messages: int
    size: int
    server_seconds: float
    end_to_end_seconds: float
    peak_rss_mib: float
    server_cpu_seconds: float
    errors: int

    @property
    def deliveries_per_second(self) -> float:
        return self.messages * self.subscribers / self.server_seconds

    @property
    def end_to_end_per_second(self) -> float:
        return self.messages * self.subscribers / self.end_to_end_seconds

    @property
    def cpu_us_per_delivery(self) -> float:
        return self.server_cpu_seconds / (self.messages * self.subscribers) * 1e6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def readline(process: subprocess.Popen[str], what: str, timeout: float = 120.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise SystemExit(f"timed out waiting for {what}")
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"process ended while waiting for {what} (exit {process.wait()})")
    return line.strip()


def pinning(args: argparse.Namespace) -> tuple[list[str], list[str]] | None:
    """``taskset`` prefixes: the server on CPU 0, the clients on the others (2+ CPUs)."""
    cpus = os.cpu_count() or 1
    if args.no_pin or cpus < 2 or not Path("/usr/bin/taskset").exists():
        return None
    return ["taskset", "-c", "0"], ["taskset", "-c", f"1-{cpus - 1}"]


def run_case(args: argparse.Namespace, server: str, subscribers: int, publisher: str) -> Result:
    messages = max(10, args.deliveries // subscribers)
    port = free_port()
    python = [sys.executable, str(HERE)]
    pin_server, pin_clients = pinning(args) or ([], [])
    srv = subprocess.Popen(
        [*pin_server, *python, "--serve", server, "--port", str(port), "--loop", args.loop,
         "--subscribers", str(subscribers)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    clients: list[subprocess.Popen[str]] = []
    try:
        assert readline(srv, "the server") == "listening"
        shares = [subscribers // args.clients] * args.clients
        shares[0] += subscribers - sum(shares)
        expected = messages * frame_size(args.size)
        for share in shares:
            command = [*pin_clients, *python, "--client", "--port", str(port)]
            command += ["--connections", str(share), "--expected", str(expected)]
            clients.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        for client in clients:
            assert readline(client, "the clients' handshakes") == "ready"
        assert srv.stdin is not None
        for _ in range(200):
            srv.stdin.write("count\n")
            srv.stdin.flush()
            if int(readline(srv, "the count")) == subscribers:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the server never counted every subscriber")
        time.sleep(0.5)  # let the handshakes' garbage settle
        srv.stdin.write(f"publish {messages} {args.size} {int(args.binary)} {publisher}\n")
        srv.stdin.flush()
        _, start, _sent, end, peak, cpu = readline(srv, "the publisher", 600).split()
        lasts, errors = [], 0
        for client in clients:
            _, last, errs = readline(client, "the clients", 600).split()
            lasts.append(float(last))
            errors += int(errs)
        srv.stdin.write("quit\n")
        srv.stdin.flush()
        srv.wait(30)
        return Result(
            server,
            publisher,
            subscribers,
            messages,
            args.size,
            float(end) - float(start),
            max(lasts) - float(start),
            int(peak) / 1024,
            float(cpu),
            errors,
        )
    finally:
        for process in (*clients, srv):
            if process.poll() is None:
                process.kill()
                process.wait()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("websockets", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="1000,10000", help="counts, comma separated")
    parser.add_argument("--servers", default="stargate,websockets")
    parser.add_argument("--size", type=int, default=64, help="message bytes (64)")
    parser.add_argument("--deliveries", type=int, default=2_000_000, help="per case (2M)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument("--rounds", type=int, default=1, help="median of this many runs")
    parser.add_argument(
        "--publishers",
        default="loop,thread",
        help="loop: a task, one message per loop iteration; thread: a thread as fast as it can",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--binary", action="store_true", help="binary messages (text)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--serve", choices=sorted(TARGETS), help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client:
        run_client(args.port, args.connections, args.expected, timeout=600)
        return
    if args.serve:
        raise_nofile()
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(serve_commands(args.serve, args.port, int(args.subscribers)))
        else:
            asyncio.run(serve_commands(args.serve, args.port, int(args.subscribers)))
        return

    limit = raise_nofile()
    counts = [int(n) for n in args.subscribers.split(",")]
    if max(counts) + 100 > limit:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {limit} is too low for {max(counts)}")
    servers = args.servers.split(",")
    publishers = args.publishers.split(",")
    print(
        f"# {versions()} loop={args.loop} size={args.size} CPUs={os.cpu_count()} "
        f"pinned={pinning(args) is not None}",
        flush=True,
    )
    results: list[Result] = []
    for subscribers in counts:
        for publisher in publishers:
            per_server: dict[str, list[Result]] = {s: [] for s in servers}
            for _ in range(args.rounds):
                for server in servers:  # interleaved
                    result = run_case(args, server, subscribers, publisher)
                    per_server[server].append(result)
                    print(
                        f"  {server:>10} {publisher:>6} {subscribers:>6} subs: "
                        f"{result.deliveries_per_second:>12,.0f} deliveries/s, "
                        f"{result.cpu_us_per_delivery:.2f} us CPU each "
                        f"(end to end {result.end_to_end_per_second:,.0f}/s), "
                        f"peak RSS {result.peak_rss_mib:.0f} MiB, errors {result.errors}",
                        flush=True,
                    )
            for server in servers:
                runs = sorted(per_server[server], key=lambda r: r.deliveries_per_second)
                results.append(runs[len(runs) // 2])

    print()
    print(
        "| subscribers | publisher | server | messages | deliveries/s | server CPU/delivery "
        "| end to end/s | peak RSS | errors |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.subscribers:,} | {r.publisher} | {r.server} | {r.messages:,} | "
            f"{r.deliveries_per_second:,.0f} | {r.cpu_us_per_delivery:.2f} us | "
            f"{r.end_to_end_per_second:,.0f} | {r.peak_rss_mib:.0f} MiB | {r.errors} |"
        )
    if "stargate" in servers and "websockets" in servers:
        print()
        for subscribers in counts:
            for publisher in publishers:
                by = {
                    r.server: r
                    for r in results
                    if r.subscribers == subscribers and r.publisher == publisher
                }
                mine, theirs = by["stargate"], by["websockets"]
                print(
                    f"{subscribers:,} subscribers, {publisher} publisher: stargate / websockets "
                    f"= {mine.deliveries_per_second / theirs.deliveries_per_second:.2f}x "
                    f"deliveries/s, {theirs.cpu_us_per_delivery / mine.cpu_us_per_delivery:.2f}x "
                    f"less CPU per delivery, peak RSS {mine.peak_rss_mib:.0f} vs "
                    f"{theirs.peak_rss_mib:.0f} MiB"
                )
    if args.json:
        data = {
            "versions": versions(),
            "args": {k: v for k, v in vars(args).items() if v is not None},
            "results": [
                {
                    **asdict(r),
                    "deliveries_per_second": r.deliveries_per_second,
                    "cpu_us_per_delivery": r.cpu_us_per_delivery,
                }
                for r in results
            ],
        }
        Path(args.json).write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
