"""The command line (stargate.cli): targets, options, and ``stargate echo`` as a process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import metadata
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from stargate.brokers.testing import RedisServer, free_port
from stargate.cli import (
    add_server_options,
    config_from_args,
    echo,
    load_target,
    main,
    serve_target_settings,
)
from stargate.handshake import OriginPolicy
from stargate.server import Routes
from stargate.targets import TargetError
from tests.machine import require_module


def test_load_target_resolves_dotted_attributes() -> None:
    assert load_target("stargate.cli:echo") is echo
    assert load_target("stargate:server.Routes") is Routes


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("stargate.cli", "TARGET must be module:attribute or a .ini file, not 'stargate.cli'"),
        (":app", "TARGET must be module:attribute"),
        ("stargate.cli:", "TARGET must be module:attribute"),
        ("no_such_module_here:app", "cannot import 'no_such_module_here'"),
        ("stargate.cli:no_such_app", "'stargate.cli' has no attribute 'no_such_app'"),
        ("stargate:server.nothing", "'stargate' has no attribute 'server.nothing'"),
    ],
)
def test_load_target_errors(target: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        load_target(target)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_options(parser, 8000)
    return parser.parse_args(argv)


def test_only_the_options_given_are_in_the_namespace() -> None:
    assert vars(parse()) == {"log_level": "info"}
    assert vars(parse("--port", "9", "--no-legacy")) == {
        "port": "9",
        "legacy_protocols": False,
        "log_level": "info",
    }


def test_config_from_args() -> None:
    config = config_from_args(parse())
    assert (config.host, config.port, config.threads) == ("127.0.0.1", 8000, 32)
    assert config.ssl_context is None
    assert config.legacy_protocols is True
    assert config.origin_policy == OriginPolicy()
    assert config.websocket.ping_interval == 20.0
    assert config.websocket.limits.max_message_size == 1024 * 1024
    assert config.access_log is True  # on in the command line, off in the library

    config = config_from_args(
        parse(
            "--port", "9", "--ping-interval", "0", "--ping-timeout", "0", "--no-legacy",
            "--allow-origin", "https://a.example", "--allow-origin", "*.b.example",
            "--max-message-size", "100", "--max-frame-size", "50", "--max-body-size", "1MiB",
            "--no-access-log", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1",
            "--proxy-headers", "forwarded",
        )
    )  # fmt: skip
    assert config.port == 9
    assert config.websocket.ping_interval is None and config.websocket.ping_timeout is None
    assert config.legacy_protocols is False
    assert config.origin_policy.allowed == ("https://a.example", "*.b.example")
    assert config.websocket.limits.max_message_size == 100
    assert config.websocket.limits.max_frame_size == 50
    assert config.max_body_size == 1024 * 1024
    assert config.access_log is False
    assert config.trusted_proxies == ("10.0.0.0/8", "::1")
    assert config.proxy_headers == "forwarded"
    assert config_from_args(parse("--allow-origin", "*")).origin_policy == OriginPolicy.any()
    assert config_from_args(parse(), "echo").origin_policy == OriginPolicy.any()


def test_server_timeouts_from_the_command_line() -> None:
    """The server's timeouts (ini settings too) have flags of the same names."""
    defaults = config_from_args(parse())
    names = ["header_timeout", "body_timeout", "write_timeout", "keepalive_timeout"]
    names.append("shutdown_timeout")
    flags = [f"--{name.replace('_', '-')}" for name in names]
    config = config_from_args(parse(*[a for i, f in enumerate(flags) for a in (f, f"{i}.5")]))
    assert [getattr(config, name) for name in names] == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert [getattr(defaults, name) for name in names] == [10.0, 30.0, 60.0, 5.0, 10.0]


