"""stargate.handshake.heads: request and response heads, parsed (strictly, within limits)
and written."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargate.errors import HandshakeError
from stargate.handshake.heads import (
    Request,
    Response,
    is_field_value,
    parse_http_version,
    parse_request,
    parse_response,
    resource_name,
    serialize_fields,
    serialize_head,
    split_host_port,
)
from stargate.headers import Headers

from .support import (
    HIXIE76_KEY1,
    HIXIE76_KEY3,
    HIXIE76_REQUEST,
    MAX,
    make_request,
)

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
@settings(max_examples=500, deadline=None)  # a loaded machine is slow, not wrong
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
@settings(max_examples=500, deadline=None)  # a loaded machine is slow, not wrong
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
@settings(max_examples=300, deadline=None)  # a loaded machine is slow, not wrong
def test_parse_response_random_bytes(data: bytes) -> None:
    try:
        parse_response(data, max_header_size=200)
    except HandshakeError as exc:
        assert exc.status in (400, 431)


# =============================================================================================
# Host, HTTP version, writing a head


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", ("example.com", None)),
        ("h:8080", ("h", 8080)),
        ("h:", ("h", None)),  # RFC 3986 section 3.2.3: an empty port is the default
        ("[::1]:9001", ("[::1]", 9001)),
        ("h:65535", ("h", 65535)),
        ("h:65536", None),
        ("h:000080", None),  # more than 5 digits
        ("h:x", None),
        ("a b", None),
        ("", None),
        ("user@h", None),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("1.1", (1, 1)), ("1.0", (1, 0)), ("2.0", (2, 0)), ("10.3", (10, 3))]
)
def test_parse_http_version(text: str, expected: tuple[int, int]) -> None:
    assert parse_http_version(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.", ".1", "a.b", "1.1.1", "\u0661.\u0661"])
def test_parse_http_version_refuses(text: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_http_version(text)
    assert info.value.status == 400


def test_serialize_head_round_trips() -> None:
    head = serialize_head("HTTP/1.1 101 Switching Protocols", [("Upgrade", "websocket"), ("X", "")])
    assert head == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: \r\n\r\n"
    parsed = parse_response(head, max_header_size=MAX)
    assert parsed is not None
    assert parsed[0].headers.items() == [("Upgrade", "websocket"), ("X", "")]
    assert serialize_head("GET / HTTP/1.1", [("V", "caf\xe9")]).endswith(b"V: caf\xe9\r\n\r\n")


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("X", "a\r\nSet-Cookie: evil=1", "value of header 'X'"),
        ("X", "a\nb", "value"),
        ("X", "a\x00b", "value"),
        ("Bad Name", "v", "header name"),
        ("X:Y", "v", "header name"),
        ("", "v", "header name"),
    ],
)
def test_serialize_head_refuses_splitting(name: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        serialize_head("HTTP/1.1 200 OK", [(name, value)])
    with pytest.raises(ValueError, match=match):
        serialize_fields([("Ok", "fine"), (name, value)])


def test_serialize_fields_ends_a_head() -> None:
    assert serialize_fields([]) == b"\r\n\r\n"
    assert serialize_fields([("A", "1"), ("B", "")]) == b"\r\nA: 1\r\nB: \r\n\r\n"


@pytest.mark.parametrize(
    ("value", "valid"),
    [("", True), ("a b\tc", True), ("caf\xe9", True), ("a\rb", False), ("\x7f", False)],
)
def test_is_field_value(value: str, valid: bool) -> None:
    assert is_field_value(value) is valid


@pytest.mark.parametrize(
    ("target", "resource"),
    [
        ("/a?b", "/a?b"),
        ("http://h/a?b", "/a?b"),
        ("https://h", "/"),
        ("*", "*"),
    ],
)
def test_resource_name(target: str, resource: str) -> None:
    assert resource_name(target) == resource
