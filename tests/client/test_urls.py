"""WebSocket URLs (stargate.client.urls): parsing, the Host header, origins, redirects."""

from __future__ import annotations

import pytest

from stargate.client.errors import InvalidURL
from stargate.client.urls import WebSocketURL, parse_url, redirect_target, same_origin


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", WebSocketURL(False, "example.com", 80, "/")),
        ("wss://example.com/", WebSocketURL(True, "example.com", 443, "/")),
        ("WS://Example.COM:8080/a/b?x=1&y", WebSocketURL(False, "example.com", 8080, "/a/b?x=1&y")),
        ("ws://[::1]:9001/chat", WebSocketURL(False, "::1", 9001, "/chat")),
        ("wss://u:p%40ss@h/", WebSocketURL(True, "h", 443, "/", "u", "p@ss")),
        ("ws://h/a b/ü?q=é&r=%20", WebSocketURL(False, "h", 80, "/a%20b/%C3%BC?q=%C3%A9&r=%20")),
        ("ws://bücher.example/", WebSocketURL(False, "xn--bcher-kva.example", 80, "/")),
    ],
)
def test_parse_url(url: str, expected: WebSocketURL) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("ws://h", "h"),
        ("ws://h:80", "h"),
        ("ws://h:443", "h:443"),
        ("wss://h:443", "h"),
        ("ws://[::1]:9001", "[::1]:9001"),
    ],
)
def test_host_header(url: str, host_header: str) -> None:
    assert parse_url(url).host_header == host_header


@pytest.mark.parametrize(
    ("url", "location", "target"),
    [
        ("ws://h:1/a/b", "/c", "ws://h:1/c"),
        ("ws://h:1/a/b", "c?x", "ws://h:1/a/c?x"),
        ("wss://h/a", "https://g/", "wss://g/"),
        ("ws://h/a", "wss://g/", "wss://g/"),
        (" wss://h/a", "/b", "wss://h/b"),
        ("WS://h/a", "/b", "ws://h/b"),
    ],
)
def test_redirect_target(url: str, location: str, target: str) -> None:
    assert redirect_target(url, location) == target


@pytest.mark.parametrize(
    ("url", "location", "why"),
    [
        ("wss://h/a", "ws://g/", "leaves TLS"),  # never from TLS to plain text
        ("wss://h/a", "http://g/", "leaves TLS"),
        # ... however the URL was written: parse_url drops leading blanks and controls.
        (" wss://h/a", "ws://g/", "leaves TLS"),
        ("\twss://h/a", "http://g/", "leaves TLS"),
        ("\x00WSS://h/a", "ws://g/", "leaves TLS"),
        ("ws://h/a", "mailto:x@y", "not a WebSocket URL"),
        ("ws://h/a", "", "empty"),
        ("ws://h/a", "/b#part", "fragment"),
        ("ws://h/a", "ws://g/b#", "fragment"),
    ],
)
def test_redirect_target_refused(url: str, location: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        redirect_target(url, location)


@pytest.mark.parametrize(
    ("url", "location", "same"),
    [
        ("ws://h:1/a", "/b", True),
        ("ws://h/a", "http://H:80/b", True),  # http is ws's page scheme; 80 is its default
        ("ws://h:1/a", "ws://h:2/a", False),
        ("ws://h/a", "ws://g/a", False),
        ("ws://h/a", "wss://h/a", False),  # another scheme is another origin (RFC 6454)
        ("ws://127.0.0.1:1/a", "ws://localhost:1/a", False),
    ],
)
def test_same_origin(url: str, location: str, same: bool) -> None:
    target = redirect_target(url, location)
    assert same_origin(parse_url(url), parse_url(target)) is same


@pytest.mark.parametrize(
    "url",
    ["http://h/", "h", "ws://", "ws://h:99999/", "ws://u:s3cret@h:port/", "ws://u:s3cret@h/#f"],
)
def test_invalid_url_hides_the_password(url: str) -> None:
    with pytest.raises(InvalidURL) as info:
        parse_url(url)
    assert "s3cret" not in str(info.value) and "s3cret" not in info.value.url


def test_repr_hides_the_password() -> None:
    parsed = parse_url("ws://alice:s3cret@h/")
    assert (parsed.username, parsed.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(parsed)
