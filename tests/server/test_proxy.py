"""Trusted proxies (stargate.server.proxy): forwarding headers believed only from them.

The tables check the decision itself; the socket tests check that what it decides reaches the
WSGI environ, the WebSocket's remote address and the same-origin check, and that a client
talking to the server directly cannot spoof any of it.  tests/server/test_nginx.py puts a real
nginx in front.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
from collections.abc import Iterable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect, unix_connect
from websockets.typing import Origin

from stargate.server import ENVIRON_KEY, Server, ServerConfig, WebSocket
from stargate.server.proxy import ClientView, TrustedProxies, client_view, parse_forwarded
from stargate.server.wsgi import StartResponse

from .support import TIMEOUT, StartServer, get, read_response

PEER = ("10.0.0.2", 40000)


def view(
    headers: list[tuple[str, str]],
    trusted: Iterable[str] = ("10.0.0.2",),
    family: str = "x-forwarded",
) -> ClientView:
    return client_view(headers, PEER, secure=False, trusted=TrustedProxies(trusted, family))


def test_nobody_is_trusted_by_default() -> None:
    headers = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")]
    assert view(headers, trusted=()) == ClientView(PEER, "http")


def test_an_untrusted_peer_is_not_believed() -> None:
    headers = [("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=1.2.3.4;proto=https")]
    assert view(headers, trusted=("10.0.0.3", "192.168.0.0/16")) == ClientView(PEER, "http")


def test_x_forwarded_from_a_trusted_peer() -> None:
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.com"),
    ]
    assert view(headers) == ClientView(("203.0.113.7", 0), "https", "chat.example.com")


def test_x_forwarded_port_is_not_read() -> None:
    """nginx, configured as deploy-nginx.md says, passes a client's own X-Forwarded-Port
    on: it must not name the port of the URLs the app builds.  The port comes with the
    host (``$http_host``)."""
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Host", "example.com"),
        ("X-Forwarded-Port", "6666"),
    ]
    assert view(headers).host == "example.com"
    headers[1] = ("X-Forwarded-Host", "example.com:8443")
    assert view(headers).host == "example.com:8443"


def test_cidr_networks_and_star() -> None:
    headers = [("X-Forwarded-For", "203.0.113.7")]
    assert view(headers, trusted=("10.0.0.0/8",)).remote == ("203.0.113.7", 0)
    assert view(headers, trusted=("*",)).remote == ("203.0.113.7", 0)
    assert view(headers, trusted=("10.1.0.0/16",)).remote == PEER


def test_a_spoofed_address_left_of_the_trusted_hops_is_ignored() -> None:
    # The client wrote "6.6.6.6" itself; our proxy appended the address it saw.
    headers = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")]
    assert view(headers).remote == ("203.0.113.7", 0)
    # Two trusted proxies in a row: the client is the first untrusted hop from the right.
    headers = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.9")]
    assert view(headers, trusted=("10.0.0.0/8",)).remote == ("203.0.113.7", 0)


def test_rfc7239_forwarded() -> None:
    headers = [("Forwarded", 'for="[2001:db8::1]:4711";proto=https;host=example.com')]
    assert view(headers, family="forwarded") == ClientView(
        ("2001:db8::1", 4711), "https", "example.com"
    )
    # Several elements and fields.
    headers = [("Forwarded", "for=6.6.6.6, for=198.51.100.1;proto=https")]
    assert view(headers, family="forwarded") == ClientView(("198.51.100.1", 0), "https", None)


def test_only_the_family_the_proxy_sets_is_read() -> None:
    """A proxy passes the other family on as the client wrote it: nginx sets
    X-Forwarded-* and forwards a client's ``Forwarded`` untouched."""
    headers = [
        ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "http"),
    ]
    assert view(headers) == ClientView(("203.0.113.7", 0), "http", None)
    assert view(headers, family="forwarded") == ClientView(("6.6.6.6", 0), "https", "evil.example")
    assert view([("X-Forwarded-For", "203.0.113.7")], family="forwarded") == ClientView(
        PEER, "http"
    )
    with pytest.raises(ValueError, match="x-forwarded, forwarded"):
        TrustedProxies(["10.0.0.2"], "x-real-ip")


def test_malformed_forwarded_is_ignored_whole() -> None:
    assert parse_forwarded(["for"]) is None
    assert view([("Forwarded", "for;proto=https")], family="forwarded") == ClientView(PEER, "http")


