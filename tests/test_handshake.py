"""Tests of stargate.handshake: request/response parsing, server accept, rejection, client."""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargate.errors import HandshakeError, InvalidHandshakeResponse
from stargate.handshake import (
    ALL_VERSIONS,
    RFC_VERSIONS,
    Accepted,
    ClientAccepted,
    ClientHandshake,
    OriginPolicy,
    Request,
    Response,
    accept,
    accept_key,
    detect_version,
    hixie76_answer,
    key3_length,
    parse_request,
    parse_response,
    reject_response,
)
from stargate.headers import Headers
from stargate.protocol import ProtocolVersion

MAX = 16384
V = ProtocolVersion
Params = list[tuple[str, str | None]]

# RFC 6455 section 1.2/1.3 example.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# draft-hixie-thewebsocketprotocol-76 section 1.3, with the spaces that matter.
HIXIE76_KEY1 = "4 @1  46546xW%0l 1 5"  # 4146546015 / 5 spaces = 829309203
HIXIE76_KEY2 = "12998 5 Y3 1  .P00"  # 1299853100 / 5 spaces = 259970620
HIXIE76_KEY3 = b"^n:ds[4U"
HIXIE76_ANSWER = b"8jKS'y:G*Co,Wxa-"
HIXIE76_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Sec-WebSocket-Protocol: sample\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"Origin: http://example.com\r\n"
    b"\r\n"
    b"^n:ds[4U"
)
HIXIE76_RESPONSE = (
    b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Origin: http://example.com\r\n"
    b"Sec-WebSocket-Location: ws://example.com/demo\r\n"
    b"Sec-WebSocket-Protocol: sample\r\n"
    b"\r\n"
    b"8jKS'y:G*Co,Wxa-"
)


def make_request(
    headers: Sequence[tuple[str, str]],
    *,
    method: str = "GET",
    target: str = "/chat",
    http_version: str = "1.1",
) -> Request:
    return Request(method, target, Headers(headers), http_version)


RFC_BASE: list[tuple[str, str]] = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]

HIXIE76_BASE: list[tuple[str, str]] = [
    ("Host", "example.com"),
    ("Connection", "Upgrade"),
    ("Upgrade", "WebSocket"),
    ("Sec-WebSocket-Key1", HIXIE76_KEY1),
    ("Sec-WebSocket-Key2", HIXIE76_KEY2),
    ("Origin", "http://example.com"),
]

HIXIE75_BASE: list[tuple[str, str]] = [
    ("Upgrade", "WebSocket"),
    ("Connection", "Upgrade"),
    ("Host", "example.com"),
    ("Origin", "http://example.com"),
]


def changed(base: list[tuple[str, str]], **changes: str | None) -> list[tuple[str, str]]:
    """``base`` with fields replaced (``Sec_WebSocket_Key="x"``) or removed (``=None``)."""
    names = {name.replace("_", "-").lower(): value for name, value in changes.items()}
    result = [(n, v) for n, v in base if n.lower() not in names]
    result += [(n.replace("_", "-"), v) for n, v in changes.items() if v is not None]
    return result


def refusal(request: Request, **kwargs: object) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        accept(request, **kwargs)  # type: ignore[arg-type]
    return info.value


# =============================================================================================
# parse_request


def test_parse_request_complete() -> None:
    data = HIXIE76_REQUEST
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    assert data[consumed:] == HIXIE76_KEY3  # key3 is not part of the head
    assert request.method == "GET"
    assert request.target == "/demo"
    assert request.http_version == "1.1"
    assert request.headers.get("sec-websocket-key1") == HIXIE76_KEY1  # inner spaces kept
    assert request.headers.items()[0] == ("Host", "example.com")
    assert len(request.headers) == 7


def test_parse_request_accepts_bytearray() -> None:
    parsed = parse_request(bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), max_header_size=MAX)
    assert parsed is not None
    assert parsed[0].headers.get("Host") == "x"


def test_parse_request_incomplete_prefixes_return_none() -> None:
    head_end = HIXIE76_REQUEST.index(b"\r\n\r\n") + 4
    for size in range(head_end):
        assert parse_request(HIXIE76_REQUEST[:size], max_header_size=MAX) is None
    assert parse_request(HIXIE76_REQUEST[:head_end], max_header_size=MAX) is not None


def test_parse_request_strips_ows_and_keeps_empty_values() -> None:
    data = b"GET / HTTP/1.1\r\nHost:example.com\r\nX-A: \t value \t\r\nX-Empty:\r\n\r\n"
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    headers = parsed[0].headers
    assert headers.get("Host") == "example.com"
    assert headers.get("X-A") == "value"
    assert headers.get("X-Empty") == ""


def test_parse_request_keeps_obs_text_as_latin1() -> None:
    parsed = parse_request(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n", max_header_size=MAX)
    assert parsed is not None
    assert parsed[0].headers.get("X-Name") == "caf\xe9"


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/chat", "/chat", ""),
        ("/chat?room=1&x=2", "/chat", "room=1&x=2"),
        ("/?", "/", ""),
        ("http://example.com/a/b?c=d", "/a/b", "c=d"),
        ("https://example.com", "/", ""),
    ],
)
def test_request_path_and_query(target: str, path: str, query: str) -> None:
    request = make_request([], target=target)
    assert request.path == path
    assert request.query == query


def test_parse_request_head_at_exactly_the_limit() -> None:
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * 10 + b"\r\n\r\n"
    assert parse_request(data, max_header_size=len(data)) is not None
    with pytest.raises(HandshakeError) as info:
        parse_request(data, max_header_size=len(data) - 1)
    assert info.value.status == 431
    assert "larger than" in info.value.reason


def test_parse_request_too_large_while_incomplete() -> None:
    data = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 200
    assert parse_request(data, max_header_size=len(data) + 1) is None
    with pytest.raises(HandshakeError) as info:
        parse_request(data, max_header_size=100)
    assert info.value.status == 431
    assert "100 bytes" in info.value.reason


@pytest.mark.parametrize(
    "line",
    [
        b"GARBAGE",
        b"",
        b"GET /",
        b"GET / HTTP/1.1 extra",
        b"GET  / HTTP/1.1",
        b"GET / http/1.1",
        b"GET / HTTP/11",
        b"GET / HTTP/1.1 ",
        b"G(T / HTTP/1.1",
        b"GET /\xff HTTP/1.1",
        b"GET /a\x00b HTTP/1.1",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello sent to a plain port
    ],
)
def test_parse_request_garbage_request_line(line: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_request(line + b"\r\nHost: x\r\n\r\n", max_header_size=MAX)
    assert info.value.status == 400
    assert "invalid request line" in info.value.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"NoColon", "without a colon"),
        (b"Host : example.com", "invalid header name"),
        (b": value", "invalid header name"),
        (b"Bad Name: x", "invalid header name"),
        (b" folded", "line folding"),
        (b"\tfolded", "line folding"),
        (b"X: a\x00b", "control character"),
        (b"X: a\rb", "control character"),
        (b"X: a\nb", "control character"),
        (b"X: a\x7fb", "control character"),
    ],
)
def test_parse_request_bad_header_line(line: bytes, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n", max_header_size=MAX)
    assert info.value.status == 400
    assert reason in info.value.reason


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_parse_request_random_bytes(data: bytes) -> None:
    """Whatever a peer sends, the parser returns None or a Request, or raises HandshakeError."""
    try:
        result = parse_request(data, max_header_size=256)
    except HandshakeError as exc:
        assert exc.status in (400, 431)
        assert exc.reason
    else:
        if result is not None:
            request, consumed = result
            assert isinstance(request, Request)
            assert 0 < consumed <= min(len(data), 256)


_line_parts = st.sampled_from(
    [b"GET", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b":", b"Host", b"Upgrade", b"\t"]
)


@given(st.lists(_line_parts | st.binary(max_size=8), max_size=40))
@settings(max_examples=500)
def test_parse_request_random_request_like_bytes(parts: list[bytes]) -> None:
    data = b"".join(parts) + b"\r\n\r\n"
    try:
        result = parse_request(data, max_header_size=MAX)
    except HandshakeError as exc:
        assert exc.status == 400
    else:
        assert result is not None


# =============================================================================================
# parse_response


def test_parse_response() -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    parsed = parse_response(data, max_header_size=MAX)
    assert parsed is not None
    response, consumed = parsed
    assert data[consumed:] == b"\x81\x00"
    assert response == Response(101, "Switching Protocols", Headers([("Upgrade", "websocket")]))


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        (b"HTTP/1.1 404 Not Found", 404, "Not Found"),
        (b"HTTP/1.1 200 ", 200, ""),
        (b"HTTP/1.0 200", 200, ""),
    ],
)
def test_parse_response_status_lines(line: bytes, status: int, reason: str) -> None:
    parsed = parse_response(line + b"\r\n\r\n", max_header_size=MAX)
    assert parsed is not None
    assert (parsed[0].status, parsed[0].reason) == (status, reason)


