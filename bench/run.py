"""Every row of issue 13's table, every server, one run: ``python bench/run.py [--quick]``.

Servers (columns): stargate (uvloop, C accelerator), stargate with its pure-Python
fallback, picows (uvloop; the baseline of the ratios), websockets, aiohttp, Node's ``ws``
when ``node`` and ``npm install ws`` work here, and a C reference (``bench/ref_server.c``:
one thread on epoll, no interpreter; the floor the issue's 1 MiB goal is measured
against).  Each is one process started fresh for every measurement
(``bench/echo_servers.py``, ``bench/ws_server.js``, ``ref_server``).

The client is ``bench/loadgen.c``, compiled at run time with the system compiler: one
thread on epoll, frames built once, every echo and delivery checked against what was sent.
Server and client are pinned to their own CPU (``--no-pin`` to let the scheduler decide).
For each row and server the figures are the medians of ``--rounds`` runs, the servers
interleaved in a rotating order; the server's CPU time (``/proc/PID/stat`` utime + stime)
over the measured window gives the µs per message, the figure that survives a busy
machine best.  See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
BASELINE = "picows"
NODE_WS_VERSION = "8"


# -- the servers (columns) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One column: how to start it for an app (``echo``, ``broadcast`` or ``pyramid``)."""

    name: str
    title: str
    deflate: bool = True  # implements permessage-deflate
    pyramid: bool = False  # has a Pyramid row (stargate only)
    #: The only rows it takes part in (the handshake floors), or None for every row.
    only: frozenset[str] | None = None

    def command(self, app: str, deflate: bool, port: int, ctx: Context) -> list[str]:
        if self.name == "c-reference":
            assert ctx.c_reference is not None
            assert not deflate and not app.startswith("pyramid")
            return [str(ctx.c_reference), "--host", HOST, "--port", str(port), "--app", app]
        if self.name.startswith("floor"):
            assert app == "echo" and not deflate
            command = [sys.executable, str(HERE / "handshake_floor.py"), "--host", HOST]
            command += ["--port", str(port)]
            return command + (["--validate", "--task"] if self.name == "floor-checked" else [])
        if self.name == "node-ws":
            assert ctx.node_modules is not None
            command = ["node", str(HERE / "ws_server.js"), "--host", HOST, "--port", str(port)]
            command += ["--app", "echo" if app.startswith("pyramid") else app]
            return command + (["--deflate"] if deflate else [])
        kind = self.name.removesuffix("-pure")
        extra = []
        if app == "pyramid-loop":  # the upgrade decided on the event loop, no thread hop
            app, extra = "pyramid", ["--upgrade-on-loop"]
        if app == "pyramid":
            kind, app = "stargate-pyramid", "echo"
        command = [sys.executable, str(HERE / "echo_servers.py"), kind, "--host", HOST]
        command += ["--port", str(port), "--app", app, *extra]
        if deflate:
            command.append("--deflate")
        if self.name.endswith("-pure"):
            command.append("--pure-python")
        return command


SERVERS = {
    s.name: s
    for s in (
        Server("stargate", "stargate", pyramid=True),
        Server("stargate-pure", "stargate (pure-Python fallback)", pyramid=True),
        Server("picows", "picows (uvloop)", deflate=False),
        Server("websockets", "websockets"),
        Server("aiohttp", "aiohttp"),
        Server("node-ws", "node ws"),
        Server("c-reference", "C reference (epoll)", deflate=False),
        # References for the handshake row, not servers (bench/handshake_floor.py): what
        # uvloop and the kernel cost when Python does next to nothing, and when it does
        # only the least every Python server must (check the request, start a handler).
        Server("floor", "Python floor (uvloop)", deflate=False, only=frozenset({"handshake"})),
        Server(
            "floor-checked",
            "Python floor + checks + task",
            deflate=False,
            only=frozenset({"handshake"}),
        ),
    )
}


# -- the rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    template: str  # the title, formatted with the loadgen options in use
    mode: str  # the loadgen mode, or "idle"
    app: str = "echo"
    deflate: bool = False
    #: loadgen options, full run and --quick
    full: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)

    def options(self, quick: bool) -> dict[str, Any]:
        return dict(self.quick if quick else self.full)

    def title(self, quick: bool) -> str:
        return self.template.format(**self.options(quick))

    def applies_to(self, server: Server) -> bool:
        if server.only is not None and self.key not in server.only:
            return False
        if self.app.startswith("pyramid"):
            return server.pyramid
        return server.deflate or not self.deflate