def test_a_forwarded_host_that_could_smuggle_is_dropped() -> None:
    assert view([("X-Forwarded-Host", "a.com\r\nX: y")]).host is None
    assert view([("X-Forwarded-Host", "a.com/evil")]).host is None


@pytest.mark.parametrize(
    "node",
    [
        "unknown",
        "_hidden",
        "a",
        '"\\',
        "1.2.3",
        "[::1",
        "1.2.3.4%eth0",  # IPv4 has no zones
        "fe80::1%x y",
        "fe80::1%\x85\x9b2J",
        "fe80::1%",
        '"[fe80::1%\\" 200"]',
    ],
)
def test_a_node_that_is_no_address_keeps_the_peer_address(node: str) -> None:
    """``unknown``, an obfuscated identifier (RFC 7239 section 6) or garbage: REMOTE_ADDR
    is an IP address or the peer's, never a string a client chose."""
    assert view([("Forwarded", f"for={node}")], family="forwarded").remote == PEER
    assert view([("X-Forwarded-For", node)]).remote == PEER


def test_an_ipv6_zone_is_kept_when_it_is_one() -> None:
    assert view([("X-Forwarded-For", "fe80::1%eth0")]).remote == ("fe80::1%eth0", 0)
    forwarded = [("Forwarded", 'for="[fe80::1%en0.5]:80"')]
    assert view(forwarded, family="forwarded").remote == ("fe80::1%en0.5", 80)


def test_a_bad_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies(["nginx.local"])


def test_ipv4_mapped_peer_matches_an_ipv4_entry() -> None:
    assert "::ffff:10.0.0.2" in TrustedProxies(["10.0.0.0/8"])


# -- over sockets -------------------------------------------------------------------------


def environ_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    upgrade = environ.get(ENVIRON_KEY)
    if upgrade is not None:

        async def handler(ws: WebSocket) -> None:
            await ws.send(json.dumps(ws.remote_address))

        upgrade.accept(handler)
        return []
    body = json.dumps(
        {
            key: environ.get(key)
            for key in ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST", "HTTP_X_FORWARDED_FOR")
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


FORWARDED = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "public.example"),
]


@pytest.mark.asyncio
async def test_environ_from_a_trusted_proxy(start_server: StartServer) -> None:
    server = await start_server(environ_app, trusted_proxies=("127.0.0.1",))
    response = await get(server.port, "/", FORWARDED)
    assert json.loads(response.body) == {
        "REMOTE_ADDR": "203.0.113.7",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "public.example",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    }


@pytest.mark.asyncio
async def test_environ_from_an_untrusted_client(start_server: StartServer) -> None:
    server = await start_server(environ_app)
    response = await get(server.port, "/", FORWARDED)
    seen = json.loads(response.body)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == "localhost"  # the request's own Host (support.get sends it)


