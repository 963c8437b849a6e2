"""The client's side of the opening handshake, of every generation.

:class:`ClientHandshake` writes the upgrade request and reads the server's answer, however it
is split into reads, and tells whether it opens the connection (RFC 6455 section 4.1,
hybi-07/08, draft-hixie-75/76).  Each way a response can fail raises its own subclass of
:class:`~stargate.errors.InvalidHandshakeResponse` (:class:`UpgradeRefused`,
:class:`Redirected`, :class:`InvalidAcceptKey` ...), carrying the parsed response, so that the
I/O layer around it maps failures to its own errors without parsing anything again.
Extensions offered as objects (:class:`ClientExtension`, such as permessage-deflate's offer)
are negotiated here too.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import HandshakeError, InvalidHandshakeResponse
from ..headers import has_token, parse_extensions, split_tokens
from ..protocol import ProtocolVersion
from .heads import Response, find_head_end, parse_response, serialize_head
from .keys import accept_key, hixie76_answer, hixie76_key

__all__ = [
    "BODY_PREFIX",
    "ClientAccepted",
    "ClientExtension",
    "ClientHandshake",
    "ExtensionNegotiationFailed",
    "InvalidAcceptKey",
    "InvalidChallengeAnswer",
    "InvalidEcho",
    "InvalidUpgrade",
    "MalformedResponse",
    "Redirected",
    "RejectedResponse",
    "UnexpectedSubprotocol",
    "UpgradeRefused",
]

#: How much of a refusal's body the client keeps to show the user.
BODY_PREFIX = 1024

ExtensionParams = list[tuple[str, str | None]]


def _switches_protocols(http_version: str) -> bool:
    """Whether a response in ``http_version`` (``"1.1"``) can be a 101: HTTP/1.1 and later
    minor versions of HTTP/1 (HTTP/2 and 3 have no 101 either, RFC 9113 section 8.6)."""
    major, _, minor = http_version.partition(".")
    return major == "1" and minor != "0"


# -- failures ----------------------------------------------------------------------------------


class MalformedResponse(InvalidHandshakeResponse):
    """What the server sent is not an HTTP response head, or a head over ``max_header_size``
    (``status`` is 0: none was read)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed response: {reason}")


class RejectedResponse(InvalidHandshakeResponse):
    """A complete response head that does not open the connection; ``response`` is that head
    (status, reason and every header field)."""

    def __init__(self, reason: str, response: Response, body: bytes = b"") -> None:
        super().__init__(reason, response.status, body)
        self.response = response


class UpgradeRefused(RejectedResponse):
    """The server answered with a status other than 101: it refused the upgrade.  ``body``
    holds the first bytes of its body (at most :data:`BODY_PREFIX`) that came with the head."""


class Redirected(UpgradeRefused):
    """A 3xx answer: the resource is elsewhere, at ``location`` (``""`` when the server did
    not say).  Following it is the I/O layer's decision."""

    @property
    def location(self) -> str:
        return self.response.headers.get("Location") or ""


class InvalidUpgrade(RejectedResponse):
    """A 101 whose ``Upgrade`` is not ``websocket`` or whose ``Connection`` lacks ``upgrade``
    (RFC 6455 section 4.1, the client's checks 2 and 3), or a 101 in a version of HTTP that
    has no protocol switch (HTTP/1.0)."""


class InvalidAcceptKey(RejectedResponse):
    """``Sec-WebSocket-Accept`` is missing or is not the hash of our key (RFC 6455 section 4.1,
    check 4): the answer is not from a WebSocket server that read our request."""


class InvalidChallengeAnswer(RejectedResponse):
    """The 16 bytes after a hixie-76 head are not the answer to our keys (draft-hixie-76
    section 4.1 step 42)."""


class InvalidEcho(RejectedResponse):
    """A hixie server echoed a ``Location`` or ``Origin`` other than ours (draft-hixie-76
    section 4.1 steps 36-39)."""


class UnexpectedSubprotocol(RejectedResponse):
    """The server selected a subprotocol we did not offer, several, or an empty one (RFC 6455
    section 4.1, check 6)."""


class ExtensionNegotiationFailed(RejectedResponse):
    """The server's ``Sec-WebSocket-Extensions`` is malformed, names an extension we did not
    offer (RFC 6455 section 4.1, check 5) or one twice, or has parameters that do not answer
    our offer (for permessage-deflate, RFC 7692 section 7.1)."""


# -- results and extensions --------------------------------------------------------------------


