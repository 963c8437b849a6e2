"""Request-targets (stargate.server.request): the four forms of RFC 9112 section 3.2, and
what is refused, before a path reaches the WSGI environ or the upgrade decision."""

from __future__ import annotations

import pytest

from stargate.server.request import BadTarget, HttpRequest, Target, parse_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", Target("/", "")),
        ("/a/b", Target("/a/b", "")),
        (
            "/a%20b?x=1&y=%20",
            Target("/a%20b", "x=1&y=%20", has_query=True),
        ),  # still percent-encoded
        ("/search?", Target("/search", "", has_query=True)),  # empty, not absent
        ("/q?a=1?b=2", Target("/q", "a=1?b=2", has_query=True)),  # only the first "?" separates
        ("//double/slash", Target("//double/slash", "")),  # a path, not an authority
    ],
)
def test_origin_form(target: str, expected: Target) -> None:
    """RFC 9112 section 3.2.1: absolute-path [ "?" query ]."""
    assert parse_target("GET", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://example.com/x", Target("/x", "", "example.com")),
        ("http://example.com:8080/x?y=1", Target("/x", "y=1", "example.com:8080", True)),
        ("https://example.com", Target("/", "", "example.com")),  # empty path is "/"
        ("HTTP://Example.COM/x", Target("/x", "", "Example.COM")),  # scheme case-insensitive
        ("ws://chat.example/room", Target("/room", "", "chat.example")),
        ("wss://chat.example/room?id=3", Target("/room", "id=3", "chat.example", True)),
        ("http://example.com/x?", Target("/x", "", "example.com", True)),
        ("http://[::1]:8000/v6", Target("/v6", "", "[::1]:8000")),
    ],
)
def test_absolute_form(target: str, expected: Target) -> None:
    """RFC 9112 section 3.2.2: the path and query come from the URI and its authority
    stands for the Host header, which the server must then ignore."""
    assert parse_target("GET", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/x#frag", Target("/x", "")),
        ("/x?a=1#frag?b=2", Target("/x", "a=1", has_query=True)),
        ("/x#frag?b=2", Target("/x", "")),  # a "?" in the fragment is no query
        ("/#", Target("/", "")),
        ("http://example.com/x#top", Target("/x", "", "example.com")),
    ],
)
def test_fragment_is_dropped(target: str, expected: Target) -> None:
    """A fragment is not part of a request-target (RFC 9112 section 3.2): dropped, never
    part of the path or the query."""
    assert parse_target("GET", target) == expected


def test_asterisk_form_is_for_options_only() -> None:
    """RFC 9112 section 3.2.4: ``*`` is only for a server-wide OPTIONS."""
    assert parse_target("OPTIONS", "*") == Target("*", "")
    for method in ("GET", "POST", "HEAD", "DELETE"):
        with pytest.raises(BadTarget) as info:
            parse_target(method, "*")
        assert info.value.status == 400
        assert "OPTIONS" in str(info.value)


@pytest.mark.parametrize("target", ["example.com:443", "/x", "*", "http://example.com/"])
def test_connect_is_refused_with_405(target: str) -> None:
    """CONNECT (authority-form, RFC 9112 section 3.2.3) asks for a tunnel: this server is
    no proxy, whatever the target."""
    with pytest.raises(BadTarget) as info:
        parse_target("CONNECT", target)
    assert info.value.status == 405


@pytest.mark.parametrize(
    "target",
    [
        "example.com:80",  # authority-form without CONNECT
        "example.com/x",  # no scheme, no leading slash
        "",  # empty
        "ftp://example.com/file",  # not an http(s) or ws(s) URI
        "javascript:alert(1)",
        "http:///x",  # no host
        "http://user:secret@example.com/x",  # userinfo (RFC 9110 section 4.2.4)
        "http://@example.com/x",
        "http://[::1/x",  # unbalanced IPv6 literal
        "http://:80/x",  # a port and no host
        "http://example.com:abc/x",  # a port that is no number
        'http://ex"ample.com/x',  # what no host name holds, and would become HTTP_HOST
    ],
)
def test_other_targets_are_refused_with_400(target: str) -> None:
    with pytest.raises(BadTarget) as info:
        parse_target("GET", target)
    assert info.value.status == 400


def test_a_long_refused_target_is_cut_in_the_reason() -> None:
    with pytest.raises(BadTarget) as info:
        parse_target("GET", "x" * 10_000)
    assert len(str(info.value)) < 200


def test_http_request_defaults() -> None:
    request = HttpRequest("GET", "/", "1.1", [])
    assert request.body.read() == b""
    assert (request.body_size, request.keep_alive, request.upgrade) == (0, True, False)
    assert request.trailing == bytearray()
    assert request.parsed == Target("/", "")
    # Each request has its own mutable parts.
    other = HttpRequest("GET", "/", "1.1", [])
    request.trailing += b"key3"
    assert other.trailing == bytearray()
    assert other.body is not request.body


@pytest.mark.parametrize(
    ("target", "resource"),
    [
        ("/demo", "/demo"),
        ("/demo?", "/demo?"),
        ("/demo?x=1", "/demo?x=1"),
        ("/demo?#top", "/demo?"),
        ("http://example.com/demo?", "/demo?"),
        ("http://example.com", "/"),
    ],
)
def test_resource_is_the_target_as_sent(target: str, resource: str) -> None:
    """The upgrade's resource name keeps an empty query: a hixie client compares the
    Location it gets with the URL it opened."""
    assert parse_target("GET", target).resource == resource