@pytest.mark.parametrize("line", [b"HTTP/1.1 1010 X", b"HTTP/1.1 abc X", b"ICY 200 OK", b""])
def test_parse_response_bad_status_line(line: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_response(line + b"\r\n\r\n", max_header_size=MAX)
    assert info.value.status == 400
    assert "invalid status line" in info.value.reason


def test_parse_response_incomplete_and_too_large() -> None:
    assert parse_response(b"HTTP/1.1 101 OK\r\n", max_header_size=MAX) is None
    with pytest.raises(HandshakeError) as info:
        parse_response(b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 20, max_header_size=64)
    assert info.value.status == 431


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_parse_response_random_bytes(data: bytes) -> None:
    try:
        parse_response(data, max_header_size=200)
    except HandshakeError as exc:
        assert exc.status in (400, 431)


# =============================================================================================
# detect_version and key3_length


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        (RFC_BASE, V.RFC6455),
        (changed(RFC_BASE, Sec_WebSocket_Version="8"), V.HYBI_08),
        (changed(RFC_BASE, Sec_WebSocket_Version="7"), V.HYBI_07),
        (changed(RFC_BASE, Sec_WebSocket_Version=" 13 "), V.RFC6455),
        (HIXIE76_BASE, V.HIXIE_76),
        (changed(HIXIE76_BASE, Sec_WebSocket_Key2=None), V.HIXIE_76),
        (HIXIE75_BASE, V.HIXIE_75),
        ([("upgrade", "websocket")], V.HIXIE_75),
    ],
)
def test_detect_version(headers: list[tuple[str, str]], version: ProtocolVersion) -> None:
    assert detect_version(make_request(headers)) is version


@pytest.mark.parametrize("value", ["14", "6", "0", "", "13, 8", "abc"])
def test_detect_version_unsupported(value: str) -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request(changed(RFC_BASE, Sec_WebSocket_Version=value)))
    assert info.value.status == 426
    assert "unsupported Sec-WebSocket-Version" in info.value.reason
    assert info.value.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_detect_version_key_without_version() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request(changed(RFC_BASE, Sec_WebSocket_Version=None)))
    assert info.value.status == 426
    assert "without Sec-WebSocket-Version" in info.value.reason
    assert info.value.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_detect_version_not_an_upgrade() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request([("Host", "example.com")]))
    assert info.value.status == 426
    assert "not a WebSocket upgrade request" in info.value.reason


def test_detect_version_duplicate_version_header() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request([*RFC_BASE, ("Sec-WebSocket-Version", "13")]))
    assert info.value.status == 400
    assert "more than once" in info.value.reason


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        (HIXIE76_BASE, 8),
        (changed(HIXIE76_BASE, Sec_WebSocket_Key1=None), 8),
        (RFC_BASE, 0),
        (HIXIE75_BASE, 0),
        ([], 0),
        ([*RFC_BASE, ("Sec-WebSocket-Key1", "x")], 0),
        (changed(RFC_BASE, Sec_WebSocket_Version="99"), 0),
    ],
)
def test_key3_length(headers: list[tuple[str, str]], length: int) -> None:
    assert key3_length(make_request(headers)) == length


# =============================================================================================
# accept: RFC 6455 and hybi


def test_accept_key_rfc_vector() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_accept_rfc6455_vector_exact_bytes() -> None:
    data = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    assert consumed == len(data)
    assert key3_length(request) == 0
    accepted = accept(
        request,
        subprotocols=["chat"],
        origin_policy=OriginPolicy(allowed=("http://example.com",)),
    )
    assert accepted == Accepted(
        V.RFC6455,
        "chat",
        [],
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n",
    )


def test_accept_rfc6455_minimal_and_extra_headers() -> None:
    accepted = accept(make_request(RFC_BASE), extra_headers=[("Set-Cookie", "a=b"), ("X-Y", "")])
    assert accepted.version is V.RFC6455
    assert accepted.subprotocol is None
    assert accepted.extensions == []
    assert accepted.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Set-Cookie: a=b\r\n"
        b"X-Y: \r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "extra", [("X-Bad", "a\r\nInjected: yes"), ("Bad Name", "x"), ("X", "caf\u20ac")]
)
def test_accept_refuses_extra_headers_that_would_break_the_head(extra: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        accept(make_request(RFC_BASE), extra_headers=[extra])


@pytest.mark.parametrize("version", ["7", "8"])
def test_accept_hybi_uses_sec_websocket_origin(version: str) -> None:
    headers = changed(
        RFC_BASE, Sec_WebSocket_Version=version, Sec_WebSocket_Origin="http://evil.example"
    )
    error = refusal(make_request(headers))
    assert error.status == 403
    assert "http://evil.example" in error.reason
    accepted = accept(
        make_request(changed(headers, Sec_WebSocket_Origin="http://server.example.com"))
    )
    assert accepted.version is V(version)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in accepted.response


def test_accept_hybi_falls_back_to_origin_header() -> None:
    headers = changed(RFC_BASE, Sec_WebSocket_Version="8", Origin="http://evil.example")
    assert refusal(make_request(headers)).status == 403


@pytest.mark.parametrize(
    "changes",
    [
        {"Connection": "keep-alive, Upgrade"},  # Firefox
        {"Connection": "upgrade"},
        {"Connection": "Upgrade, keep-alive"},
        {"Upgrade": "WebSocket"},
        {"Upgrade": "WEBSOCKET"},
        {"Upgrade": "h2c, websocket"},
        {"Connection": ", ,Upgrade,"},
    ],
)
def test_accept_tokens_case_insensitive(changes: dict[str, str]) -> None:
    assert accept(make_request(changed(RFC_BASE, **changes))).version is V.RFC6455


def test_accept_lower_case_header_names() -> None:
    headers = [(name.lower(), value) for name, value in RFC_BASE]
    headers = changed(headers, upgrade="WebSocket")
    assert accept(make_request(headers)).version is V.RFC6455


def test_accept_connection_split_over_two_fields() -> None:
    headers = [*changed(RFC_BASE, Connection="keep-alive"), ("Connection", "Upgrade")]
    assert accept(make_request(headers)).version is V.RFC6455


def test_accept_absolute_form_target() -> None:
    request = make_request(RFC_BASE, target="http://server.example.com/chat?x=1")
    assert accept(request).version is V.RFC6455


# --- subprotocols -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "ours", "selected"),
    [
        (["chat, superchat"], ["superchat", "chat"], "superchat"),  # server preference
        (["chat, superchat"], ["chat", "superchat"], "chat"),
        (["a", "b"], ["b"], "b"),  # two fields form one list
        (["chat"], ["other"], None),  # none match: accepted without the header
        ([], ["chat"], None),
        (["chat"], [], None),
        (["Chat"], ["chat"], None),  # case-sensitive (RFC 7936)
    ],
)
def test_accept_subprotocol_selection(
    offered: list[str], ours: list[str], selected: str | None
) -> None:
    headers = RFC_BASE + [("Sec-WebSocket-Protocol", value) for value in offered]
    accepted = accept(make_request(headers), subprotocols=ours)
    assert accepted.subprotocol == selected
    if selected is None:
        assert b"Sec-WebSocket-Protocol" not in accepted.response
    else:
        assert f"\r\nSec-WebSocket-Protocol: {selected}\r\n".encode() in accepted.response


# --- extensions -------------------------------------------------------------------------------


class RecordingExtension:
    """A ServerExtension that records its offers and accepts those matching a predicate."""

    def __init__(self, name: str, accept_if: Params | None = None, raise_on: str = "") -> None:
        self.name = name
        self.accept_if = accept_if
        self.raise_on = raise_on
        self.calls: list[Params] = []

    def accept(self, params: Params) -> tuple[str, object] | None:
        self.calls.append(params)
        if any(p == self.raise_on for p, _ in params):
            raise HandshakeError(400, f"bad parameter {self.raise_on}")
        if self.accept_if is None or params == self.accept_if:
            value = "; ".join([self.name, *(p if v is None else f"{p}={v}" for p, v in params)])
            return value, (self.name, params)
        return None


