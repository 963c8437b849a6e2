"""``gunicorn -k stargate.gunicorn.Worker``: the real gunicorn, started as a subprocess.

Each test runs gunicorn's own arbiter (``python -m gunicorn``) on a free port with a small
app module written to ``tmp_path``, talks to it with raw sockets, ``http.client`` and the
``websockets`` client, and kills the arbiter's process group in a ``finally``.  Without
gunicorn these tests are skipped, unless CI is set: then they fail.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect, unix_connect
from websockets.typing import Origin

from stargate.brokers.testing import RedisServer, free_port
from stargate.extras import install_hint
from stargate.settings import SettingsError
from tests.machine import make_certificate, require_module, unavailable

#: Every wait of these tests is bounded by this many seconds (a loaded 2-core machine).
WAIT = 30.0
MODULE = "gunicorn_testapp"

APP = """
import os
import re
import pathlib
import time

from stargate.groups import Group

room = Group("room")
HERE = pathlib.Path(__file__).parent


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def block(ws):
    async for message in ws:
        time.sleep(float(message))  # a handler that blocks the loop


async def join(ws):
    room.add(ws)
    await room.wait_subscribed(timeout=20)
    await ws.send(f"joined {os.getpid()}")
    async for message in ws:
        room.send(message)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    upgrade = environ.get("stargate.websocket")
    handler = {"/echo": echo, "/room": join, "/block": block}.get(path)
    if upgrade is not None and handler is not None:
        upgrade.accept(handler)
        return []
    if path == "/slow":
        (HERE / "slow-started").write_text("")
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        body = b"slow done"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def factory(global_config, **settings):
    return app
"""


def gunicorn_version() -> tuple[int, ...]:
    try:
        import gunicorn  # type: ignore[import-untyped]
    except ImportError as exc:
        unavailable(f"gunicorn is not installed ({exc}; {install_hint('gunicorn')})")
    version: tuple[int, ...] = tuple(gunicorn.version_info)
    return version


class Arbiter:
    """One gunicorn arbiter serving :data:`APP` on 127.0.0.1:``port``."""

    def __init__(
        self, directory: Path, args: Sequence[str], env: dict[str, str], target: Sequence[str]
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "gunicorn.log"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "stargate.gunicorn.Worker",
            "--chdir",
            str(directory),
            "-b",
            f"127.0.0.1:{self.port}",
            "--graceful-timeout",
            "10",
        ]
        if gunicorn_version() >= (25, 1):
            command.append("--no-control-socket")  # a per-user socket: concurrent runs clash
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STARGATE_")}
        environ.update(env, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *args, *target],
                cwd=directory,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> int:
        """Wait until a worker answers; its pid."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{self.log}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                return self.pid()
            time.sleep(0.1)
        pytest.fail(f"gunicorn did not answer within {WAIT} s:\n{self.log}")

    def get(self, path: str, **kwargs: Any) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT, **kwargs)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def pid(self) -> int:
        status, body = self.get("/pid")
        assert status == 200, body
        return int(body)

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self) -> int:
        try:
            return self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn did not exit within {WAIT} s:\n{self.log}")

    def kill(self) -> None:
        """Stop the arbiter (SIGTERM, then SIGKILL) and whatever is left of its group."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # orphaned workers, if any


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Arbiter]]:
    """``gunicorn(*args, env={})``: an arbiter started and ready; every one killed after."""
    gunicorn_version()
    (tmp_path / f"{MODULE}.py").write_text(APP)
    arbiters: list[Arbiter] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        ready: bool = True,
        target: Sequence[str] = (f"{MODULE}:app",),
    ) -> Arbiter:
        arbiter = Arbiter(tmp_path, args, env or {}, target)
        arbiters.append(arbiter)
        if ready:
            arbiter.wait_ready()
        return arbiter

    try:
        yield start
    finally:
        for arbiter in arbiters:
            arbiter.kill()


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT} s: {what}")
        time.sleep(0.1)


def raw_request(port: int, head: bytes) -> bytes:
    """Send a request head, read until the server closes (or WAIT)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_http_and_websocket_echo(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn(
        "-w", "2", "--access-logfile", "-", env={"STARGATE_BROKER": "memory://"}
    )  # fmt: skip
    assert arbiter.get("/") == (200, b"hello")
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.send("text message")
        assert ws.recv(timeout=WAIT) == "text message"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=WAIT) == b"\x00\xffbinary"
    assert "stargate serving on http://127.0.0.1" in arbiter.log
    assert "2 workers with the in-memory broker (STARGATE_BROKER=memory://)" in arbiter.log
    # gunicorn's --access-logfile receives Stargate's access lines.
    wait_for(lambda: '"GET /echo WS" open' in arbiter.log, "the upgrade in the access log")
    assert '"GET / HTTP/1.1" 200 ' in arbiter.log
    # With gunicorn's time stamp in front, as its own access lines have (%(t)s).
    (line,) = [line for line in arbiter.log.splitlines() if '"GET / HTTP/1.1" 200 ' in line]
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] 127\.0\.0\.1:\d+ .*", line)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert "(asyncio loop)" in arbiter.log
    else:
        assert "(uvloop loop)" in arbiter.log