@pytest.mark.asyncio
async def test_same_origin_follows_the_forwarded_scheme_and_host(start_server: StartServer) -> None:
    """An https page on the public host, through a TLS-terminating proxy that rewrote Host."""
    server = await start_server(environ_app, trusted_proxies=("127.0.0.0/8",))
    url = f"ws://127.0.0.1:{server.port}/"
    async with connect(
        url,
        origin=Origin("https://public.example"),
        additional_headers=FORWARDED,
        open_timeout=TIMEOUT,
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == ["203.0.113.7", 0]
    # Not from the forwarded host's http origin, nor from the rewritten Host's.
    for origin in ("http://public.example", f"http://127.0.0.1:{server.port}"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with connect(
                url, origin=Origin(origin), additional_headers=FORWARDED, open_timeout=TIMEOUT
            ):
                pass
        assert info.value.response.status_code == 403


@pytest.mark.asyncio
async def test_an_untrusted_client_cannot_forward_its_way_past_the_origin_check(
    start_server: StartServer,
) -> None:
    server = await start_server(environ_app)
    url = f"ws://127.0.0.1:{server.port}/"
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with connect(
            url,
            origin=Origin("https://public.example"),
            additional_headers=FORWARDED,
            open_timeout=TIMEOUT,
        ):
            pass
    assert info.value.response.status_code == 403


def test_a_unix_socket_peer_is_believed_only_with_star() -> None:
    """A Unix socket's peer has no address: ``*`` (documented for a server only the proxy
    can reach, such as a Unix socket) believes what nginx forwards over it; a list of
    addresses cannot name it, so forwarding headers stay ignored."""
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    star = client_view(headers, None, secure=False, trusted=TrustedProxies(["*"]))
    assert star == ClientView(("203.0.113.7", 0), "https")
    listed = client_view(headers, None, secure=False, trusted=TrustedProxies(["127.0.0.1"]))
    assert listed == ClientView(None, "http")
    # Without an address in the headers, the Unix peer stays without one.
    only_proto = client_view(
        [("X-Forwarded-Proto", "https")], None, secure=False, trusted=TrustedProxies(["*"])
    )
    assert only_proto == ClientView(None, "https")


def test_blank_entries_are_skipped_and_only_addresses_are_looked_up() -> None:
    """A trailing comma in ``--trusted-proxy a,`` trusts nobody extra; a peer that is not an
    address string (a Unix socket's, ``None``) is never "in" a list of networks."""
    trusted = TrustedProxies(["", " 10.0.0.0/8 ", "  "])
    assert trusted and "10.1.2.3" in trusted
    assert None not in trusted and ("10.1.2.3", 80) not in trusted
    assert not TrustedProxies(["", " "])


def test_forwarded_quoting_empty_elements_and_pairs() -> None:
    """RFC 7239 4: a quoted value may hold ``,``, ``;`` and escaped quotes; empty elements
    (``a,,b``) and empty pairs (``for=x;;proto=https``) are tolerated, not refused."""
    hops = parse_forwarded(['for="a,b\\"c\\\\";host="h:1", , for=1.2.3.4;;proto=https;'])
    assert hops is not None and [(h.node, h.proto, h.host) for h in hops] == [
        ('a,b"c\\', None, "h:1"),
        ("1.2.3.4", "https", None),
    ]
    # a quoted ";" is part of its value, not the start of another pair (it used to cut
    # the value in two and throw the whole header away as malformed)
    hops = parse_forwarded(['for="_gw;1";proto=https, for=10.0.0.1'])
    assert hops is not None and [(h.node, h.proto) for h in hops] == [
        ("_gw;1", "https"),
        ("10.0.0.1", None),
    ]


def test_forwarded_nodes_and_hosts_in_every_spelling() -> None:
    """``for=`` as a bare IPv6 address or with a port, ``proto=wss``/``ws`` (what some
    proxies write for an upgrade), and a bracketed IPv6 host that already carries a port."""
    assert view([("Forwarded", 'for="2001:db8::7";proto=wss')], family="forwarded") == ClientView(
        ("2001:db8::7", 0), "https"
    )
    assert view([("Forwarded", "for=203.0.113.7;proto=ws")], family="forwarded").scheme == "http"
    assert view([("Forwarded", "for=203.0.113.7:4711")], family="forwarded").remote == (
        "203.0.113.7",
        4711,
    )
    assert view([("Forwarded", "for=203.0.113.7:_x")], family="forwarded").remote == (
        "203.0.113.7",
        0,
    )  # obfuscated
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Host", "[2001:db8::1]:8443")]
    assert view(headers).host == "[2001:db8::1]:8443"


@pytest.mark.asyncio
async def test_behind_a_proxy_on_a_unix_socket(start_server: StartServer) -> None:
    """nginx in front, over a Unix socket, with ``trusted_proxies=("*",)``: the forwarded
    client, scheme and host reach the environ, and the browser's https page passes the
    same-origin check (bug: a Unix peer was never believed, so the page got 403)."""
    path = os.path.join(tempfile.mkdtemp(prefix="sg-", dir="/tmp"), "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    server = Server(environ_app, ServerConfig(trusted_proxies=("*",)))
    await server.start(listener)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        head = "".join(f"{name}: {value}\r\n" for name, value in FORWARDED)
        writer.write(f"GET / HTTP/1.1\r\nHost: backend\r\n{head}\r\n".encode())
        response = await read_response(reader)
        writer.close()
        assert json.loads(response.body) == {
            "REMOTE_ADDR": "203.0.113.7",
            "wsgi.url_scheme": "https",
            "HTTP_HOST": "public.example",
            "HTTP_X_FORWARDED_FOR": "203.0.113.7",
        }
        async with unix_connect(
            path,
            "ws://backend/",
            origin=Origin("https://public.example"),
            additional_headers=FORWARDED,
            open_timeout=TIMEOUT,
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == ["203.0.113.7", 0]
    finally:
        await server.shutdown(timeout=2.0)
        os.unlink(path)
