"""PasteDeploy: the server factory behind ``use = egg:stargate``, .ini loading, and ``pserve``
itself serving a page and a WebSocket on one port."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any

import pytest
import webtest
from websockets.sync.client import connect

from stargate.brokers.testing import free_port
from stargate.handshake import OriginPolicy
from stargate.limits import Limits
from stargate.pyramid.paste import app_factory, load_ini_app, server_config, server_factory
from stargate.server import ServerConfig, WebSocketOptions
from stargate.settings import SettingsError
from tests.machine import require_module

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0  # a bound, not a wait: process start-up on a loaded 2-core machine


# -- the factory --------------------------------------------------------------------------------


def test_entry_point_is_registered() -> None:
    """``use = egg:stargate`` in ``[server:main]`` finds it."""
    (entry,) = [e for e in entry_points(group="paste.server_factory") if e.name == "main"]
    assert entry.dist is not None and entry.dist.name == "stargate"
    assert entry.load() is server_factory


def test_server_config_defaults() -> None:
    assert server_config() == ServerConfig(host="127.0.0.1", port=6543)


def test_server_config_from_ini_strings() -> None:
    config = server_config(
        "0.0.0.0",
        "8080",
        threads="8",
        websocket_threads="4",
        compression="false",
        max_connections="100",
        max_body_size="1MiB",
        keepalive_timeout="2.5",
        legacy_protocols="false",
        allowed_origins="https://app.example\n*.app.example",
        max_message_size="64KiB",
        ping_interval="off",
    )
    assert (config.host, config.port, config.threads, config.max_connections) == (
        "0.0.0.0",
        8080,
        8,
        100,
    )
    assert config.websocket_threads == 4 and config.websocket.compression is None
    assert config.max_body_size == 1024**2 and config.keepalive_timeout == 2.5
    assert config.legacy_protocols is False
    assert config.origin_policy == OriginPolicy(allowed=("https://app.example", "*.app.example"))
    assert config.websocket.limits == Limits(max_message_size=65536, max_frame_size=65536)
    assert config.websocket.ping_interval is None
    assert config.websocket.ping_timeout == WebSocketOptions().ping_timeout


def test_unknown_server_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="ping_intervall"):
        server_factory({}, port="0", ping_intervall="5")


@pytest.mark.parametrize(
    "settings", [{"threads": "0"}, {"port": "http"}, {"max_message_size": "huge"}]
)
def test_bad_server_settings(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        server_factory({}, **settings)


def test_server_factory_returns_a_serve_callable() -> None:
    assert callable(server_factory({}, host="127.0.0.1", port="0"))


def test_listen_as_cookiecutter_pyramid_writes_it() -> None:
    config = server_config(listen="localhost:6543")
    assert (config.host, config.port) == ("localhost", 6543)
    config = server_config(listen="127.0.0.1:1 [::1]:1 *:2")
    assert (config.host, config.port) == ("127.0.0.1", 1)
    with pytest.raises(SettingsError, match=r"\[server:main\] listen and \[server:main\] host"):
        server_config(host="127.0.0.1", listen="localhost:6543")


def test_the_factory_refuses_workers() -> None:
    """pserve loads the app before the server: workers could not each import their own."""
    require_module("redis")
    with pytest.raises(SettingsError, match=r"run stargate serve development\.ini"):
        server_factory({}, workers="2", broker="redis://127.0.0.1:6379/0")
    # Said first: adding the broker the other error asks for would not help under pserve.
    with pytest.raises(SettingsError, match=r"run stargate serve development\.ini"):
        server_factory({}, workers="2")
    with pytest.raises(SettingsError, match=r"\[server:main\] workers: must be positive"):
        server_factory({}, workers="0")


def test_server_settings_errors_name_the_section() -> None:
    with pytest.raises(SettingsError, match=r"^\[server:main\] max_body_size: expected a size"):
        server_factory({}, max_body_size="lots")
    with pytest.raises(SettingsError) as caught:
        server_factory({}, max_body_sise="1k")
    message = str(caught.value)
    assert message.startswith("unknown setting [server:main] max_body_sise; known: ")
    assert message.count("[server:main]") == 2  # once for the known keys, not 40 times


# -- loading apps -------------------------------------------------------------------------------


def test_app_factory_puts_the_pythonpath_first(tmp_path: Path) -> None:
    package = tmp_path / "lib" / "notinstalled_app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "def main(global_config, **settings):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [repr(sorted(settings.items())).encode()]\n"
        "    return app\n"
    )
    try:
        app = app_factory(
            {"here": str(tmp_path)},
            **{
                "stargate.app_factory": "notinstalled_app:main",
                "stargate.pythonpath": f"{tmp_path}/lib/../lib",
                "color": "blue",
            },
        )
        assert webtest.TestApp(app).get("/").text == "[('color', 'blue')]"
        assert str(tmp_path / "lib") in sys.path
    finally:
        sys.path[:] = [p for p in sys.path if p != str(tmp_path / "lib")]
        sys.modules.pop("notinstalled_app", None)


def test_app_factory_needs_a_target() -> None:
    with pytest.raises(ValueError, match=r"stargate\.app_factory"):
        app_factory({})


def example_ini(tmp_path: Path, name: str, port: int = 0) -> Path:
    """A copy of ``examples/<name>/development.ini`` outside the repository, on ``port``."""
    text = (ROOT / "examples" / name / "development.ini").read_text()
    text = text.replace("%(here)s/../..", str(ROOT))
    text = re.sub(r"(?m)^port = \d+$", f"port = {port}", text)
    path = tmp_path / f"{name}.ini"
    path.write_text(text)
    return path


def test_load_ini_app(tmp_path: Path) -> None:
    app = webtest.TestApp(load_ini_app(str(example_ini(tmp_path, "jobs"))))
    assert 'data-job="build"' in app.get("/").text
    toggled = app.post("/build/toggle", headers={"Accept": "application/json"}).json
    assert toggled == {"name": "build", "state": "running", "version": 1}


def test_load_ini_app_with_a_section_name(tmp_path: Path) -> None:
    app = webtest.TestApp(load_ini_app(f"{example_ini(tmp_path, 'chat')}#main"))
    assert "your name" in app.get("/").text


# -- pserve and stargate serve, for real --------------------------------------------------------


def pserve_command() -> list[str]:
    script = Path(sys.executable).with_name("pserve")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pyramid.scripts.pserve"]


def pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    """Copy a process's output lines into ``lines``; an empty string marks the end."""
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):  # the stream was closed under us at teardown
        pass
    lines.put("")


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator[Any]:
    """``run_server(command)``: start it in ``tmp_path`` (not the repository: the example
    must be found through its .ini alone), wait for the port it prints; SIGTERM after."""
    processes: list[subprocess.Popen[str]] = []
    outputs: list[queue.Queue[str]] = []  # each process's lines after its port line

    def run(command: list[str]) -> int:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        # A thread reads the output: select() on the pipe misses lines that readline()
        # already buffered, which made this fixture wait out its deadline now and then.
        lines: queue.Queue[str] = queue.Queue()
        outputs.append(lines)
        threading.Thread(target=pump, args=(process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + TIMEOUT
        output = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if not line:
                break
            output.append(line)
            # pserve's factory prints "serving on http://...", the CLI "stargate serve: http://..."
            match = re.search(r"(?:serving on |stargate serve: )http://127\.0\.0\.1:(\d+)/", line)
            if match:
                return int(match.group(1))
        process.kill()
        raise AssertionError("the server did not start:\n" + "".join(output))

    run.processes = processes  # type: ignore[attr-defined]
    run.outputs = outputs  # type: ignore[attr-defined]
    yield run
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                assert process.wait(TIMEOUT) == 0  # a graceful stop
            finally:
                if process.poll() is None:
                    process.kill()
        if process.stdout is not None:
            process.stdout.close()


def check_page_and_websocket(port: int) -> None:
    """The page and the job's WebSocket on one port; a toggle reaches the socket."""
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert 'data-job="build"' in response.read().decode()
    with connect(f"ws://127.0.0.1:{port}/build/", open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(TIMEOUT))["state"] == "stopped"
        request = urllib.request.Request(
            base + "/build/toggle", method="POST", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert json.loads(response.read())["state"] == "running"
        assert json.loads(ws.recv(TIMEOUT)) == {"name": "build", "state": "running", "version": 1}


def test_pserve_serves_page_and_websocket_on_one_port(tmp_path: Path, run_server: Any) -> None:
    port = run_server([*pserve_command(), str(example_ini(tmp_path, "jobs"))])
    check_page_and_websocket(port)


def test_pserve_listens_where_listen_says(tmp_path: Path, run_server: Any) -> None:
    """cookiecutter-pyramid's ``listen = localhost:6543``."""
    port = free_port()
    ini = example_ini(tmp_path, "jobs")
    text = re.sub(r"(?m)^host = .*\nport = .*$", f"listen = localhost:{port}", ini.read_text())
    assert f"listen = localhost:{port}" in text
    ini.write_text(text)
    assert run_server([*pserve_command(), str(ini)]) == port
    check_page_and_websocket(port)


SLOW_APP = """
import sys
import time

def make_app(global_conf, **settings):
    def app(environ, start_response):
        print("in the app", file=sys.stderr, flush=True)
        time.sleep(60)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]
    return app
"""


def test_pserve_exits_at_shutdown_timeout_while_the_app_still_runs(
    tmp_path: Path, run_server: Any
) -> None:
    """As ``stargate serve``: a request still in the app at ``shutdown_timeout`` does not
    keep pserve's process alive for the app's minute (the interpreter joins pool threads
    at exit); it exits, saying so."""
    (tmp_path / "slow.py").write_text(SLOW_APP)
    (tmp_path / "slow.ini").write_text(
        "[app:main]\nuse = call:stargate.pyramid.paste:app_factory\n"
        "stargate.app_factory = slow:make_app\nstargate.pythonpath = %(here)s\n\n"
        "[server:main]\nuse = egg:stargate\nhost = 127.0.0.1\nport = 0\n"
        "shutdown_timeout = 1\n"
    )
    port = run_server([*pserve_command(), "slow.ini"])
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    process, output = run_server.processes[-1], run_server.outputs[-1]
    while "in the app" not in output.get(timeout=TIMEOUT):
        pass
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(TIMEOUT * 2) == 0
    assert time.monotonic() - started < 10  # 1 s of grace, then the exit: not 60 s
    client.close()


def test_stargate_serve_an_ini_file(tmp_path: Path, run_server: Any) -> None:
    """Its [server:main] port: the one the ini says, not the command line's 8000."""
    port = free_port()
    ini = example_ini(tmp_path, "jobs", port)
    command = [sys.executable, "-m", "stargate", "serve", str(ini)]
    assert run_server(command) == port
    check_page_and_websocket(port)