def test_a_paste_deploy_ini(gunicorn: Callable[..., Arbiter], tmp_path: Path) -> None:
    require_module("paste.deploy", install="PasteDeploy")
    (tmp_path / "production.ini").write_text(
        f"[app:main]\nuse = call:{MODULE}:factory\n\n"
        "[server:main]\nuse = egg:stargate\nlisten = 127.0.0.1:6543\nmax_message_size = 100\n"
    )
    arbiter = gunicorn(target=("--paste", "production.ini"))
    assert arbiter.get("/") == (200, b"hello")
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.send("from an ini")
        assert ws.recv(timeout=WAIT) == "from an ini"
        # The section's stargate settings apply, as under pserve (they were ignored).
        ws.send("x" * 500)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
        assert ws.protocol.close_code == 1009
    assert "production.ini [server:main]: listen ignored under gunicorn" in arbiter.log


def test_a_relative_paste_file_is_gunicorns_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cd /srv; gunicorn --chdir /srv/app --paste conf/prod.ini``: gunicorn made the path
    absolute (its process name) before moving; ``--paste-global`` values expand in it."""
    (tmp_path / "conf").mkdir()
    ini = tmp_path / "conf" / "prod.ini"
    ini.write_text("[app:main]\nuse = egg:x\n\n[server:main]\nmax_body_size = %(size)s\n")
    cfg = gunicorn_config(paste="conf/prod.ini", raw_paste_global_conf=["size=2KiB"])
    cfg.set("default_proc_name", str(ini))  # what gunicorn's WSGIApplication sets
    elsewhere = tmp_path / "app"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # --chdir: conf/prod.ini is not here
    assert worker_settings(cfg, {}).config.max_body_size == 2048


def test_a_paste_sections_settings_are_under_the_variables(tmp_path: Path) -> None:
    ini = tmp_path / "production.ini"
    ini.write_text(
        "[app:main]\nuse = egg:x\n\n[server:main]\nuse = egg:stargate\n"
        "threads = 3\nmax_body_size = 1KiB\nheader_timeout = 7\n"
    )
    cfg = gunicorn_config(paste=str(ini))
    settings = worker_settings(cfg, {"STARGATE_HEADER_TIMEOUT": "9"})
    config = settings.config
    assert (config.max_body_size, config.header_timeout) == (1024, 9.0)
    assert config.threads == cfg.threads  # gunicorn's own setting, the ini's left aside
    assert settings.notes == (
        f"{ini} [server:main]: threads ignored under gunicorn (its own settings carry them: "
        "threads)",
    )
    ini.write_text("[app:main]\nuse = egg:x\n\n[server:main]\nmax_body_size = lots\n")
    with pytest.raises(SettingsError, match=r"production\.ini \[server:main\] max_body_size"):
        worker_settings(gunicorn_config(paste=str(ini)), {})


def test_a_unix_socket_and_a_tcp_port_at_once(
    gunicorn: Callable[..., Arbiter], tmp_path: Path
) -> None:
    path = tmp_path / "gunicorn.sock"
    arbiter = gunicorn("-b", f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nhello")
    with unix_connect(str(path), "ws://app/echo", open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.send("over a unix socket")
        assert ws.recv(timeout=WAIT) == "over a unix socket"
    assert arbiter.get("/") == (200, b"hello")


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-worker", "preload"])
def test_a_group_spans_two_workers_through_redis(
    gunicorn: Callable[..., Arbiter], redis_server: RedisServer, preload: bool
) -> None:
    """A module-level Group: with ``--preload`` imported in the arbiter before the fork."""
    args = ["-w", "2", *(["--preload"] if preload else [])]
    arbiter = gunicorn(*args, env={"STARGATE_BROKER": redis_server.url})
    clients: list[ClientConnection] = []
    pids: set[int] = set()
    with contextlib.ExitStack() as stack:
        while len(pids) < 2:
            assert len(clients) < 60, f"every room connection went to worker(s) {pids}"
            ws = stack.enter_context(
                connect(arbiter.url("/room"), open_timeout=WAIT, close_timeout=5)
            )
            clients.append(ws)
            joined = ws.recv(timeout=WAIT)
            assert isinstance(joined, str) and joined.startswith("joined ")
            pids.add(int(joined.split()[1]))
        clients[-1].send("hello, room")
        for ws in clients:
            assert ws.recv(timeout=WAIT) == "hello, room"


def test_two_workers_without_a_broker_are_refused(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn("-w", "2", ready=False)
    assert arbiter.wait() == 1
    assert "STARGATE_BROKER=redis://" in arbiter.log
    assert "Booting worker" not in arbiter.log


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("STARGATE_MAX_MESSAGE_SIZE", "lots", "STARGATE_MAX_MESSAGE_SIZE: expected a size"),
        ("STARGATE_ALLOW_ORIGIN", "https://a.example", "unknown setting STARGATE_ALLOW_ORIGIN"),
        ("STARGATE_THREADS", "8", "STARGATE_THREADS: set gunicorn's threads instead"),
        ("STARGATE_BROKER", "kafka://host", "STARGATE_BROKER: broker URL 'kafka://host'"),
    ],
)
def test_a_stargate_variable_it_cannot_use_stops_gunicorn_with_one_line(
    gunicorn: Callable[..., Arbiter], variable: str, value: str, said: str
) -> None:
    arbiter = gunicorn(env={variable: value}, ready=False)
    assert arbiter.wait() == 1
    assert f"Error: stargate: {said}" in arbiter.log
    assert "Traceback" not in arbiter.log
    assert "Booting worker" not in arbiter.log


def test_raw_env_sets_stargate_variables(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn(
        "-e",
        "STARGATE_MAX_MESSAGE_SIZE=1KiB",
        "-e",
        "STARGATE_ALLOWED_ORIGINS=https://app.example, https://admin.example",
        "-e",
        "STARGATE_HEALTH_PATH=/-/ready",
        "-e",
        "STARGATE_METRICS_PATH=/-/metrics",
    )
    assert arbiter.get("/-/ready")[0] == 200
    status, metrics = arbiter.get("/-/metrics")
    assert status == 200
    assert f'worker="{arbiter.pid()}"'.encode() in metrics  # one series per worker process
    with connect(
        arbiter.url("/echo"),
        origin=Origin("https://admin.example"),
        open_timeout=WAIT,
        close_timeout=WAIT,
    ) as ws:
        ws.send("x" * 1024)
        assert ws.recv(timeout=WAIT) == "x" * 1024
        ws.send("x" * 1025)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
    evil = Origin("https://evil.example")
    with (
        pytest.raises(InvalidStatus) as refused,
        connect(arbiter.url("/echo"), origin=evil, open_timeout=WAIT),
    ):
        pass
    assert refused.value.response.status_code == 403


def test_sigterm_closes_websockets_with_1001_answers_in_flight_http_and_exits_0(
    gunicorn: Callable[..., Arbiter], tmp_path: Path
) -> None:
    arbiter = gunicorn()
    answers: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: answers.append(arbiter.get("/slow?2")))
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.send("before")
        assert ws.recv(timeout=WAIT) == "before"
        slow.start()
        wait_for((tmp_path / "slow-started").exists, "the slow request reached the app")
        arbiter.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
    assert caught.value.rcvd is not None, "closed without a close frame"
    assert caught.value.rcvd.code == 1001
    slow.join(WAIT)
    assert answers == [(200, b"slow done")]
    assert arbiter.wait() == 0


def test_sigquit_is_a_quick_stop_that_still_says_1001(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn()
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        arbiter.signal(signal.SIGQUIT)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1001
    assert arbiter.wait() == 0


def test_sighup_replaces_the_workers(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn()
    old = arbiter.pid()
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        arbiter.signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1001
    wait_for(lambda: arbiter.pid() != old, "a new worker answers")
    wait_for(lambda: not running(old), "the old worker exited")
    with connect(arbiter.url("/echo"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.send("after reload")
        assert ws.recv(timeout=WAIT) == "after reload"
    assert arbiter.process.poll() is None


def in_background(arbiter: Arbiter, path: str) -> None:
    """A request whose answer does not matter (the worker may be gone before it)."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        arbiter.get(path)


