"""The opening handshake of every WebSocket generation, sans-I/O, for both roles.

One module per concept, every name re-exported here (``stargate.handshake`` is the public
import):

* :mod:`.heads`: HTTP request and response heads, parsed and written (RFC 7230);
* :mod:`.origin`: the Origin policy, the defence against cross-site WebSocket hijacking;
* :mod:`.keys`: the proofs a server gives that it read the request (accept key, hixie-76 MD5);
* :mod:`.server`: :func:`accept` an upgrade request or refuse it (:func:`reject_response`);
* :mod:`.client`: :class:`ClientHandshake`, the client's request and its check of the answer,
  each failed check its own exception (:class:`UpgradeRefused`, :class:`InvalidAcceptKey` ...).

Generations handled:

* RFC 6455 (``Sec-WebSocket-Version: 13``) and its drafts hybi-07/hybi-08 (versions 7 and 8,
  which name the origin ``Sec-WebSocket-Origin``), section 4 of the RFC;
* draft-hixie-thewebsocketprotocol-76 (``Sec-WebSocket-Key1``/``Key2`` plus 8 bytes of key3
  after the head, answered by 16 bytes of MD5), sections 4.1 and 5.2 of the draft;
* draft-hixie-thewebsocketprotocol-75 (no key at all), section 4 of the draft.

Nothing here does I/O: every function takes bytes or parsed values and returns bytes or values.
"""

from __future__ import annotations

from .client import (
    BODY_PREFIX,
    ClientAccepted,
    ClientExtension,
    ClientHandshake,
    ExtensionNegotiationFailed,
    InvalidAcceptKey,
    InvalidChallengeAnswer,
    InvalidEcho,
    InvalidUpgrade,
    MalformedResponse,
    Redirected,
    RejectedResponse,
    UnexpectedSubprotocol,
    UpgradeRefused,
)
from .heads import Request, Response, parse_request, parse_response
from .keys import WEBSOCKET_GUID, accept_key, hixie76_answer
from .origin import OriginPolicy
from .server import (
    ALL_VERSIONS,
    RFC_VERSIONS,
    Accepted,
    ServerExtension,
    accept,
    detect_version,
    key3_length,
    reject_response,
)

__all__ = [
    "ALL_VERSIONS",
    "BODY_PREFIX",
    "RFC_VERSIONS",
    "WEBSOCKET_GUID",
    "Accepted",
    "ClientAccepted",
    "ClientExtension",
    "ClientHandshake",
    "ExtensionNegotiationFailed",
    "InvalidAcceptKey",
    "InvalidChallengeAnswer",
    "InvalidEcho",
    "InvalidUpgrade",
    "MalformedResponse",
    "OriginPolicy",
    "Redirected",
    "RejectedResponse",
    "Request",
    "Response",
    "ServerExtension",
    "UnexpectedSubprotocol",
    "UpgradeRefused",
    "accept",
    "accept_key",
    "detect_version",
    "hixie76_answer",
    "key3_length",
    "parse_request",
    "parse_response",
    "reject_response",
]
