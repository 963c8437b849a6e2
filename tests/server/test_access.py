"""The access log (stargate.server.access): what a request, an upgrade and a refusal leave.

Each test runs a real server with ``access_log=True`` and reads the ``stargate.access``
records it wrote while real clients (raw sockets, the ``websockets`` client) talked to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from stargate.server import ENVIRON_KEY, Routes, WebSocket
from stargate.server.access import AccessLog
from stargate.server.wsgi import StartResponse

from .support import TIMEOUT, StartServer, eventually, get, open_tcp, read_response


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    upgrade = environ.get(ENVIRON_KEY)
    if upgrade is not None:
        if environ["PATH_INFO"] == "/forbidden":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"no"]

        async def handler(ws: WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        upgrade.accept(handler, subprotocols=["chat.v1"])
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "stargate.access"]


@pytest.mark.asyncio
async def test_an_http_request_is_one_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(app, access_log=True)
    response = await get(server.port, "/page?x=1")
    assert response.status == 200
    await eventually(lambda: bool(lines(caplog)))
    (line,) = lines(caplog)
    match = re.fullmatch(r'127\.0\.0\.1:\d+ "GET /page\?x=1 HTTP/1\.1" 200 (\d+) \d+\.\d{3}s', line)
    assert match is not None, line
    assert int(match.group(1)) > len(b"hello")  # head and body


@pytest.mark.asyncio
async def test_off_by_default(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(app)
    await get(server.port, "/")
    await asyncio.sleep(0.05)
    assert lines(caplog) == []


@pytest.mark.asyncio
async def test_an_upgrade_and_refusals(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(app, access_log=True)
    base = f"ws://127.0.0.1:{server.port}"
    async with connect(f"{base}/chat", subprotocols=["chat.v1"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
    await eventually(lambda: any(" close " in line for line in lines(caplog)))
    opened = next(line for line in lines(caplog) if " open " in line)
    assert '"GET /chat WS" open subprotocol=chat.v1 extensions=permessage-deflate' in opened
    closed = next(line for line in lines(caplog) if " close " in line)
    # One message each way; bytes on the wire (compressed frames, the close frames).
    match = re.search(
        r'"GET /chat WS" close 1000 "" by=client \d+\.\d{3}s in=1/(\d+) out=1/(\d+)$', closed
    )
    assert match is not None, closed
    assert int(match.group(1)) >= 2 + 4 + 2 + 6  # "hi" framed and masked, and the close
    assert int(match.group(2)) >= 2 + 2 + 2  # "hi" framed, and the close echo
    # Refused by the application, and by the Origin check: each says why.
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with connect(f"{base}/forbidden", open_timeout=TIMEOUT):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with connect(
            f"{base}/chat", origin=Origin("https://evil.example"), open_timeout=TIMEOUT
        ):
            pass
    await eventually(lambda: sum(" refused " in line for line in lines(caplog)) == 2)
    refused = [line for line in lines(caplog) if " refused " in line]
    assert '"GET /forbidden WS" refused 403 "refused by the application"' in refused[0]
    assert '"GET /chat WS" refused 403' in refused[1]
    assert "evil.example" in refused[1]


@pytest.mark.asyncio
async def test_a_malformed_request_is_logged(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(Routes(), access_log=True)
    reader, writer = await open_tcp(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    response = await read_response(reader)
    writer.close()
    assert response.status == 400
    await eventually(lambda: bool(lines(caplog)))
    assert '"GET / HTTP" refused 400' not in lines(caplog)[0]  # no version is made up
    assert " refused 400 " in lines(caplog)[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nExpect: x\r\n\r\n", 417),
        (b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\nHost: a b\r\n\r\n", 400),
    ],
)
async def test_a_refusal_names_the_client_a_trusted_proxy_named(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, head: bytes, status: int
) -> None:
    """Behind a trusted proxy a refusal's line names the client, as every other line does,
    not the proxy's own address."""
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(app, access_log=True, trusted_proxies=("127.0.0.1",))
    reader, writer = await open_tcp(server.port)
    writer.write(head)
    response = await read_response(reader)
    writer.close()
    assert response.status == status
    await eventually(lambda: bool(lines(caplog)))
    (line,) = lines(caplog)
    assert line.startswith("203.0.113.7:0 ") and f" refused {status} " in line, line