def test_accept_extension_hook_receives_parsed_offers_in_client_order() -> None:
    deflate = RecordingExtension("permessage-deflate", accept_if=[("client_max_window_bits", None)])
    other = RecordingExtension("x-other")
    headers = [
        *RFC_BASE,
        (
            "Sec-WebSocket-Extensions",
            'permessage-deflate; server_max_window_bits="10", x-other; a=1',
        ),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-other"),
    ]
    accepted = accept(make_request(headers), extensions=[deflate, other])
    # The first offer of permessage-deflate is declined, the second accepted; x-other accepts
    # its first offer and is not asked again.
    assert deflate.calls == [[("server_max_window_bits", "10")], [("client_max_window_bits", None)]]
    assert other.calls == [[("a", "1")]]
    assert accepted.extensions == [
        ("x-other", [("a", "1")]),
        ("permessage-deflate", [("client_max_window_bits", None)]),
    ]
    expected = b"x-other; a=1, permessage-deflate; client_max_window_bits"
    assert b"\r\nSec-WebSocket-Extensions: " + expected + b"\r\n" in accepted.response


def test_accept_extension_not_offered_is_not_called() -> None:
    ext = RecordingExtension("permessage-deflate")
    accepted = accept(make_request(RFC_BASE), extensions=[ext])
    assert ext.calls == []
    assert accepted.extensions == []
    assert b"Sec-WebSocket-Extensions" not in accepted.response


def test_accept_extension_all_declined() -> None:
    ext = RecordingExtension("foo", accept_if=[("never", None)])
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo, foo; a")]
    accepted = accept(make_request(headers), extensions=[ext])
    assert ext.calls == [[], [("a", None)]]
    assert accepted.extensions == []
    assert b"Sec-WebSocket-Extensions" not in accepted.response


def test_accept_extension_hook_may_refuse() -> None:
    ext = RecordingExtension("foo", raise_on="bad")
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo; bad")]
    error = refusal(make_request(headers), extensions=[ext])
    assert (error.status, error.reason) == (400, "bad parameter bad")


@pytest.mark.parametrize("configured", [True, False])
def test_accept_malformed_extension_header(configured: bool) -> None:
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo; a=b c")]
    extensions = [RecordingExtension("foo")] if configured else []
    error = refusal(make_request(headers), extensions=extensions)
    assert error.status == 400
    assert "Sec-WebSocket-Extensions" in error.reason


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"Sec_WebSocket_Key": None}, 400, "missing Sec-WebSocket-Key"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25j"}, 400, "exactly 16 bytes"),  # 15 bytes
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, 400, "exactly 16 bytes"),  # 5 bytes
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZSE="}, 400, "exactly 16 bytes"),  # 17
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ"}, 400, "not base64"),  # no padding
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ=!"}, 400, "not base64"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbX BsZSBub25jZQ=="}, 400, "not base64"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZR=="}, 400, "exactly 16 bytes"),  # bits
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZ\xe9=="}, 400, "not base64"),
        ({"Sec_WebSocket_Key": ""}, 400, "exactly 16 bytes"),
        ({"Upgrade": None}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Upgrade": "h2c"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Upgrade": "websockets"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Connection": None}, 400, "Connection header does not contain 'upgrade'"),
        ({"Connection": "keep-alive"}, 400, "Connection header does not contain 'upgrade'"),
        ({"Host": None}, 400, "missing Host header"),
        ({"Host": "exa mple.com"}, 400, "invalid Host header"),
        ({"Host": "example.com:99999"}, 400, "invalid Host header"),
        ({"Host": "a/b"}, 400, "invalid Host header"),
        ({"Sec_WebSocket_Version": "9"}, 426, "unsupported Sec-WebSocket-Version '9'"),
        ({"Origin": "http://evil.example"}, 403, "origin 'http://evil.example' is not allowed"),
        ({"Origin": "null"}, 403, "origin 'null' is not allowed"),
    ],
)
def test_accept_refusals(changes: dict[str, str | None], status: int, reason: str) -> None:
    error = refusal(make_request(changed(RFC_BASE, **changes)))
    assert error.status == status
    assert reason in error.reason


def test_accept_bad_version_carries_supported_versions() -> None:
    error = refusal(make_request(changed(RFC_BASE, Sec_WebSocket_Version="14")))
    assert error.status == 426
    assert error.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_accept_non_upgrade_request() -> None:
    error = refusal(make_request([("Host", "example.com")]))
    assert error.status == 426
    assert error.reason == "not a WebSocket upgrade request"


@pytest.mark.parametrize("method", ["POST", "HEAD", "get", "CONNECT"])
def test_accept_non_get(method: str) -> None:
    error = refusal(make_request(RFC_BASE, method=method))
    assert error.status == 405
    assert f"method {method!r} not allowed" in error.reason
    assert error.headers == [("Allow", "GET")]


@pytest.mark.parametrize("http_version", ["1.0", "0.9"])
def test_accept_http_1_0(http_version: str) -> None:
    error = refusal(make_request(RFC_BASE, http_version=http_version))
    assert error.status == 400
    assert f"HTTP/{http_version} cannot upgrade" in error.reason


def test_accept_http_2_0_is_at_least_1_1() -> None:
    assert accept(make_request(RFC_BASE, http_version="2.0")).version is V.RFC6455


def test_accept_invalid_http_version() -> None:
    error = refusal(make_request(RFC_BASE, http_version="x.y"))
    assert (error.status, error.reason) == (400, "invalid HTTP version 'x.y'")


@pytest.mark.parametrize("name", ["Host", "Sec-WebSocket-Key", "Origin"])
def test_accept_duplicate_single_fields(name: str) -> None:
    headers = [*RFC_BASE, ("Origin", "http://server.example.com")]
    value = dict(headers)[name]
    error = refusal(make_request([*headers, (name, value)]))
    assert error.status == 400
    assert error.reason == f"{name} header sent more than once"


def test_accept_invalid_target() -> None:
    error = refusal(make_request(RFC_BASE, target="*"))
    assert (error.status, error.reason) == (400, "invalid request target '*'")


def test_accept_origin_with_control_character() -> None:
    error = refusal(make_request([*RFC_BASE, ("Origin", "http://a\r\nX: y")]))
    assert (error.status, error.reason) == (400, "control character in the Origin header")


@pytest.mark.parametrize(
    ("versions", "header"),
    [
        (frozenset({V.HYBI_07}), "7"),
        (frozenset({V.RFC6455}), "13"),
        (frozenset({V.RFC6455, V.HYBI_07, V.HIXIE_75}), "13, 7"),
    ],
)
def test_accept_version_disabled(versions: frozenset[ProtocolVersion], header: str) -> None:
    error = refusal(make_request(changed(RFC_BASE, Sec_WebSocket_Version="8")), versions=versions)
    assert error.status == 426
    assert error.reason == "WebSocket protocol 8 is disabled on this server"
    assert error.headers == [("Sec-WebSocket-Version", header)]


# =============================================================================================
# accept: origin policy