def test_serve_requires_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["serve"])
    assert excinfo.value.code == 2
    assert "target" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == f"stargate {metadata.version('stargate')}\n"


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["client", "--help"]])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A terminal shows help verbatim: no RST markup from the docstrings it is made of."""
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out
    assert ":class:`" not in out


@pytest_asyncio.fixture
async def echo_process() -> AsyncIterator[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate.cli", "echo", "--port", "0", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"stargate echo: http://127.0.0.1:"), line
        yield int(line.rsplit(b":", 1)[1].strip(b"/\n"))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                assert await asyncio.wait_for(process.wait(), 5) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


@pytest.mark.asyncio
async def test_stargate_echo_echoes_text_and_binary(echo_process: int) -> None:
    port = echo_process
    # Any path, any Origin: the echo endpoint is for conformance and benchmark peers.
    async with connect(
        f"ws://127.0.0.1:{port}/any/path", origin=Origin("https://elsewhere.example")
    ) as client:
        await client.send("text ✓")
        assert await client.recv() == "text ✓"
        await client.send(b"\x00\x01\xfe\xff")
        reply = await client.recv()
        assert reply == b"\x00\x01\xfe\xff" and isinstance(reply, bytes)
        big = b"B" * 300_000
        await client.send(big)
        assert await client.recv() == big
        for i in range(50):
            await client.send(str(i))
        assert [await client.recv() for _ in range(50)] == [str(i) for i in range(50)]
        await client.close(4000, "bye")
    assert client.close_code == 4000


# -- stargate serve as a process ----------------------------------------------------------------

TIMEOUT = 30.0  # a bound, not a wait: process start-up on a loaded 2-core machine

#: The README's chat snippet as a user writes it in ``mymodule.py``: a module-level Group.
#: The 101 response names the worker process that accepted, so the test can spread clients.
CHAT_MODULE = """
import os

from stargate.groups import Group

room = Group("room")

async def chat(ws):
    room.add(ws)
    async for message in ws:
        room.send(message)

def app(environ, start_response):
    upgrade = environ.get("stargate.websocket")
    if upgrade is not None and environ["PATH_INFO"] == "/chat":
        pid = [("X-Worker-Pid", str(os.getpid()))]
        upgrade.accept(chat, subprotocols=["chat.v1"], headers=pid)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""


