"""Echo benchmark: ``stargate echo`` against echo servers on other libraries, same client.

    python bench/bench_echo.py [--servers stargate,websockets,picows,aiohttp] [--duration 5]
                               [--rounds 3] [--quick] [--json FILE]

Two measurements per server, each repeated ``--rounds`` times with the servers interleaved
(a fresh server process every time), medians reported:

* throughput: 100 connections, each keeping 16 binary messages of 64 bytes in flight (16 sent
  at once, then one more for every echo), counted over ``--duration`` seconds after a warm-up;
* latency: 1 connection, 1 message in flight, median and p99 round trip in microseconds.

Every server runs in its own process (stargate via ``python -m stargate.cli echo``, the others
via ``bench/echo_servers.py``); the client is another process, the same for every server.
The client is picows (C parser) plus precomputed, already masked frames written with one
``transport.write`` per batch of echoes read, so that it costs far less per message than any
server: check the ``client CPU`` column, a server is only measured fairly while the client
stays under a core.  On a machine with at least two CPUs the server is pinned to CPU 0 and
the client to CPU 1 (``--no-pin`` to let the scheduler decide), so each owns one core.

Echoes are checked against what was sent: every echo of the latency run, and one in
``--check-every`` of the throughput run (payloads are distinct per connection and per slot in
a ring longer than the window, so a lost, duplicated, reordered or corrupted echo shows).

Also reported: the server's CPU time over the throughput window, as a share of one core and
per echo; on a busy machine the per-echo figure is steadier than echoes/s.

Ratios: ``stargate/x`` throughput, ``x/stargate`` server CPU per echo and ``x/stargate``
median latency: above 1 means stargate is better.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALL_SERVERS = ("stargate", "websockets", "picows", "aiohttp")
DEFAULT_SERVERS = "stargate,websockets,picows,aiohttp"
HOST = "127.0.0.1"


# -- parameters and results (plain data, passed to the client process as JSON) ----------------


@dataclass
class ClientParams:
    port: int
    server_pid: int
    connections: int = 100
    in_flight: int = 16
    size: int = 64
    warmup: float = 1.0
    duration: float = 5.0
    latency_warmup: int = 500
    round_trips: int = 5000
    check_every: int = 8
    cpu: int | None = None


@dataclass
class ClientResult:
    echoes_per_s: float = 0.0
    echoes: int = 0
    elapsed: float = 0.0
    server_cpu: float | None = None  # fraction of one core during the throughput window
    client_cpu: float = 0.0
    latency_median_us: float = 0.0
    latency_p99_us: float = 0.0
    latency_server_cpu: float | None = None
    checked: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)  # the first few

    def fail(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(message)


# -- the client (runs in its own process) -------------------------------------------------


def _frame_header(size: int) -> bytes:
    """FIN + binary opcode, MASK bit and the payload length (RFC 6455 section 5.2)."""
    if size < 126:
        return bytes((0x82, 0x80 | size))
    if size < 65536:
        return bytes((0x82, 0x80 | 126)) + size.to_bytes(2, "big")
    return bytes((0x82, 0x80 | 127)) + size.to_bytes(8, "big")


def _masked_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    mask = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(
        len(payload), "big"
    )
    return _frame_header(len(payload)) + key + masked


class Ring:
    """``slots`` distinct random payloads and their masked frames, laid out twice in a row so
    that any ``n <= slots`` consecutive frames from any slot are one slice of ``wire``."""

    def __init__(self, slots: int, size: int) -> None:
        self.slots = slots
        self.payloads = [os.urandom(size) for _ in range(slots)]
        frames = [_masked_frame(p) for p in self.payloads]
        self.frame_size = len(frames[0])
        self.wire = b"".join(frames * 2)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), Linux only."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client_main(params: ClientParams) -> ClientResult:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    binary = WSMsgType.BINARY
    result = ClientResult()
    url = f"ws://{HOST}:{params.port}/"

    class Base(WSListener):
        def __init__(self, ring: Ring) -> None:
            self.ring = ring
            self.wire = ring.wire
            self.frame_size = ring.frame_size
            self.slots = ring.slots
            self.sent = 0
            self.received = 0
            self.closing = False
            self.raw: asyncio.Transport | None = None
            self.ws: WSTransport | None = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.ws = transport
            self.raw = transport.underlying_transport

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if not self.closing:
                result.fail("the server dropped the connection")

        def write(self, n: int) -> None:
            """Send the next ``n`` frames of the ring in one write."""
            start = (self.sent % self.slots) * self.frame_size
            assert self.raw is not None
            self.raw.write(self.wire[start : start + n * self.frame_size])
            self.sent += n

        def check(self, frame: WSFrame, index: int) -> None:
            result.checked += 1
            if frame.get_payload_as_bytes() != self.ring.payloads[index % self.slots]:
                result.fail(f"echo #{index} differs from what was sent")

        def other_frame(self, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                if not self.closing:
                    result.fail(f"server closed: {frame.get_close_code()!r}")
            elif frame.msg_type == WSMsgType.PING:
                pass  # picows answers pings itself
            else:
                result.fail(f"unexpected {frame.msg_type!r} frame")

        async def close(self) -> None:
            self.closing = True
            ws = self.ws
            if ws is None or ws.is_disconnected:
                return
            ws.send_close(WSCloseCode.OK)
            try:
                await asyncio.wait_for(ws.wait_disconnected(), 2.0)
            except TimeoutError:
                result.fail("server did not close the connection after the close")
                ws.disconnect(graceful=False)

    class Pipelined(Base):
        """Keeps ``in_flight`` messages outstanding: one more for every echo, written once
        per read (after the last complete frame of what was read)."""

        running = False
        check_mask = 0

        def __init__(self, ring: Ring) -> None:
            super().__init__(ring)
            self.pending = 0

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != binary:
                self.other_frame(frame)
                return
            k = self.received
            if not k & Pipelined.check_mask:
                self.check(frame, k)
            self.received = k + 1
            self.pending += 1
            if frame.last_in_buffer and Pipelined.running:
                n, self.pending = self.pending, 0
                self.write(n)

    class PingPong(Base):
        """One message in flight; records each round trip from send to echo."""

        def __init__(self, ring: Ring, total: int, done: asyncio.Future[None]) -> None:
            super().__init__(ring)
            self.total = total
            self.done = done
            self.times: list[int] = []
            self.t0 = 0

        def send_next(self) -> None:
            self.t0 = time.perf_counter_ns()
            self.write(1)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            super().on_ws_disconnected(transport)
            if not self.done.done():
                self.done.set_result(None)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            t1 = time.perf_counter_ns()
            if frame.msg_type != binary:
                self.other_frame(frame)
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.times.append(t1 - self.t0)
            self.check(frame, self.received)
            self.received += 1
            if self.received < self.total:
                self.send_next()
            elif not self.done.done():
                self.done.set_result(None)

    loop = asyncio.get_running_loop()

    # Latency: 1 connection, 1 in flight.
    total = params.latency_warmup + params.round_trips
    done: asyncio.Future[None] = loop.create_future()
    ring = Ring(17, params.size)
    _, listener = await ws_connect(lambda: PingPong(ring, total, done), url)
    pingpong = cast(PingPong, listener)
    cpu0 = _cpu_seconds(params.server_pid)
    t0 = time.perf_counter()
    pingpong.send_next()
    await asyncio.wait_for(done, 60 + total * 0.01)
    t1 = time.perf_counter()
    cpu1 = _cpu_seconds(params.server_pid)
    if cpu0 is not None and cpu1 is not None:
        result.latency_server_cpu = (cpu1 - cpu0) / (t1 - t0)
    await pingpong.close()
    times = sorted(pingpong.times[params.latency_warmup :])
    if times:
        result.latency_median_us = statistics.median(times) / 1000
        result.latency_p99_us = times[min(len(times) - 1, int(len(times) * 0.99))] / 1000

    # Throughput: many connections, several in flight each.
    Pipelined.check_mask = params.check_every - 1  # a power of two, checked by the driver
    slots = params.in_flight + 1
    listeners: list[Pipelined] = []
    gate = asyncio.Semaphore(20)

    async def connect() -> None:
        async with gate:
            _, listener = await ws_connect(lambda: Pipelined(Ring(slots, params.size)), url)
        listeners.append(cast(Pipelined, listener))

    await asyncio.gather(*(connect() for _ in range(params.connections)))
    Pipelined.running = True
    for listener in listeners:
        listener.write(params.in_flight)
    await asyncio.sleep(params.warmup)
    n0 = sum(listener.received for listener in listeners)
    c0, s0, t0 = time.process_time(), _cpu_seconds(params.server_pid), time.perf_counter()
    await asyncio.sleep(params.duration)
    n1 = sum(listener.received for listener in listeners)
    c1, s1, t1 = time.process_time(), _cpu_seconds(params.server_pid), time.perf_counter()
    Pipelined.running = False
    result.echoes = n1 - n0
    result.elapsed = t1 - t0
    result.echoes_per_s = result.echoes / result.elapsed
    result.client_cpu = (c1 - c0) / result.elapsed
    if s0 is not None and s1 is not None:
        result.server_cpu = (s1 - s0) / result.elapsed
    if min(listener.received for listener in listeners) == 0:
        result.fail("a connection got no echo at all")
    # Let what is in flight come back: every message sent must have been echoed.
    deadline, missing = time.monotonic() + 5.0, 0
    while time.monotonic() < deadline:
        missing = sum(listener.sent - listener.received for listener in listeners)
        if not missing:
            break
        await asyncio.sleep(0.02)
    else:
        result.fail(f"{missing} echoes missing 5 s after the last message was sent")
    await asyncio.gather(*(listener.close() for listener in listeners))
    return result


def client_process(params: ClientParams) -> None:
    """Entry point of the client process: run, print the result as JSON."""
    if params.cpu is not None:
        os.sched_setaffinity(0, {params.cpu})
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_client_main(params))
    print(json.dumps(asdict(result)), flush=True)


# -- the driver -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def server_command(name: str, port: int) -> list[str]:
    if name == "stargate":
        return [
            sys.executable, "-m", "stargate.cli", "echo",
            "--host", HOST, "--port", str(port),
            "--ping-interval", "0", "--log-level", "warning",
        ]  # fmt: skip
    script = str(HERE / "echo_servers.py")
    return [sys.executable, script, name, "--host", HOST, "--port", str(port)]


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def _wait_for_port(started: Started, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"server exited with {started.proc.returncode}: {_tail(started)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, started.port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen within {timeout} s: {_tail(started)}")


def _tail(started: Started) -> str:
    return started.log.read_text(errors="replace")[-2000:]


def _first_line(started: Started) -> str:
    lines = started.log.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(name: str, cpu: int | None, logdir: Path) -> Iterator[Started]:
    port = free_port()
    log = logdir / f"{name}-{port}.log"

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            server_command(name, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
            # A session of its own: where the kernel groups CPU time per session
            # (autogroup), the server competes with other work as a peer, not as a share
            # of the benchmark's session.
            start_new_session=True,
        )
    started = Started(proc, port, log)
    try:
        _wait_for_port(started)
        yield started
    finally:
        _stop(proc)


def run_client(params: ClientParams) -> ClientResult:
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--client", json.dumps(asdict(params))]
    timeout = params.warmup + params.duration + 120
    done = subprocess.run(
        command,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
        start_new_session=True,  # as the server: scheduled as a peer of other sessions
    )
    if done.returncode != 0:
        raise RuntimeError(f"client failed ({done.returncode}): {done.stderr.decode()[-3000:]}")
    return ClientResult(**json.loads(done.stdout.decode().strip().splitlines()[-1]))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "stargate source": _stargate_source()}
    for dist in ("stargate", "websockets", "picows", "aiohttp", "uvloop", "aiofastnet"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _stargate_source() -> str:
    """The commit stargate runs from, and whether its sources differ from it."""
    try:
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, cwd=ROOT, check=True
            )
            .stdout.decode()
            .strip()
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in src/" if dirty else "")


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _fmt_us(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _fmt_cpu(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def summarize(runs: dict[str, list[ClientResult]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():

        def med(values: list[float | None]) -> float | None:
            got = [v for v in values if v is not None]
            return statistics.median(got) if got else None

        summary[name] = {
            "echoes_per_s": med([r.echoes_per_s for r in results]),
            "echoes_per_s_runs": [round(r.echoes_per_s) for r in results],
            "latency_median_us": med([r.latency_median_us for r in results]),
            "latency_median_us_runs": [round(r.latency_median_us, 1) for r in results],
            "latency_p99_us": med([r.latency_p99_us for r in results]),
            "server_cpu": med([r.server_cpu for r in results]),
            # Server CPU time per echo: what the server spends, whatever else the machine does.
            "server_us_per_echo": med(
                [
                    1e6 * r.server_cpu / r.echoes_per_s if r.server_cpu and r.echoes_per_s else None
                    for r in results
                ]
            ),
            "client_cpu": med([r.client_cpu for r in results]),
            "latency_server_cpu": med([r.latency_server_cpu for r in results]),
            "checked": sum(r.checked for r in results),
            "error_count": sum(r.error_count for r in results),
            "errors": [e for r in results for e in r.errors],
        }
    base = summary.get("stargate")
    for entry in summary.values():
        entry["throughput_ratio"] = (
            base["echoes_per_s"] / entry["echoes_per_s"] if base and entry["echoes_per_s"] else None
        )
        entry["cpu_per_echo_ratio"] = (
            entry["server_us_per_echo"] / base["server_us_per_echo"]
            if base and base["server_us_per_echo"] and entry["server_us_per_echo"]
            else None
        )
        entry["latency_ratio"] = (
            entry["latency_median_us"] / base["latency_median_us"]
            if base and base["latency_median_us"]
            else None
        )
    return summary


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'server':<11} {'echoes/s':>9} {'stargate/x':>10} {'srv CPU':>7} {'cli CPU':>7}"
        f" {'srv µs/echo':>11} {'x/stargate':>10} {'lat med µs':>10} {'lat p99 µs':>10}"
        f" {'x/stargate':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, e in summary.items():
        print(
            f"{name:<11} {e['echoes_per_s']:>9,.0f} {_fmt_ratio(e['throughput_ratio']):>10}"
            f" {_fmt_cpu(e['server_cpu']):>7} {_fmt_cpu(e['client_cpu']):>7}"
            f" {_fmt_us(e['server_us_per_echo']):>11} {_fmt_ratio(e['cpu_per_echo_ratio']):>10}"
            f" {e['latency_median_us']:>10.1f} {e['latency_p99_us']:>10.1f}"
            f" {_fmt_ratio(e['latency_ratio']):>10}"
        )
    print(
        "Above 1, stargate is better: stargate/x = stargate's echoes/s over x's; x/stargate = x's"
        " server CPU per echo,\nthen x's median latency, over stargate's.  CPU: share of one"
        " core during the throughput window\n(single-threaded servers: near 100% means"
        " server-bound); srv µs/echo: server CPU time per echo."
    )


def measure(
    name: str, template: ClientParams, server_cpu: int | None, logdir: Path
) -> tuple[ClientResult, str]:
    """Start a fresh ``name`` server, run the client against it, stop it."""
    with running_server(name, server_cpu, logdir) as started:
        params = replace(template, port=started.port, server_pid=started.proc.pid)
        try:
            result = run_client(params)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            result = ClientResult()
            result.fail(f"client failed: {exc}")
        return result, _first_line(started) or name


def _progress(r: int, name: str, result: ClientResult) -> None:
    errors = f"  {result.error_count} ERRORS: {result.errors[:3]}" if result.errors else ""
    print(
        f"  round {r + 1} {name:<11} {result.echoes_per_s:>10,.0f} echoes/s"
        f"  server {_fmt_cpu(result.server_cpu):>5} client {_fmt_cpu(result.client_cpu):>5}"
        f"  latency {result.latency_median_us:.1f} µs (p99 {result.latency_p99_us:.1f}){errors}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"({DEFAULT_SERVERS})")
    parser.add_argument("--duration", type=float, help="seconds measured per run (5)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (1)")
    parser.add_argument("--rounds", type=int, help="runs per server, interleaved (3)")
    parser.add_argument("--round-trips", type=int, help="latency round trips per run (5000)")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="message bytes (64)")
    parser.add_argument("--check-every", type=int, default=8, help="check 1 echo in N (8)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke test")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--json", type=Path, help="write parameters and results here")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.client:
        client_process(ClientParams(**json.loads(args.client)))
        return 0

    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not servers or set(servers) - set(ALL_SERVERS):
        parser.error(f"--servers: pick from {','.join(ALL_SERVERS)}")
    if args.check_every < 1 or args.check_every & (args.check_every - 1):
        parser.error("--check-every must be a power of two")
    rounds = args.rounds or (1 if args.quick else 3)
    round_trips = args.round_trips or (1000 if args.quick else 5000)
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    server_cpu, client_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    template = ClientParams(
        port=0,
        server_pid=0,
        connections=args.connections,
        in_flight=args.in_flight,
        size=args.size,
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0),
        duration=args.duration or (2.0 if args.quick else 5.0),
        round_trips=round_trips,
        latency_warmup=min(500, round_trips // 5),
        check_every=args.check_every,
        cpu=client_cpu,
    )

    load = os.getloadavg()
    versions = _versions()
    source = versions["stargate source"]
    print(
        f"echo benchmark: {args.connections} connections x {args.in_flight} in flight x "
        f"{args.size} B for {template.duration:g} s (+{template.warmup:g} s warm-up); latency "
        f"{round_trips} round trips; {rounds} round(s); {len(cpus)} CPUs, "
        + (f"server on CPU {server_cpu}, client on CPU {client_cpu}" if pin else "not pinned")
        + f"; load average {load[0]:.2f}; stargate at {source}",
        flush=True,
    )
    if load[0] > 0.5:
        print("warning: the machine is not idle; results will be noisy", flush=True)

    runs: dict[str, list[ClientResult]] = {name: [] for name in servers}
    banners: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-echo-") as tmp:
        for r in range(rounds):
            # Interleaved, and each round starts one server later: drift in the machine's
            # load spreads over all servers instead of favouring one.
            for name in servers[r % len(servers) :] + servers[: r % len(servers)]:
                result, banners[name] = measure(name, template, server_cpu, Path(tmp))
                runs[name].append(result)
                _progress(r, name, result)

    summary = summarize(runs)
    print()
    print_table(summary)
    for name, banner in banners.items():
        print(f"  {name}: {banner}")
    failed = [name for name, entry in summary.items() if entry["error_count"]]
    for name in failed:
        entry = summary[name]
        print(f"{name}: {entry['error_count']} error(s), e.g. {entry['errors'][0]}")
    if args.json:
        report = {
            "parameters": {
                **{k: v for k, v in asdict(template).items() if k not in ("port", "server_pid")},
                "rounds": rounds,
                "pinned": pin,
                "cpus": len(cpus),
                "load_average": load,
            },
            "versions": versions,
            "servers": banners,
            "summary": summary,
            "runs": {name: [asdict(r) for r in results] for name, results in runs.items()},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