def test_app_threads_past_the_graceful_timeout_do_not_hold_the_old_worker(
    gunicorn: Callable[..., Arbiter], tmp_path: Path
) -> None:
    """After HUP, a request still in the app at ``--graceful-timeout`` is left behind and
    the old worker exits: the interpreter used to wait for its thread until the arbiter's
    ``--timeout`` killed it (and with ``--max-requests``, no new worker meanwhile)."""
    arbiter = gunicorn("--graceful-timeout", "1", "--timeout", "120")
    old = arbiter.pid()
    threading.Thread(target=in_background, args=(arbiter, "/slow?60"), daemon=True).start()
    wait_for((tmp_path / "slow-started").exists, "the slow request reached the app")
    arbiter.signal(signal.SIGHUP)
    started = time.monotonic()
    wait_for(lambda: not running(old), "the old worker exited")
    assert time.monotonic() - started < 10  # the graceful timeout, not --timeout (120 s)
    assert "1 thread(s) still running the app after the shutdown" in arbiter.log
    assert f"Worker exiting (pid: {old})" in arbiter.log  # gunicorn's own last steps ran
    assert arbiter.pid() != old


def test_a_worker_timeout_exits_at_once(gunicorn: Callable[..., Arbiter], tmp_path: Path) -> None:
    """SIGABRT (what the arbiter sends when a worker misses ``--timeout``, here sent by
    hand) ends the worker at once, even with a handler blocking its loop and a request in
    flight: it used to raise SystemExit inside the handler, which stopped the server
    gracefully, waiting for the request, while nobody replaced the worker."""
    arbiter = gunicorn("--timeout", "120")
    old = arbiter.pid()
    with connect(arbiter.url("/block"), open_timeout=WAIT, close_timeout=WAIT) as ws:
        threading.Thread(target=in_background, args=(arbiter, "/slow?20"), daemon=True).start()
        wait_for((tmp_path / "slow-started").exists, "the slow request reached the app")
        ws.send("20")  # the loop is blocked for 20 s from now
        time.sleep(0.5)
        started = time.monotonic()
        os.kill(old, signal.SIGABRT)
        wait_for(lambda: not running(old), "the timed-out worker exited")
    assert time.monotonic() - started < 5
    assert f"worker {old} timed out" in arbiter.log
    wait_for(lambda: arbiter.pid() != old, "a new worker answers")


