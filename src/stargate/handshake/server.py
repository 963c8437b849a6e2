"""The server's side of the opening handshake, of every generation.

:func:`~stargate.handshake.heads.parse_request` (or a :class:`Request` built by the server's
HTTP parser), then :func:`accept`, which either returns the exact bytes to write or raises
:class:`~stargate.errors.HandshakeError`, which :func:`reject_response` turns into an HTTP
error.  Which generation a request speaks is :func:`detect_version`'s answer; hixie-76 sends 8
more bytes after its head (:func:`key3_length`).
"""

from __future__ import annotations

import http
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import HandshakeError
from ..headers import has_token, parse_extensions, split_tokens
from ..protocol import ProtocolVersion
from .heads import (
    Request,
    is_field_value,
    parse_http_version,
    resource_name,
    serialize_fields,
    serialize_head,
    split_host_port,
)
from .keys import accept_key, check_key, hixie76_answer, hixie76_key_number
from .origin import OriginPolicy

__all__ = [
    "ALL_VERSIONS",
    "RFC_VERSIONS",
    "SAME_ORIGIN",
    "Accepted",
    "ServerExtension",
    "accept",
    "detect_version",
    "key3_length",
    "reject_response",
]

#: Every protocol generation Stargate speaks.
ALL_VERSIONS: frozenset[ProtocolVersion] = frozenset(ProtocolVersion)
#: The generations with a ``Sec-WebSocket-Version`` header and RFC 6455 framing.
RFC_VERSIONS: frozenset[ProtocolVersion] = frozenset(
    {ProtocolVersion.HYBI_07, ProtocolVersion.HYBI_08, ProtocolVersion.RFC6455}
)

#: The default Origin policy of :func:`accept`: same origin, or no Origin (frozen: shared).
SAME_ORIGIN = OriginPolicy()

# Highest version first: the order of the Sec-WebSocket-Version list sent with a 426.
_RFC_ORDER = (ProtocolVersion.RFC6455, ProtocolVersion.HYBI_08, ProtocolVersion.HYBI_07)
_VERSION_BY_HEADER = {v.value: v for v in _RFC_ORDER}
#: Every RFC 6455 101 response begins so (section 4.2.2 item 5), up to the accept key.
_SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)


def _supported_header(versions: Collection[ProtocolVersion]) -> list[tuple[str, str]]:
    offered = [v.value for v in _RFC_ORDER if v in versions]
    return [("Sec-WebSocket-Version", ", ".join(offered))] if offered else []


def _single(request: Request, name: str) -> str | None:
    """The value of a field that MUST NOT appear more than once (RFC 6455 section 11.3)."""
    values = request.headers.get_all(name)
    if len(values) > 1:
        raise HandshakeError(400, f"{name} header sent more than once")
    return values[0] if values else None


def detect_version(request: Request) -> ProtocolVersion:
    """Tell which protocol generation an upgrade request speaks.

    ``Sec-WebSocket-Version`` 13, 8 or 7 name RFC 6455, hybi-08 and hybi-07.  Without it,
    ``Sec-WebSocket-Key1``/``Key2`` mark hixie-76 and a bare ``Upgrade: WebSocket`` hixie-75.
    An unknown version gets 426 with the versions we speak (RFC 6455 section 4.4), as does a
    request that is not a WebSocket upgrade at all (RFC 7231 section 6.5.15).
    """
    headers = request.headers
    version = _single(request, "Sec-WebSocket-Version")
    if version is not None:
        # OWS only (RFC 7230 section 3.2.3): str.strip() would also drop U+00A0 and U+0085.
        detected = _VERSION_BY_HEADER.get(version.strip(" \t"))
        if detected is None:
            raise HandshakeError(
                426,
                f"unsupported Sec-WebSocket-Version {version!r}",
                _supported_header(ALL_VERSIONS),
            )
        return detected
    if "Sec-WebSocket-Key" in headers:
        raise HandshakeError(
            426,
            "Sec-WebSocket-Key without Sec-WebSocket-Version (RFC 6455 section 4.1 item 9)",
            _supported_header(ALL_VERSIONS),
        )
    if "Sec-WebSocket-Key1" in headers or "Sec-WebSocket-Key2" in headers:
        return ProtocolVersion.HIXIE_76
    if has_token(headers.get_all("Upgrade"), "websocket"):
        return ProtocolVersion.HIXIE_75
    raise HandshakeError(426, "not a WebSocket upgrade request", _supported_header(ALL_VERSIONS))


