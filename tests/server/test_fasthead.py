"""The common upgrade head read without llhttp (stargate.server.fasthead).

``read_upgrade_head`` is a second reader of requests, a security boundary: whatever it
accepts, llhttp and the RequestReader must accept too and read the same way (or two
readers of one request would disagree on where it ends, what it asks, or whether it is
refused).  So every input here goes through both: the fuzzing corpus, its mutations, and
heads built from the field values where the two could part ways.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from fuzzing.fuzz import CORPUS, inputs
from stargate.handshake import OriginPolicy
from stargate.protocol import Opcode
from stargate.server import Routes, ServerConfig, WebSocket
from stargate.server.fasthead import _split_upgrade_head_python, read_upgrade_head
from stargate.server.reader import RequestReader, RequestRefused
from stargate.server.request import HttpRequest
from tests.machine import needs_c, speedups

from .support import TIMEOUT, StartServer, encode_frame, open_tcp, read_to_eof
from .test_reader import Events

CONFIG = ServerConfig()

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
BROWSER = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://example.com:8080\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n" + KEY + b"Sec-WebSocket-Extensions: "
    b"permessage-deflate; client_max_window_bits\r\n\r\n"
)


def through_reader(data: bytes, config: ServerConfig) -> tuple[HttpRequest, bytes] | None:
    """The upgrade request the reader reads at the start of ``data``, if it reads one."""
    events = Events()
    reader = RequestReader(config, events)
    try:
        reader.feed(data)
    except RequestRefused:
        return None
    if events.rest is None or len(events.requests) != 1:
        return None
    return events.requests[0], events.rest


def view(request: HttpRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "target": request.target,
        "http_version": request.http_version,
        "headers": request.headers,
        "body": request.body.read(),
        "body_size": request.body_size,
        "keep_alive": request.keep_alive,
        "upgrade": request.upgrade,
        "parsed": request.parsed,
        "trailing": bytes(request.trailing),
    }


def agree(data: bytes, config: ServerConfig = CONFIG) -> bool:
    """Check that the reader reads what read_upgrade_head reads; whether the latter did."""
    fast = read_upgrade_head(data, config)
    if fast is None:
        return False
    slow = through_reader(data, config)
    assert slow is not None, f"read fast, refused or not an upgrade by the reader: {data!r}"
    assert view(fast[0]) == view(slow[0]), data
    assert fast[1] == slow[1], data
    return True


def test_a_browsers_request_is_read_as_the_reader_reads_it() -> None:
    assert agree(BROWSER)
    assert agree(BROWSER + b"\x81\x85early")  # a frame right behind the head
    request, rest = read_upgrade_head(BROWSER + b"\x81", CONFIG) or (None, b"")
    assert request is not None and rest == b"\x81"
    assert request.parsed.path == "/chat" and request.parsed.query == "room=1"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BROWSER[:-2], id="the head not all here"),
        pytest.param(b"\r\n" + BROWSER, id="empty line first"),
        pytest.param(BROWSER.replace(b"GET", b"POST", 1), id="not GET"),
        pytest.param(BROWSER.replace(b"HTTP/1.1", b"HTTP/1.0", 1), id="HTTP/1.0"),
        pytest.param(BROWSER.replace(b"/chat?room=1", b"http://a/chat"), id="absolute form"),
        pytest.param(BROWSER.replace(b"Pragma: no-cache", b"Pragma: caf\xe9"), id="obs-text"),
        pytest.param(BROWSER.replace(b"no-cache\r\n", b"no-\r\n cache\r\n"), id="obs-fold"),
        pytest.param(BROWSER.replace(b"Pragma:", b"Pragma :"), id="space before colon"),
        pytest.param(BROWSER.replace(b"\r\n", b"\n"), id="bare LF"),
        pytest.param(BROWSER.replace(b"Pragma: no-cache", b"Content-Length: 0"), id="length"),
        pytest.param(BROWSER.replace(b"Pragma: no-cache", b"Expect: 100-continue"), id="expect"),
        pytest.param(BROWSER.replace(b"Pragma: no-cache", b"Host: b"), id="two Hosts"),
        pytest.param(BROWSER.replace(b"Host: example.com:8080\r\n", b""), id="no Host"),
        pytest.param(BROWSER.replace(b"example.com:8080\r", b"a b\r"), id="bad Host"),
        pytest.param(BROWSER.replace(b"Upgrade: websocket", b"Upgrade: h2c"), id="h2c"),
        pytest.param(BROWSER.replace(b"Connection: Upgrade", b"Connection: x"), id="no upgrade"),
        pytest.param(
            BROWSER.replace(b"Pragma: no-cache", b"Transfer-Encoding: chunked"), id="chunked"
        ),
        pytest.param(
            BROWSER.replace(b"Pragma: no-cache", b"Proxy-Connection: close"), id="proxy-conn"
        ),
    ],
)
def test_anything_but_the_common_form_is_left_to_the_reader(data: bytes) -> None:
    assert read_upgrade_head(data, CONFIG) is None


def test_limits_are_left_to_the_reader() -> None:
    """A head past ``max_header_size`` or ``max_headers`` gets the reader's 431."""
    size = len(BROWSER)
    assert read_upgrade_head(BROWSER, ServerConfig(max_header_size=size)) is not None
    assert read_upgrade_head(BROWSER, ServerConfig(max_header_size=size - 1)) is None
    fields = BROWSER.count(b"\r\n") - 2
    assert read_upgrade_head(BROWSER, ServerConfig(max_headers=fields)) is not None
    assert read_upgrade_head(BROWSER, ServerConfig(max_headers=fields - 1)) is None
    assert through_reader(BROWSER, ServerConfig(max_headers=fields - 1)) is None