def test_a_worker_whose_arbiter_died_stops(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn()
    worker = arbiter.pid()
    arbiter.process.kill()
    arbiter.process.wait(WAIT)
    wait_for(lambda: not running(worker), "the orphaned worker exited")


def test_max_requests_restarts_the_worker(gunicorn: Callable[..., Arbiter]) -> None:
    arbiter = gunicorn("--max-requests", "3")
    first = arbiter.pid()
    answered: list[int] = []

    def new_worker_answers() -> bool:
        try:
            answered.append(arbiter.pid())
        except (ConnectionResetError, http.client.RemoteDisconnected):
            # The server resets a connection its loop accepted just as it began to stop
            # (reported as a server defect): the next request reaches the new worker.
            return False
        return answered[-1] != first

    wait_for(new_worker_answers, "a worker restarted after 3 requests")
    wait_for(lambda: not running(first), "the retired worker exited")
    # The retired worker answered 3 requests: wait_ready's, ``first`` and one more.
    assert answered.count(first) <= 1, answered


def test_limits_keepalive_and_timeout_are_gunicorns(gunicorn: Callable[..., Arbiter]) -> None:
    """limit_request_fields=5 is Stargate's max_headers; keepalive=60 keeps an idle
    connection past both projects' defaults (5 s, 2 s); timeout=5 does not kill a worker
    that idles longer, since its loop beats the heartbeat."""
    arbiter = gunicorn("--limit-request-fields", "5", "--keep-alive", "60", "--timeout", "5")
    worker = arbiter.pid()

    def head(fields: int) -> bytes:  # Host and Connection are two of the fields
        extra = b"".join(b"X-Field-%d: %d\r\n" % (n, n) for n in range(fields - 2))
        return b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n"

    assert raw_request(arbiter.port, head(5)).startswith(b"HTTP/1.1 200 ")
    assert raw_request(arbiter.port, head(6)).startswith(b"HTTP/1.1 431 ")

    connection = http.client.HTTPConnection("127.0.0.1", arbiter.port, timeout=WAIT)
    try:
        connection.request("GET", "/pid")
        assert connection.getresponse().read() == str(worker).encode()
        sock = connection.sock
        time.sleep(11)
        connection.request("GET", "/pid")  # same connection: not reopened
        assert connection.sock is sock
        assert connection.getresponse().read() == str(worker).encode()
    finally:
        connection.close()
    assert "WORKER TIMEOUT" not in arbiter.log


def test_keep_alive_0_says_connection_close(gunicorn: Callable[..., Arbiter]) -> None:
    """gunicorn's ``--keep-alive 0`` turns keep-alive off: each response says so (RFC 9112
    section 9.6), as gunicorn's own workers do, instead of being cut once it is idle."""
    arbiter = gunicorn("--keep-alive", "0")
    response = raw_request(arbiter.port, b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
    head = response.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head, response


def test_tls_from_certfile_and_keyfile(gunicorn: Callable[..., Arbiter], tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, days=2)
    arbiter = gunicorn("--certfile", str(cert), "--keyfile", str(key), ready=False)
    context = ssl.create_default_context(cafile=str(cert))
    wait_for(lambda: _answers_https(arbiter, context), "https answered")
    with connect(
        arbiter.url("/echo", "wss"), ssl=context, open_timeout=WAIT, close_timeout=WAIT
    ) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=WAIT) == "over tls"
    h2 = ssl.create_default_context(cafile=str(cert))
    h2.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", arbiter.port), timeout=WAIT) as raw,
        h2.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"


def _answers_https(arbiter: Arbiter, context: ssl.SSLContext) -> bool:
    if arbiter.process.poll() is not None:
        pytest.fail(f"gunicorn exited with {arbiter.process.returncode}:\n{arbiter.log}")
    try:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", arbiter.port, timeout=WAIT, context=context
        )
        connection.request("GET", "/")
        answer = connection.getresponse().read()
        connection.close()
    except OSError:
        return False
    return answer == b"hello"