async def eventually(predicate: Callable[[], object], timeout: float, why: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, why
        await asyncio.sleep(0.05)


class Served:
    """``python -m stargate ARGS`` running in ``cwd``: the port from its ready line; what it
    writes to stderr goes to a file (a pipe nobody reads could fill up and stall it)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, stderr: Path) -> None:
        self.process = process
        self.port = port
        self.stderr_path = stderr
        #: Every address of the ready line (the first is ``port``'s).
        self.addresses: list[tuple[str, int]] = []

    @classmethod
    async def start(
        cls, *args: str, cwd: Path, env: dict[str, str] | None = None, python: Sequence[str] = ()
    ) -> Served:
        stderr = cwd / f"stderr-{len(list(cwd.glob('stderr-*')))}.txt"
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, *python, "-m", "stargate", *args,
                cwd=cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1"),
                start_new_session=True,  # its workers (or --reload's child) killed with it
            )  # fmt: skip
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        except TimeoutError:
            line = b""
        urls = re.findall(r"https?://(\[[^]]+\]|[^/: ]+):(\d+)/", line.decode())
        if not line.startswith(b"stargate ") or not urls:
            await cls.kill(process)
            raise AssertionError(f"no ready line: {line!r}\n{stderr.read_text()}")
        served = cls(process, int(urls[0][1]), stderr)
        served.addresses = [(host.strip("[]"), int(port)) for host, port in urls]
        return served

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    async def stop(self) -> int | None:
        """SIGTERM: a graceful stop (``None``: it had to be killed)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), TIMEOUT)
        except TimeoutError:
            await self.kill(self.process)
            return None

    @staticmethod
    async def kill(process: asyncio.subprocess.Process) -> None:
        """SIGKILL the process and every process it started: one left alive would keep the
        stdout pipe open, and on Python 3.11 ``Process.wait()`` waits for the pipe too."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), TIMEOUT)


def with_pythonpath(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    return env


class Reader:
    """Every message one client receives, collected in the background."""

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.messages: list[str] = []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.client:
                assert isinstance(message, str)
                self.messages.append(message)


@pytest.mark.asyncio
async def test_serve_workers_and_a_broker_every_client_gets_every_message(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The README's chat under ``stargate serve mymodule:app --workers 2 --broker redis://``.

    Each worker imports ``mymodule`` after the fork, so each has its own hub (its own
    identity on the broker): a message sent in one worker reaches the clients of both.
    When the supervisor imported the app before forking, both workers shared one hub
    identity and dropped each other's messages as their own echoes.
    """
    (tmp_path / "mymodule.py").write_text(CHAT_MODULE)
    server = await Served.start(
        "serve", "mymodule:app", "--port", "0", "--workers", "2", "--broker", redis_server.url,
        "--ping-interval", "0", "--log-level", "warning",
        cwd=tmp_path, env=with_pythonpath(tmp_path),
    )  # fmt: skip
    readers: dict[int, list[Reader]] = {}
    try:
        for _ in range(100):  # the kernel hands each connection to whichever worker accepts
            client = await connect(
                f"ws://127.0.0.1:{server.port}/chat",
                subprotocols=[Subprotocol("chat.v1")],
                open_timeout=TIMEOUT,
            )
            assert client.response is not None
            pid = int(client.response.headers["X-Worker-Pid"])
            readers.setdefault(pid, []).append(Reader(client))
            if len(readers) == 2 and all(len(group) >= 2 for group in readers.values()):
                break
        assert len(readers) == 2, f"every client landed on worker {list(readers)}"
        everyone = [reader for group in readers.values() for reader in group]
        senders = {pid: group[0].client for pid, group in readers.items()}

        # Each worker subscribes to the room's channel once it has a member; until then what
        # the other worker sends is not for it (at most once).  Warm up until each client
        # has heard from both workers; then every message must reach every client.
        def heard_from_both() -> bool:
            return all(
                any(m.startswith(f"warmup {pid} ") for m in reader.messages)
                for reader in everyone
                for pid in senders
            )

        for i in range(200):
            for pid, sender in senders.items():
                await sender.send(f"warmup {pid} {i}")
            if heard_from_both():
                break
            await asyncio.sleep(0.1)
        assert heard_from_both(), "clients never got what the other worker's clients sent: " + repr(
            {pid: [r.messages[-3:] for r in group] for pid, group in readers.items()}
        )

        expected = {pid: [f"message {pid} {k}" for k in range(20)] for pid in senders}
        for k in range(20):
            for pid, sender in senders.items():
                await sender.send(expected[pid][k])

        def got(reader: Reader, pid: int) -> list[str]:
            return [m for m in reader.messages if m.startswith(f"message {pid} ")]

        await eventually(
            lambda: all(len(got(r, pid)) >= 20 for r in everyone for pid in senders),
            TIMEOUT,
            "some client missed messages",
        )
        for reader in everyone:
            for pid in senders:  # every message, once, in the order its sender sent them
                assert got(reader, pid) == expected[pid]
        for reader in everyone:
            await reader.client.close()
            await reader.task
    finally:
        for group in readers.values():
            for reader in group:
                reader.task.cancel()
                await reader.client.close()
        assert await server.stop() == 0
    assert "Traceback" not in server.stderr()


@pytest.mark.asyncio
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_an_unreachable_broker_is_reported_at_start(tmp_path: Path, workers: str) -> None:
    """A warning at start, before any group message: the reason, the URL's password masked;
    the server serves anyway (local delivery) and the broker keeps retrying."""
    require_module("redis")
    (tmp_path / "mymodule.py").write_text(CHAT_MODULE)
    port = free_port()
    server = await Served.start(
        "serve", "mymodule:app", "--port", "0", "--workers", workers,
        "--broker", f"redis://:{SECRET}@127.0.0.1:{port}/0", "--log-level", "warning",
        cwd=tmp_path, env=with_pythonpath(tmp_path),
    )  # fmt: skip
    try:
        await eventually(lambda: "unreachable" in server.stderr(), TIMEOUT, server.stderr())
        warning = next(line for line in server.stderr().splitlines() if "unreachable" in line)
        assert "WARNING" in warning
        assert f"redis://:***@127.0.0.1:{port}/0" in warning
        assert f"connecting to 127.0.0.1:{port}" in warning  # redis-py's reason
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=TIMEOUT) as r:
            assert r.read() == b"hello"  # served anyway
    finally:
        assert await server.stop() == 0
    assert SECRET not in server.stderr()
    assert "Traceback" not in server.stderr()