class ClientExtension(Protocol):
    """An extension the client offers and negotiates (permessage-deflate's
    :class:`~stargate.extensions.permessage_deflate.PerMessageDeflateClientOffer`)."""

    @property
    def name(self) -> str:
        """The extension token, compared exactly with the names in the response."""
        ...

    def header_value(self) -> str:
        """The offer, as one element of ``Sec-WebSocket-Extensions``."""
        ...

    def accept_response(self, params: ExtensionParams) -> object:
        """The negotiated extension for the server's parameters; ValueError refuses them."""
        ...


@dataclass(frozen=True)
class ClientAccepted:
    """A server response that completed the client's handshake.

    ``extensions`` lists what the server's ``Sec-WebSocket-Extensions`` accepted, parsed;
    ``negotiated`` the objects the :class:`ClientExtension` offers made of it, in the order
    the server listed them (the order they apply in, RFC 6455 section 9.1).
    """

    version: ProtocolVersion
    subprotocol: str | None
    extensions: list[tuple[str, ExtensionParams]]
    response: Response
    negotiated: list[object] = field(default_factory=list)


# -- the handshake -----------------------------------------------------------------------------


class ClientHandshake:
    """The client's side of the opening handshake (RFC 6455 section 4.1, hybi-07/08, hixie).

    Write :meth:`request_bytes`, then feed what the server sends to :meth:`receive` until it
    returns a result; failures raise a subclass of :class:`InvalidHandshakeResponse` that says
    which check failed.  ``extensions`` are offered in order: a string is sent as it is (the
    caller negotiates with the parameters in :attr:`ClientAccepted.extensions`), a
    :class:`ClientExtension` is negotiated here (:attr:`ClientAccepted.negotiated`).
    """

    def __init__(
        self,
        host: str,
        resource: str = "/",
        *,
        secure: bool = False,
        version: ProtocolVersion = ProtocolVersion.RFC6455,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[str | ClientExtension] = (),
        origin: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        key: bytes | None = None,
        rng: random.Random | None = None,
        max_header_size: int = 16384,
    ) -> None:
        if not resource.startswith("/"):
            raise ValueError(f"resource {resource!r} must start with '/'")
        if version.is_hixie and len(subprotocols) > 1:
            raise ValueError("the hixie drafts offer at most one subprotocol")
        if version.is_hixie and extensions:
            raise ValueError("the hixie drafts have no extensions")
        self.host = host
        self.resource = resource
        self.secure = secure
        self.version = version
        self.subprotocols = tuple(subprotocols)
        #: The ``Sec-WebSocket-Extensions`` elements offered, in order.
        self.extensions = tuple(e if isinstance(e, str) else e.header_value() for e in extensions)
        self.origin = origin
        self.extra_headers = tuple(extra_headers)
        self.max_header_size = max_header_size
        try:
            self._offered_extensions = {name for name, _ in parse_extensions(self.extensions)}
        except HandshakeError as exc:
            raise ValueError(exc.reason) from None
        self._negotiators: dict[str, list[ClientExtension]] = {}
        for extension in extensions:
            if not isinstance(extension, str):
                self._negotiators.setdefault(extension.name, []).append(extension)
        self._buffer = bytearray()
        self._done = False
        self._response: Response | None = None  # set once the head is parsed
        self._head_end = 0
        #: Bytes of interim (1xx) responses dropped from the buffer's start in this call.
        self._skipped = 0
        self.key = ""
        self._expected_accept = ""
        self.key1 = self.key2 = ""
        self.key3 = b""
        self._expected_answer = b""
        if version.is_hixie:
            if version is ProtocolVersion.HIXIE_76:
                rng = rng if rng is not None else random.SystemRandom()
                self.key1, number1 = hixie76_key(rng)
                self.key2, number2 = hixie76_key(rng)
                self.key3 = bytes(rng.getrandbits(8) for _ in range(8))
                self._expected_answer = hixie76_answer(number1, number2, self.key3)
        else:
            # RFC 6455 section 4.1 item 7: a fresh random 16-byte nonce per connection.
            nonce = key if key is not None else secrets.token_bytes(16)
            if len(nonce) != 16:
                raise ValueError("the Sec-WebSocket-Key nonce must be 16 bytes")
            self.key = base64.b64encode(nonce).decode("ascii")
            self._expected_accept = accept_key(self.key)

    @property
    def location(self) -> str:
        """The ws:// or wss:// URL this handshake opens (what hixie servers echo as Location)."""
        return f"{'wss' if self.secure else 'ws'}://{self.host}{self.resource}"

    def request_bytes(self) -> bytes:
        """The exact bytes of the upgrade request (for hixie-76 including key3)."""
        fields: list[tuple[str, str]] = [("Host", self.host)]
        version = self.version
        if version.is_hixie:
            fields += [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
            prefix = "WebSocket-" if version is ProtocolVersion.HIXIE_75 else "Sec-WebSocket-"
            if self.origin is not None:
                fields.append(("Origin", self.origin))
            if self.subprotocols:
                fields.append((f"{prefix}Protocol", self.subprotocols[0]))
            if version is ProtocolVersion.HIXIE_76:
                fields += [("Sec-WebSocket-Key1", self.key1), ("Sec-WebSocket-Key2", self.key2)]
        else:
            fields += [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", version.value),
            ]
            if self.origin is not None:
                origin_name = (
                    "Origin" if version is ProtocolVersion.RFC6455 else "Sec-WebSocket-Origin"
                )
                fields.append((origin_name, self.origin))
            if self.subprotocols:
                fields.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
            if self.extensions:
                fields.append(("Sec-WebSocket-Extensions", ", ".join(self.extensions)))
        fields.extend(self.extra_headers)
        return serialize_head(f"GET {self.resource} HTTP/1.1", fields) + self.key3

    def receive(self, data: bytes) -> tuple[ClientAccepted, int] | None:
        """Feed the next bytes from the server.

        Returns None while more bytes are needed, else ``(accepted, n)`` where ``n`` is how many
        bytes of THIS ``data`` belonged to the handshake: ``data[n:]`` are the first frame bytes.
        Raises a subclass of :class:`InvalidHandshakeResponse` if the response does not accept
        our request; the handshake is over either way.
        """
        if self._done:
            raise RuntimeError("the handshake is already complete or failed")
        before = len(self._buffer)
        self._buffer += data
        self._skipped = 0
        try:
            result = self._advance()
        except InvalidHandshakeResponse:
            self._done = True
            self._buffer = bytearray()
            raise
        if result is None:
            return None
        self._done = True
        self._buffer = bytearray()
        accepted, end = result
        # ``end`` counts from the buffer's start, which skipped interim responses moved.
        return accepted, end + self._skipped - before

    def _advance(self) -> tuple[ClientAccepted, int] | None:
        """Try to complete the handshake with the bytes buffered so far."""
        while self._response is None:
            try:
                # Resume the search where the previous call stopped: linear in total.
                end = find_head_end(self._buffer, self.max_header_size, self._head_end)
                if end is None:
                    self._head_end = len(self._buffer)
                    return None
                parsed = parse_response(self._buffer, max_header_size=self.max_header_size)
            except HandshakeError as exc:
                raise MalformedResponse(exc.reason) from None
            assert parsed is not None  # the head is complete
            response, head_end = parsed
            if 100 <= response.status < 200 and response.status != 101:
                # RFC 9110 section 15.2: a client must parse the interim responses that
                # come before the final one (100 Continue, 103 Early Hints from a proxy or
                # CDN) and may ignore them.  Each is bounded like any head; how many come
                # is bounded by the open timeout.
                del self._buffer[:head_end]
                self._skipped += head_end
                self._head_end = 0
                continue
            self._response, self._head_end = response, head_end
            self._check_status(response)
        end = self._head_end
        if self.version is ProtocolVersion.HIXIE_76:
            end += 16  # draft-hixie-76 section 4.1: the challenge answer follows the head
            if len(self._buffer) < end:
                return None
        answer = bytes(self._buffer[self._head_end : end])
        return self._check(self._response, answer), end

    def _check_status(self, response: Response) -> None:
        """Anything but 101 refuses the upgrade (RFC 6455 section 4.1, check 1); a 3xx says
        where to go instead.  A hixie-76 refusal does not wait for a challenge answer."""
        if response.status == 101:
            return
        body = bytes(self._buffer[self._head_end : self._head_end + BODY_PREFIX])
        reason = f"the server refused the upgrade: {response.status} {response.reason}".rstrip()
        if 300 <= response.status < 400:
            raise Redirected(reason, response, body)
        raise UpgradeRefused(reason, response, body)

    def _check(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        if not _switches_protocols(response.http_version):
            # RFC 9110 section 15.2: HTTP/1.0 has no 1xx status, and so no 101 (section
            # 15.2.2); a server that says HTTP/1.0 did not switch to anything.
            raise InvalidUpgrade(
                f"a 101 response in HTTP/{response.http_version}: only HTTP/1.1 switches "
                "protocols (RFC 9110 section 15.2)",
                response,
            )
        upgrade = split_tokens(headers.get_all("Upgrade"))
        if [t.lower() for t in upgrade] != ["websocket"]:
            # RFC 6455 section 4.1 (client's step 2 after the response): MUST _Fail_.
            raise InvalidUpgrade(
                f"Upgrade header is {headers.get('Upgrade')!r}, not 'websocket'", response
            )
        if not has_token(headers.get_all("Connection"), "upgrade"):
            raise InvalidUpgrade(
                f"Connection header {headers.get('Connection')!r} lacks the 'upgrade' token",
                response,
            )
        if self.version.is_hixie:
            return self._check_hixie(response, answer)
        accept_values = headers.get_all("Sec-WebSocket-Accept")
        if not accept_values:
            raise InvalidAcceptKey("missing Sec-WebSocket-Accept header", response)
        if len(accept_values) > 1:
            raise InvalidAcceptKey(
                f"Sec-WebSocket-Accept sent {len(accept_values)} times", response
            )
        if accept_values != [self._expected_accept]:
            raise InvalidAcceptKey(
                f"incorrect Sec-WebSocket-Accept {accept_values[0]!r}, "
                f"expected {self._expected_accept!r}",
                response,
            )
        extensions, negotiated = self._negotiate(response)
        protocol_values = headers.get_all("Sec-WebSocket-Protocol")
        protocols = split_tokens(protocol_values)
        if protocol_values and not protocols:
            # RFC 6455 section 4.2.2: the field names the one subprotocol the server
            # selected, a token; an empty one selects nothing we can speak.
            raise UnexpectedSubprotocol(
                "the server sent an empty Sec-WebSocket-Protocol: it must name one "
                "subprotocol or send none",
                response,
            )
        if len(protocols) > 1:
            raise UnexpectedSubprotocol(
                f"the server selected several subprotocols: {protocols!r}", response
            )
        subprotocol = protocols[0] if protocols else None
        if subprotocol is not None and subprotocol not in self.subprotocols:
            # RFC 6455 section 4.1: a subprotocol not requested by the client MUST fail.
            raise UnexpectedSubprotocol(
                f"the server selected subprotocol {subprotocol!r}, not offered", response
            )
        return ClientAccepted(self.version, subprotocol, extensions, response, negotiated)

    def _negotiate(
        self, response: Response
    ) -> tuple[list[tuple[str, ExtensionParams]], list[object]]:
        """The extensions the server accepted, checked against our offers, and what our
        :class:`ClientExtension` offers make of their parameters."""
        try:
            extensions = parse_extensions(response.headers.get_all("Sec-WebSocket-Extensions"))
        except HandshakeError as exc:
            raise ExtensionNegotiationFailed(exc.reason, response) from None
        negotiated: list[object] = []
        seen: set[str] = set()
        for name, params in extensions:
            # RFC 6455 section 4.1: an extension not requested by the client MUST fail.
            if name not in self._offered_extensions:
                raise ExtensionNegotiationFailed(
                    f"the server accepted extension {name!r}, which was not offered", response
                )
            offers = self._negotiators.get(name)
            if offers is None:
                continue  # offered as a string: the caller negotiates
            if name in seen:
                raise ExtensionNegotiationFailed(
                    f"the server accepted extension {name!r} twice", response
                )
            seen.add(name)
            negotiated.append(self._accept_response(name, offers, params, response))
        return extensions, negotiated

    @staticmethod
    def _accept_response(
        name: str, offers: list[ClientExtension], params: ExtensionParams, response: Response
    ) -> object:
        """The first of our offers of ``name`` that the server's parameters answer (a client
        may offer fallbacks, RFC 7692 section 5)."""
        refusals = []
        for offer in offers:
            try:
                return offer.accept_response(list(params))
            except ValueError as exc:
                refusals.append(str(exc))
        raise ExtensionNegotiationFailed(
            f"invalid {name} response: {'; '.join(refusals)}", response
        )

    def _check_hixie(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        prefix = "WebSocket-" if self.version is ProtocolVersion.HIXIE_75 else "Sec-WebSocket-"
        location = headers.get(f"{prefix}Location")
        if location != self.location:
            raise InvalidEcho(
                f"{prefix}Location is {location!r}, expected {self.location!r}", response
            )
        if self.origin is not None:
            origin = headers.get(f"{prefix}Origin")
            if origin != self.origin:
                raise InvalidEcho(
                    f"{prefix}Origin is {origin!r}, expected {self.origin!r}", response
                )
        subprotocol = headers.get(f"{prefix}Protocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise UnexpectedSubprotocol(
                f"the server selected subprotocol {subprotocol!r}, not offered", response
            )
        if self.version is ProtocolVersion.HIXIE_76 and answer != self._expected_answer:
            # draft-hixie-76 section 4.1 step 42: a wrong challenge answer MUST fail.
            raise InvalidChallengeAnswer("incorrect hixie-76 challenge answer", response)
        return ClientAccepted(self.version, subprotocol, [], response)