ROWS = [
    Row(
        "echo64",
        "echo 64 B, {conns} conn x {inflight} in flight: msg/s (server µs/msg)",
        "echo",
        full={"conns": 100, "inflight": 16, "size": 64, "warmup": 1, "duration": 5},
        quick={"conns": 100, "inflight": 16, "size": 64, "warmup": 0.2, "duration": 0.6},
    ),
    Row(
        "echo16k",
        "echo 16 KiB, {conns} x {inflight}: MB/s (server µs/msg)",
        "echo",
        full={"conns": 10, "inflight": 4, "size": 16384, "warmup": 1, "duration": 5},
        quick={"conns": 10, "inflight": 4, "size": 16384, "warmup": 0.2, "duration": 0.6},
    ),
    Row(
        "echo1m",
        "echo 1 MiB, {conns} x {inflight}: MB/s (server µs/msg)",
        "echo",
        full={"conns": 1, "inflight": 2, "size": 1 << 20, "warmup": 1, "duration": 5},
        quick={"conns": 1, "inflight": 2, "size": 1 << 20, "warmup": 0.2, "duration": 0.6},
    ),
    Row(
        "broadcast",
        "broadcast 64 B to {conns:,} subscribers: deliveries/s (server µs each)",
        "broadcast",
        app="broadcast",
        full={"conns": 1000, "size": 64, "window": 32, "batch": 16, "warmup": 1, "duration": 5},
        quick={"conns": 200, "size": 64, "window": 32, "batch": 16, "warmup": 0.2, "duration": 0.6},
    ),
    Row(
        "fanout",
        "fan-out latency, {rate} publishes/s to {conns:,} subscribers: p50 (p99)",
        "fanout",
        app="broadcast",
        full={"conns": 1000, "size": 64, "rate": 5, "count": 25},
        quick={"conns": 200, "size": 64, "rate": 5, "count": 3},
    ),
    Row(
        "handshake",
        "{count:,} handshakes, {concurrency} in flight: per s (server µs each)",
        "handshake",
        full={"count": 10000, "concurrency": 64, "path": "/"},
        quick={"count": 300, "concurrency": 64, "path": "/"},
    ),
    Row(
        "handshake-pyramid",
        "same, through a Pyramid app (WebSocketView at /ws)",
        "handshake",
        app="pyramid",
        full={"count": 10000, "concurrency": 64, "path": "/ws"},
        quick={"count": 300, "concurrency": 64, "path": "/ws"},
    ),
    Row(
        "handshake-pyramid-loop",
        "same, Pyramid with upgrade_on_loop (the decision on the event loop)",
        "handshake",
        app="pyramid-loop",
        full={"count": 10000, "concurrency": 64, "path": "/ws"},
        quick={"count": 300, "concurrency": 64, "path": "/ws"},
    ),
    Row(
        "idle",
        "idle connection, server RSS each ({conns:,} open)",
        "idle",
        full={"conns": 2000, "concurrency": 64},
        quick={"conns": 200, "concurrency": 64},
    ),
    Row(
        "idle-deflate",
        "idle connection with permessage-deflate negotiated ({conns:,} open)",
        "idle",
        deflate=True,
        full={"conns": 2000, "concurrency": 64, "deflate": 1},
        quick={"conns": 200, "concurrency": 64, "deflate": 1},
    ),
    Row(
        "rtt",
        "round trip, 1 conn, {size} B, {count:,} times: p50 (p99)",
        "rtt",
        full={"size": 64, "count": 5000, "warmup-count": 500},
        quick={"size": 64, "count": 300, "warmup-count": 50},
    ),
]
ROWS_BY_KEY = {row.key: row for row in ROWS}


# -- one measurement -------------------------------------------------------------------------


