"""The command line (stargate.cli): targets, options, and ``stargate echo`` as a process."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.typing import Origin

from stargate.cli import _add_server_options, config_from_args, echo, load_target, main
from stargate.handshake import OriginPolicy
from stargate.server import Routes


def test_load_target_resolves_dotted_attributes() -> None:
    assert load_target("stargate.cli:echo") is echo
    assert load_target("stargate:server.Routes") is Routes


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("stargate.cli", "TARGET must be module:attribute, not 'stargate.cli'"),
        (":app", "TARGET must be module:attribute"),
        ("stargate.cli:", "TARGET must be module:attribute"),
        ("no_such_module_here:app", "cannot import 'no_such_module_here'"),
        ("stargate.cli:no_such_app", "'stargate.cli' has no attribute 'no_such_app'"),
        ("stargate:server.nothing", "'stargate' has no attribute 'server.nothing'"),
    ],
)
def test_load_target_errors(target: str, message: str) -> None:
    with pytest.raises(SystemExit) as excinfo:
        load_target(target)
    assert message in str(excinfo.value.code)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _add_server_options(parser, 8000)
    return parser.parse_args(argv)


def test_config_from_args() -> None:
    config = config_from_args(parse())
    assert (config.host, config.port, config.threads) == ("127.0.0.1", 8000, 32)
    assert config.ssl_context is None
    assert config.legacy_protocols is True
    assert config.origin_policy == OriginPolicy()
    assert config.websocket.ping_interval == 20.0
    assert config.websocket.limits.max_message_size == 1024 * 1024

    config = config_from_args(
        parse(
            "--port", "9", "--ping-interval", "0", "--ping-timeout", "0", "--no-legacy",
            "--allow-origin", "https://a.example", "--allow-origin", "*.b.example",
            "--max-message-size", "100", "--max-frame-size", "50",
        )
    )  # fmt: skip
    assert config.port == 9
    assert config.websocket.ping_interval is None and config.websocket.ping_timeout is None
    assert config.legacy_protocols is False
    assert config.origin_policy.allowed == ("https://a.example", "*.b.example")
    assert config.websocket.limits.max_message_size == 100
    assert config.websocket.limits.max_frame_size == 50
    assert config_from_args(parse("--allow-origin", "*")).origin_policy == OriginPolicy.any()


def test_serve_requires_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["serve"])
    assert excinfo.value.code == 2
    assert "target" in capsys.readouterr().err


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