def key3_length(request: Request) -> int:
    """How many bytes follow the head as part of the handshake: 8 for hixie-76, else 0.

    draft-hixie-76 section 4.1 sends key3 after the blank line without a Content-Length, so the
    server must read those 8 bytes itself before calling :func:`accept`.  Never raises: a
    request that :func:`detect_version` refuses needs no extra bytes, nor does one with a
    single key (refused at once, not after waiting for bytes that may never come).
    """
    headers = request.headers
    if "Sec-WebSocket-Version" in headers or "Sec-WebSocket-Key" in headers:
        return 0
    if "Sec-WebSocket-Key1" in headers and "Sec-WebSocket-Key2" in headers:
        return 8
    return 0


class ServerExtension(Protocol):
    """A server-side extension factory (for example permessage-deflate, RFC 7692).

    :func:`accept` calls :meth:`accept` with the parameters of each offer of ``name``, in the
    client's preference order (RFC 6455 section 9.1), until one returns a result.
    """

    @property
    def name(self) -> str:
        """The extension token, compared exactly with the offered names."""
        ...

    def accept(self, params: list[tuple[str, str | None]]) -> tuple[str, object] | None:
        """Return ``(response header value, negotiated extension)`` or None to decline.

        May raise :class:`HandshakeError` 400 for malformed parameters.
        """
        ...


@dataclass(frozen=True)
class Accepted:
    """A successful server handshake: ``response`` is the exact bytes to write."""

    version: ProtocolVersion
    subprotocol: str | None
    extensions: list[object]
    response: bytes


def _origin_of(request: Request) -> str | None:
    """The request's origin: ``Origin``, else hybi-07/08's ``Sec-WebSocket-Origin``.

    ``Origin`` wins for every version: RFC 6455 section 4.2.1 item 8 and the hixie drafts
    (section 5.2) name it, and it is the field browsers set themselves and scripts cannot; a
    hybi-07/08 request carrying both must not pass on a matching ``Sec-WebSocket-Origin`` next
    to a foreign ``Origin``.  ``Sec-WebSocket-Origin`` (hybi-07/08 section 4.1) is the fallback
    for any version, so that a request cannot dodge the check by using the other name.  Either
    field sent twice is refused (RFC 6455 section 11.3).
    """
    origin = _single(request, "Origin")
    fallback = _single(request, "Sec-WebSocket-Origin")
    return origin if origin is not None else fallback


def _select_subprotocol(offered: Sequence[str], ours: Sequence[str]) -> str | None:
    """The first of OUR subprotocols that the client offered (server preference).

    Subprotocol names compare case-sensitively (RFC 7936 section 3).  When nothing matches the
    handshake still succeeds without Sec-WebSocket-Protocol (RFC 6455 section 4.2.2 item 5.4);
    the client then decides whether to go on.
    """
    offered_set = set(offered)
    for candidate in ours:
        if candidate in offered_set:
            return candidate
    return None


def _negotiate_extensions(
    request: Request, extensions: Sequence[ServerExtension]
) -> tuple[list[str], list[object]]:
    """Run the extension hooks over the offers, in the client's order (RFC 6455 section 9.1).

    The header is parsed even when no extension is configured: a malformed one marks a broken
    client and is refused with 400 whatever the configuration.
    """
    header_values: list[str] = []
    negotiated: list[object] = []
    values = request.headers.get_all("Sec-WebSocket-Extensions")
    if not values:
        return header_values, negotiated  # no offer: nothing to parse (most handshakes)
    offers = parse_extensions(values)
    done: set[str] = set()
    for name, params in offers:
        if name in done:
            continue  # a later offer of an accepted name is a fallback no longer needed
        for extension in extensions:
            if extension.name != name:
                continue
            result = extension.accept(list(params))
            if result is not None:
                header_values.append(result[0])
                negotiated.append(result[1])
                done.add(name)
                break
    return header_values, negotiated


