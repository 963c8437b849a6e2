"""stargate.handshake.origin: the Origin policy, alone and as accept applies it."""

from __future__ import annotations

import pytest

from stargate.errors import HandshakeError
from stargate.handshake.heads import parse_request
from stargate.handshake.origin import OriginPolicy, parse_origin, server_origin
from stargate.handshake.server import accept, key3_length

from .support import (
    HIXIE75_BASE,
    HIXIE76_BASE,
    HIXIE76_KEY3,
    MAX,
    RFC_BASE,
    RFC_KEY,
    V,
    changed,
    make_request,
    refusal,
)

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
        (("chrome-extension://abcdefghijklmnop",), "https://abcdefghijklmnop", False),
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
    ],
)
def test_origin_policy_allow_list_compares_scheme(
    allowed: tuple[str, ...], origin: str, expected: bool
) -> None:
    policy = OriginPolicy(allowed=allowed, same_origin=False)
    assert policy.check(origin, "server.example", secure=False) is expected
    assert policy.check(origin, "server.example", secure=True) is expected


@pytest.mark.parametrize(
    "entry", ["https://app.example/path", "", "bad pattern", "https://", "://app.example"]
)
def test_an_allowed_entry_that_can_never_match_is_refused(entry: str) -> None:
    """A typo would lock out the origin it meant to let in, with nothing but a 403 to show."""
    with pytest.raises(ValueError, match="can never match"):
        OriginPolicy(allowed=("https://fine.example", entry))


@pytest.mark.parametrize(
    ("policy", "origin", "expected"),
    [
        (OriginPolicy(), None, True),
        (OriginPolicy(), "", False),
        (OriginPolicy(), " \t ", False),
        (OriginPolicy(allowed=("null",)), "", False),
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


def test_accept_authority_applies_to_hixie_origin_and_location() -> None:
    """Behind a proxy that rewrites Host, the Location a hixie client compares with the URL
    it opened (draft-hixie-76 section 4.1) is the public one: the authority, not Host."""
    request = make_request(
        changed(HIXIE76_BASE, Host="backend:8000", Origin="https://app.example"), target="/demo"
    )
    assert refusal(request, key3=HIXIE76_KEY3, secure=True).status == 403
    accepted = accept(request, key3=HIXIE76_KEY3, secure=True, authority="app.example")
    assert b"\r\nSec-WebSocket-Origin: https://app.example\r\n" in accepted.response
    assert b"\r\nSec-WebSocket-Location: wss://app.example/demo\r\n" in accepted.response
    hixie75 = make_request(
        changed(HIXIE75_BASE, Host="backend:8000", Origin="http://app.example"), target="/demo"
    )
    accepted = accept(hixie75, authority="app.example")
    assert b"\r\nWebSocket-Location: ws://app.example/demo\r\n" in accepted.response


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
# The parts: origins and the server's own origin


@pytest.mark.parametrize(
    ("origin", "parsed"),
    [
        ("http://Example.COM", ("http", "example.com", 80)),
        ("HTTPS://h:8443", ("https", "h", 8443)),
        ("https://h/", ("https", "h", 443)),  # a trailing slash is tolerated
        ("chrome-extension://abc:1", ("chrome-extension", "abc", 1)),
        ("chrome-extension://abc", None),  # no default port for that scheme
        ("null", None),
        ("h:80", None),  # no scheme: not a serialized origin
        ("http://u@h", None),
        ("http://h/path", None),
        ("http://h:99999", None),
        ("://h", None),
    ],
)
def test_parse_origin(origin: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_origin(origin) == parsed


@pytest.mark.parametrize(
    ("authority", "secure", "origin"),
    [
        ("h", False, ("http", "h", 80)),
        ("H:8080", False, ("http", "h", 8080)),
        ("h", True, ("https", "h", 443)),
        ("h:80", True, ("https", "h", 80)),
        ("a b", False, None),
    ],
)
def test_server_origin(authority: str, secure: bool, origin: tuple[str, str, int] | None) -> None:
    assert server_origin(authority, secure) == origin


def test_same_origin_needs_a_valid_host() -> None:
    assert not OriginPolicy().check("http://h", "bad host")
    assert OriginPolicy().check("http://h", "h")
    assert not OriginPolicy().check("http://h", None)  # no host to compare with
