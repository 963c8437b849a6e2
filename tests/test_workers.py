"""``stargate serve --workers N`` (stargate.workers): N processes on one port whose groups span them
through Redis; a worker that dies is replaced, SIGTERM stops them all gracefully, and the
in-memory broker is refused for more than one worker.

The app is ``tests/brokers/stargate_groups_app.py``.  redis-server comes from Debian's
``redis-server`` package; without it the Redis tests are skipped, except under CI (``CI``
set), where a missing redis-server is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stargate.brokers.testing import RedisServer, free_port
from stargate.server import ServerConfig
from stargate.settings import SettingsError
from stargate.workers import ListenError, Listening, banner, bind, run_workers

TIMEOUT = 10.0
APP_DIR = Path(__file__).parent / "brokers"


async def kill_session(process: asyncio.subprocess.Process) -> int:
    """SIGKILL ``process`` (started with ``start_new_session``) and every worker it forked,
    then its exit status.  A worker left alive would keep the pipes open, and on Python 3.11
    ``Process.wait()`` waits for the pipes too: it would never return."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return await asyncio.wait_for(process.wait(), TIMEOUT)


class Supervisor:
    """``python -m stargate serve stargate_groups_app:app --workers N ...``."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, *args: str, stderr: int | None = None) -> Supervisor:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stargate", "serve", "stargate_groups_app:app",
            "--port", "0", "--ping-interval", "0", "--log-level", "warning", *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"stargate serve: http://"), line
        return cls(process, int(line.split(b"/")[2].split(b":")[1]))

    async def join(self, group: str) -> tuple[ClientConnection, int]:
        """A client in ``group``, and the pid of the worker it landed on."""
        client = await connect(f"ws://127.0.0.1:{self.port}/join/{group}", open_timeout=TIMEOUT)
        hello: dict[str, Any] = json.loads(await asyncio.wait_for(client.recv(), TIMEOUT))
        assert hello["subscribed"]
        return client, int(hello["pid"])

    async def send(self, group: str, text: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = f"GET /send/{group}?{text} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        assert data.startswith(b"HTTP/1.1 200 "), data

    async def stop(self) -> int | None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            await kill_session(self.process)
            return None


@pytest_asyncio.fixture
async def two_workers(redis_server: RedisServer) -> AsyncIterator[Supervisor]:
    supervisor = await Supervisor.start("--workers", "2", "--broker", redis_server.url)
    try:
        yield supervisor
    finally:
        await supervisor.stop()


async def clients_on(
    supervisor: Supervisor,
    pids: int,
    *,
    avoid: frozenset[int] | set[int] = frozenset(),
    tries: int = 60,
) -> dict[int, list[ClientConnection]]:
    """Connect clients until they are spread over ``pids`` workers not in ``avoid``."""
    spread: dict[int, list[ClientConnection]] = {}
    for _ in range(tries):
        client, pid = await supervisor.join("room")
        spread.setdefault(pid, []).append(client)
        if len(set(spread) - avoid) >= pids:
            return spread
        await asyncio.sleep(0.02)
    raise AssertionError(f"clients landed on {sorted(spread)} only")


async def everyone_gets(clients: list[ClientConnection], text: str) -> None:
    for client in clients:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == text


@pytest.mark.asyncio
async def test_two_workers_share_groups_a_dead_one_is_replaced(two_workers: Supervisor) -> None:
    spread = await clients_on(two_workers, 2)
    everyone = [client for clients in spread.values() for client in clients]
    await two_workers.send("room", "to-all")  # the view runs in one worker; Redis does the rest
    await everyone_gets(everyone, "to-all")

    victim, survivor = sorted(spread, key=lambda pid: len(spread[pid]))
    os.kill(victim, signal.SIGKILL)
    for client in spread[victim]:  # its clients only are dropped
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), TIMEOUT)
    survivors = spread[survivor]
    await two_workers.send("room", "still-here")
    await everyone_gets(survivors, "still-here")

    fresh = await clients_on(two_workers, 1, avoid={victim, survivor})  # the replacement
    (replacement,) = set(fresh) - {survivor}
    assert replacement != victim
    newcomers = [client for clients in fresh.values() for client in clients]
    await newcomers[0].send("from-a-newcomer")  # relayed by its worker to the group
    await everyone_gets(survivors + newcomers, "from-a-newcomer")
    for client in survivors + newcomers:
        await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stop", "group"),
    [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGHUP, True)],
    ids=["sigterm", "sigterm-to-the-group", "ctrl-c", "terminal-closed"],
)
async def test_a_stop_signal_stops_every_worker_gracefully(
    redis_server: RedisServer, stop: signal.Signals, group: bool
) -> None:
    """SIGTERM to the supervisor or to the whole process group (systemd's default
    KillMode), Ctrl+C, a closed terminal: a graceful stop, never taken for a second signal
    that would hurry the workers' shutdown ("stopping now")."""
    supervisor = await Supervisor.start(
        "--workers", "2", "--broker", redis_server.url, stderr=asyncio.subprocess.PIPE
    )
    spread = await clients_on(supervisor, 2)
    if group:
        os.killpg(supervisor.process.pid, stop)
    else:
        supervisor.process.send_signal(stop)
    assert supervisor.process.stderr is not None
    try:
        errors = await asyncio.wait_for(supervisor.process.stderr.read(), TIMEOUT)
        assert await asyncio.wait_for(supervisor.process.wait(), TIMEOUT) == 0, errors
    finally:
        await supervisor.stop()
    assert b"stopping now" not in errors, errors
    for clients in spread.values():
        for client in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert client.close_code == 1001  # going away: closed, not dropped
    for pid in spread:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def silent_member(port: int) -> socket.socket:
    """A WebSocket client of ``/join/room`` that will never answer the server's close."""
    from stargate.handshake import ClientHandshake

    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    handshake = ClientHandshake(f"127.0.0.1:{port}", "/join/room")
    sock.sendall(handshake.request_bytes())
    while handshake.receive(await asyncio.to_thread(sock.recv, 1)) is None:
        pass
    return sock


