"""Opening a client connection (stargate.client.opening): URLs, request headers, redirects,
and every way of failing, each with its documented exception."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import pytest

import stargate
from stargate.client import (
    ConnectError,
    ConnectionFailed,
    ConnectionRefused,
    DNSError,
    InvalidAccept,
    InvalidResponse,
    InvalidStatus,
    InvalidURL,
    OpenTimeout,
    RedirectError,
    TLSError,
)
from stargate.errors import InvalidHandshakeResponse
from stargate.handshake import (
    ExtensionNegotiationFailed,
    InvalidAcceptKey,
    InvalidUpgrade,
    MalformedResponse,
    Redirected,
    RejectedResponse,
    UnexpectedSubprotocol,
    UpgradeRefused,
)
from stargate.protocol import ProtocolVersion
from stargate.server import Routes
from stargate.testing import AppServer, serve_app

from .conftest import Certificate
from .support import (
    TIMEOUT,
    answering,
    app_routes,
    closed_port,
    echo,
    fake_server,
    header,
    read_head,
    switching,
)

# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "example.com",
        "ws://",
        "ws://host:99999/",
        "ws://host:port/",
        "ws://host/page#fragment",
        "ws://host/page#",
    ],
)
async def test_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURL) as info:
        await stargate.connect(url)
    assert isinstance(info.value, ValueError)


async def test_ssl_context_with_ws_url_is_refused() -> None:
    with pytest.raises(InvalidURL, match="ssl"):
        await stargate.connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())


# -- what the request says -------------------------------------------------------------------


async def test_request_headers(server: AppServer) -> None:
    url = server.url("/info?room=1").replace("ws://", "ws://alice:s%3Acret@")
    async with stargate.connect(
        url,
        extra_headers={"X-Test": "yes", "Cookie": "session=42"},
        origin=f"http://127.0.0.1:{server.port}",
        subprotocols=["chat.v1", "chat.v2"],
    ) as ws:
        info = json.loads(await ws.receive())
    headers = {name.lower(): value for name, value in info["headers"]}
    assert info["path"] == "/info"
    assert info["query"] == "room=1"
    assert headers["x-test"] == "yes"
    assert headers["cookie"] == "session=42"
    assert headers["origin"] == f"http://127.0.0.1:{server.port}"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["user-agent"].startswith("stargate/")
    assert headers["authorization"] == "Basic YWxpY2U6czpjcmV0"  # alice:s:cret
    assert "permessage-deflate" in headers["sec-websocket-extensions"]
    assert info["subprotocol"] == ws.subprotocol == "chat.v2"  # the server's preference


async def test_no_compression_no_user_agent(server: AppServer) -> None:
    async with server.connect("/info", compression=None, user_agent=None) as ws:
        info = json.loads(await ws.receive())
        assert not ws.compression and ws.extensions is None
    names = {name.lower() for name, _ in info["headers"]}
    assert "sec-websocket-extensions" not in names
    assert "user-agent" not in names


async def test_response_is_kept(server: AppServer) -> None:
    async with server.connect("/echo") as ws:
        assert ws.response.status == 101
        assert ws.response.headers.get("Sec-WebSocket-Extensions") == ws.extensions
        assert ws.remote_address == ("127.0.0.1", server.port)
        assert ws.local_address is not None
        assert repr(ws).endswith("open>")


# -- failures: one documented exception each ---------------------------------------------------


async def test_connection_refused() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefused) as info:
        await stargate.connect(f"ws://127.0.0.1:{port}/")
    assert isinstance(info.value, ConnectionRefusedError)
    assert str(port) in str(info.value)


async def test_connection_refused_on_every_address_of_localhost() -> None:
    with pytest.raises(ConnectionRefused):
        await stargate.connect(f"ws://localhost:{closed_port()}/")


async def test_dns_failure() -> None:
    with pytest.raises(DNSError) as info:
        await stargate.connect("ws://nonexistent.invalid/")
    assert info.value.host == "nonexistent.invalid"
    assert isinstance(info.value, OSError)
    assert "nonexistent.invalid" in str(info.value)


async def test_tls_failure_self_signed(certificate: Certificate) -> None:
    async with serve_app(app_routes(), ssl_context=certificate.server_context()) as server:
        with pytest.raises(TLSError) as info:
            await server.connect("/echo")
        assert "self-signed" in info.value.verify_message
        assert "self-signed" in str(info.value)
        # Trusting the certificate, the same server works, host name checked.
        async with server.connect("/echo", ssl=certificate.client_context()) as ws:
            await ws.send("over TLS")
            assert await ws.receive() == "over TLS"
        url = server.url("/echo").replace("127.0.0.1", "localhost")
        async with stargate.connect(url, ssl=certificate.client_context()) as ws:
            assert ws.url.startswith("wss://localhost:")


async def test_tls_failure_wrong_host_name(certificate: Certificate) -> None:
    async with serve_app(app_routes(), ssl_context=certificate.server_context()) as server:
        with pytest.raises(TLSError, match=r"(?i)hostname"):
            await server.connect(
                "/echo", ssl=certificate.client_context(), server_hostname="example.com"
            )


async def test_tls_to_a_plain_server(server: AppServer) -> None:
    with pytest.raises(TLSError):
        await stargate.connect(server.url("/echo").replace("ws://", "wss://"))


async def test_handshake_status_with_body() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        body = b'{"error": "you shall not pass"}'
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body))
        await writer.drain()
        await asyncio.sleep(0.05)  # the body comes in a later read than the head
        writer.write(body)
        await writer.drain()
        await reader.read()

    async with fake_server(refuse) as fake:
        with pytest.raises(InvalidStatus) as info:
            await stargate.connect(fake.url())
    error = info.value
    assert error.status == 403
    assert error.body == b'{"error": "you shall not pass"}'
    assert error.headers.get("Content-Type") == "application/json"
    assert isinstance(error, InvalidHandshakeResponse)
    assert "403 Forbidden" in str(error) and "you shall not pass" in str(error)


async def test_handshake_status_from_our_server() -> None:
    async with serve_app(Routes({"/echo": echo})) as other:
        with pytest.raises(InvalidStatus) as info:
            await other.connect("/elsewhere")
    assert info.value.status == 404
    assert info.value.body  # the server's reason


async def test_handshake_status_body_until_eof() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.0 503 Service Unavailable\r\n\r\ncome back later")
        writer.close()

    async with fake_server(refuse) as fake:
        with pytest.raises(InvalidStatus) as info:
            await stargate.connect(fake.url())
    assert info.value.status == 503
    assert info.value.body == b"come back later"


#: A refusal whose body stops after 9 of its 100 bytes: the other 91 never come.
CUT_SHORT_429 = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 100\r\n\r\nslow down"


async def test_handshake_status_body_cut_short_by_the_open_timeout() -> None:
    async with fake_server(answering(CUT_SHORT_429)) as fake:
        with pytest.raises(InvalidStatus) as info:
            await stargate.connect(fake.url(), open_timeout=1.0)
    assert (info.value.status, info.value.body) == (429, b"slow down")


@pytest.mark.parametrize(
    ("grace", "open_timeout"), [(0.05, 1.0), (0.9, 0.5)], ids=["body-wait-first", "deadline-first"]
)
async def test_a_refusal_whose_body_wait_ends_with_the_open_timeout_is_the_refusal(
    monkeypatch: pytest.MonkeyPatch, grace: float, open_timeout: float
) -> None:
    """The refusal's body wait and the open timeout ending in the same loop pass, in
    either order: the refusal is what the caller gets, not an ``OpenTimeout`` saying the
    server never answered.  A stalled loop makes both timers due at once."""
    from stargate.client import opening

    monkeypatch.setattr(opening, "BODY_GRACE", grace)
    await_body = opening._ClientProtocol._await_body

    def then_stall(self: opening._ClientProtocol, refusal: InvalidStatus) -> None:
        await_body(self, refusal)
        self.loop.call_soon(time.sleep, 1.2)  # past both the body grace and the deadline

    monkeypatch.setattr(opening._ClientProtocol, "_await_body", then_stall)

    async with fake_server(answering(CUT_SHORT_429)) as fake:
        with pytest.raises(InvalidStatus) as info:
            await stargate.connect(fake.url(), open_timeout=open_timeout)
    assert (info.value.status, info.value.body) == (429, b"slow down")


async def test_bad_accept() -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        writer.write(switching(head, accept="s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        await reader.read()

    async with fake_server(wrong) as fake:
        with pytest.raises(InvalidAccept) as info:
            await stargate.connect(fake.url())
    assert "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in str(info.value)
    assert info.value.status == 101


async def test_missing_accept() -> None:
    async def missing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await reader.read()

    async with fake_server(missing) as fake:
        with pytest.raises(InvalidAccept, match="missing"):
            await stargate.connect(fake.url())


async def test_bad_hixie76_answer() -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        await reader.readexactly(8)  # key3
        host = header(head, "Host") or ""
        writer.write(
            b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Location: ws://%s/\r\n\r\n"
            % host.encode()
            + b"0123456789abcdef"
        )
        await reader.read()

    async with fake_server(wrong) as fake:
        with pytest.raises(InvalidAccept, match="hixie-76"):
            await stargate.connect(fake.url(), version=ProtocolVersion.HIXIE_76)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("Sec-WebSocket-Protocol: other\r\n", "subprotocol"),
        ("Sec-WebSocket-Extensions: x-unknown\r\n", "x-unknown"),
        ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n", "deflate"),
        (
            "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n",
            "twice",
        ),
    ],
)
async def test_invalid_response(extra: str, match: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        writer.write(switching(head, extra=extra))
        await reader.read()

    async with fake_server(answer) as fake:
        with pytest.raises(InvalidResponse, match=match) as info:
            await stargate.connect(fake.url())
    assert not isinstance(info.value, InvalidAccept)


INTERIM = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
)


async def test_interim_responses_before_the_101_are_skipped() -> None:
    """RFC 9110 section 15.2: 1xx responses may come before the final one (a proxy's or a
    CDN's 103 Early Hints); the 101 after them opens the connection, and a frame sent
    with it is the first message."""

    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        writer.write(INTERIM + switching(head) + b"\x81\x02hi")
        await reader.read()

    async with fake_server(hints) as fake, stargate.connect(fake.url(), open_timeout=5) as ws:
        assert ws.response.status == 101
        assert await asyncio.wait_for(ws.receive(), 5) == "hi"


async def test_a_refusal_after_interim_responses_is_the_refusal() -> None:
    response = INTERIM + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
    async with fake_server(answering(response)) as fake:
        with pytest.raises(InvalidStatus) as info:
            await stargate.connect(fake.url(), open_timeout=5)
    assert (info.value.status, info.value.body) == (403, b"no")


async def test_an_extensions_header_of_empty_elements_negotiates_nothing() -> None:
    """RFC 9110 section 5.6.1: empty list elements are ignored, so ``,`` accepts no
    extension, and the connection must not say it compresses."""

    async def empty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        writer.write(switching(head, extra="Sec-WebSocket-Extensions: , ,\r\n"))
        await reader.read()

    async with fake_server(empty) as fake, stargate.connect(fake.url(), open_timeout=5) as ws:
        assert ws.compression is False
        assert ws.extensions is None


async def test_closed_before_the_response() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 101 Switching")
        writer.close()

    async with fake_server(hang_up) as fake:
        with pytest.raises(InvalidResponse, match="before completing"):
            await stargate.connect(fake.url())


async def test_malformed_response() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await reader.read()

    async with fake_server(garbage) as fake:
        with pytest.raises(InvalidResponse, match="malformed"):
            await stargate.connect(fake.url())


async def test_open_timeout_server_never_answers() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with fake_server(silent) as fake:
        started = time.monotonic()
        with pytest.raises(OpenTimeout) as info:
            await stargate.connect(fake.url(), open_timeout=0.3)
    assert 0.25 < time.monotonic() - started < TIMEOUT
    assert info.value.phase == "handshake"
    assert isinstance(info.value, TimeoutError)
    assert "did not answer" in str(info.value)


async def test_open_timeout_with_a_response_that_never_ends() -> None:
    """A head that trickles, or whose lines end in a bare LF (so it never ends): the
    timeout says the response was incomplete, not that the server did not answer."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n")
        await reader.read()

    async with fake_server(trickle) as fake:
        with pytest.raises(OpenTimeout) as info:
            await stargate.connect(fake.url(), open_timeout=0.3)
    assert info.value.phase == "handshake"
    assert "response was not complete" in str(info.value)