def accept(
    request: Request,
    *,
    key3: bytes = b"",
    secure: bool = False,
    subprotocols: Sequence[str] = (),
    origin_policy: OriginPolicy = SAME_ORIGIN,
    extensions: Sequence[ServerExtension] = (),
    versions: Collection[ProtocolVersion] = ALL_VERSIONS,
    extra_headers: Sequence[tuple[str, str]] = (),
    authority: str | None = None,
) -> Accepted:
    """Validate an upgrade request and build the exact response that accepts it.

    Every refusal raises :class:`HandshakeError` with the HTTP status, a reason, and the headers
    the status calls for; write :func:`reject_response` of it and close.

    * 426 + ``Sec-WebSocket-Version``: not an upgrade request, an unknown version, or a version
      turned off through ``versions`` (RFC 6455 section 4.4; hixie clients get it too).
    * 405 + ``Allow: GET``: another method (RFC 6455 section 4.1 item 1: the method MUST be GET;
      RFC 7231 section 6.5.5 says which status names that).
    * 400: HTTP/1.0, no or several Host, no ``websocket`` token in Upgrade, no ``upgrade`` token
      in Connection, bad Sec-WebSocket-Key, bad hixie-76 keys or key3, malformed extension offers.
    * 400 also: an ``authority`` that is not ``host[:port]``.
    * 403: the origin is not allowed by ``origin_policy`` (an empty ``Origin`` header included).

    ``key3`` is the 8 bytes following a hixie-76 head (see :func:`key3_length`); ``secure`` says
    the connection is TLS: it picks ``wss:`` for the hixie Location and ``https`` as the scheme
    of the server's own origin for the same-origin check (``http`` otherwise); ``subprotocols``
    is our preference order; ``extra_headers`` are appended to the 101 response.
    ``authority`` is the ``host[:port]`` the server is reached at (default: the ``Host``
    header), for the origin check and the hixie Location, which a hixie client compares with
    the URL it opened (draft-hixie-76 section 4.1); a server behind a trusted proxy passes the
    forwarded host here and the forwarded scheme as ``secure``, and an absolute-form target's
    authority, which replaces ``Host`` (RFC 9112 section 3.2.2).
    """
    version = detect_version(request)
    if version not in versions:
        raise HandshakeError(
            426,
            f"WebSocket protocol {version.value} is disabled on this server",
            _supported_header(versions),
        )
    if request.method != "GET":
        raise HandshakeError(
            405,
            f"method {request.method!r} not allowed: the WebSocket handshake MUST be a GET "
            "(RFC 6455 section 4.1)",
            [("Allow", "GET")],
        )
    if request.http_version != "1.1" and parse_http_version(request.http_version) < (1, 1):
        raise HandshakeError(
            400,
            f"HTTP/{request.http_version} cannot upgrade: the WebSocket handshake requires "
            "HTTP/1.1 or later (RFC 6455 section 4.1)",
        )
    host = _single(request, "Host")  # RFC 7230 section 5.4: several Host headers -> 400
    if host is None:
        raise HandshakeError(400, "missing Host header (RFC 6455 section 4.1 item 4)")
    if split_host_port(host) is None:
        raise HandshakeError(400, f"invalid Host header {host[:100]!r}")
    if not has_token(request.headers.get_all("Upgrade"), "websocket"):
        raise HandshakeError(
            400, "the Upgrade header does not contain 'websocket' (RFC 6455 section 4.2.1 item 3)"
        )
    if not has_token(request.headers.get_all("Connection"), "upgrade"):
        raise HandshakeError(
            400,
            "the Connection header does not contain 'upgrade' (RFC 6455 section 4.2.1 item 4)",
        )
    resource = resource_name(request.target)
    if not resource.startswith("/"):
        raise HandshakeError(400, f"invalid request target {request.target[:100]!r}")

    # Syntax first, policy second: a malformed request gets 400 whatever its origin.
    if version is ProtocolVersion.HIXIE_76:
        answer = _hixie76_challenge(request, key3)
    elif not version.is_hixie:
        key = check_key(_single(request, "Sec-WebSocket-Key"))

    if authority is not None and split_host_port(authority) is None:
        raise HandshakeError(400, f"invalid authority {authority[:100]!r} for the origin check")

    origin = _origin_of(request)
    if origin is not None and not is_field_value(origin):
        raise HandshakeError(400, "control character in the Origin header")
    # RFC 6455 section 4.2.1 item 8 / 10.2: the origin decides whether to accept.
    if not origin_policy.check(origin, host if authority is None else authority, secure=secure):
        if origin is None:
            raise HandshakeError(403, "requests without an Origin header are not allowed")
        if not origin.strip(" \t"):
            raise HandshakeError(403, "an empty Origin header is not an origin (RFC 6454 7.1)")
        raise HandshakeError(403, f"origin {origin!r} is not allowed")

    if version.is_hixie:
        return _accept_hixie(
            request,
            version,
            host if authority is None else authority,
            resource,
            origin,
            secure,
            subprotocols,
            extra_headers,
            answer if version is ProtocolVersion.HIXIE_76 else b"",
        )

    subprotocol = None
    if subprotocols:  # else no offer can match: the header is not even split
        offered = split_tokens(request.headers.get_all("Sec-WebSocket-Protocol"))
        subprotocol = _select_subprotocol(offered, subprotocols)
    extension_values, negotiated = _negotiate_extensions(request, extensions)
    fields: list[tuple[str, str]] = []
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extension_values:
        fields.append(("Sec-WebSocket-Extensions", ", ".join(extension_values)))
    fields.extend(extra_headers)
    # The fixed fields and the accept key (base64: ASCII) need no check; the rest does.
    head = _SWITCHING_PROTOCOLS + accept_key(key).encode("ascii")
    response = head + serialize_fields(fields)
    return Accepted(version, subprotocol, negotiated, response)


