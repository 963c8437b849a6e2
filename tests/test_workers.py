"""``stargate serve --workers N`` (stargate.workers): N processes on one port whose groups span them
through Redis; a worker that dies is replaced, SIGTERM stops them all gracefully, and the
in-memory broker is refused for more than one worker.

The app is ``tests/brokers/stargate_groups_app.py``.  redis-server comes from Debian's
``redis-server`` package; without it the Redis tests are skipped, except under CI (``CI``
set), where a missing redis-server is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stargate.brokers.testing import RedisServer
from stargate.server import ServerConfig
from stargate.settings import SettingsError
from stargate.workers import run_workers

TIMEOUT = 10.0
APP_DIR = Path(__file__).parent / "brokers"


class Supervisor:
    """``python -m stargate serve stargate_groups_app:app --workers N ...``."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, *args: str) -> Supervisor:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stargate", "serve", "stargate_groups_app:app",
            "--port", "0", "--ping-interval", "0", "--log-level", "warning", *args,
            stdout=asyncio.subprocess.PIPE,
            env=env,
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
            self.process.kill()
            await self.process.wait()
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
async def test_sigterm_stops_every_worker_gracefully(redis_server: RedisServer) -> None:
    supervisor = await Supervisor.start("--workers", "2", "--broker", redis_server.url)
    spread = await clients_on(supervisor, 2)
    assert await supervisor.stop() == 0
    for clients in spread.values():
        for client in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert client.close_code == 1001  # going away: closed, not dropped
    for pid in spread:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


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
pathlib.Path("loaded-" + os.environ["STARGATE_WORKER"]).write_text("")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served"]
"""


async def serve_slow_app(
    tmp_path: Path, redis_server: RedisServer, **env: str
) -> asyncio.subprocess.Process:
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stargate", "serve", "slow_app:app", "--port", "0",
        "--workers", "2", "--broker", redis_server.url, "--log-level", "critical",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **env),
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
            process.kill()
            code = await process.wait()
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
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert out == b""
    assert err.decode().splitlines()[-1] == (
        "stargate: error: cannot load 'slow_app:app': RuntimeError: the app cannot start"
    )