@pytest.mark.asyncio
async def test_a_second_stop_signal_hurries_the_workers(redis_server: RedisServer) -> None:
    """The supervisor passes a second stop signal on as SIGQUIT: a client that never
    answers the close no longer holds the workers for the close timeout (10 s)."""
    supervisor = await Supervisor.start(
        "--workers", "2", "--broker", redis_server.url, stderr=asyncio.subprocess.PIPE
    )
    silent = await silent_member(supervisor.port)
    try:
        supervisor.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert supervisor.process.returncode is None  # graceful: waiting for the close
        started = asyncio.get_running_loop().time()
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.stderr is not None
        errors = await asyncio.wait_for(supervisor.process.stderr.read(), TIMEOUT)
        assert await asyncio.wait_for(supervisor.process.wait(), TIMEOUT) == 0
        assert asyncio.get_running_loop().time() - started < 5.0, errors
        assert b"stopping now" in errors
    finally:
        silent.close()
        await supervisor.stop()


def test_more_than_one_worker_needs_a_broker_that_spans_processes() -> None:
    for broker in (None, "memory://"):
        with pytest.raises(SettingsError, match="needs a broker that spans processes"):
            run_workers("stargate.demo:app", ServerConfig(port=0), 2, broker)
    with pytest.raises(SettingsError, match="needs a broker that spans processes"):
        run_workers("stargate.demo:app", ServerConfig(port=0, broker_url="memory://x"), 3)
    with pytest.raises(SettingsError, match="at least 1"):
        run_workers("stargate.demo:app", ServerConfig(port=0), 0)


@pytest.mark.asyncio
async def test_the_command_line_refuses_workers_without_a_broker() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate", "serve", "stargate.demo:app", "--workers", "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert err.startswith(b"stargate: error: --workers 2 needs a broker that spans processes")
    assert err.count(b"\n") == 1
    assert b"silently" in err and out == b""


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return data


