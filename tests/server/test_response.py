"""Response heads (stargate.server.response): nothing an application hands over can end a
head early (response splitting), and every head the server writes is well-formed."""

from __future__ import annotations

import email.utils
import re

import pytest

from stargate.server.response import (
    HOP_BY_HOP,
    InvalidResponse,
    check_app_headers,
    check_field,
    check_status,
    http_date,
    reason_phrase,
    serialize_head,
    simple_response,
)

#: What response splitting is made of, and what latin-1 (the wire's encoding) cannot carry.
HOSTILE = ["\r", "\n", "\r\n", "\0", "\x7f", "\x1b", "\x0b", "\x0c", "\u2028", "\u0100", "€"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("200 OK", 200),
        ("404 Not Found", 404),
        ("599 Custom", 599),
        ("200 ", 200),  # the reason phrase may be empty (RFC 9112 section 4)
        ("200 Ok\tfine", 200),  # HTAB is allowed in a reason
        ("418 I'm a teapot", 418),
        ("200 caf\xe9", 200),  # obs-text, latin-1
    ],
)
def test_check_status_accepts(status: str, code: int) -> None:
    assert check_status(status) == code


@pytest.mark.parametrize(
    "status",
    [
        "200",  # no SP
        "200OK",
        " 200 OK",
        "2000 OK",
        "20 OK",
        "600 Too High",
        "099 Low",
        "abc OK",
        "٢٠٠ OK",  # digits, but not ASCII ones
        "100 Continue",  # 1xx is the server's (PEP 3333)
        "101 Switching Protocols",
        "",
    ]
    + [f"200 OK{bad}X-Injected: 1" for bad in HOSTILE],
)
def test_check_status_refuses(status: str) -> None:
    with pytest.raises(InvalidResponse):
        check_status(status)


@pytest.mark.parametrize("status", [200, b"200 OK", None, ("200", "OK")])
def test_check_status_refuses_what_is_not_a_str(status: object) -> None:
    with pytest.raises(InvalidResponse):
        check_status(status)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Ok", "plain"),
        ("x-ok", ""),  # an empty value is a field-value
        ("Set-Cookie", "a=b; Path=/; HttpOnly"),
        ("X-Tab", "a\tb"),
        ("X-Latin", "caf\xe9 \xff"),  # obs-text
        ("!#$%&'*+-.^_`|~09AZaz", "token characters all"),
    ],
)
def test_check_field_accepts(name: str, value: str) -> None:
    check_field(name, value)


@pytest.mark.parametrize("bad", HOSTILE)
def test_check_field_refuses_controls_and_non_latin1_in_values(bad: str) -> None:
    with pytest.raises(InvalidResponse):
        check_field("X-Echo", f"a{bad}Set-Cookie: session=forged")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "X Space",
        "X-Colon:",
        "X-Echo:\r\nSet-Cookie",
        "(comment)",
        "X/Y",
        'X"Q',
        "X\tTab",
        "Caf\xe9",
        "X-€",
    ]
    + [f"X{bad}Y" for bad in HOSTILE],
)
def test_check_field_refuses_names_that_are_no_token(name: str) -> None:
    with pytest.raises(InvalidResponse):
        check_field(name, "v")


@pytest.mark.parametrize(("name", "value"), [(b"X", "v"), ("X", b"v"), ("X", 1), (None, "v")])
def test_check_field_refuses_what_is_not_a_str(name: object, value: object) -> None:
    with pytest.raises(InvalidResponse):
        check_field(name, value)


def test_check_app_headers_returns_the_content_length() -> None:
    assert check_app_headers(200, [("Content-Type", "text/plain")]) is None
    assert check_app_headers(200, [("Content-Length", "12")]) == 12
    assert check_app_headers(200, [("content-length", "0")]) == 0
    # The same length twice is no conflict.
    assert check_app_headers(200, [("Content-Length", "5"), ("Content-Length", "5")]) == 5


