"""``stargate client URL`` (stargate.client.cli): stdin lines out, messages in on stdout,
a normal close on end of input and on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from stargate.cli import echo as callback_echo
from stargate.client import cli
from stargate.client.params import DEFAULT_COMPRESSION, ConnectParams
from stargate.limits import Limits
from stargate.protocol import ProtocolVersion
from stargate.server import Routes, WebSocket
from stargate.testing import AppServer, run_app, serve_app

from .conftest import Certificate
from .support import TIMEOUT, request_info

GREETING = bytes(range(40))


@dataclass
class Recorder:
    """Our server's view: the close code of every connection, once closed."""

    closes: list[int | None] = field(default_factory=list)

    async def greet(self, ws: WebSocket) -> None:
        ws.add_close_callback(lambda ws: self.closes.append(ws.close_code))
        await ws.send(GREETING)
        await ws.send("welcome")
        await callback_echo(ws)  # answers every message before the close echo

    async def closed(self) -> list[int | None]:
        for _ in range(int(TIMEOUT / 0.01)):
            if self.closes:
                break
            await asyncio.sleep(0.01)
        return self.closes


def routes(recorder: Recorder) -> Routes:
    return Routes({"/greet": recorder.greet, "/info": request_info, "/echo": callback_echo})


@pytest_asyncio.fixture
async def recorder_server() -> AsyncIterator[tuple[AppServer, Recorder]]:
    recorder = Recorder()
    async with serve_app(routes(recorder), shutdown_timeout=2.0) as server:
        yield server, recorder


async def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stargate.client.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), TIMEOUT * 2)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_format_message() -> None:
    assert cli.format_message("text\nas is") == "text\nas is"
    assert cli.format_message(b"") == "[binary 0 bytes]"
    assert cli.format_message(b"\x00\xff") == "[binary 2 bytes] 00 ff"
    long = cli.format_message(bytes(100))
    assert long.startswith("[binary 100 bytes] 00 00") and long.endswith(" ...")
    assert long.split("] ")[1].split() == ["00"] * cli.HEX_BYTES + ["..."]


async def test_lines_out_messages_in_normal_close_at_eof(
    recorder_server: tuple[AppServer, Recorder],
) -> None:
    server, recorder = recorder_server
    code, out, err = await run_cli(server.url("/greet"), stdin="hello\nwörld\n".encode())
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == cli.format_message(GREETING)
    assert lines[1:] == ["welcome", "hello", "wörld"]
    assert "connected to" in err and "compression" in err
    assert "connection closed: 1000" in err
    assert await recorder.closed() == [1000]