@pytest.mark.asyncio
async def test_readiness_follows_the_broker(redis_server: RedisServer) -> None:
    """--health-path answers 503 while Redis is away (even in a worker whose groups are
    empty), and 200 once it is back; metrics say the same."""
    supervisor = await Supervisor.start(
        "--workers", "2", "--broker", redis_server.url, "--health-path", "/-/ready",
        "--metrics-path", "/-/metrics",
    )  # fmt: skip
    try:
        for _ in range(4):  # both workers, whichever answers
            assert (await http_get(supervisor.port, "/-/ready")).startswith(b"HTTP/1.1 200 ")
        metrics = await http_get(supervisor.port, "/-/metrics")
        assert b"stargate_broker_connected{" in metrics and b"} 1.0" in metrics
        redis_server.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not (await http_get(supervisor.port, "/-/ready")).startswith(b"HTTP/1.1 503 "):
            assert loop.time() < deadline, "never reported not ready with Redis down"
            await supervisor.send("room", "nudge")  # a publish finds Redis gone
            await asyncio.sleep(0.2)
        redis_server.start()
        deadline = loop.time() + 3 * TIMEOUT
        ready = 0
        while ready < 4:  # four answers in a row: both workers are back
            data = await http_get(supervisor.port, "/-/ready")
            ready = ready + 1 if data.startswith(b"HTTP/1.1 200 ") else 0
            assert loop.time() < deadline, "never ready again after Redis came back"
            await asyncio.sleep(0.1)
    finally:
        await supervisor.stop()


#: An app whose import takes a while; each worker marks that it loaded it (``loaded-N``).
SLOW_APP = """
import os
import pathlib
import time

time.sleep(float(os.environ["SLOW_APP_DELAY"]))
if os.environ.get("SLOW_APP_FAILS"):
    raise RuntimeError("the app cannot start")
if os.environ.get("SLOW_APP_EXITS"):
    raise SystemExit(int(os.environ["SLOW_APP_EXITS"]))
pathlib.Path("loaded-" + os.environ["STARGATE_WORKER"]).write_text("")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served"]
"""