def test_keep_alive_as_llhttp_says() -> None:
    close = BROWSER.replace(b"Connection: Upgrade", b"Connection: close, Upgrade")
    assert agree(close)
    assert read_upgrade_head(close, CONFIG)[0].keep_alive is False  # type: ignore[index]
    off = ServerConfig(keepalive_timeout=0)
    assert agree(BROWSER, off)


#: Field lines where the two readers could part ways: case, whitespace, lists, odd tokens,
#: bytes llhttp treats specially, and fields the reader counts or refuses.
FIELDS = [
    b"Host: a",
    b"Host: a",
    b"host:a",
    b"Host: [::1]:80",
    b"Host: a:99999",
    b"Host: ",
    b"Host: a b",
    b"Host:\ta\t",
    b"Upgrade: websocket",
    b"Upgrade: websocket",
    b"upgrade: WebSocket",
    b"Upgrade: h2c, websocket",
    b"Upgrade: websocket/13",
    b"Upgrade: h2c",
    b"Connection: Upgrade",
    b"Connection: Upgrade",
    b"connection: keep-alive, upgrade",
    b"Connection: close, Upgrade",
    b"Connection: Upgrade, close",
    b"Connection: Upgrade\t",
    b"Connection: Upgrade,",
    b"Connection: ,Upgrade",
    b"Connection: upgrade , keep-alive",
    b"Connection: Keep-Alive",
    b"Connection: close",
    b"Connection: up grade",
    b'Connection: "x", upgrade',
    b"Connection: upgrade;x, upgrade",
    b"Connection: x upgrade, upgrade",
    b"Connection: upgrade x",
    b"Connection: (upgrade)",
    b"Connection: upgrade,,",
    b"Connection: upgrade, close;x",
    b"Connection: upgrade, closed",
    b'Connection: upgrade, "close"',
    b"Connection: upgrade,close",
    b"Connection: upgrade\t ,x",
    b"Connection: close ,upgrade",
    b"Upgrade: websocket \t, h2c",
    b"Connection:",
    KEY.rstrip(b"\r\n"),
    b"Sec-WebSocket-Version: 13",
    b"Origin: http://a",
    b"X-Empty:",
    b"X-Spaces:    ",
    b"X-Colon: a:b:c",
    b"X-Tab: \ta\tb\t",
    b"X_Under: x",
    b"X~Odd!#$%&'*+.^`|: x",
    b"Content-Length: 0",
    b"Content-Type: text/plain",
    b"Content-Type: a/b",
    b"Transfer-Encoding: chunked",
    b"Expect: 100-continue",
    b"Proxy-Connection: close",
    b"Keep-Alive: timeout=5",
    b"X-High: \xe9",
    b"X-Ctl: a\x01b",
    b"X-Del: a\x7fb",
    b"Bad Name: x",
    b"NoColon",
    b": novalue",
]
TARGETS = [b"/", b"/a/b", b"/?", b"/a?b=c&d", b"/a#frag", b"/%41%", b"/a?b#c?d", b'/"<>{}|\\^`']