# -- one-line errors ----------------------------------------------------------------------------

SECRET = "s3cret-Pa55"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m stargate ARGS`` to its end: (exit status, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "stargate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit status 2, one line on stderr with every fragment in it, nothing on stdout (no
    ready line either: a supervisor says it is ready only once a worker loaded the app)."""
    code, out, err = result
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert code == 2, (code, err)
    assert out == ""
    assert err.startswith("stargate: error: "), err
    for fragment in fragments:
        assert fragment in err
    return err


def without_redis(tmp_path: Path) -> dict[str, str]:
    """An environment where ``import redis`` fails as if the package were not installed:
    a ``redis`` package first on the path that raises what a missing module raises."""
    shadow = tmp_path / "no-redis" / "redis"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'redis\'", name="redis")\n'
    )
    return with_pythonpath(shadow.parent)


def test_a_redis_broker_without_the_redis_package(tmp_path: Path) -> None:
    env = without_redis(tmp_path)
    check = subprocess.run(
        [sys.executable, "-c", "import redis"], env=env, capture_output=True, check=False
    )
    assert check.returncode == 1 and b"No module named 'redis'" in check.stderr
    for workers in ("1", "2"):
        result = run_cli(
            "serve", "stargate.demo:app", "--port", "0", "--workers", workers,
            "--broker", f"redis://:{SECRET}@127.0.0.1:6379/0",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        err = assert_one_line_error(result, "python3 -m pip install redis", "redis://:***@")
        assert SECRET not in err


def test_an_unknown_broker_scheme(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "stargate.demo:app", "--port", "0", "--broker", f"amqp://guest:{SECRET}@host/",
        cwd=tmp_path,
    )  # fmt: skip
    err = assert_one_line_error(result, "unknown scheme 'amqp'", "redis")
    assert SECRET not in err


# -- stargate serve: the .ini, listen, the current directory, reload, body size ----------------

#: A plain WSGI app in ``hello.py``: GET says which VERSION it is; POST says how many bytes
#: it read.  ``make_app`` is its PasteDeploy factory (``use = call:hello:make_app``).
HELLO_MODULE = """
VERSION = "one"

def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        text = f"read {len(body)}"
    else:
        text = f"hello {VERSION}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]

def make_app(global_config, **settings):
    return app
"""


def get(host: str, port: int, path: str = "/", data: bytes | None = None) -> tuple[int, str]:
    """(status, body) of one request; an HTTP error status is returned, not raised."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with urllib.request.urlopen(f"http://{netloc}{path}", data, timeout=TIMEOUT) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def hello_ini(directory: Path, server: str) -> Path:
    """``app.ini``: the hello app, and a ``[server:main]`` of ``server``'s lines."""
    (directory / "hello.py").write_text(HELLO_MODULE)
    ini = directory / "app.ini"
    ini.write_text(
        f"[app:main]\nuse = call:hello:make_app\n\n[server:main]\nuse = egg:stargate\n{server}\n"
    )
    return ini