async def serve_slow_app(
    tmp_path: Path, redis_server: RedisServer, **env: str
) -> asyncio.subprocess.Process:
    """``stargate serve`` of :data:`SLOW_APP` with two workers."""
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate", "serve", "slow_app:app", "--port", "0",
        "--workers", "2", "--broker", redis_server.url, "--log-level", "critical",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **env),
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.asyncio
async def test_the_ready_line_waits_for_a_worker_that_serves(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The supervisor binds at once but says it is ready only once a worker has loaded the
    app (a slow import here) and serves: when the line comes, a worker marked its load."""
    process = await serve_slow_app(tmp_path, redis_server, SLOW_APP_DELAY="1.0")
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"stargate serve: http://127.0.0.1:"), line
        assert list(tmp_path.glob("loaded-*")), "ready before any worker loaded the app"
        port = int(line.split(b"/")[2].split(b":")[1])
        assert (await http_get(port, "/")).startswith(b"HTTP/1.1 200 ")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            code = await kill_session(process)
    assert code == 0


@pytest.mark.asyncio
async def test_a_load_error_is_never_after_a_ready_line(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Every worker fails to import the app: no ready line at all, one line of error."""
    process = await serve_slow_app(tmp_path, redis_server, SLOW_APP_DELAY="0.5", SLOW_APP_FAILS="1")
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await kill_session(process)
    assert process.returncode == 2
    assert out == b""
    assert err.decode().splitlines()[-1] == (
        "stargate: error: cannot load 'slow_app:app': RuntimeError: the app cannot start"
    )


@pytest.mark.asyncio
async def test_an_app_that_exits_while_imported_is_a_load_error(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """An app module that calls ``sys.exit`` at import stops every worker, is not restarted,
    and the supervisor says so in one line: with which status it exited."""
    process = await serve_slow_app(tmp_path, redis_server, SLOW_APP_DELAY="0", SLOW_APP_EXITS="3")
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await kill_session(process)
    assert (process.returncode, out) == (2, b"")
    assert err.decode().splitlines()[-1] == (
        "stargate: error: loading 'slow_app:app' exited with status 3"
    )


# -- listening sockets ------------------------------------------------------------------------


def test_listening_says_every_address_as_a_url() -> None:
    """What ``ready`` gets: the first address as host and port, every address as a URL
    (IPv6 in brackets, https with TLS), and the banner names the workers."""
    listening = Listening((("::1", 8000), ("127.0.0.1", 8001)), workers=2, tls=True)
    assert (listening.host, listening.port) == ("::1", 8000)
    assert listening.urls() == ["https://[::1]:8000/", "https://127.0.0.1:8001/"]
    assert banner("serve", listening) == (
        f"stargate serve: https://[::1]:8000/ https://127.0.0.1:8001/ "
        f"(2 workers, supervisor pid {os.getpid()})"
    )
    assert banner("echo", Listening((("0.0.0.0", 9),))) == "stargate echo: http://0.0.0.0:9/"


def test_every_interface_is_one_port_over_ipv4_and_ipv6() -> None:
    """An empty host listens on 0.0.0.0 and :: (where the host has IPv6), and port 0 is one
    free port for both: a client reaches the same server over either family."""
    socks = bind([("", 0)])
    try:
        assert socket.AF_INET in {sock.family for sock in socks}
        (port,) = {sock.getsockname()[1] for sock in socks}
        for sock in socks:
            loopback = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
            with socket.create_connection((loopback, port), timeout=TIMEOUT):
                pass  # queued on the listening socket
    finally:
        for sock in socks:
            sock.close()


def busy_listener(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_a_failed_address_releases_the_ones_bound_before_it() -> None:
    """``--listen a --listen b`` with b in use: one line naming b and why, and a is not left
    bound (a second try after freeing b is not refused by our own leftover)."""
    with busy_listener() as busy:
        taken = busy.getsockname()[1]
        free = free_port()
        with pytest.raises(ListenError) as info:
            bind([("127.0.0.1", free), ("127.0.0.1", taken)])
        assert str(info.value) == (
            f"cannot listen on 127.0.0.1:{taken}: address already in use: another server "
            "listens there; stop it or choose another port"
        )
    for sock in bind([("127.0.0.1", free)]):
        sock.close()


def test_unknown_names_and_foreign_addresses_are_one_line_errors() -> None:
    """A host name that does not resolve, or an address of another machine: a ListenError
    that says which address and why, no traceback-worthy OSError."""
    with pytest.raises(ListenError, match=r"^cannot listen on no-such-host\.invalid:8000: \w"):
        bind([("no-such-host.invalid", 8000)])
    for host, shown in (("192.0.2.1", "192.0.2.1:0"), ("2001:db8::1", "[2001:db8::1]:0")):
        with pytest.raises(ListenError) as info:
            bind([(host, 0)])
        assert str(info.value) == (
            f"cannot listen on {shown}: address not available: it is not an address of this host"
        )


def resolver(*answers: tuple[int, Any]) -> Any:
    """A stand-in for ``socket.getaddrinfo`` that answers ``(family, sockaddr)`` entries."""

    def getaddrinfo(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(family, socket.SOCK_STREAM, 0, "", addr) for family, addr in answers]

    return getaddrinfo


def test_a_name_listens_on_each_of_its_addresses_it_can(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A name whose resolution lists an address twice (as /etc/hosts may), a non-IP entry,
    and an address this host lacks (``localhost`` as ::1 with IPv6 off): one socket per
    usable address, all on the one port 0 picked, the missing address logged and skipped."""
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        resolver(
            (socket.AF_INET, ("127.0.0.1", 0)),
            (socket.AF_INET, ("127.0.0.1", 0)),
            (socket.AF_UNIX, "/run/not-an-ip"),
            (socket.AF_INET, ("127.0.0.2", 0)),
            (socket.AF_INET6, ("2001:db8::1", 0, 0, 0)),
        ),
    )
    with caplog.at_level(logging.INFO, logger="stargate.workers"):
        socks = bind([("app.test", 0)])
    try:
        names = [sock.getsockname() for sock in socks]
        assert [name[0] for name in names] == ["127.0.0.1", "127.0.0.2"]
        assert names[0][1] == names[1][1] != 0
        assert any(
            "app.test:0: not listening on 2001:db8::1" in record.getMessage()
            for record in caplog.records
        )
    finally:
        for sock in socks:
            sock.close()


def test_a_name_fails_whole_when_one_of_its_addresses_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In use is not "not on this host": the name is refused, and its addresses bound so far
    are released."""
    with busy_listener("127.0.0.2") as busy:
        port = busy.getsockname()[1]
        monkeypatch.setattr(
            socket,
            "getaddrinfo",
            resolver((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET, ("127.0.0.2", port))),
        )
        with pytest.raises(
            ListenError, match=f"^cannot listen on app.test:{port}: address already"
        ):
            bind([("app.test", port)])
    monkeypatch.undo()
    with socket.socket() as again:  # not left bound by the failed attempt
        again.bind(("127.0.0.1", port))


# -- one worker, in a process of its own -------------------------------------------------------

WORKER_SCRIPT = """
import os
import socket
import sys

from stargate.server import ServerConfig
from stargate.workers import run_workers, serve_worker


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by " + str(os.getpid()).encode()]


if sys.argv[1] == "socks":  # sockets the caller bound (socket activation, a supervisor's)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    print(sock.getsockname()[1], flush=True)
    serve_worker(app, ServerConfig(), socks=[sock])
    print("returned", flush=True)
else:  # an app object rather than a target string
    def ready(listening):
        print(listening.port, flush=True)

    code = run_workers(app, ServerConfig(port=0), ready=ready)
    print("returned", code, flush=True)
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["socks", "object"])
async def test_one_worker_serves_an_app_object_or_given_sockets(mode: str) -> None:
    """``serve_worker`` on sockets its caller bound, and ``run_workers`` with an app object
    (not a target string), serve in this very process until SIGTERM, then return."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER_SCRIPT, mode, stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        port = int(await asyncio.wait_for(process.stdout.readline(), 20))
        reply = await http_get(port, "/")
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(f"served by {process.pid}".encode())  # in this very process
        process.send_signal(signal.SIGTERM)
        said = await asyncio.wait_for(process.stdout.read(), TIMEOUT)
        assert said == (b"returned\n" if mode == "socks" else b"returned 0\n")
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        await kill_session(process)


# -- workers that misbehave -------------------------------------------------------------------

#: An app whose WebSocket handlers end their worker: ``/exit/N`` with ``sys.exit(N)``,
#: ``/exit/text`` with ``sys.exit("text")``, ``/interrupt`` with a KeyboardInterrupt (all
#: escape the event loop), ``/block`` by blocking the loop so the worker hears no signal.
ROGUE_APP = """
import os
import sys
import time

from stargate.server import Routes


async def hello(ws):
    await ws.send(str(os.getpid()))
    path = ws.path
    if path.startswith("/exit/"):
        code = path.removeprefix("/exit/")
        sys.exit(int(code) if code.isdigit() else code)
    if path == "/interrupt":
        raise KeyboardInterrupt
    if path == "/block":
        time.sleep(60)
    async for message in ws:
        await ws.send(message)


paths = ("/", "/block", "/interrupt", "/exit/5", "/exit/bye")
app = Routes({path: hello for path in paths})
"""


class Rogue:
    """``stargate serve rogue_app:app --workers 2`` with its stderr kept."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.stderr = bytearray()

    @classmethod
    async def start(cls, tmp_path: Path, redis: RedisServer, *args: str) -> Rogue:
        (tmp_path / "rogue_app.py").write_text(ROGUE_APP)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stargate", "serve", "rogue_app:app", "--port", "0",
            "--workers", "2", "--broker", redis.url, "--log-level", "info", *args,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"stargate serve: http://127.0.0.1:"), line
        return cls(process, int(line.split(b"/")[2].split(b":")[1]))

    async def worker(self, path: str = "/") -> tuple[ClientConnection, int]:
        client = await connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=TIMEOUT)
        return client, int(await asyncio.wait_for(client.recv(), TIMEOUT))

    async def read_stderr_until(self, text: str, timeout: float = 3 * TIMEOUT) -> str:
        """The supervisor's and workers' log so far, once it contains ``text``."""
        assert self.process.stderr is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text.encode() not in self.stderr:
            remaining = deadline - loop.time()
            assert remaining > 0, f"never logged {text!r}: {self.stderr.decode()[-3000:]}"
            chunk = await asyncio.wait_for(self.process.stderr.read(65536), remaining)
            assert chunk, f"exited before logging {text!r}: {self.stderr.decode()[-3000:]}"
            self.stderr += chunk
        return self.stderr.decode()

    async def finish(self) -> int:
        return await kill_session(self.process)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.asyncio
async def test_a_worker_the_app_exits_is_replaced_and_says_how_it_ended(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A handler that calls ``sys.exit(5)`` or ``sys.exit("bye")``, or raises
    KeyboardInterrupt, ends its worker (exit status 5, 1 with the text, 1 with the
    traceback); the supervisor logs how and starts another, which serves."""
    rogue = await Rogue.start(tmp_path, redis_server)
    try:
        for path, status, said in (
            ("/exit/5", "exit status 5", None),
            ("/exit/bye", "exit status 1", "bye"),
            ("/interrupt", "exit status 1", "KeyboardInterrupt"),
        ):
            client, pid = await rogue.worker(path)
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            log = await rogue.read_stderr_until(f"(pid {pid}) died ({status}): restarting")
            if said is not None:
                assert said in log
            await eventually_gone(pid)
        client, pid = await rogue.worker("/")
        await client.send("still served")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still served"
        await client.close()
        rogue.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(rogue.process.wait(), 30) == 0
    finally:
        await rogue.finish()


async def eventually_gone(pid: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not gone(pid):
        assert loop.time() < deadline, f"process {pid} still there"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_worker_deaf_to_sigterm_is_killed_after_the_shutdown_timeout(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A worker whose event loop is blocked cannot stop gracefully: the supervisor kills it
    once ``shutdown_timeout`` (and a margin) has passed, and exits 0; a second SIGTERM
    meanwhile (passed on to the workers as SIGQUIT) neither restarts the stop nor moves the
    kill."""
    rogue = await Rogue.start(tmp_path, redis_server, "--shutdown-timeout", "0.2")
    try:
        client, blocked = await rogue.worker("/block")
        rogue.process.send_signal(signal.SIGTERM)
        await rogue.read_stderr_until("stopping 2 workers")
        rogue.process.send_signal(signal.SIGTERM)
        log = await rogue.read_stderr_until("killing 1 workers after the timeout")
        assert log.count("stopping 2 workers") == 1
        assert await asyncio.wait_for(rogue.process.wait(), 30) == 0
        assert gone(blocked)
        client.transport.abort()
    finally:
        await rogue.finish()


@pytest.mark.asyncio
async def test_workers_of_a_killed_supervisor_shut_down_by_themselves(
    redis_server: RedisServer,
) -> None:
    """The supervisor killed with SIGKILL (no chance to stop them): each worker notices it
    was orphaned and shuts down gracefully, closing its WebSockets with 1001."""
    supervisor = await Supervisor.start("--workers", "2", "--broker", redis_server.url)
    try:
        spread = await clients_on(supervisor, 2)
        supervisor.process.kill()
        for clients in spread.values():
            for client in clients:
                await asyncio.wait_for(client.wait_closed(), TIMEOUT)
                assert (client.close_code, client.close_reason) == (1001, "server shutting down")
        for pid in spread:
            await eventually_gone(pid)
    finally:
        await supervisor.stop()