@pytest.mark.parametrize(
    ("policy", "origin", "host", "expected"),
    [
        # same-origin default
        (OriginPolicy(), None, "example.com", True),
        (OriginPolicy(), "", "example.com", False),  # present but empty: not "missing"
        (OriginPolicy(), " ", "example.com", False),
        (OriginPolicy(), "http://example.com", "example.com", True),
        (OriginPolicy(), "https://example.com", "example.com", False),  # http server
        (OriginPolicy(), "HTTP://Example.COM", "example.com", True),
        (OriginPolicy(), "http://example.com", "EXAMPLE.com", True),
        (OriginPolicy(), "http://example.com:8080", "example.com:8080", True),
        (OriginPolicy(), "http://example.com", "example.com:80", True),
        (OriginPolicy(), "https://example.com", "example.com:443", False),  # http server
        (OriginPolicy(), "http://example.com:443", "example.com:443", True),
        (OriginPolicy(), "http://example.com", "example.com:443", False),
        (OriginPolicy(), "http://example.com:8080", "example.com", False),
        (OriginPolicy(), "http://example.com", "example.com:8080", False),
        (OriginPolicy(), "http://evil.com", "example.com", False),
        (OriginPolicy(), "http://example.com.evil.com", "example.com", False),
        (OriginPolicy(), "http://sub.example.com", "example.com", False),
        (OriginPolicy(), "http://[::1]:8080", "[::1]:8080", True),
        (OriginPolicy(), "null", "example.com", False),
        (OriginPolicy(), "garbage", "example.com", False),
        (OriginPolicy(), "http://user@example.com", "example.com", False),
        (OriginPolicy(), "http://example.com/path", "example.com", False),
        (OriginPolicy(), "chrome-extension://abc", "abc", False),
        (OriginPolicy(), "foo://example.com:81", "example.com", False),
        (OriginPolicy(), "http://example.com", None, False),
        (OriginPolicy(same_origin=False), "http://example.com", "example.com", False),
        (OriginPolicy(allow_missing=False), None, "example.com", False),
        # exact origins
        (OriginPolicy(allowed=("https://app.example",)), "https://app.example", "api.x", True),
        (OriginPolicy(allowed=("https://app.example",)), "https://app.example:443", "x", True),
        (OriginPolicy(allowed=("https://app.example:443",)), "https://app.example", "x", True),
        (OriginPolicy(allowed=("https://app.example/",)), "https://APP.example", "x", True),
        (OriginPolicy(allowed=("https://app.example",)), "http://app.example", "x", False),
        (OriginPolicy(allowed=("https://app.example",)), "https://app.example:8443", "x", False),
        (OriginPolicy(allowed=("http://localhost:8080",)), "http://localhost:8080", "x", True),
        (OriginPolicy(allowed=("http://localhost:8080",)), "http://localhost", "x", False),
        (OriginPolicy(allowed=("null",)), "null", "x", True),
        # host patterns
        (OriginPolicy(allowed=("example.com",)), "https://example.com:1234", "x", True),
        (OriginPolicy(allowed=("example.com",)), "http://www.example.com", "x", False),
        (OriginPolicy(allowed=("example.com:8080",)), "http://example.com:8080", "x", True),
        (OriginPolicy(allowed=("example.com:8080",)), "http://example.com", "x", False),
        (OriginPolicy(allowed=("*.example.com",)), "https://a.example.com", "x", True),
        (OriginPolicy(allowed=("*.example.com",)), "https://a.b.example.com", "x", True),
        (OriginPolicy(allowed=("*.Example.com",)), "https://A.example.COM", "x", True),
        (OriginPolicy(allowed=("*.example.com",)), "https://example.com", "x", False),
        (OriginPolicy(allowed=("*.example.com",)), "https://evilexample.com", "x", False),
        (OriginPolicy(allowed=("*.example.com",)), "https://example.com.evil", "x", False),
        (OriginPolicy(allowed=("*.example.com:8443",)), "https://a.example.com:8443", "x", True),
        (OriginPolicy(allowed=("*.example.com:8443",)), "https://a.example.com", "x", False),
        (OriginPolicy(allowed=("bad pattern",)), "https://a.example.com", "x", False),
        # any
        (OriginPolicy.any(), "http://anything.example", "x", True),
        (OriginPolicy.any(), "null", "x", True),
        (OriginPolicy(allowed=("*",)), "garbage", "x", True),
    ],
)
def test_origin_policy_check(
    policy: OriginPolicy, origin: str | None, host: str | None, expected: bool
) -> None:
    assert policy.check(origin, host) is expected


@pytest.mark.parametrize(
    ("origin", "host", "secure", "expected"),
    [
        # A plain (ws/http) server's origin is http://Host: other schemes are other origins.
        ("http://example.com", "example.com", False, True),
        ("https://example.com", "example.com", False, False),
        ("https://example.com:80", "example.com", False, False),
        ("chrome-extension://example.com:80", "example.com", False, False),
        ("chrome-extension://abcdefghijklmnop", "abcdefghijklmnop", False, False),
        ("ws://example.com", "example.com", False, False),
        ("foo://example.com:80", "example.com", False, False),
        # A secure (wss/https) server's origin is https://Host.
        ("https://example.com", "example.com", True, True),
        ("HTTPS://Example.COM:443", "example.com", True, True),
        ("https://example.com", "EXAMPLE.com:443", True, True),
        ("https://example.com:8443", "example.com:8443", True, True),
        ("http://example.com", "example.com", True, False),
        ("http://example.com:443", "example.com", True, False),
        ("http://example.com:443", "example.com:443", True, False),
        ("chrome-extension://example.com:443", "example.com", True, False),
        ("wss://example.com", "example.com", True, False),
        # Ports: the default is filled in on both sides; any other difference refuses.
        ("http://h", "h:80", False, True),
        ("http://h:80", "h", False, True),
        ("http://h:80", "h:80", False, True),
        ("http://h:8080", "h:80", False, False),
        ("http://h:81", "h", False, False),
        ("http://h", "h:81", False, False),
        ("https://h:443", "h", True, True),
        ("https://h", "h:8443", True, False),
        ("https://h:8443", "h", True, False),
        ("http://[::1]:8080", "[::1]:8080", False, True),
        ("http://[::1]", "[::1]:8080", False, False),
    ],
)
def test_origin_policy_same_origin_compares_scheme_host_and_port(
    origin: str, host: str, secure: bool, expected: bool
) -> None:
    assert OriginPolicy().check(origin, host, secure=secure) is expected


@pytest.mark.parametrize(
    ("allowed", "origin", "expected"),
    [
        # An entry with a scheme compares scheme, host and port (default filled in).
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "http://app.example", False),
        (("https://app.example",), "http://app.example:443", False),
        (("http://app.example",), "http://app.example:80", True),
        (("chrome-extension://abcdefghijklmnop",), "chrome-extension://abcdefghijklmnop", True),
        (("chrome-extension://abcdefghijklmnop",), "chrome-extension://ponmlkjihgfedcba", False),
        # A scheme and a wildcard host: subdomains, that scheme, its default port.
        (("https://*.app.example",), "https://a.app.example", True),
        (("https://*.app.example",), "https://A.b.App.example:443", True),
        (("https://*.app.example",), "http://a.app.example", False),
        (("https://*.app.example",), "https://a.app.example:8443", False),
        (("https://*.app.example",), "https://app.example", False),
        (("https://*.app.example",), "https://evilapp.example", False),
        (("https://*.app.example:8443",), "https://a.app.example:8443", True),
        (("https://*.app.example:8443",), "https://a.app.example", False),
        # Without a scheme (documented): that host over any scheme, any port unless given.
        (("app.example",), "http://app.example", True),
        (("app.example",), "https://app.example:8443", True),
        (("*.app.example",), "https://a.app.example", True),
        (("*.app.example",), "http://a.app.example:8080", True),
        (("app.example:8443",), "https://app.example", False),
        # Malformed entries allow nothing.
        (("https://",), "https://app.example", False),
        (("://app.example",), "https://app.example", False),
        (("https://app.example/path",), "https://app.example", False),
        (("foo://app.example",), "foo://app.example:1", False),
        (("",), "", False),
    ],
)
def test_origin_policy_allow_list_compares_scheme(
    allowed: tuple[str, ...], origin: str, expected: bool
) -> None:
    policy = OriginPolicy(allowed=allowed, same_origin=False)
    assert policy.check(origin, "server.example", secure=False) is expected
    assert policy.check(origin, "server.example", secure=True) is expected


@pytest.mark.parametrize(
    ("policy", "origin", "expected"),
    [
        (OriginPolicy(), None, True),
        (OriginPolicy(), "", False),
        (OriginPolicy(), " \t ", False),
        (OriginPolicy(allowed=("null",)), "", False),
        (OriginPolicy(allowed=("",)), "", False),
        (OriginPolicy.any(), "", True),  # "*": every request with an Origin header
        (OriginPolicy(), "null", False),
        (OriginPolicy(allowed=("null",)), "null", True),
        (OriginPolicy(allowed=("https://null",)), "null", False),
    ],
)
def test_origin_policy_empty_and_null(
    policy: OriginPolicy, origin: str | None, expected: bool
) -> None:
    assert policy.check(origin, "example.com") is expected


def _status(data: bytes, **kwargs: object) -> int:
    """101 when ``data`` (a whole request, hixie-76 key3 included) is accepted, else the error."""
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, end = parsed
    try:
        accept(request, key3=data[end : end + key3_length(request)], **kwargs)  # type: ignore[arg-type]
    except HandshakeError as exc:
        return exc.status
    return 101