def built_heads(count: int) -> list[bytes]:
    rng = random.Random(6455)
    heads = []
    for _ in range(count):
        fields = rng.sample(FIELDS, rng.randint(0, 8))
        # Most heads have the three fields an upgrade needs, so the fast path is reached.
        if rng.random() < 0.8:
            fields += [b"Host: h", b"Upgrade: websocket", b"Connection: Upgrade"]
            rng.shuffle(fields)
        line = b"GET " + rng.choice(TARGETS) + b" HTTP/1.1"
        if rng.random() < 0.1:
            line = rng.choice([b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b"GET / http/1.1"])
        tail = rng.choice([b"", b"", b"\x81\x80abcd", b"GET / HTTP/1.1\r\n\r\n"])
        heads.append(line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + tail)
    return heads


def test_built_heads_read_alike() -> None:
    heads = built_heads(4000)
    fast = sum(agree(head) for head in heads)
    # Both sides of the boundary are reached: the test would pass vacuously otherwise.
    readable = sum(through_reader(head, CONFIG) is not None for head in heads)
    assert 500 < fast < readable, (fast, readable)


def _mutations(rng: random.Random, data: bytes, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(buf) + 1)
            op = rng.randrange(3)
            if op == 0 and buf:
                buf[pos % len(buf)] = rng.choice(b" \t\r\n:,\x00\x7f\xe9Aa-/?#")
            elif op == 1:
                buf[pos:pos] = rng.choice([b" ", b"\t", b"\r\n", b",", b":", b"\r\n \r\n"])
            elif buf:
                del buf[pos : pos + rng.randint(1, 4)]
        out.append(bytes(buf))
    return out


@pytest.mark.parametrize("limits", ["default", "small"])
def test_the_fuzzing_corpus_and_its_mutations_read_alike(limits: str) -> None:
    """The server targets' inputs (byte 0-2 configure the fuzz run; the rest is what the
    client sends), under default limits and small ones (a 512-byte head, 8 fields)."""
    config = CONFIG if limits == "default" else ServerConfig(max_header_size=512, max_headers=8)
    rng = random.Random(7692)
    streams = [data[3:] for _, data in inputs([CORPUS / "upgrade", CORPUS / "http"])]
    fast = 0
    for data in [*streams, BROWSER]:
        fast += agree(data, config)
        fast += sum(agree(mutated, config) for mutated in _mutations(rng, data, 40))
    assert fast > 500