async def test_ctrl_c_closes_normally(recorder_server: tuple[AppServer, Recorder]) -> None:
    server, recorder = recorder_server
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stargate.client.cli",
        server.url("/greet"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    assert process.stdin is not None
    line = await asyncio.wait_for(process.stderr.readline(), TIMEOUT)
    assert b"connected to" in line
    process.stdin.write(b"before ctrl-c\n")
    await process.stdin.drain()
    for expected in (cli.format_message(GREETING), "welcome", "before ctrl-c"):
        assert (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode() == (
            expected + "\n"
        )
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    assert await recorder.closed() == [1000]
    assert b"connection closed: 1000" in await process.stderr.read()


async def test_options_reach_the_server(recorder_server: tuple[AppServer, Recorder]) -> None:
    server, _ = recorder_server
    code, out, err = await run_cli(
        server.url("/info"),
        "--subprotocol",
        "chat.v1",
        "-H",
        "X-Token: secret",
        "--header",
        "X-Other:2",
        "--origin",
        server.url(scheme="http")[:-1],
        "--no-compression",
    )
    assert code == 0, err
    info = json.loads(out.splitlines()[0])
    headers = {name.lower(): value for name, value in info["headers"]}
    assert headers["x-token"] == "secret" and headers["x-other"] == "2"
    assert headers["origin"] == server.url(scheme="http")[:-1]
    assert "sec-websocket-extensions" not in headers
    assert "no compression" in err


async def test_connection_errors_exit_1() -> None:
    code, out, err = await run_cli("ws://nonexistent.invalid/")
    assert (code, out) == (1, "")
    assert "cannot resolve" in err
    code, _, err = await run_cli("http://example.com/")
    assert code == 1 and "ws://" in err


async def test_insecure_for_self_signed_tls(certificate: Certificate) -> None:
    recorder = Recorder()
    async with serve_app(routes(recorder), ssl_context=certificate.server_context()) as server:
        url = server.url("/greet")
        assert url.startswith("wss://")
        code, _, err = await run_cli(url)
        assert code == 1 and "self-signed" in err
        code, out, err = await run_cli(url, "--insecure", stdin=b"secure\n")
        assert code == 0, err
        assert out.splitlines()[1:] == ["welcome", "secure"]
        code, out, err = await run_cli(url, "--cafile", str(certificate.certfile))
        assert code == 0, err


def test_run_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_app(routes(Recorder())) as server:
        monkeypatch.setattr(sys, "stdin", io.StringIO("in process\n"))
        assert cli.run([server.url("/greet"), "--ping-interval", "0"]) == 0
        out, err = capsys.readouterr()
        assert out.splitlines()[1:] == ["welcome", "in process"]
        assert "connection closed: 1000" in err
        monkeypatch.setattr(sys, "stdin", io.StringIO("legacy\n"))
        assert cli.run([server.url("/echo"), "--hixie76"]) == 0
        out, err = capsys.readouterr()
        assert out == "legacy\n"
        assert "connection closed: 1005" in err  # hixie-76 closes without a code


def test_add_arguments_for_the_main_cli() -> None:
    parser = argparse.ArgumentParser(prog="stargate")
    commands = parser.add_subparsers(dest="command", required=True)
    cli.add_arguments(commands.add_parser("client", help=cli.HELP))
    args = parser.parse_args(["client", "ws://h/", "-p", "a", "-p", "b", "-k"])
    assert args.subprotocol == ["a", "b"] and args.insecure and args.url == "ws://h/"
    assert args.client_main is cli.run_args


def test_no_password_on_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_app(routes(Recorder())) as server:
        url = server.url("/greet").replace("ws://", "ws://alice:s3cret@")
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert cli.run([url, "--ping-interval", "0"]) == 0
        _, err = capsys.readouterr()
        assert "connected to ws://alice:***@" in err and "s3cret" not in err
        refused = url.replace("/greet", "/nowhere")
        assert cli.run([refused]) == 1
        _, err = capsys.readouterr()
        assert "404" in err and "alice:***@" in err and "s3cret" not in err


def test_options_are_connect_params() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = "wss://h/ -p a -H X:1 --no-compression --ping-interval 0 --open-timeout 3"
    args = parser.parse_args([*argv.split(), "--max-message-size=99", "--hixie76", "--origin=o"])
    params = cli.connect_params(args)
    assert params == ConnectParams(
        subprotocols=["a"],
        extra_headers=[("X", "1")],
        origin="o",
        compression=None,
        limits=Limits(max_message_size=99),
        ssl=params.ssl,
        version=ProtocolVersion.HIXIE_76,
        open_timeout=3.0,
        ping_interval=None,
    )
    assert params.ssl is not None  # wss://
    defaults = cli.connect_params(parser.parse_args(["ws://h/"]))
    assert defaults.ssl is None and defaults.compression == DEFAULT_COMPRESSION
    assert defaults.options.ping_interval == 20.0


async def test_a_malformed_header_option_is_one_line_and_connects_nowhere() -> None:
    """``--header`` without ``Name: value`` stops before any connection, saying which."""
    for value in ("no colon", ": no name"):
        code, out, err = await run_cli("ws://127.0.0.1:1/", "--header", value)
        assert (code, out) == (1, "")
        assert err == f"stargate client: --header must be 'Name: value', not {value!r}\n"