def _rfc_bytes(*fields: str, version: str = "13", host: str = "example.com") -> bytes:
    head = [
        "GET /chat HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {RFC_KEY}",
        f"Sec-WebSocket-Version: {version}",
        *fields,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize(
    ("fields", "kwargs", "status"),
    [
        # scheme
        (["Origin: http://example.com"], {}, 101),
        (["Origin: https://example.com"], {}, 403),
        (["Origin: https://example.com"], {"secure": True}, 101),
        (["Origin: http://example.com"], {"secure": True}, 403),
        (["Origin: chrome-extension://example.com:80"], {}, 403),
        (["Origin: chrome-extension://example.com:443"], {"secure": True}, 403),
        # port
        (["Origin: http://example.com:8080"], {}, 403),
        (["Origin: http://example.com:80"], {}, 101),
        (["Origin: https://example.com:443"], {"secure": True}, 101),
        # empty, missing, null
        (["Origin:"], {}, 403),
        (["Origin: "], {}, 403),
        (["Origin:  \t "], {}, 403),
        ([], {}, 101),
        (["Origin: null"], {}, 403),
        (["Origin: null"], {"origin_policy": OriginPolicy(allowed=("null",))}, 101),
        # Origin wins over Sec-WebSocket-Origin, in both directions
        (["Origin: http://evil.example", "Sec-WebSocket-Origin: http://example.com"], {}, 403),
        (["Origin: http://example.com", "Sec-WebSocket-Origin: http://evil.example"], {}, 101),
        (["Sec-WebSocket-Origin: http://evil.example"], {}, 403),
        (["Origin:", "Sec-WebSocket-Origin: http://example.com"], {}, 403),
    ],
)
@pytest.mark.parametrize("version", ["13", "8", "7"])
def test_accept_origin_bytes_in_status_out(
    fields: list[str], kwargs: dict[str, object], status: int, version: str
) -> None:
    assert _status(_rfc_bytes(*fields, version=version), **kwargs) == status


@pytest.mark.parametrize(
    ("host", "origin", "secure", "status"),
    [
        # Same host and port, another scheme: the old check (host and port only) let these in.
        ("example.com:8080", "chrome-extension://example.com:8080", False, 403),
        ("example.com:8080", "https://example.com:8080", False, 403),
        ("example.com:8080", "http://example.com:8080", False, 101),
        ("example.com:80", "chrome-extension://example.com:80", False, 403),
        ("example.com:80", "https://example.com:80", False, 403),
        ("example.com:443", "http://example.com:443", True, 403),
        ("example.com:443", "https://example.com", True, 101),
        ("example.com:8443", "https://example.com:8443", True, 101),
        ("example.com:8443", "wss://example.com:8443", True, 403),
    ],
)
def test_accept_same_host_and_port_other_scheme_refused(
    host: str, origin: str, secure: bool, status: int
) -> None:
    assert _status(_rfc_bytes(f"Origin: {origin}", host=host), secure=secure) == status


@pytest.mark.parametrize("version", ["7", "8"])
def test_accept_hybi_origin_wins_over_sec_websocket_origin(version: str) -> None:
    """A foreign Origin is not excused by a matching Sec-WebSocket-Origin (it used to be)."""
    headers = changed(
        RFC_BASE,
        Sec_WebSocket_Version=version,
        Origin="http://evil.example",
        Sec_WebSocket_Origin="http://server.example.com",
    )
    error = refusal(make_request(headers))
    assert (error.status, error.reason) == (403, "origin 'http://evil.example' is not allowed")


def test_accept_empty_origin_refused_with_reason() -> None:
    for value in ("", " ", "\t"):
        error = refusal(make_request([*RFC_BASE, ("Origin", value)]))
        assert error.status == 403
        assert error.reason == "an empty Origin header is not an origin (RFC 6454 7.1)"
    error = refusal(make_request(changed(HIXIE76_BASE, Origin="")), key3=HIXIE76_KEY3)
    assert error.status == 403
    assert accept(make_request([*RFC_BASE, ("Origin", "")]), origin_policy=OriginPolicy.any())


@pytest.mark.parametrize(
    ("origin", "secure", "authority", "status"),
    [
        # behind a TLS-terminating proxy: Host is the backend's, the page is the public origin
        ("https://app.example", True, "app.example", 101),
        ("https://app.example", True, "app.example:443", 101),
        ("https://app.example", True, "APP.example", 101),
        ("https://app.example", False, "app.example", 403),
        ("https://app.example:8443", True, "app.example:8443", 101),
        ("https://app.example", True, "app.example:8443", 403),
        ("https://app.example", True, None, 403),  # the default compares with Host
        ("http://backend:8000", False, None, 101),
        ("http://backend:8000", False, "app.example", 403),  # Host no longer counts
        ("https://app.example", True, "bad host", 400),
        ("https://app.example", True, "", 400),
        ("https://app.example", True, "app.example:99999", 400),
    ],
)
def test_accept_authority_overrides_host_for_the_origin_check(
    origin: str, secure: bool, authority: str | None, status: int
) -> None:
    data = _rfc_bytes(f"Origin: {origin}", host="backend:8000")
    assert _status(data, secure=secure, authority=authority) == status


def test_accept_authority_applies_to_hixie_and_keeps_the_host_header_for_location() -> None:
    request = make_request(
        changed(HIXIE76_BASE, Host="backend:8000", Origin="https://app.example"), target="/demo"
    )
    assert refusal(request, key3=HIXIE76_KEY3, secure=True).status == 403
    accepted = accept(request, key3=HIXIE76_KEY3, secure=True, authority="app.example")
    assert b"\r\nSec-WebSocket-Origin: https://app.example\r\n" in accepted.response
    assert b"\r\nSec-WebSocket-Location: wss://backend:8000/demo\r\n" in accepted.response


def test_accept_invalid_authority_reason() -> None:
    error = refusal(make_request(RFC_BASE), authority="a/b")
    assert (error.status, error.reason) == (400, "invalid authority 'a/b' for the origin check")


def test_hixie_origin_scheme_checked() -> None:
    request = make_request(changed(HIXIE76_BASE, Origin="https://example.com"))
    assert refusal(request, key3=HIXIE76_KEY3).status == 403
    assert accept(request, key3=HIXIE76_KEY3, secure=True).version is V.HIXIE_76
    request = make_request(changed(HIXIE75_BASE, Origin="chrome-extension://example.com:80"))
    assert refusal(request).status == 403


def test_accept_cross_origin_refused_by_default() -> None:
    headers = [*RFC_BASE, ("Origin", "https://attacker.example")]
    error = refusal(make_request(headers))
    assert error.status == 403
    assert error.reason == "origin 'https://attacker.example' is not allowed"


def test_accept_same_origin_passes() -> None:
    headers = [*RFC_BASE, ("Origin", "http://server.example.com")]
    assert accept(make_request(headers)).version is V.RFC6455
    headers = [*RFC_BASE, ("Origin", "https://server.example.com")]
    assert accept(make_request(headers), secure=True).version is V.RFC6455


@pytest.mark.parametrize(
    ("allowed", "origin", "ok"),
    [
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "https://other.example", False),
        (("*.app.example",), "https://chat.app.example", True),
        (("*.app.example",), "https://app.example", False),
    ],
)
def test_accept_allow_list(allowed: tuple[str, ...], origin: str, ok: bool) -> None:
    request = make_request([*RFC_BASE, ("Origin", origin)])
    policy = OriginPolicy(allowed=allowed)
    if ok:
        assert accept(request, origin_policy=policy).version is V.RFC6455
    else:
        error = refusal(request, origin_policy=policy)
        assert error.status == 403
        assert repr(origin) in error.reason


def test_accept_missing_origin_refused_when_not_allowed() -> None:
    error = refusal(make_request(RFC_BASE), origin_policy=OriginPolicy(allow_missing=False))
    assert error.status == 403
    assert error.reason == "requests without an Origin header are not allowed"


def test_accept_any_origin() -> None:
    request = make_request([*RFC_BASE, ("Origin", "https://anywhere.example")])
    assert accept(request, origin_policy=OriginPolicy.any()).version is V.RFC6455


def test_accept_syntax_errors_come_before_origin_check() -> None:
    headers = changed(RFC_BASE, Sec_WebSocket_Key="bad", Origin="http://evil.example")
    assert refusal(make_request(headers)).status == 400


# =============================================================================================
# accept: hixie-76


def test_hixie76_vector_numbers() -> None:
    assert hixie76_answer(829309203, 259970620, HIXIE76_KEY3) == HIXIE76_ANSWER
    expected = hashlib.md5(struct.pack(">II", 829309203, 259970620) + HIXIE76_KEY3).digest()
    assert expected == HIXIE76_ANSWER