@pytest.mark.asyncio
async def test_serve_an_ini_uses_its_server_section_and_flags_override(tmp_path: Path) -> None:
    require_module("pyramid")
    port = free_port()
    hello_ini(tmp_path, f"host = 127.0.0.1\nport = {port}\nmax_body_size = 1KiB")
    server = await Served.start("serve", "app.ini", cwd=tmp_path)
    try:
        assert server.addresses == [("127.0.0.1", port)]  # the ini's port, not 8000
        assert await asyncio.to_thread(get, "127.0.0.1", port) == (200, "hello one")
        status, _ = await asyncio.to_thread(get, "127.0.0.1", port, "/", b"x" * 2000)
        assert status == 413  # the ini's max_body_size
    finally:
        assert await server.stop() == 0
    server = await Served.start(
        "serve", "app.ini", "--port", "0", "--max-body-size", "4KiB", cwd=tmp_path
    )
    try:
        assert server.port != port  # the command line wins
        reply = await asyncio.to_thread(get, "127.0.0.1", server.port, "/", b"x" * 2000)
        assert reply == (200, "read 2000")
    finally:
        assert await server.stop() == 0


def test_an_ini_without_a_port_is_served_where_pserve_serves_it(tmp_path: Path) -> None:
    """Pyramid's 6543, as pserve (waitress, stargate's server factory) would; a module
    target keeps 8000, and a port given anywhere wins."""
    require_module("pyramid")
    ini = hello_ini(tmp_path, "host = 127.0.0.1")
    assert serve_target_settings(str(ini), {}).listen == (("127.0.0.1", 6543),)
    assert serve_target_settings(str(ini), {"port": 7000}).listen == (("127.0.0.1", 7000),)
    listen = serve_target_settings(str(ini), {"listen": ["127.0.0.1:7001"]}).listen
    assert listen == (("127.0.0.1", 7001),)
    assert serve_target_settings("hello:app", {}).listen == (("127.0.0.1", 8000),)
    hello_ini(tmp_path, "port = 7002")
    assert serve_target_settings(str(ini), {}).listen == (("127.0.0.1", 7002),)


PYRAMID_APP = """
from pyramid.config import Configurator

def make_app(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("stargate.pyramid")
    return config.make_wsgi_app()
"""


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("stargate.max_message_size = lots", "stargate.max_message_size: expected a size"),
        ("stargate.max_mesage_size = 100", "unknown setting stargate.max_mesage_size"),
    ],
)
def test_an_apps_bad_stargate_setting_is_one_line(tmp_path: Path, line: str, fragment: str) -> None:
    """In the process itself, and from workers (which load the app after the fork)."""
    require_module("pyramid")
    (tmp_path / "pyr.py").write_text(PYRAMID_APP)
    (tmp_path / "app.ini").write_text(f"[app:main]\nuse = call:pyr:make_app\n{line}\n")
    assert_one_line_error(run_cli("serve", "app.ini", "--port", "0", cwd=tmp_path), fragment)
    workers = ("--workers", "2", "--broker", "redis://127.0.0.1:9/0")  # never reached
    code, out, err = run_cli("serve", "app.ini", "--port", "0", *workers, cwd=tmp_path)
    assert (code, out) == (2, "") and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("stargate: error: app.ini: ") and fragment in err


@pytest.mark.asyncio
async def test_serve_an_ini_that_listens_on_several_addresses(tmp_path: Path) -> None:
    require_module("pyramid")
    port = free_port()
    hello_ini(tmp_path, f"listen = 127.0.0.1:{port} [::1]:{port}")
    server = await Served.start("serve", "app.ini", cwd=tmp_path)
    try:
        assert server.addresses == [("127.0.0.1", port), ("::1", port)]
        for host in ("127.0.0.1", "::1"):
            assert await asyncio.to_thread(get, host, port) == (200, "hello one")
    finally:
        assert await server.stop() == 0