def _hixie76_challenge(request: Request, key3: bytes) -> bytes:
    """The 16-byte answer to a hixie-76 request, after validating its keys and key3."""
    number1 = hixie76_key_number("Sec-WebSocket-Key1", _single(request, "Sec-WebSocket-Key1"))
    number2 = hixie76_key_number("Sec-WebSocket-Key2", _single(request, "Sec-WebSocket-Key2"))
    if len(key3) != 8:
        raise HandshakeError(
            400, f"hixie-76 key3 must be 8 bytes, got {len(key3)} (draft-hixie-76 section 4.1)"
        )
    return hixie76_answer(number1, number2, key3)


def _accept_hixie(
    request: Request,
    version: ProtocolVersion,
    host: str,
    resource: str,
    origin: str | None,
    secure: bool,
    subprotocols: Sequence[str],
    extra_headers: Sequence[tuple[str, str]],
    answer: bytes,
) -> Accepted:
    """The 101 response of draft-hixie-75 section 4.2 / draft-hixie-76 section 5.2.

    Both drafts fix the status line and the field names; the client compares Location and
    Origin with what it sent, so both are echoed.  The subprotocol is a single string (not a
    list) that is echoed when we speak it.  hixie-76 appends the challenge answer after the head.
    """
    if version is ProtocolVersion.HIXIE_75:
        prefix = "WebSocket-"
        status_line = "HTTP/1.1 101 Web Socket Protocol Handshake"
    else:
        prefix = "Sec-WebSocket-"
        status_line = "HTTP/1.1 101 WebSocket Protocol Handshake"
    offered = request.headers.get(f"{prefix}Protocol")
    subprotocol = offered if offered is not None and offered in subprotocols else None
    fields: list[tuple[str, str]] = [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
    if origin is not None:
        # Without an Origin (a non-browser client) there is nothing to echo.
        fields.append((f"{prefix}Origin", origin))
    fields.append((f"{prefix}Location", f"{'wss' if secure else 'ws'}://{host}{resource}"))
    if subprotocol is not None:
        fields.append((f"{prefix}Protocol", subprotocol))
    fields.extend(extra_headers)
    return Accepted(version, subprotocol, [], serialize_head(status_line, fields) + answer)


def reject_response(error: HandshakeError) -> bytes:
    """A complete HTTP/1.1 response that refuses the handshake, with the reason as the body.

    ``Connection: close`` because the connection is not reused after a refused upgrade.  A 426
    MUST carry an ``Upgrade`` field (RFC 7231 section 6.5.15), and whoever sends ``Upgrade`` MUST
    list ``upgrade`` in Connection (RFC 7230 section 6.7): both are added when missing.
    """
    try:
        phrase = http.HTTPStatus(error.status).phrase
    except ValueError:
        phrase = "Error"
    body = (error.reason + "\n").encode("utf-8")
    extra = list(error.headers)
    names = {name.lower() for name, _ in extra}
    if error.status == 426 and "upgrade" not in names:
        extra.insert(0, ("Upgrade", "websocket"))
        names.add("upgrade")
    options = [
        token
        for token in split_tokens(v for n, v in extra if n.lower() == "connection")
        if token.lower() != "close"
    ]
    if "upgrade" in names and not any(t.lower() == "upgrade" for t in options):
        options.append("Upgrade")
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", ", ".join([*options, "close"])),
    ]
    own = {"connection", "content-length", "content-type"}
    fields.extend((n, v) for n, v in extra if n.lower() not in own)
    return serialize_head(f"HTTP/1.1 {error.status} {phrase}", fields) + body