def test_hixie76_vector_exact_bytes() -> None:
    parsed = parse_request(HIXIE76_REQUEST, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    assert detect_version(request) is V.HIXIE_76
    assert key3_length(request) == 8
    key3 = HIXIE76_REQUEST[consumed : consumed + key3_length(request)]
    assert key3 == HIXIE76_KEY3
    accepted = accept(request, key3=key3, subprotocols=["sample"])
    assert accepted == Accepted(V.HIXIE_76, "sample", [], HIXIE76_RESPONSE)


def test_hixie76_seed_collapsed_key1_refused() -> None:
    """The seed's copy of the vector lost a space: 4146546015 / 4 is not an integer."""
    collapsed = "4 @1 46546xW%0l 1 5"
    assert collapsed.count(" ") == 4
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=collapsed), target="/demo")
    error = refusal(request, key3=HIXIE76_KEY3)
    assert error.status == 400
    assert "Sec-WebSocket-Key1 number 4146546015 is not a multiple of its 4 spaces" in error.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Sec_WebSocket_Key1": "4146546015"}, "Sec-WebSocket-Key1 contains no spaces"),
        ({"Sec_WebSocket_Key2": "1 2 3"}, "Sec-WebSocket-Key2 number 123 is not a multiple"),
        ({"Sec_WebSocket_Key1": "42949 67296"}, "larger than 2**32-1"),  # 2**32, 1 space
        ({"Sec_WebSocket_Key1": "9" * 5000 + " "}, "larger than 2**32-1"),
        ({"Sec_WebSocket_Key1": "abc def"}, "Sec-WebSocket-Key1 contains no digits"),
        ({"Sec_WebSocket_Key1": None}, "missing Sec-WebSocket-Key1"),
        ({"Sec_WebSocket_Key2": None}, "missing Sec-WebSocket-Key2"),
        ({"Sec_WebSocket_Key1": "\xb9\xb2 \xb3"}, "contains no digits"),  # latin-1 superscripts
    ],
)
def test_hixie76_bad_keys(changes: dict[str, str | None], reason: str) -> None:
    error = refusal(make_request(changed(HIXIE76_BASE, **changes)), key3=HIXIE76_KEY3)
    assert error.status == 400
    assert reason in error.reason


@pytest.mark.parametrize(
    ("key1", "reason"),
    [
        # 5,000 significant digits: refused on the digit count, before int() could raise.
        ("9" * 5000 + " ", "Sec-WebSocket-Key1 number has 5000 digits: larger than 2**32-1"),
        # 5,000 digits whose leading zeros hid them from the old length check (a ValueError).
        (" " + "0" * 4999 + "1" * 11, "Sec-WebSocket-Key1 number has 11 digits"),
        ("0" * 5000 + "4294967296 ", "number 4294967296 is larger than 2**32-1"),
        # 11 digits, over 2**32: refused whatever the spaces would divide it into.
        ("42949672960 " + " " * 9, "number has 11 digits: larger than 2**32-1"),
        ("1 0000000000", "number has 11 digits"),
        # 10 digits, over 2**32-1, although the quotient by its 2 spaces would fit 32 bits.
        ("4294967296  ", "number 4294967296 is larger than 2**32-1"),
        ("9999999999 x ", "number 9999999999 is larger than 2**32-1"),
    ],
    ids=[
        "5000-nines",
        "5000-digits-leading-zeros",
        "zeros-then-2**32",
        "11-digits-10-spaces",
        "11-digits-1-space",
        "2**32-2-spaces",
        "10-nines",
    ],
)
def test_hixie76_key_numbers_over_32_bits_refused(key1: str, reason: str) -> None:
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=key1))
    error = refusal(request, key3=HIXIE76_KEY3)
    assert error.status == 400
    assert reason in error.reason
    assert "draft-hixie-76 section 4.1" in error.reason
    response = reject_response(error)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_hixie76_leading_zeros_do_not_count() -> None:
    """5,000 digits that are a small number: the draft reads digits as a number, so it passes."""
    key1 = " " + "0" * 5000 + "5"  # 5 / 1 space
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=key1))
    accepted = accept(request, key3=HIXIE76_KEY3)
    assert accepted.response.endswith(hixie76_answer(5, 259970620, HIXIE76_KEY3))


def test_hixie76_section_1_3_vector_through_parse_and_accept() -> None:
    """draft-76 section 1.3 (two spaces after ``@1``, two before ``.P00``) still passes."""
    assert HIXIE76_KEY1 == "4 @1  46546xW%0l 1 5" and HIXIE76_KEY1.count(" ") == 5
    assert HIXIE76_KEY2 == "12998 5 Y3 1  .P00" and HIXIE76_KEY2.count(" ") == 5
    accepted = accept(make_request(HIXIE76_BASE, target="/demo"), key3=b"^n:ds[4U")
    assert accepted.response.endswith(b"\r\n\r\n8jKS'y:G*Co,Wxa-")


def test_hixie76_largest_numbers_accepted() -> None:
    # 4294967295 with one space is the largest key number the draft allows.
    request = make_request(
        changed(HIXIE76_BASE, Sec_WebSocket_Key1="4294967295 x", Sec_WebSocket_Key2="0000 0")
    )
    accepted = accept(request, key3=HIXIE76_KEY3)
    assert accepted.response.endswith(hixie76_answer(4294967295, 0, HIXIE76_KEY3))


@pytest.mark.parametrize("key3", [b"", b"1234567", b"123456789"])
def test_hixie76_key3_wrong_length(key3: bytes) -> None:
    error = refusal(make_request(HIXIE76_BASE), key3=key3)
    assert error.status == 400
    assert f"key3 must be 8 bytes, got {len(key3)}" in error.reason


def test_hixie76_duplicate_key_refused() -> None:
    error = refusal(make_request([*HIXIE76_BASE, ("Sec-WebSocket-Key1", HIXIE76_KEY1)]))
    assert (error.status, error.reason) == (400, "Sec-WebSocket-Key1 header sent more than once")


@pytest.mark.parametrize(
    "versions", [RFC_VERSIONS, frozenset({V.RFC6455}), frozenset({V.HIXIE_75, V.RFC6455})]
)
def test_hixie76_disabled(versions: frozenset[ProtocolVersion]) -> None:
    error = refusal(make_request(HIXIE76_BASE), key3=HIXIE76_KEY3, versions=versions)
    assert error.status == 426
    assert error.reason == "WebSocket protocol hixie-76 is disabled on this server"
    assert error.headers[0][0] == "Sec-WebSocket-Version"


def test_hixie76_secure_location_query_and_no_origin() -> None:
    request = make_request(
        changed(HIXIE76_BASE, Origin=None, Host="example.com:8443"), target="/demo?a=1&b=2"
    )
    accepted = accept(request, key3=HIXIE76_KEY3, secure=True, subprotocols=["other"])
    assert accepted.subprotocol is None
    assert accepted.response == (
        b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Location: wss://example.com:8443/demo?a=1&b=2\r\n"
        b"\r\n" + HIXIE76_ANSWER
    )


def test_hixie76_cross_origin_refused() -> None:
    request = make_request(changed(HIXIE76_BASE, Origin="http://evil.example"))
    error = refusal(request, key3=HIXIE76_KEY3)
    assert (error.status, error.reason) == (403, "origin 'http://evil.example' is not allowed")


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"Upgrade": "foo"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Connection": "close"}, 400, "Connection header does not contain 'upgrade'"),
        ({"Host": None}, 400, "missing Host header"),
    ],
)
def test_hixie76_header_checks(changes: dict[str, str | None], status: int, reason: str) -> None:
    error = refusal(make_request(changed(HIXIE76_BASE, **changes)), key3=HIXIE76_KEY3)
    assert error.status == status
    assert reason in error.reason


# =============================================================================================
# accept: hixie-75


def test_hixie75_exact_bytes() -> None:
    data = (
        b"GET /demo HTTP/1.1\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Host: example.com\r\n"
        b"Origin: http://example.com\r\n"
        b"WebSocket-Protocol: sample\r\n"
        b"\r\n"
    )
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, _ = parsed
    assert detect_version(request) is V.HIXIE_75
    assert key3_length(request) == 0
    accepted = accept(request, subprotocols=["sample"])
    assert accepted == Accepted(
        V.HIXIE_75,
        "sample",
        [],
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Origin: http://example.com\r\n"
        b"WebSocket-Location: ws://example.com/demo\r\n"
        b"WebSocket-Protocol: sample\r\n"
        b"\r\n",
    )


def test_hixie75_secure_query_and_unknown_subprotocol() -> None:
    headers = [
        *changed(HIXIE75_BASE, Origin="https://example.com"),
        ("WebSocket-Protocol", "unknown"),
    ]
    accepted = accept(make_request(headers, target="/demo?x=1"), secure=True)
    assert accepted.subprotocol is None
    assert accepted.response == (
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Origin: https://example.com\r\n"
        b"WebSocket-Location: wss://example.com/demo?x=1\r\n"
        b"\r\n"
    )