@pytest.mark.asyncio
async def test_listen_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO_MODULE)
    port = free_port()
    server = await Served.start(
        "serve", "hello:app", "--listen", f"localhost:{port}", "--listen", "127.0.0.2:0",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        hosts = [host for host, _ in server.addresses]
        assert hosts[0] == "127.0.0.1" and "127.0.0.2" in hosts  # localhost: each address
        for host, bound in server.addresses:
            assert await asyncio.to_thread(get, host, bound) == (200, "hello one")
    finally:
        assert await server.stop() == 0


@pytest.mark.asyncio
async def test_a_module_in_the_current_directory(tmp_path: Path) -> None:
    """As gunicorn and uvicorn do.  ``python -P`` leaves the current directory off
    sys.path, as the ``stargate`` script's own start does: the command puts it there."""
    (tmp_path / "hello.py").write_text(HELLO_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = await Served.start(
        "serve", "hello:app", "--port", "0", cwd=tmp_path, env=env, python=["-P"]
    )
    try:
        assert await asyncio.to_thread(get, "127.0.0.1", server.port) == (200, "hello one")
    finally:
        assert await server.stop() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_access_log_lines(tmp_path: Path, fmt: str) -> None:
    """``json`` lines are pure JSON, one object per line (for log pipelines), and each is
    written once (not again, prefixed, through the root handler); ``text`` lines keep the
    log format's time stamp.  Other log lines keep their format either way."""
    (tmp_path / "hello.py").write_text(HELLO_MODULE)
    server = await Served.start(
        "serve", "hello:app", "--port", "0", "--access-log-format", fmt, cwd=tmp_path
    )
    try:
        assert await asyncio.to_thread(get, "127.0.0.1", server.port, "/one") == (200, "hello one")
        assert await asyncio.to_thread(get, "127.0.0.1", server.port, "/two") == (200, "hello one")
        await eventually(lambda: "/two" in server.stderr(), TIMEOUT, "no access line for /two")
    finally:
        assert await server.stop() == 0
    lines = server.stderr().splitlines()
    access = [line for line in lines if "/one" in line or "/two" in line]
    assert len(access) == 2, lines
    if fmt == "json":
        records = [json.loads(line) for line in access]
        assert [(r["event"], r["target"], r["status"]) for r in records] == [
            ("http", "/one", 200),
            ("http", "/two", 200),
        ]
    else:
        assert all(re.match(r"\d{4}-\d\d-\d\d .* INFO stargate\.access: ", a) for a in access)
        assert all('"GET /one HTTP/1.1" 200' in a or '"GET /two HTTP/1.1" 200' in a for a in access)
    assert any(re.search(r" INFO stargate\.server: stargate serving on ", line) for line in lines)


LOGGING_SECTIONS = """
[loggers]
keys = root, stargate

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = INFO
handlers = console

[logger_stargate]
level = INFO
handlers =
qualname = stargate

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
"""


@pytest.mark.asyncio
async def test_json_access_lines_stand_alone_under_an_ini_that_configures_stargate(
    tmp_path: Path,
) -> None:
    """The project's example .ini files configure a ``stargate`` logger; applying them
    (each worker does, as pserve) takes the JSON handler off its child ``stargate.access``:
    every JSON line came out prefixed, no longer JSON."""
    require_module("pyramid")
    ini = hello_ini(tmp_path, "host = 127.0.0.1\nport = 0\naccess_log_format = json")
    ini.write_text(ini.read_text() + LOGGING_SECTIONS)
    server = await Served.start("serve", "app.ini", cwd=tmp_path)
    try:
        assert await asyncio.to_thread(get, "127.0.0.1", server.port, "/one") == (200, "hello one")
        await eventually(lambda: "/one" in server.stderr(), TIMEOUT, "no access line for /one")
    finally:
        assert await server.stop() == 0
    (line,) = [line for line in server.stderr().splitlines() if "/one" in line]
    record = json.loads(line)
    assert (record["event"], record["target"], record["status"]) == ("http", "/one", 200)


@pytest.mark.asyncio
async def test_reload_restarts_when_the_app_changes(tmp_path: Path) -> None:
    require_module("hupper")
    module = tmp_path / "hello.py"
    module.write_text(HELLO_MODULE)
    port = free_port()  # the restarted server listens where the first one did
    server = await Served.start("serve", "hello:app", "--port", str(port), "--reload", cwd=tmp_path)
    try:
        assert await asyncio.to_thread(get, "127.0.0.1", port) == (200, "hello one")

        async def answer() -> tuple[int, str] | None:
            try:
                return await asyncio.to_thread(get, "127.0.0.1", port)
            except OSError:  # between the old server's stop and the new one's start
                return None

        async def change_noticed() -> bool:
            """Write the new app; whether the monitor says it saw that within 2 s."""
            seen = server.stderr().count("changed; reloading")
            module.write_text(HELLO_MODULE.replace('"one"', '"two"'))
            for _ in range(40):
                if server.stderr().count("changed; reloading") > seen:
                    return True
                await asyncio.sleep(0.05)
            return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        # The monitor starts watching the app's files a moment after the server is ready,
        # and a change before that goes unseen: the file is written again until the monitor
        # says it saw it, and then left alone (each write restarts the server, and a
        # restart slower than the next write would never get to answer).
        while not await change_noticed():
            assert loop.time() < deadline, f"the monitor saw no change\n{server.stderr()}"
        while (reply := await answer()) != (200, "hello two"):
            assert loop.time() < deadline, f"not reloaded: {reply}\n{server.stderr()}"
            await asyncio.sleep(0.2)
    finally:
        await server.stop()
    assert "Traceback" not in server.stderr()


SLOW_MODULE = """
import sys
import time

def app(environ, start_response):
    print("in the app", file=sys.stderr, flush=True)
    time.sleep(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"late"]
"""


@pytest.mark.asyncio
async def test_shutdown_timeout_holds_while_the_app_still_runs(tmp_path: Path) -> None:
    """A request still in the app at ``shutdown_timeout``: the process exits then, saying
    so, instead of when the app returns (the interpreter joins a pool's threads at exit;
    the process used to outlive the deadline by the app's whole minute)."""
    (tmp_path / "slow.py").write_text(SLOW_MODULE)
    server = await Served.start(
        "serve", "slow:app", "--port", "0", "--shutdown-timeout", "1", cwd=tmp_path
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await eventually(lambda: "in the app" in server.stderr(), TIMEOUT, "no request")
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = await server.stop()
        elapsed = loop.time() - started
    assert code == 0, server.stderr()
    assert elapsed < 10, elapsed  # 1 s of grace, then the exit: not the app's 60 s
    assert "1 thread(s) still running the app after the shutdown" in server.stderr()


# -- one-line errors, each with its fix ----------------------------------------------------------


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra in ([], ["--workers", "2", "--broker", "redis://127.0.0.1:1/0"]):
            if extra:
                require_module("redis")  # the first round (one process) needs no broker
            result = run_cli(
                "serve", "stargate.demo:app", "--port", str(port), *extra, cwd=tmp_path
            )
            assert_one_line_error(
                result,
                f"cannot listen on 127.0.0.1:{port}: address already in use",
                "choose another port",
            )


def test_a_target_that_is_not_callable(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("serve", "stargate.limits:MiB", "--port", "0", cwd=tmp_path),
        "'stargate.limits:MiB' is not a WSGI app",
        "an object of type int",
    )


@pytest.mark.asyncio
async def test_a_target_that_is_not_callable_with_workers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each worker imports the target: the supervisor says what the first one found."""
    result = await asyncio.to_thread(
        run_cli,
        "serve", "stargate.limits:MiB", "--port", "0", "--workers", "2",
        "--broker", redis_server.url, "--log-level", "critical",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, "'stargate.limits:MiB' is not a WSGI app")


def test_a_missing_module(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("serve", "nothere:app", cwd=tmp_path),
        "cannot import 'nothere'",
        f"looked in {tmp_path}",
    )


def test_a_missing_certificate(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("serve", "stargate.demo:app", "--certfile", "cert.pem", cwd=tmp_path),
        "--certfile: no such file: 'cert.pem'",
    )


def test_a_bad_log_level(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("serve", "stargate.demo:app", "--log-level", "loud", cwd=tmp_path),
        "--log-level: one of debug, info, warning, error, critical, not 'loud'",
    )


def test_a_bad_value(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("echo", "--max-message-size", "1.5MiB", cwd=tmp_path),
        "--max-message-size: expected a size in bytes (e.g. 65536, 64KiB), not '1.5MiB'",
    )
    assert_one_line_error(
        run_cli("echo", "--write-timeout", "0", cwd=tmp_path),
        "--write-timeout: must be positive, not '0'",
    )


def test_ini_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("serve", "nope.ini", cwd=tmp_path), "no such .ini file")
    hello_ini(tmp_path, "port = 6543\nmax_body_size = lots")
    assert_one_line_error(
        run_cli("serve", "app.ini#other", cwd=tmp_path),
        "app.ini has no [app:other] section",
        "it has [app:main]: name one with app.ini#NAME",
    )
    assert_one_line_error(
        run_cli("serve", "app.ini", cwd=tmp_path),
        "app.ini [server:main] max_body_size: expected a size in bytes",
    )
    (tmp_path / "server-only.ini").write_text("[server:main]\nuse = egg:stargate\n")
    assert_one_line_error(
        run_cli("serve", "server-only.ini", cwd=tmp_path),
        "server-only.ini has no [app:main] section",
        "add one",
    )


def test_reload_without_hupper(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As if hupper were not installed: one line that names the package to install."""
    monkeypatch.setitem(sys.modules, "hupper", None)
    assert main(["serve", "stargate.demo:app", "--reload"]) == 2
    err = capsys.readouterr().err
    assert err == "stargate: error: --reload needs hupper: python3 -m pip install hupper\n"


def test_reload_serves_one_worker(tmp_path: Path) -> None:
    require_module("redis")
    assert_one_line_error(
        run_cli(
            "serve",
            "stargate.demo:app",
            "--reload",
            "--workers",
            "2",
            "--broker",
            "redis://127.0.0.1:1/0",
            cwd=tmp_path,
        ),
        "--reload serves with one worker",
    )


def test_version_from_the_command_line(tmp_path: Path) -> None:
    code, out, err = run_cli("--version", cwd=tmp_path)
    assert (code, out, err) == (0, f"stargate {metadata.version('stargate')}\n", "")


# -- the other commands through the one entry point -----------------------------------------------


@pytest.mark.asyncio
async def test_stargate_demo_serves_the_chat_page_and_room() -> None:
    """``stargate demo``: the page at ``/`` and the room at ``/chat`` on one port, from the
    same command line as ``serve``; Ctrl-C stops it with status 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate", "demo", "--port", "0", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"stargate demo: http://127.0.0.1:"), line
        port = int(line.rsplit(b":", 1)[1].strip(b"/\n"))
        status, page = await asyncio.to_thread(get, "127.0.0.1", port)
        assert status == 200 and "<html" in page.lower()
        async with connect(f"ws://127.0.0.1:{port}/chat", open_timeout=TIMEOUT) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert welcome["type"] == "welcome"
            await ws.send("hello room")
            said = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(2)]
            assert [m["type"] for m in said] == ["join", "message"]
            assert said[1]["text"] == "hello room"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_stargate_client_through_the_main_command(tmp_path: Path) -> None:
    """``stargate client URL`` is the client's own command line behind the main one: a
    server that is not there is exit status 1 and one line saying so."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run_cli("client", f"ws://127.0.0.1:{port}/", cwd=tmp_path)
    assert (code, out) == (1, "")
    assert "connection refused" in err and err.count("\n") == 1


MAIN_TWICE = """
import logging, socket, sys
from stargate.cli import main

with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    argv = ["serve", "stargate.demo:app", "--port", port, "--access-log-format", "json"]
    codes = [main(argv), main(argv)]
access = logging.getLogger("stargate.access")
print(codes, len(access.handlers), access.propagate)
"""


def test_main_run_twice_in_one_process_keeps_one_json_access_handler(tmp_path: Path) -> None:
    """``main()`` called again in one process (a test suite, an embedding tool) replaces
    its JSON access-log handler instead of adding a second: each line is written once."""
    run = subprocess.run(
        [sys.executable, "-c", MAIN_TWICE], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert run.stdout.strip() == "[2, 2] 1 False", run.stderr
