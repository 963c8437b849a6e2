"""Vectors and helpers shared by the tests of stargate.handshake's modules."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stargate.errors import HandshakeError
from stargate.handshake.heads import Request, parse_request
from stargate.handshake.server import Accepted, accept, key3_length
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


def server_response(data: bytes, **kwargs: object) -> tuple[Request, Accepted]:
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    key3 = data[consumed : consumed + key3_length(request)]
    assert consumed + len(key3) == len(data)
    return request, accept(request, key3=key3, **kwargs)  # type: ignore[arg-type]