@pytest.mark.parametrize(
    "value", ["-1", "1.5", "0x10", " 5", "5 ", "", "five", "١٢", "1e3", "9" * 19, "9" * 5000]
)
def test_check_app_headers_refuses_a_content_length_that_is_no_number(value: str) -> None:
    with pytest.raises(InvalidResponse):
        check_app_headers(200, [("Content-Length", value)])


def test_check_app_headers_refuses_two_different_content_lengths() -> None:
    """Two lengths is how a response is desynchronised (RFC 9112 section 6.3)."""
    with pytest.raises(InvalidResponse):
        check_app_headers(200, [("Content-Length", "5"), ("Content-Length", "50")])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Transfer-Encoding", "chunked"),  # the server frames the body: never chunked twice
        ("transfer-encoding", "identity"),
        ("Connection", "keep-alive"),
        ("Connection", "upgrade"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Trailers", "X-Checksum"),
        ("Proxy-Authenticate", "Basic"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Upgrade", "websocket"),
    ],
)
def test_check_app_headers_refuses_hop_by_hop_headers(name: str, value: str) -> None:
    """PEP 3333: hop-by-hop headers are the server's; waitress refuses them the same way."""
    assert name.lower() in HOP_BY_HOP
    with pytest.raises(InvalidResponse, match="hop-by-hop"):
        check_app_headers(200, [(name, value)])


def test_check_app_headers_lets_connection_close_and_the_426_upgrade_through() -> None:
    assert check_app_headers(200, [("Connection", "close")]) is None
    assert check_app_headers(200, [("connection", " Close ")]) is None
    # RFC 9110 section 15.5.22: a 426 MUST carry Upgrade; on other statuses it is refused.
    assert check_app_headers(426, [("Upgrade", "websocket")]) is None
    with pytest.raises(InvalidResponse):
        check_app_headers(101, [("Upgrade", "websocket")])


def test_check_app_headers_checks_every_field() -> None:
    with pytest.raises(InvalidResponse):
        check_app_headers(200, [("X-Ok", "fine"), ("X-Bad", "a\r\nb")])


def test_serialize_head() -> None:
    head = serialize_head("201 Created", [("Location", "/x"), ("X-Latin", "caf\xe9")])
    assert head == b"HTTP/1.1 201 Created\r\nLocation: /x\r\nX-Latin: caf\xe9\r\n\r\n"
    assert serialize_head("204 No Content", []) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_reason_phrase() -> None:
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(431) == "Request Header Fields Too Large"
    assert reason_phrase(599) == ""


def test_http_date_is_an_imf_fixdate() -> None:
    """RFC 9110 section 5.6.7: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    value = http_date()
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", value)
    assert email.utils.parsedate_to_datetime(value).tzinfo is not None


def test_simple_response_is_complete_and_framed() -> None:
    data = simple_response(413, "request body too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    # Python 3.13 took RFC 9110's name for 413; older ones have RFC 7231's.
    assert lines[0] in ("HTTP/1.1 413 Content Too Large", "HTTP/1.1 413 Request Entity Too Large")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert body == b"request body too large\n"
    assert fields["Content-Length"] == str(len(body))
    assert fields["Content-Type"] == "text/plain; charset=utf-8"
    assert fields["Connection"] == "close"
    assert fields["Server"] == "stargate"
    assert "Date" in fields


def test_simple_response_reason_is_utf8_body_never_a_header() -> None:
    """The reason may quote what a client sent (a path): it goes in the body only, so it can
    hold anything, CR and LF included, without touching the head."""
    data = simple_response(404, "no route for /\u20ac\r\nX-Injected: 1")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"X-Injected" not in head
    assert body == "no route for /\u20ac\r\nX-Injected: 1\n".encode()
    assert f"Content-Length: {len(body)}\r\n".encode() in head


def test_simple_response_extra_headers_are_checked() -> None:
    data = simple_response(426, "upgrade", keep_alive=True, headers=[("Upgrade", "websocket")])
    assert b"\r\nUpgrade: websocket\r\n" in data
    assert b"\r\nConnection: upgrade, keep-alive\r\n" in data  # RFC 9110 section 7.8
    with pytest.raises(InvalidResponse):
        simple_response(400, "bad", headers=[("X-A", "b\r\nX-Injected: 1")])