def test_hixie75_extra_headers() -> None:
    accepted = accept(make_request(HIXIE75_BASE), extra_headers=[("X-A", "1")])
    assert accepted.response.endswith(
        b"WebSocket-Location: ws://example.com/chat\r\nX-A: 1\r\n\r\n"
    )


def test_hixie75_disabled_and_refusals() -> None:
    error = refusal(make_request(HIXIE75_BASE), versions=RFC_VERSIONS)
    assert (error.status, error.headers) == (426, [("Sec-WebSocket-Version", "13, 8, 7")])
    assert "hixie-75 is disabled" in error.reason
    error = refusal(make_request(changed(HIXIE75_BASE, Connection=None)))
    assert error.status == 400
    assert "Connection" in error.reason
    error = refusal(make_request(HIXIE75_BASE, method="POST"))
    assert error.status == 405


# =============================================================================================
# reject_response


def test_reject_response_exact_bytes() -> None:
    assert reject_response(HandshakeError(400, "missing Sec-WebSocket-Key header")) == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 33\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"missing Sec-WebSocket-Key header\n"
    )


def test_reject_response_426_has_upgrade() -> None:
    error = HandshakeError(426, "unsupported", [("Sec-WebSocket-Version", "13, 8, 7")])
    assert reject_response(error) == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 12\r\n"
        b"Connection: Upgrade, close\r\n"
        b"Upgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13, 8, 7\r\n"
        b"\r\n"
        b"unsupported\n"
    )


def test_reject_response_405_allow_and_utf8_length() -> None:
    response = reject_response(HandshakeError(405, "caf\u00e9", [("Allow", "GET")]))
    assert response.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nContent-Length: 6\r\n" in response
    assert b"\r\nAllow: GET\r\n" in response
    assert response.endswith(b"\r\n\r\ncaf\xc3\xa9\n")


def test_reject_response_merges_connection_and_drops_own_fields() -> None:
    error = HandshakeError(
        403,
        "no",
        [("Connection", "keep-alive, close"), ("Content-Length", "99"), ("X-A", "b")],
    )
    response = reject_response(error)
    assert b"\r\nConnection: keep-alive, close\r\n" in response
    assert response.count(b"Content-Length") == 1
    assert b"\r\nX-A: b\r\n" in response


def test_reject_response_unknown_status() -> None:
    assert reject_response(HandshakeError(599, "x")).startswith(b"HTTP/1.1 599 Error\r\n")


def test_reject_response_parses_back() -> None:
    data = reject_response(HandshakeError(431, "too big"))
    parsed = parse_response(data, max_header_size=MAX)
    assert parsed is not None
    response, consumed = parsed
    assert data[consumed:] == b"too big\n"
    assert (response.status, response.reason) == (431, "Request Header Fields Too Large")
    assert response.headers.get("Content-Length") == "8"


# =============================================================================================
# Client


def test_client_request_bytes_rfc6455() -> None:
    client = ClientHandshake(
        "server.example.com",
        "/chat",
        key=b"the sample nonce",
        origin="http://example.com",
        subprotocols=["chat", "superchat"],
        extensions=["permessage-deflate; client_max_window_bits"],
        extra_headers=[("Cookie", "a=b")],
    )
    assert client.key == RFC_KEY
    assert client.request_bytes() == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Cookie: a=b\r\n"
        b"\r\n"
    )


def test_client_random_key_is_fresh() -> None:
    keys = {ClientHandshake("x").key for _ in range(5)}
    assert len(keys) == 5
    assert all(len(base64.b64decode(key)) == 16 for key in keys)


def test_client_hybi_sends_sec_websocket_origin() -> None:
    client = ClientHandshake("x", version=V.HYBI_08, origin="http://x", key=b"k" * 16)
    data = client.request_bytes()
    assert b"\r\nSec-WebSocket-Version: 8\r\n" in data
    assert b"\r\nSec-WebSocket-Origin: http://x\r\n" in data
    assert b"\r\nOrigin:" not in data


def _server_response(data: bytes, **kwargs: object) -> tuple[Request, Accepted]:
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    key3 = data[consumed : consumed + key3_length(request)]
    assert consumed + len(key3) == len(data)
    return request, accept(request, key3=key3, **kwargs)  # type: ignore[arg-type]


ROUND_TRIP_VERSIONS = [V.RFC6455, V.HYBI_08, V.HYBI_07, V.HIXIE_76, V.HIXIE_75]


@pytest.mark.parametrize("version", ROUND_TRIP_VERSIONS)
@pytest.mark.parametrize("chunked", [False, True])
def test_client_round_trip(version: ProtocolVersion, chunked: bool) -> None:
    client = ClientHandshake(
        "example.com:8080",
        "/room?id=7",
        version=version,
        origin="http://example.com:8080",
        subprotocols=["chat"],
        rng=random.Random(1234),
    )
    request, accepted = _server_response(client.request_bytes(), subprotocols=["other", "chat"])
    assert request.path == "/room"
    assert request.query == "id=7"
    assert accepted.version is version
    assert accepted.subprotocol == "chat"
    frames = b"\x81\x02hi" if not version.is_hixie else b"\x00hi\xff"
    stream = accepted.response + frames
    if chunked:
        result = None
        for i in range(len(stream)):
            result = client.receive(stream[i : i + 1])
            if result is not None:
                break
        assert result is not None
        done, used = result
        assert used == 1
        assert i == len(accepted.response) - 1  # completes on the last handshake byte
    else:
        result = client.receive(stream)
        assert result is not None
        done, used = result
        assert stream[used:] == frames
    assert done.version is version
    assert done.subprotocol == "chat"
    assert done.extensions == []
    assert done.response.status == 101
    with pytest.raises(RuntimeError):
        client.receive(b"more")


def test_client_round_trip_hixie76_secure_and_split_answer() -> None:
    client = ClientHandshake("example.com", "/demo", version=V.HIXIE_76, secure=True)
    _, accepted = _server_response(client.request_bytes(), secure=True)
    head, answer = accepted.response[:-16], accepted.response[-16:]
    assert client.receive(head) is None  # the answer is still missing
    assert client.receive(answer[:10]) is None
    result = client.receive(answer[10:] + b"\x00")
    assert result is not None
    assert result[1] == 6
    assert result[0].subprotocol is None


def test_client_round_trip_with_extension() -> None:
    client = ClientHandshake(
        "server.example.com",
        extensions=["permessage-deflate; client_max_window_bits", "x-unused"],
    )
    ext = RecordingExtension("permessage-deflate")
    _, accepted = _server_response(client.request_bytes(), extensions=[ext])
    assert ext.calls == [[("client_max_window_bits", None)]]
    result = client.receive(accepted.response)
    assert result is not None
    assert result[0].extensions == [("permessage-deflate", [("client_max_window_bits", None)])]


def test_client_receives_refusal_with_body() -> None:
    client = ClientHandshake("server.example.com", origin="http://evil.example")
    request = parse_request(client.request_bytes(), max_header_size=MAX)
    assert request is not None
    with pytest.raises(HandshakeError) as refused:
        accept(request[0])
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(reject_response(refused.value))
    assert info.value.status == 403
    assert info.value.reason == "the server refused the upgrade: 403 Forbidden"
    assert info.value.body == b"origin 'http://evil.example' is not allowed\n"
    with pytest.raises(RuntimeError):
        client.receive(b"")


def test_client_refusal_body_is_bounded() -> None:
    client = ClientHandshake("x")
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"HTTP/1.1 500 Oops\r\n\r\n" + b"e" * 5000)
    assert info.value.status == 500
    assert info.value.body == b"e" * 1024


def _rfc_client() -> ClientHandshake:
    return ClientHandshake(
        "server.example.com",
        key=b"the sample nonce",
        subprotocols=["chat"],
        extensions=["permessage-deflate"],
    )


def _rfc_response(*fields: tuple[str, str], status: bytes = b"101 Switching Protocols") -> bytes:
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)
    return b"HTTP/1.1 " + status + b"\r\n" + lines + b"\r\n"


