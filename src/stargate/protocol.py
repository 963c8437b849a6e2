"""Names shared by every layer: protocol versions, roles, opcodes and close codes.

The names follow RFC 6455 (section 5.2 for opcodes, section 7.4 for close codes) and the
hixie drafts (draft-hixie-thewebsocketprotocol-75 and -76).
"""

from __future__ import annotations

import enum


class ProtocolVersion(enum.Enum):
    """Which generation of the protocol a connection speaks.

    hybi-07 and hybi-08 use RFC 6455 framing; only the handshake's ``Sec-WebSocket-Version``
    (and the Origin header name) differ.  The hixie drafts frame text as ``0x00 <utf-8> 0xFF``.
    """

    HIXIE_75 = "hixie-75"
    HIXIE_76 = "hixie-76"
    HYBI_07 = "7"
    HYBI_08 = "8"
    RFC6455 = "13"

    @property
    def is_hixie(self) -> bool:
        return self in (ProtocolVersion.HIXIE_75, ProtocolVersion.HIXIE_76)


class Role(enum.Enum):
    """Server frames are never masked; client frames always are (RFC 6455 section 5.1)."""

    SERVER = "server"
    CLIENT = "client"


class Opcode(enum.IntEnum):
    """RFC 6455 section 5.2 opcodes; 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """RFC 6455 section 7.4.1 status codes (and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never on the wire
    ABNORMAL_CLOSURE = 1006  # never on the wire
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


#: Codes that RFC 6455 section 7.4.1 says MUST NOT be sent in a close frame.
CLOSE_CODES_NEVER_SENT = frozenset({1004, 1005, 1006, 1015})


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 section 7.4.1-7.4.2).

    1000-2999 are for the protocol and its extensions: only the defined ones are valid;
    3000-4999 are for libraries, frameworks and applications; all others are invalid.
    """
    if 3000 <= code <= 4999:
        return True
    return code in _DEFINED_SENDABLE


_DEFINED_SENDABLE = frozenset(int(c) for c in CloseCode if c not in CLOSE_CODES_NEVER_SENT)