@dataclass
class Sample:
    """What one run of one row against one server gave (loadgen's JSON, plus RSS)."""

    row: str
    server: str
    round: int
    primary: float | None = None  # msg/s, MB/s, deliveries/s, handshakes/s, p50, bytes
    secondary: float | None = None  # server µs per message, or p99
    client_cpu: float | None = None  # share of one core over the window
    server_cpu: float | None = None  # share of one core over the window
    errors: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    loadgen: Path
    c_reference: Path | None  # built only when its column runs
    logdir: Path
    quick: bool
    server_cpu: int | None
    client_cpu: int | None
    node_modules: Path | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` of /proc/PID/status), KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    banner: str = ""


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(ctx: Context, server: Server, row: Row) -> Iterator[Running]:
    """A fresh server process, pinned, in a session of its own, until its ready line."""
    port = free_port()
    log = ctx.logdir / f"{server.name}-{row.key}-{port}.log"
    command = server.command(row.app, row.deflate, port, ctx)
    env = dict(os.environ)
    if ctx.node_modules is not None:
        env["NODE_PATH"] = str(ctx.node_modules)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            preexec_fn=_pin(ctx.server_cpu),
            # Its own session: where Linux groups CPU time per session (autogroup), the
            # server competes with other work as a peer, not as a share of this one.
            start_new_session=True,
        )
    running = Running(proc, port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            text = log.read_text(errors="replace")
            if " on ws://" in text:
                running.banner = next(line for line in text.splitlines() if " on ws://" in line)
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {proc.returncode}: {text[-1500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not start within 30 s: {text[-1500:]}")
            time.sleep(0.02)
        yield running
    finally:
        _stop(proc)


def loadgen_command(
    ctx: Context, mode: str, port: int, pid: int, opts: dict[str, Any]
) -> list[str]:
    command = [str(ctx.loadgen), mode, "--host", HOST, "--port", str(port), "--pid", str(pid)]
    for key, value in opts.items():
        command += [f"--{key}", str(value)]
    return command


def run_loadgen(ctx: Context, command: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        command,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_pin(ctx.client_cpu),
        start_new_session=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            f"loadgen failed ({done.returncode}): {done.stderr.decode(errors='replace')[-1500:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def hold_idle(
    ctx: Context, port: int, pid: int, opts: dict[str, Any], settle: float
) -> tuple[dict[str, Any], int, int]:
    """Open ``opts['conns']`` idle connections; return loadgen's JSON, the number open and
    the server's RSS (KiB) while they are."""
    command = loadgen_command(ctx, "idle", port, pid, opts)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_pin(ctx.client_cpu),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().decode().split()  # "ready OPEN DEFLATED", or JSON
        rss = 0
        if line and line[0] == "ready":
            time.sleep(settle)
            rss = rss_kib(pid)
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        text = out.decode().strip()
        if not text:
            raise RuntimeError(f"loadgen idle failed: {err.decode(errors='replace')[-1500:]}")
        opened = int(line[1]) if line and line[0] == "ready" else 0
        result: dict[str, Any] = json.loads(text.splitlines()[-1])
        return result, opened, rss
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _share(cpu: float | None, elapsed: float) -> float | None:
    if cpu is None or cpu < 0 or elapsed <= 0:
        return None
    return cpu / elapsed


def measure(ctx: Context, server: Server, row: Row, round_: int) -> Sample:
    """Start a fresh server, run the row's client against it, stop it."""
    sample = Sample(row.key, server.name, round_)
    opts = row.options(ctx.quick)
    try:
        with running_server(ctx, server, row) as srv:
            pid = srv.proc.pid
            if row.mode == "idle":
                # Warm up first (code paths, lazy imports, allocator arenas), then measure
                # the RSS growth of N more open connections.
                hold_idle(ctx, srv.port, pid, {**opts, "conns": 50}, settle=0.0)
                time.sleep(0.3)
                before = rss_kib(pid)
                raw, opened, during = hold_idle(ctx, srv.port, pid, opts, settle=0.5)
                raw["rss_before_kib"], raw["rss_during_kib"] = before, during
                if opened:
                    sample.primary = (during - before) * 1024 / opened
            else:
                budget = 120 + float(opts.get("duration", 0)) + float(opts.get("count", 0)) / 50
                raw = run_loadgen(ctx, loadgen_command(ctx, row.mode, srv.port, pid, opts), budget)
            raw["banner"] = srv.banner
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        sample.errors.append(str(exc))
        return sample
    sample.raw = raw
    sample.errors.extend(raw.get("error_samples", []))
    if raw.get("errors", 0) > len(raw.get("error_samples", [])):
        sample.errors.append(f"... {raw['errors']} errors in all")
    elapsed = float(raw.get("elapsed", 0))
    messages = int(raw.get("messages", 0))
    server_cpu = float(raw.get("server_cpu", -1))
    sample.client_cpu = _share(float(raw.get("client_cpu", -1)), elapsed)
    sample.server_cpu = _share(server_cpu, elapsed)
    per = None
    if row.mode in ("echo", "broadcast") and elapsed > 0 and messages:
        if row.key == "echo64" or row.mode == "broadcast":
            sample.primary = messages / elapsed
        else:
            sample.primary = raw["payload_bytes"] / elapsed / 1e6
        per = messages
    elif row.mode == "handshake" and elapsed > 0:
        sample.primary = raw["opened"] / elapsed
        per = raw["opened"]
    elif row.mode in ("rtt", "fanout") and raw.get("latency_samples"):
        sample.primary = raw["latency_p50_us"]
        sample.secondary = raw["latency_p99_us"]
    if per and server_cpu >= 0:
        sample.secondary = server_cpu / per * 1e6
    return sample


# -- summary -------------------------------------------------------------------------------


@dataclass
class Cell:
    primary: float | None
    secondary: float | None
    client_cpu: float | None
    server_cpu: float | None
    runs: int
    errors: list[str]
    spread: tuple[float, float] | None  # min and max of the primary figure


def _median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def summarize(samples: list[Sample]) -> dict[str, dict[str, Cell]]:
    cells: dict[str, dict[str, Cell]] = {}
    for row in ROWS:
        for name in SERVERS:
            mine = [s for s in samples if s.row == row.key and s.server == name]
            if not mine:
                continue
            primaries = [s.primary for s in mine if s.primary is not None]
            cells.setdefault(row.key, {})[name] = Cell(
                primary=_median([s.primary for s in mine]),
                secondary=_median([s.secondary for s in mine]),
                client_cpu=_median([s.client_cpu for s in mine]),
                server_cpu=_median([s.server_cpu for s in mine]),
                runs=len(mine),
                errors=[e for s in mine for e in s.errors],
                spread=(min(primaries), max(primaries)) if primaries else None,
            )
    return cells


def _si(x: float) -> str:
    if x >= 10e6:
        return f"{x / 1e6:.1f}M"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 10e3:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.2f}k"
    return f"{x:.0f}"


def _num(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _latency(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def format_cell(row: Row, cell: Cell) -> str:
    if cell.errors and cell.primary is None:
        return "ERROR"
    mark = " (!)" if cell.errors else ""
    p, s = cell.primary, cell.secondary
    if p is None:
        return "-" + mark
    if row.mode == "idle":
        return (f"{p / 1024:.1f} KiB" if p >= 10 * 1024 else f"{p / 1000:.1f} kB") + mark
    if row.mode in ("rtt", "fanout"):
        return f"{_latency(p)} ({_latency(s)})" + mark if s is not None else _latency(p) + mark
    text = _si(p) if row.key == "echo64" or row.mode in ("broadcast", "handshake") else _num(p)
    return (f"{text} ({_num(s)})" if s is not None else text) + mark


def ratio(row: Row, cell: Cell | None, base: Cell | None) -> str:
    """Against the baseline, above 1 = better: a rate over the baseline's, a cost (µs,
    latency, memory) the baseline's over this one's.  Two figures where the row has a
    server CPU cost: the CPU-per-message ratio first (the steadier one), then the rate's."""
    if cell is None or base is None or cell.primary is None or base.primary is None:
        return "-"
    if row.mode in ("idle", "rtt", "fanout"):
        return f"{base.primary / cell.primary:.2f}" if cell.primary > 0 else "-"
    rate = cell.primary / base.primary
    if cell.secondary and base.secondary:
        return f"{base.secondary / cell.secondary:.2f} ({rate:.2f})"
    return f"{rate:.2f}"


def markdown(
    cells: dict[str, dict[str, Cell]],
    servers: list[str],
    rows: list[Row],
    quick: bool,
    caption: str,
) -> str:
    titles = [SERVERS[name].title for name in servers]
    head = ["| scenario | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(servers)]
    out = [caption, "", *head]
    for row in rows:
        found = cells.get(row.key, {})
        out.append(
            f"| {row.title(quick)} | "
            + " | ".join(format_cell(row, found[n]) if n in found else "-" for n in servers)
            + " |"
        )
    out += [
        "",
        "Rates are medians over the runs; in parentheses the server's CPU time per message,",
        "delivery or handshake in µs (utime + stime of /proc/PID/stat over the measured window),",
        "or the p99 of a latency.  MB = 10^6 bytes of payload one way.  RSS: the server's growth",
        "per open connection.  (!): a run of that cell reported errors (listed below the tables);",
        "'-': the server cannot do it (picows and the C reference have no permessage-deflate;",
        "Pyramid is stargate's; the two Python floors are handshake_floor.py, references",
        "for the handshake row only).",
        "",
        f"Against {BASELINE}, above 1 = better than {BASELINE}: server CPU per message first (the",
        "steadier figure on a shared machine), the rate's ratio in parentheses; for latency and",
        f"memory, {BASELINE}'s figure over the server's.  The Pyramid row compares each server",
        "with its own Routes row instead.",
        "",
        *head,
    ]
    for row in rows:
        found = cells.get(row.key, {})
        if row.app.startswith("pyramid"):
            routes = cells.get("handshake", {})
            ratios = [ratio(row, found.get(n), routes.get(n)) for n in servers]
            out.append(f"| {row.title(quick)}, vs Routes | " + " | ".join(ratios) + " |")
            continue
        base = found.get(BASELINE)
        ratios = [ratio(row, found.get(n), base) for n in servers]
        out.append(f"| {row.title(quick)} | " + " | ".join(ratios) + " |")

    def share(cell: Cell | None) -> str:
        if cell is None or cell.client_cpu is None:
            return "-"
        srv = f"{100 * cell.server_cpu:.0f}%" if cell.server_cpu is not None else "?"
        return f"{100 * cell.client_cpu:.0f}% / {srv}"

    out += [
        "",
        "CPU over the measured window, share of one core: the client (loadgen) / the server.",
        "A server well under 100% while the client is too was waiting for a CPU (a busy machine).",
        "",
        *head,
    ]
    for row in rows:
        if row.mode != "idle":
            found = cells.get(row.key, {})
            out.append(f"| {row.key} | " + " | ".join(share(found.get(n)) for n in servers) + " |")
    return "\n".join(out)


# -- setup -------------------------------------------------------------------------------------


def build(name: str, outdir: Path) -> Path:
    """Compile ``bench/NAME.c`` (the client, or the C reference server) into ``outdir``."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SystemExit(f"bench/run.py needs a C compiler (gcc or cc, or $CC) for {name}.c")
    binary = outdir / name
    command = [compiler, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(HERE / f"{name}.c")]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"compiling {name}.c failed:\n{done.stderr.decode(errors='replace')}")
    return binary


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stargate-bench"


def node_ws() -> tuple[Path | None, str]:
    """The node_modules directory holding ``ws`` (installed with npm on first use), or None
    and the reason."""
    if shutil.which("node") is None:
        return None, "node not found"
    prefix = cache_dir() / "node"
    modules = prefix / "node_modules"
    if not (modules / "ws" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            return None, "npm not found"
        prefix.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
        command += ["--silent", f"ws@{NODE_WS_VERSION}"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=180, check=False)
        except subprocess.TimeoutExpired:
            return None, "npm install ws timed out"
        if done.returncode != 0:
            return None, f"npm install ws failed: {done.stderr.decode(errors='replace')[-300:]}"
    version = json.loads((modules / "ws" / "package.json").read_text())["version"]
    return modules, f"ws {version} in {modules}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "stargate source": stargate_source()}
    for dist in ("stargate", "uvloop", "picows", "aiofastnet", "websockets", "aiohttp", "pyramid"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    node = shutil.which("node")
    if node:
        done = subprocess.run([node, "--version"], capture_output=True, check=False)
        found["node"] = done.stdout.decode().strip()
    return found


def stargate_source() -> str:
    """The commit stargate runs from, and whether its sources differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, cwd=ROOT, check=True
        ).stdout.decode()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + (" + uncommitted changes in src/" if dirty else "")


def _choose(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (pick from {', '.join(known)})")
    return names


def _progress(sample: Sample, row: Row) -> None:
    cell = Cell(sample.primary, sample.secondary, sample.client_cpu, sample.server_cpu, 1, [], None)
    cli = f"{100 * sample.client_cpu:.0f}%" if sample.client_cpu is not None else "-"
    srv = f"{100 * sample.server_cpu:.0f}%" if sample.server_cpu is not None else "-"
    errors = f"  ERRORS: {sample.errors[:3]}" if sample.errors else ""
    print(
        f"  round {sample.round + 1} {row.key:<18} {sample.server:<14} "
        f"{format_cell(row, cell):>22}  server {srv:>4} client {cli:>4}{errors}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, 1 round")
    parser.add_argument("--rounds", type=int, help="runs per row and server (3; --quick 1)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="columns, comma separated")
    parser.add_argument("--rows", default=",".join(ROWS_BY_KEY), help="rows, comma separated")
    parser.add_argument("--no-node", action="store_true", help="leave Node's ws out")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument("--markdown", type=Path, help="write the tables here too")
    args = parser.parse_args(argv)
    chosen_servers = set(_choose(args.servers, list(SERVERS), "servers"))
    servers = [name for name in SERVERS if name in chosen_servers]
    chosen = set(_choose(args.rows, list(ROWS_BY_KEY), "rows"))
    rows = [row for row in ROWS if row.key in chosen]
    rounds = args.rounds or (1 if args.quick else 3)

    node_modules: Path | None = None
    node_note = "left out (--no-node)"
    if "node-ws" in servers and not args.no_node:
        node_modules, node_note = node_ws()
    if node_modules is None and "node-ws" in servers:
        servers.remove("node-ws")
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    load = os.getloadavg()[0]
    found = versions()
    print(
        f"{'smoke run (--quick)' if args.quick else 'full run'}: {rounds} round(s), "
        f"{len(cpus)} CPUs, "
        + (f"server on CPU {cpus[0]}, client on CPU {cpus[1]}" if pin else "not pinned")
        + f", load average {load:.2f}",
        flush=True,
    )
    print("  " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    print(f"  node ws: {node_note}", flush=True)
    if load > 0.5:
        print(
            f"  warning: the machine is busy (load {load:.1f} on {os.cpu_count()} CPUs): "
            "absolute figures are noise; the server µs per message and ratios less so",
            flush=True,
        )

    samples: list[Sample] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stargate-bench-") as tmp:
        ctx = Context(
            loadgen=build("loadgen", Path(tmp)),
            # Built only when its column runs: a compile error need not stop the others.
            c_reference=build("ref_server", Path(tmp)) if "c-reference" in servers else None,
            logdir=Path(tmp),
            quick=args.quick,
            server_cpu=cpus[0] if pin else None,
            client_cpu=cpus[1] if pin else None,
            node_modules=node_modules,
        )
        for r in range(rounds):
            for row in rows:
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                for name in order:
                    server = SERVERS[name]
                    if not row.applies_to(server):
                        continue
                    sample = measure(ctx, server, row, r)
                    samples.append(sample)
                    _progress(sample, row)

    cells = summarize(samples)
    caption = (
        f"{'Smoke run (--quick, tiny counts)' if args.quick else 'Full run'}, {rounds} round(s), "
        f"load average {load:.1f} on {len(cpus)} CPUs"
        + (", server and client pinned to their own CPU" if pin else ", not pinned")
        + f"; stargate at {found['stargate source']}."
    )
    table = markdown(cells, servers, rows, args.quick, caption)
    print()
    print(table)
    print()
    print(f"{len(samples)} measurements in {time.monotonic() - started:.0f} s.")
    failed = [(s.row, s.server, e) for s in samples for e in s.errors]
    for row_key, name, error in failed[:20]:
        print(f"  error: {row_key} / {name}: {error}")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        report = {
            "quick": args.quick,
            "rounds": rounds,
            "pinned": pin,
            "load_average": load,
            "versions": found,
            "node_ws": node_note,
            "samples": [asdict(s) for s in samples],
            "summary": {k: {n: asdict(c) for n, c in v.items()} for k, v in cells.items()},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