_UP = ("Upgrade", "websocket")
_CONN = ("Connection", "Upgrade")
_ACC = ("Sec-WebSocket-Accept", RFC_ACCEPT)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ((_CONN, _ACC), "Upgrade header is None, not 'websocket'"),
        ((("Upgrade", "h2c"), _CONN, _ACC), "Upgrade header is 'h2c', not 'websocket'"),
        ((("Upgrade", "websocket, h2c"), _CONN, _ACC), "not 'websocket'"),
        ((_UP, _ACC), "Connection header None lacks the 'upgrade' token"),
        ((_UP, ("Connection", "close"), _ACC), "lacks the 'upgrade' token"),
        ((_UP, _CONN), "missing Sec-WebSocket-Accept header"),
        (
            (_UP, _CONN, ("Sec-WebSocket-Accept", "wrong=")),
            f"incorrect Sec-WebSocket-Accept 'wrong=', expected {RFC_ACCEPT!r}",
        ),
        ((_UP, _CONN, _ACC, _ACC), "incorrect Sec-WebSocket-Accept"),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "superchat")),
            "the server selected subprotocol 'superchat', not offered",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "chat, chat")),
            "the server selected several subprotocols",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")),
            "the server accepted extension 'x-webkit-deflate-frame', which was not offered",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "permessage-deflate;")),
            "invalid Sec-WebSocket-Extensions header",
        ),
    ],
)
def test_client_rfc_failures(fields: tuple[tuple[str, str], ...], reason: str) -> None:
    client = _rfc_client()
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(_rfc_response(*fields))
    assert reason in info.value.reason
    assert info.value.status == 101


def test_client_accepts_case_variants() -> None:
    client = _rfc_client()
    response = _rfc_response(
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, upgrade"),
        ("sec-websocket-accept", RFC_ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
    )
    result = client.receive(response)
    assert result is not None
    assert result[0].subprotocol == "chat"
    assert result[0].extensions == [("permessage-deflate", [("server_no_context_takeover", None)])]


def test_client_subprotocol_when_none_offered() -> None:
    client = ClientHandshake("x", key=b"the sample nonce")
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(_rfc_response(_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "chat")))
    assert "subprotocol 'chat', not offered" in info.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"HTTP/1.1 abc\r\n\r\n", "malformed response: invalid status line"),
        (b"HTTP/1.1 101 OK\r\nBad Header\r\n\r\n", "malformed response: header line"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed response"),
    ],
)
def test_client_malformed_response(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidHandshakeResponse) as info:
        ClientHandshake("x").receive(data)
    assert reason in info.value.reason
    assert info.value.status == 0


def test_client_response_too_large() -> None:
    client = ClientHandshake("x", max_header_size=100)
    assert client.receive(b"HTTP/1.1 101 OK\r\n") is None
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"X: " + b"y" * 100)
    assert info.value.reason == "malformed response: header block larger than 100 bytes"


def test_client_long_response_fed_byte_by_byte() -> None:
    client = ClientHandshake("x", key=b"the sample nonce")
    response = _rfc_response(_UP, _CONN, _ACC, *[("X-Filler", "z" * 50)] * 150)
    for byte in response[:-1]:
        assert client.receive(bytes([byte])) is None
    result = client.receive(response[-1:])
    assert result is not None
    assert result[1] == 1


def _hixie76_client(**kwargs: object) -> tuple[ClientHandshake, Accepted]:
    client = ClientHandshake(
        "example.com",
        "/demo",
        version=V.HIXIE_76,
        origin="http://example.com",
        subprotocols=["sample"],
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )
    _, accepted = _server_response(client.request_bytes(), subprotocols=["sample"])
    return client, accepted


def test_client_hixie76_wrong_answer() -> None:
    client, accepted = _hixie76_client()
    bad = accepted.response[:-1] + bytes([accepted.response[-1] ^ 1])
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(bad)
    assert info.value.reason == "incorrect hixie-76 challenge answer"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"ws://example.com/demo", b"ws://example.com/other", "Sec-WebSocket-Location is"),
        (b"ws://example.com/demo", b"wss://example.com/demo", "Sec-WebSocket-Location is"),
        (b"Origin: http://example.com", b"Origin: http://evil.com", "Sec-WebSocket-Origin is"),
        (b"Protocol: sample", b"Protocol: other", "subprotocol 'other', not offered"),
        (b"Upgrade: WebSocket", b"Upgrade: nope", "Upgrade header is 'nope'"),
        (b"Connection: Upgrade", b"Connection: close", "lacks the 'upgrade' token"),
    ],
)
def test_client_hixie76_failures(old: bytes, new: bytes, reason: str) -> None:
    client, accepted = _hixie76_client()
    assert old in accepted.response
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(accepted.response.replace(old, new))
    assert reason in info.value.reason


def test_client_hixie76_refusal_does_not_wait_for_answer() -> None:
    client, _ = _hixie76_client()
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"HTTP/1.1 404 Not Found\r\n\r\n")
    assert info.value.status == 404
    assert info.value.body == b""


def test_client_hixie75_wrong_location() -> None:
    client = ClientHandshake("example.com", version=V.HIXIE_75)
    _, accepted = _server_response(client.request_bytes(), secure=True)
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(accepted.response)
    assert "WebSocket-Location is 'wss://example.com/'" in info.value.reason


@given(st.integers(min_value=0, max_value=2**64))
@settings(max_examples=300)
def test_client_hixie76_keys_follow_the_draft(seed: int) -> None:
    """draft-hixie-76 section 4.1: 1-12 spaces (never first or last), 1-12 noise characters."""
    client = ClientHandshake("example.com", version=V.HIXIE_76, rng=random.Random(seed))
    for key in (client.key1, client.key2):
        spaces = key.count(" ")
        assert 1 <= spaces <= 12
        assert not key.startswith(" ")
        assert not key.endswith(" ")
        digits = "".join(c for c in key if c.isdigit())
        noise = [c for c in key if not c.isdigit() and c != " "]
        assert 1 <= len(noise) <= 12
        assert all(0x21 <= ord(c) <= 0x7E for c in noise)
        assert int(digits) % spaces == 0
        assert int(digits) // spaces <= 0xFFFFFFFF
    assert len(client.key3) == 8
    # The server computes the same answer the client expects.
    request, accepted = _server_response(client.request_bytes())
    assert request.headers.get("Sec-WebSocket-Key1") == client.key1
    result = client.receive(accepted.response)
    assert result is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": b"short"}, "16 bytes"),
        ({"resource": "chat"}, "must start with '/'"),
        ({"version": V.HIXIE_76, "subprotocols": ["a", "b"]}, "at most one subprotocol"),
        ({"version": V.HIXIE_75, "extensions": ["x"]}, "no extensions"),
        ({"extensions": ["bad;"]}, "Sec-WebSocket-Extensions"),
    ],
)
def test_client_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientHandshake("x", **kwargs)  # type: ignore[arg-type]


def test_client_location() -> None:
    assert ClientHandshake("h:1", "/p?q").location == "ws://h:1/p?q"
    assert ClientHandshake("h", secure=True).location == "wss://h/"


def test_constants() -> None:
    assert frozenset(ProtocolVersion) == ALL_VERSIONS
    assert {V.HYBI_07, V.HYBI_08, V.RFC6455} == RFC_VERSIONS
    assert isinstance(ClientAccepted(V.RFC6455, None, [], Response(101, "", Headers())), object)


# =============================================================================================
# accept never raises anything but HandshakeError for a parsed request

_names = st.sampled_from(
    [
        "Host",
        "Upgrade",
        "Connection",
        "Origin",
        "Sec-WebSocket-Origin",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Key1",
        "Sec-WebSocket-Key2",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "WebSocket-Protocol",
    ]
)
_values = st.sampled_from(
    [
        "websocket",
        "WebSocket",
        "Upgrade",
        "13",
        "8",
        "7",
        RFC_KEY,
        HIXIE76_KEY1,
        "example.com",
        "http://example.com",
        "chat",
        "foo; a=1",
        "",
    ]
) | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)


@given(
    st.lists(st.tuples(_names, _values), max_size=12),
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["/", "/a?b", "*", "http://x/y"]),
    st.binary(max_size=10),
)
@settings(max_examples=500)
def test_accept_only_raises_handshake_error(
    headers: list[tuple[str, str]], method: str, target: str, key3: bytes
) -> None:
    request = make_request(headers, method=method, target=target)
    try:
        accepted = accept(
            request,
            key3=key3,
            subprotocols=["chat"],
            extensions=[RecordingExtension("foo")],
        )
    except HandshakeError as exc:
        assert exc.reason
        assert reject_response(exc).startswith(f"HTTP/1.1 {exc.status} ".encode())
    else:
        assert accepted.response.startswith(b"HTTP/1.1 101 ")