@pytest.mark.asyncio
async def test_json_lines(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "stargate.access")
    server = await start_server(app, access_log=True, access_log_format="json")
    await get(server.port, "/")
    await eventually(lambda: bool(lines(caplog)))
    record = json.loads(lines(caplog)[0])
    assert list(record)[:2] == ["time", "event"] and record["event"] == "http"
    moment = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    assert abs(datetime.datetime.now(datetime.UTC) - moment) < datetime.timedelta(seconds=30)
    assert record["method"] == "GET" and record["target"] == "/" and record["status"] == 200
    assert record["peer"].startswith("127.0.0.1:")


@contextlib.contextmanager
def access_records() -> Iterator[list[logging.LogRecord]]:
    """The records the access logger gets meanwhile, whatever the root's level."""
    logger = logging.getLogger("stargate.access")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_a_line_cannot_be_forged() -> None:
    """A target with a newline or quote stays inside one quoted field."""
    with access_records() as records:
        AccessLog(True).http(
            ("1.2.3.4", 5), "GET", '/x"\n127.0.0.1 "GET /admin', "1.1", 200, 1, 0.0
        )
    (record,) = records
    assert "\n" not in record.getMessage()
    assert '\\"\\n127.0.0.1 \\"GET /admin' in record.getMessage()


def test_a_json_line_is_ascii() -> None:
    """NEL, U+2028 and C1 controls (a client's close reason) are escaped in a JSON line:
    raw, some readers split the line at them, and an 8-bit CSI starts a terminal escape."""
    reason = "a\u0085b\u2028c\u009b2J\u202e"
    with access_records() as records:
        AccessLog(True, "json").websocket_close(
            ("1.2.3.4", 5), "/", 1000, reason, "peer", 1.0, (0, 0, 0, 0)
        )
    (record,) = records
    message = record.getMessage()
    assert message.isascii() and len(message.splitlines()) == 1
    assert json.loads(message)["reason"] == reason


def test_a_request_cut_by_the_shutdown_says_so_in_both_formats() -> None:
    with access_records() as records:
        AccessLog(True).http(("1.2.3.4", 5), "GET", "/slow", "1.1", 503, 0, 2.0, cut=True)
        AccessLog(True, "json").http(("1.2.3.4", 5), "GET", "/slow", "1.1", 503, 0, 2.0, True)
        AccessLog(True, "json").http(("1.2.3.4", 5), "GET", "/fast", "1.1", 200, 9, 0.1)
    text, cut, answered = (record.getMessage() for record in records)
    assert text == '1.2.3.4:5 "GET /slow HTTP/1.1" 503 0 2.000s cut-by-shutdown'
    assert json.loads(cut)["cut"] is True and "cut" not in json.loads(answered)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text"):
        AccessLog(True, "xml")


def test_json_lines_stand_alone_unless_the_logger_was_configured() -> None:
    """``stargate serve`` and pserve's factory: one bare JSON object per line, not the root
    handler's prefix; an access logger an .ini configured keeps its own handlers."""
    from stargate.server import ServerConfig
    from stargate.server.access import json_lines_alone, logger

    json_config = ServerConfig(access_log=True, access_log_format="json")
    try:
        json_lines_alone(json_config)
        (handler,) = logger.handlers
        assert not logger.propagate
        assert handler.format(logging.makeLogRecord({"msg": '{"a": 1}'})) == '{"a": 1}'
        json_lines_alone(json_config)  # again (a second server in one process): one handler
        assert len(logger.handlers) == 1
        json_lines_alone(ServerConfig(access_log=True))  # text: the root's format again
        assert logger.handlers == [] and logger.propagate
        own = logging.NullHandler()
        logger.addHandler(own)  # what an .ini's [logger_access] would have set up
        json_lines_alone(json_config)
        assert logger.handlers == [own] and logger.propagate
    finally:
        for each in list(logger.handlers):
            logger.removeHandler(each)
        logger.propagate = True
