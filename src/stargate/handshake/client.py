"""The client's side of the opening handshake, of every generation.

:class:`ClientHandshake` writes the upgrade request and reads the server's answer, however it
is split into reads, and tells whether it opens the connection (RFC 6455 section 4.1,
hybi-07/08, draft-hixie-75/76).
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import HandshakeError, InvalidHandshakeResponse
from ..headers import has_token, parse_extensions, split_tokens
from ..protocol import ProtocolVersion
from .heads import Response, find_head_end, parse_response, serialize_head
from .keys import accept_key, hixie76_answer, hixie76_key

__all__ = ["ClientAccepted", "ClientHandshake"]

#: How much of a refusal's body the client keeps to show the user.
_BODY_PREFIX = 1024


@dataclass(frozen=True)
class ClientAccepted:
    """A server response that completed the client's handshake."""

    version: ProtocolVersion
    subprotocol: str | None
    extensions: list[tuple[str, list[tuple[str, str | None]]]]
    response: Response


class ClientHandshake:
    """The client's side of the opening handshake (RFC 6455 section 4.1, hybi-07/08, hixie).

    Write :meth:`request_bytes`, then feed what the server sends to :meth:`receive` until it
    returns a result; failures raise :class:`InvalidHandshakeResponse`.
    """

    def __init__(
        self,
        host: str,
        resource: str = "/",
        *,
        secure: bool = False,
        version: ProtocolVersion = ProtocolVersion.RFC6455,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[str] = (),
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
        self.extensions = tuple(extensions)
        self.origin = origin
        self.extra_headers = tuple(extra_headers)
        self.max_header_size = max_header_size
        try:
            self._offered_extensions = {name for name, _ in parse_extensions(self.extensions)}
        except HandshakeError as exc:
            raise ValueError(exc.reason) from None
        self._buffer = bytearray()
        self._done = False
        self._response: Response | None = None  # set once the head is parsed
        self._head_end = 0
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
                    "Origin" if version is ProtocolVersion.RFC6455 else ("Sec-WebSocket-Origin")
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
        Raises :class:`InvalidHandshakeResponse` if the response does not accept our request.
        """
        if self._done:
            raise RuntimeError("the handshake is already complete or failed")
        before = len(self._buffer)
        self._buffer += data
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
        return accepted, end - before

    def _advance(self) -> tuple[ClientAccepted, int] | None:
        """Try to complete the handshake with the bytes buffered so far."""
        if self._response is None:
            try:
                # Resume the search where the previous call stopped: linear in total.
                end = find_head_end(self._buffer, self.max_header_size, self._head_end)
                if end is None:
                    self._head_end = len(self._buffer)
                    return None
                parsed = parse_response(self._buffer, max_header_size=self.max_header_size)
            except HandshakeError as exc:
                raise InvalidHandshakeResponse(f"malformed response: {exc.reason}") from None
            assert parsed is not None  # the head is complete
            self._response, self._head_end = parsed
            if self._response.status != 101:
                raise InvalidHandshakeResponse(
                    f"the server refused the upgrade: {self._response.status} "
                    f"{self._response.reason}".rstrip(),
                    self._response.status,
                    bytes(self._buffer[self._head_end : self._head_end + _BODY_PREFIX]),
                )
        end = self._head_end
        if self.version is ProtocolVersion.HIXIE_76:
            end += 16  # draft-hixie-76 section 4.1: the challenge answer follows the head
            if len(self._buffer) < end:
                return None
        answer = bytes(self._buffer[self._head_end : end])
        return self._check(self._response, answer), end

    def _fail(self, reason: str) -> InvalidHandshakeResponse:
        return InvalidHandshakeResponse(reason, 101)

    def _check(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        upgrade = split_tokens(headers.get_all("Upgrade"))
        if [t.lower() for t in upgrade] != ["websocket"]:
            # RFC 6455 section 4.1 (client's step 2 after the response): MUST _Fail_.
            raise self._fail(f"Upgrade header is {headers.get('Upgrade')!r}, not 'websocket'")
        if not has_token(headers.get_all("Connection"), "upgrade"):
            raise self._fail(
                f"Connection header {headers.get('Connection')!r} lacks the 'upgrade' token"
            )
        if self.version.is_hixie:
            return self._check_hixie(response, answer)
        accept_values = headers.get_all("Sec-WebSocket-Accept")
        if not accept_values:
            raise self._fail("missing Sec-WebSocket-Accept header")
        if accept_values != [self._expected_accept]:
            raise self._fail(
                f"incorrect Sec-WebSocket-Accept {accept_values[0]!r}, "
                f"expected {self._expected_accept!r}"
            )
        try:
            extensions = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except HandshakeError as exc:
            raise self._fail(exc.reason) from None
        for name, _ in extensions:
            # RFC 6455 section 4.1: an extension not requested by the client MUST fail.
            if name not in self._offered_extensions:
                raise self._fail(f"the server accepted extension {name!r}, which was not offered")
        protocols = split_tokens(headers.get_all("Sec-WebSocket-Protocol"))
        if len(protocols) > 1:
            raise self._fail(f"the server selected several subprotocols: {protocols!r}")
        subprotocol = protocols[0] if protocols else None
        if subprotocol is not None and subprotocol not in self.subprotocols:
            # RFC 6455 section 4.1: a subprotocol not requested by the client MUST fail.
            raise self._fail(f"the server selected subprotocol {subprotocol!r}, not offered")
        return ClientAccepted(self.version, subprotocol, extensions, response)

    def _check_hixie(self, response: Response, answer: bytes) -> ClientAccepted:
        headers = response.headers
        prefix = "WebSocket-" if self.version is ProtocolVersion.HIXIE_75 else "Sec-WebSocket-"
        location = headers.get(f"{prefix}Location")
        if location != self.location:
            raise self._fail(f"{prefix}Location is {location!r}, expected {self.location!r}")
        if self.origin is not None:
            origin = headers.get(f"{prefix}Origin")
            if origin != self.origin:
                raise self._fail(f"{prefix}Origin is {origin!r}, expected {self.origin!r}")
        subprotocol = headers.get(f"{prefix}Protocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise self._fail(f"the server selected subprotocol {subprotocol!r}, not offered")
        if self.version is ProtocolVersion.HIXIE_76 and answer != self._expected_answer:
            # draft-hixie-76 section 4.1 step 42: a wrong challenge answer MUST fail.
            raise self._fail("incorrect hixie-76 challenge answer")
        return ClientAccepted(self.version, subprotocol, [], response)