# -- gunicorn's settings as the worker reads them (in process, gunicorn's own Config) ---------


def gunicorn_config(**settings: Any) -> Any:
    """gunicorn's ``Config`` with ``settings`` set through its own validators."""
    gunicorn_version()
    from gunicorn.config import Config  # type: ignore[import-untyped]

    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def worker_settings(cfg: Any, environ: dict[str, str]) -> Any:
    """:func:`stargate.gunicorn.worker_settings` (imported here: it needs gunicorn, which
    ``gunicorn_config`` checked for)."""
    from stargate.gunicorn import worker_settings as settings

    return settings(cfg, environ)


@pytest.mark.parametrize(
    ("limits", "head"),
    [
        # gunicorn's 0 is "no limit" on the request line: its own cap (1 MiB) counts.
        ({"limit_request_line": 0}, 1024 * 1024 + 2 + 100 * (8190 + 2) + 2),
        # Above its maximum, gunicorn uses the maximum (8190).
        ({"limit_request_line": 10_000}, 8190 + 2 + 100 * (8190 + 2) + 2),
        # A field size of 0 is gunicorn's maximum field size.
        ({"limit_request_field_size": 0}, 4094 + 2 + 100 * (8190 + 2) + 2),
        ({"limit_request_fields": 5, "limit_request_line": 100}, 100 + 2 + 5 * (8190 + 2) + 2),
    ],
)
def test_gunicorns_request_limits_become_one_head_budget(limits: dict[str, int], head: int) -> None:
    """gunicorn bounds the request line and each header line; Stargate the whole head: the
    worker allows what gunicorn would, no more, with gunicorn's meaning of 0 and its caps."""
    config = worker_settings(gunicorn_config(**limits), {}).config
    assert config.max_header_size == head


def test_settings_gunicorn_accepts_but_the_worker_cannot_use_are_one_line_errors() -> None:
    """``--threads 0`` or ``--worker-connections 0`` pass gunicorn's checks but would serve
    nothing; a certificate that cannot be read fails in the arbiter, not in each worker."""
    for name in ("threads", "worker_connections"):
        with pytest.raises(SettingsError, match=f"gunicorn's {name} must be positive"):
            worker_settings(gunicorn_config(**{name: 0}), {})
    with pytest.raises(SettingsError, match=r"certfile/keyfile: cannot load '/nonexistent\.pem'"):
        worker_settings(gunicorn_config(certfile="/nonexistent.pem"), {})


def test_a_blank_stargate_variable_leaves_the_default() -> None:
    """``STARGATE_MAX_BODY_SIZE=`` (set but empty, as shells and env files leave it) is
    no setting at all: the default stands."""
    default = worker_settings(gunicorn_config(), {}).config.max_body_size
    blank = worker_settings(gunicorn_config(), {"STARGATE_MAX_BODY_SIZE": "  "})
    assert blank.config.max_body_size == default