@pytest.mark.asyncio
@pytest.mark.both_loops
@pytest.mark.parametrize("split", [False, True], ids=["one read", "two reads"])
async def test_the_server_takes_the_short_way_only_for_a_whole_head(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, split: bool
) -> None:
    """A common upgrade in the connection's first read never reaches llhttp (no reader
    is even made), and the frame sent right behind its head is answered; the same head
    in two reads goes through the reader, with the same outcome."""
    fed: list[bytes] = []
    feed = RequestReader.feed

    def counting(self: RequestReader, data: bytes) -> bytes:
        fed.append(data)
        return feed(self, data)

    monkeypatch.setattr(RequestReader, "feed", counting)
    made: list[RequestReader] = []
    init = RequestReader.__init__

    def making(self: RequestReader, *args: Any) -> None:
        made.append(self)
        init(self, *args)

    monkeypatch.setattr(RequestReader, "__init__", making)

    async def echo(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    server = await start_server(Routes(default=echo), origin_policy=OriginPolicy.any())
    reader, writer = await open_tcp(server.port)
    data = BROWSER + encode_frame(Opcode.TEXT, b"early")
    if split:
        writer.write(data[:40])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[40:])
    else:
        writer.write(data)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert await asyncio.wait_for(reader.readexactly(7), TIMEOUT) == b"\x81\x05early"
    assert bool(fed) is split
    assert len(made) == split  # not even made: the short way needs no reader
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "first", [b"\x16\x03\x01\x00", b"\r\n", b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"]
)
async def test_only_a_connections_first_bytes_may_take_the_short_way(
    start_server: StartServer, first: bytes
) -> None:
    """Once the reader has read anything (a refused TLS hello, an empty line, a request),
    an upgrade behind it is the reader's: refused after a refusal, after an empty line and
    after a request read as any other."""

    async def echo(ws: WebSocket) -> None:
        ws.on_message = ws.send_nowait

    server = await start_server(Routes(default=echo), origin_policy=OriginPolicy.any())
    reader, writer = await open_tcp(server.port)
    writer.write(first)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(BROWSER)
    if first.startswith(b"\x16"):
        answer = await read_to_eof(reader)
        assert answer.startswith(b"HTTP/1.1 400 ") and b" 101 " not in answer
    else:
        if first.startswith(b"GET"):  # a plain GET to a route table: 426
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            assert head.startswith(b"HTTP/1.1 426 ")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 ")
    writer.close()


# -- the C twin of the split ---------------------------------------------------------------


def _truncations(data: bytes) -> list[bytes]:
    return [data[:n] for n in range(len(data) + 1)]


# The C twin is imported directly (tests.machine), so the twins are compared under
# STARGATE_PURE_PYTHON=1 too.
@needs_c
def test_the_c_split_returns_what_the_python_split_returns() -> None:
    """Both twins over every input above, each truncation of a browser's head, random bytes,
    and limits swept across the head's size and line count: equal results, both sides of
    the boundary reached."""
    rng = random.Random(9112)
    streams = [data[3:] for _, data in inputs([CORPUS / "upgrade", CORPUS / "http"])]
    heads = [*streams, BROWSER, *built_heads(2000), *_truncations(BROWSER)]
    heads += [m for data in [*streams, BROWSER] for m in _mutations(rng, data, 20)]
    heads += [
        bytes(rng.choice(b"GET /:\r\n\t Hostupgradewsck,") for _ in range(60)) for _ in range(500)
    ]
    limits = [(CONFIG.max_header_size, CONFIG.max_headers), (512, 8), (0, 0)]
    size, lines = len(BROWSER), BROWSER.count(b"\r\n")
    limits += [(n, 100) for n in range(size - 6, size + 3)] + [
        (8192, n) for n in range(lines - 4, lines + 2)
    ]
    split = 0
    for max_header_size, max_headers in limits:
        for data in heads:
            c = speedups.split_upgrade_head(data, max_header_size, max_headers)
            python = _split_upgrade_head_python(data, max_header_size, max_headers)
            assert c == python, (data, max_header_size, max_headers)
            split += c is not None
    assert split > 2000, split
    for twin in (speedups.split_upgrade_head, _split_upgrade_head_python):
        for max_header_size, max_headers, name in [
            (-1, 10, "max_header_size"),
            (8192, -1, "max_headers"),
        ]:
            with pytest.raises(ValueError, match=f"^{name} must not be negative$"):
                twin(BROWSER, max_header_size, max_headers)
    # bytes only: a writable buffer could be rewritten by a finalizer during the call.
    with pytest.raises(TypeError):
        speedups.split_upgrade_head(bytearray(BROWSER), 8192, 100)  # type: ignore[arg-type]