async def test_open_timeout_during_tls() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with fake_server(silent) as fake:
        with pytest.raises(OpenTimeout) as info:
            await stargate.connect(fake.url().replace("ws:", "wss:"), open_timeout=0.3)
    assert info.value.phase == "tls"


# -- redirects ----------------------------------------------------------------------------------


def redirect_to(location: str, status: int = 302) -> object:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(
            f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        await reader.read()

    return redirect


async def test_redirect_refused_by_default(server: AppServer) -> None:
    target = server.url("/echo")
    async with fake_server(redirect_to(target)) as fake:  # type: ignore[arg-type]
        with pytest.raises(RedirectError) as info:
            await stargate.connect(fake.url())
    assert info.value.status == 302
    assert info.value.location == target
    assert target in str(info.value)
    assert "follow_redirects" in str(info.value)
    assert isinstance(info.value, InvalidStatus)


async def test_redirect_followed(server: AppServer) -> None:
    async with fake_server(redirect_to(server.url("/echo"))) as hop2:  # type: ignore[arg-type]
        # An http:// Location is the same resource over ws:// (RFC 6455 section 3).
        hop2_url = hop2.url("/start").replace("ws://", "http://")
        async with fake_server(redirect_to(hop2_url, 307)) as hop1:  # type: ignore[arg-type]
            with pytest.raises(RedirectError, match="at most 1") as info:
                await stargate.connect(hop1.url(), follow_redirects=1)
            assert info.value.location == server.url("/echo")
            async with stargate.connect(hop1.url(), follow_redirects=2) as ws:
                assert ws.url == server.url("/echo")
                await ws.send("followed")
                assert await ws.receive() == "followed"


async def test_redirect_not_to_a_websocket_url() -> None:
    async with fake_server(redirect_to("ftp://example.com/")) as fake:  # type: ignore[arg-type]
        with pytest.raises(RedirectError, match="not a WebSocket URL"):
            await stargate.connect(fake.url(), follow_redirects=3)


@pytest.mark.parametrize(
    ("location", "why"),
    [("ws://127.0.0.1:9/b#part", "fragment"), ("mailto:x@y", "not a WebSocket URL")],
)
async def test_a_redirect_that_cannot_be_followed_says_why(location: str, why: str) -> None:
    """A server's bad Location is a RedirectError naming the reason (a fragment used to
    raise InvalidURL, the error of a URL the caller gave)."""
    async with fake_server(redirect_to(location)) as fake:  # type: ignore[arg-type]
        with pytest.raises(RedirectError, match=f"cannot be followed: .*{why}"):
            await stargate.connect(fake.url(), follow_redirects=3)


async def test_a_redirect_from_wss_to_ws_is_refused_as_leaving_tls(
    certificate: Certificate,
) -> None:
    """Never followed, and the error says it is the downgrade (it said the target was not
    a WebSocket URL)."""
    server_context, client_context = certificate.server_context(), certificate.client_context()
    redirect = redirect_to("ws://127.0.0.1:9/plain", 301)
    async with fake_server(redirect, ssl=server_context) as fake:  # type: ignore[arg-type]
        with pytest.raises(RedirectError, match="leaves TLS"):
            await stargate.connect(
                fake.url().replace("ws:", "wss:"), ssl=client_context, follow_redirects=3
            )


def test_every_error_is_a_connect_error() -> None:
    for cls in (
        ConnectionRefused,
        DNSError,
        InvalidAccept,
        InvalidResponse,
        InvalidStatus,
        InvalidURL,
        OpenTimeout,
        RedirectError,
        TLSError,
    ):
        assert issubclass(cls, ConnectError)
        assert issubclass(cls, stargate.StargateError)


# -- credentials on redirects -------------------------------------------------------------------

#: What the client must not hand to another origin (issue 10).
SECRETS = ("authorization", "cookie", "proxy-authorization")


@dataclass
class Hop:
    """A raw server that records every request head it reads and answers from ``routes``:
    a path mapped to a ``Location`` (a 302 to it) or to ``None`` (a 101, then a close)."""

    routes: dict[str, str | None]
    heads: list[bytes] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        self.heads.append(head)
        path = head.split(b" ", 2)[1].decode()
        location = self.routes[path]
        if location is None:
            # A valid 101 and an immediate close frame (1000): the client's close is quick.
            writer.write(switching(head) + b"\x88\x02\x03\xe8")
            await writer.drain()
            await reader.read(2 + 4 + 2)  # the client's echo of the close
        else:
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await reader.read()


def sent(head: bytes) -> dict[str, str]:
    """The fields of a request head, names lower-cased."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {n.strip().lower(): v.strip() for n, _, v in (ln.partition(":") for ln in lines if ln)}


async def follow(url: str, credentials: str) -> str:
    """Open ``url`` with credentials in the URL (``"url"``) or as an ``Authorization``
    header (``"header"``), plus a cookie and proxy credentials; returns where it landed."""
    headers = [("Cookie", "session=42"), ("Proxy-Authorization", "Basic cHJveHk6cHc=")]
    headers.append(("X-Trace", "7"))
    if credentials == "url":
        url = url.replace("ws://", "ws://alice:s3cret@")
    else:
        headers.append(("Authorization", "Bearer s3cret"))
    ws = await stargate.connect(url, extra_headers=headers, follow_redirects=3)
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    return ws.url


@pytest.mark.parametrize("credentials", ["url", "header"])
async def test_cross_origin_redirect_drops_credentials(credentials: str) -> None:
    landing = Hop({"/landing": None})
    async with fake_server(landing) as other:
        start = Hop({"/start": other.url("/landing")})
        async with fake_server(start) as first:
            assert await follow(first.url("/start"), credentials) == other.url("/landing")
    (first_head,), (second_head,) = start.heads, landing.heads
    first_fields, second_fields = sent(first_head), sent(second_head)
    for name in SECRETS:
        assert name in first_fields
        assert name not in second_fields, f"{name} was sent to another origin"
    assert b"s3cret" not in second_head and b"session=42" not in second_head
    assert second_fields["x-trace"] == "7"  # other headers still go
    assert second_fields["host"] == f"127.0.0.1:{other.port}"


@pytest.mark.parametrize("credentials", ["url", "header"])
async def test_same_origin_redirect_keeps_credentials(credentials: str) -> None:
    hop = Hop({"/start": "/landing", "/landing": None})
    async with fake_server(hop) as fake:
        landed = await follow(fake.url("/start"), credentials)
    assert landed.endswith(f"@127.0.0.1:{fake.port}/landing" if credentials == "url" else "")
    assert landed.endswith(f"127.0.0.1:{fake.port}/landing") and "s3cret" not in landed
    first, second = (sent(head) for head in hop.heads)
    for name in SECRETS:
        assert first[name] == second[name]


async def test_credentials_stay_dropped_back_on_the_first_origin() -> None:
    """Once handed to another origin, a redirect back does not restore them: what that
    origin's redirect asks for is not what the caller asked for."""
    elsewhere = Hop({"/bounce": None})
    async with fake_server(elsewhere) as other:
        hop = Hop({"/start": other.url("/bounce"), "/landing": None})
        async with fake_server(hop) as first:
            elsewhere.routes["/bounce"] = first.url("/landing")
            assert await follow(first.url("/start"), "header") == first.url("/landing")
    heads = [sent(head) for head in (hop.heads[0], elsewhere.heads[0], hop.heads[1])]
    assert [name in fields for fields in heads for name in SECRETS] == [True] * 3 + [False] * 6


async def test_no_password_in_errors() -> None:
    url = f"ws://alice:s3cret@127.0.0.1:{closed_port()}/"
    with pytest.raises(ConnectionRefused) as info:
        await stargate.connect(url)
    assert "s3cret" not in str(info.value) and "s3cret" not in info.value.url
    assert "alice:***@" in str(info.value)

    forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    async with fake_server(answering(forbidden)) as fake:
        with pytest.raises(InvalidStatus) as refused:
            await stargate.connect(fake.url().replace("ws://", "ws://alice:s3cret@"))
    assert "s3cret" not in str(refused.value) and "s3cret" not in repr(refused.value)
    with pytest.raises(InvalidURL) as invalid:
        await stargate.connect("ws://alice:s3cret@h:99999/")
    assert "s3cret" not in str(invalid.value)


async def test_no_secret_in_reprs(server: AppServer) -> None:
    url = server.url("/echo").replace("ws://", "ws://alice:s3cret@")
    async with stargate.connect(url) as ws:
        assert "s3cret" not in repr(ws) and "s3cret" not in ws.url


# -- the core's typed failures, mapped ----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "cause"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", InvalidStatus, UpgradeRefused),
        (b"HTTP/1.1 308 Moved\r\nLocation: /x\r\n\r\n", RedirectError, Redirected),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", InvalidResponse, MalformedResponse),
        ("accept=wrong", InvalidAccept, InvalidAcceptKey),
        ("Sec-WebSocket-Protocol: x\r\n", InvalidResponse, UnexpectedSubprotocol),
        ("Sec-WebSocket-Extensions: x-y\r\n", InvalidResponse, ExtensionNegotiationFailed),
        ("Upgrade: h2c\r\n", InvalidResponse, InvalidUpgrade),
    ],
)
async def test_each_failure_of_the_core_maps_to_its_error(
    answer: bytes | str, error: type[InvalidResponse], cause: type[Exception]
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if isinstance(answer, bytes):
            writer.write(answer)
        elif answer.startswith("accept="):
            writer.write(switching(head, accept=answer.partition("=")[2]))
        elif answer.startswith("Upgrade:"):
            writer.write(switching(head).replace(b"Upgrade: websocket\r\n", answer.encode()))
        else:
            writer.write(switching(head, extra=answer))
        await reader.read()

    async with fake_server(respond) as fake:
        with pytest.raises(error) as info:
            await stargate.connect(fake.url())
    assert type(info.value) is error
    assert isinstance(info.value.__cause__, cause)
    core = info.value.__cause__
    assert isinstance(core, InvalidHandshakeResponse)
    assert info.value.status == core.status
    if isinstance(core, RejectedResponse):
        assert info.value.headers == core.response.headers


# -- the connection lost or stuck on the way -----------------------------------------------------


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashing server or a middlebox does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_a_reset_during_the_opening_handshake(scheme: str) -> None:
    """A server that resets the connection after reading the request (or the TLS client
    hello): ConnectionFailed that names the URL and the phase, with the reset as its cause."""

    async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        reset(writer)

    async with fake_server(crash) as fake:
        with pytest.raises(ConnectionFailed) as info:
            await stargate.connect(fake.url().replace("ws:", f"{scheme}:"))
    phase = "the TLS handshake" if scheme == "wss" else "the opening handshake"
    url = fake.url().replace("ws:", f"{scheme}:")
    assert str(info.value).startswith(f"{url}: connection lost during {phase}: ")
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert not isinstance(info.value, OpenTimeout)


async def test_open_timeout_during_the_tcp_connection() -> None:
    """A server whose accept queue is full drops the SYN: the open timeout ends the attempt
    in the "connect" phase, and the socket of the attempt is closed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the queue: later SYNs are dropped, connect hangs
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        try:
            with pytest.raises(OpenTimeout) as info:
                await stargate.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
        finally:
            for filler in fillers:
                filler.close()
    assert info.value.phase == "connect"
    assert "during the TCP connection" in str(info.value)


async def test_an_unreachable_address_is_not_called_a_refusal() -> None:
    """An address the host cannot route to (a broadcast one) fails at once with
    ConnectionFailed naming the address and the system's reason, not ConnectionRefused."""
    with pytest.raises(ConnectionFailed) as info:
        await stargate.connect("ws://255.255.255.255:80/", open_timeout=TIMEOUT)
    assert not isinstance(info.value, ConnectionRefused)
    assert str(info.value).startswith("cannot connect to 255.255.255.255 port 80: [Errno ")
    assert isinstance(info.value.__cause__, OSError)


async def test_a_host_name_that_is_not_valid_idna() -> None:
    """A host label over 63 characters cannot be encoded for DNS: DNSError "invalid host
    name", before anything is sent."""
    host = "a" * 64 + ".example"
    with pytest.raises(DNSError, match="invalid host name") as info:
        await stargate.connect(f"ws://{host}/")
    assert info.value.host == host
