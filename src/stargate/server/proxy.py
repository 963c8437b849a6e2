"""Who the client is, when a reverse proxy stands between it and us.

Behind nginx the socket's peer is the proxy: the client's address, the scheme it used
(https, terminated at the proxy) and the host it asked for travel in ``Forwarded``
(RFC 7239) or the de-facto ``X-Forwarded-For/Proto/Host`` headers.  Anyone can send
those headers, so they are believed only from a peer listed in ``trusted_proxies``; from any
other peer they are ignored (left in the environ as ``HTTP_X_FORWARDED_*``, as gunicorn and
waitress leave them, but never used by the server).

What the proxy says sets ``REMOTE_ADDR``, ``wsgi.url_scheme`` and ``HTTP_HOST`` in the WSGI
environ, the WebSocket's remote address, and the origin the same-origin check compares with:
an https page whose Host the proxy rewrote is same-origin with the upgrade it sends.

Through a chain of proxies, the client is the nearest hop (from the right) that is not a
trusted proxy itself (RFC 7239 section 5.2, X-Forwarded-For alike): an address a client
wrote into its own request, left of the first trusted hop, is never taken.

Only one family is read: the one the proxies set (``proxy_headers``, ``x-forwarded`` by
default, as nginx, HAProxy and cloud load balancers set it).  A proxy passes the other
family through as the client wrote it, so reading both would let a client behind nginx
name its own address in ``Forwarded``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PROXY_HEADERS", "ClientView", "TrustedProxies", "client_view", "parse_forwarded"]

#: The header families a proxy may set: ``X-Forwarded-For/Proto/Host``, or RFC 7239's
#: ``Forwarded``.
PROXY_HEADERS = ("x-forwarded", "forwarded")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ClientView:
    """The client as the application should see it."""

    #: The client's address and port (port 0 when a proxy named only the address).
    remote: tuple[str, int] | None
    #: ``"https"`` or ``"http"``: how the client reached us (or the first trusted proxy).
    scheme: str
    #: ``host[:port]`` the client asked for; ``None``: the request's own Host stands.
    host: str | None = None

    @property
    def secure(self) -> bool:
        return self.scheme == "https"


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses or CIDR networks.

    ``"*"`` trusts every peer: only for a server that nothing but the proxy can reach (a
    Unix socket, a private network).  An empty list (the default) trusts nobody.
    ``headers`` is the family they set (one of :data:`PROXY_HEADERS`); the other is ignored.
    """

    def __init__(self, entries: Iterable[str] = (), headers: str = "x-forwarded") -> None:
        if headers not in PROXY_HEADERS:
            raise ValueError(f"proxy headers: one of {', '.join(PROXY_HEADERS)}, not {headers!r}")
        self.headers = headers
        self.any = False
        networks: list[_Network] = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network (CIDR)"
                ) from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        if self.any:
            return True
        if not self.networks:  # the common case, asked on every request: no parsing
            return False
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])  # no IPv6 zone
        except ValueError:
            return False  # "unknown", an obfuscated identifier (RFC 7239 section 6.3)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class _Hop:
    """One proxy's statement: whom it served (``for``), over what, for which host."""

    node: str | None = None
    proto: str | None = None
    host: str | None = None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _split_elements(value: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quoted strings (RFC 7239 values may quote ``,`` and ``;``)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_forwarded(values: Sequence[str]) -> list[_Hop] | None:
    """The hops of ``Forwarded`` header fields, in order; None when malformed (then the
    header is ignored as a whole rather than half-believed)."""
    hops: list[_Hop] = []
    for value in values:
        for element in _split_elements(value):
            if not element.strip():
                continue
            fields: dict[str, str] = {}
            for pair in _split_elements(element, ";"):
                if not pair.strip():
                    continue
                name, sep, raw = pair.partition("=")
                if not sep:
                    return None
                fields[name.strip().lower()] = _unquote(raw)
            hops.append(_Hop(fields.get("for"), fields.get("proto"), fields.get("host")))
    return hops


#: An IPv6 zone identifier: RFC 6874's ``ZoneID``, unreserved characters only (no
#: percent-encoding: a proxy writes the zone as the system names it).
_ZONE = re.compile(r"[A-Za-z0-9._~-]{1,64}")


def _node_address(node: str | None) -> tuple[str, int] | None:
    """``for=`` value -> (address, port): ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``; ``None``
    for anything but an IP address (``unknown``, an obfuscated ``_name``, garbage): what
    becomes ``REMOTE_ADDR`` is an address or the peer's."""
    if node is None:
        return None
    node = node.strip()
    if node.startswith("["):
        address, bracket, rest = node[1:].partition("]")
        if not bracket:
            return None
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        address, _, port = node.partition(":")
    else:
        address, port = node, ""
    ip, percent, zone = address.partition("%")
    try:
        version = ipaddress.ip_address(ip).version
    except ValueError:
        return None
    # A zone (``fe80::1%eth0``) only on IPv6, and only of RFC 6874's characters: it becomes
    # REMOTE_ADDR and the access log's address, which a client must not write.
    if percent and (version != 6 or _ZONE.fullmatch(zone) is None):
        return None
    return address, int(port) if port.isdigit() and len(port) <= 5 else 0


def _list(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    items: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            items.extend(item.strip() for item in value.split(","))
    return items


def _x_forwarded_hops(headers: Sequence[tuple[str, str]]) -> list[_Hop]:
    """``X-Forwarded-For`` with ``-Proto``/``-Host`` lined up from the right: a proxy that
    appends to each list lines them up; one that sets a single value (nginx's usual
    ``proxy_set_header X-Forwarded-Proto $scheme``) speaks for the nearest hop.

    ``X-Forwarded-Port`` is not read: the proxies that set ``X-Forwarded-Host`` put the
    port in it (nginx's ``$http_host``, Traefik), and nginx passes a client's own
    ``X-Forwarded-Port`` on untouched, which would have named the port of every URL the
    app builds (as gunicorn and uvicorn, which read neither)."""
    nodes = _list(headers, "x-forwarded-for")
    protos = _list(headers, "x-forwarded-proto")
    hosts = _list(headers, "x-forwarded-host")
    if not nodes:
        nodes = [""]  # no address given: the statement about scheme and host still counts
    hops: list[_Hop] = []
    count = len(nodes)
    for index, node in enumerate(nodes):
        from_right = count - index
        proto = protos[-from_right] if len(protos) >= from_right else None
        host = hosts[-from_right] if len(hosts) >= from_right else None
        if from_right == 1:
            proto = proto or (protos[-1] if protos else None)
            host = host or (hosts[-1] if hosts else None)
        hops.append(_Hop(node or None, proto, host))
    return hops


def client_view(
    headers: Sequence[tuple[str, str]],
    peer: tuple[str, int] | None,
    *,
    secure: bool,
    trusted: TrustedProxies,
) -> ClientView:
    """The client behind the proxies we trust (or the socket's peer, if it is no proxy)."""
    direct = ClientView(peer, "https" if secure else "http")
    # A Unix socket's peer has no address: only ``*`` can trust it.
    if not (trusted.any if peer is None else peer[0] in trusted):
        return direct
    if trusted.headers == "forwarded":
        forwarded = [value for name, value in headers if name.lower() == "forwarded"]
        hops = parse_forwarded(forwarded) if forwarded else None
    else:
        hops = _x_forwarded_hops(headers)
    if not hops:
        return direct
    # Walk from the nearest hop: each trusted proxy's statement names its own peer; stop at
    # the first peer that is not a trusted proxy (the client), or at the leftmost hop.
    chosen = hops[-1]
    for hop in reversed(hops):
        chosen = hop
        address = _node_address(hop.node)
        if address is None or address[0] not in trusted:
            break
    address = _node_address(chosen.node)
    remote = peer if address is None else address
    proto = (chosen.proto or "").strip().lower()
    scheme = proto if proto in ("http", "https") else direct.scheme
    if proto in ("ws", "wss"):
        scheme = "https" if proto == "wss" else "http"
    host = chosen.host.strip() if chosen.host and chosen.host.strip() else None
    if host is not None and not _valid_host(host):
        host = None
    return ClientView(remote, scheme, host)


def _valid_host(host: str) -> bool:
    """A ``host[:port]`` with no characters that could smuggle anything into HTTP_HOST."""
    return all(c.isalnum() or c in "-._:[]" for c in host) and len(host) <= 255
