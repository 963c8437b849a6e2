"""The proofs of each generation's handshake: that the server read THIS request.

RFC 6455 (and hybi-07/08) hash the client's random ``Sec-WebSocket-Key`` with a GUID into
``Sec-WebSocket-Accept``; draft-hixie-76 hides two numbers in ``Sec-WebSocket-Key1``/``Key2``
and answers them, with the 8 bytes of key3, by 16 bytes of MD5.  The server computes the
answer, the client generates the keys and checks it: both sides are here, with the limits that
keep a hostile key cheap to refuse.
"""

from __future__ import annotations

import binascii
import hashlib
import random
import struct

from ..errors import HandshakeError

__all__ = [
    "WEBSOCKET_GUID",
    "accept_key",
    "check_key",
    "hixie76_answer",
    "hixie76_key",
    "hixie76_key_number",
]

#: RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key before hashing.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_MAX_UINT32 = 0xFFFFFFFF
_MAX_UINT32_DIGITS = len(str(_MAX_UINT32))  # 10
_DIGITS = frozenset("0123456789")  # not str.isdigit(): latin-1 has superscript digits


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2 item 5.4)."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def hixie76_key_number(name: str, value: str | None) -> int:
    """The 32-bit part a Sec-WebSocket-KeyN encodes (draft-hixie-76 section 5.2 steps 4-6).

    The key's digits, read as a base-ten number, divided by the count of its spaces.  A client
    never makes that number larger than 4,294,967,295 (section 4.1 steps 17-21), and the answer
    packs the quotient as a 32-bit big-endian integer (section 5.2 step 8), so both are bounded.
    The count of significant digits is bounded BEFORE ``int()``: a header of thousands of digits
    would otherwise hit Python's int-string limit (a ValueError, i.e. a 500) or cost quadratic
    time.  Leading zeros do not change the number and are tolerated.
    """
    if value is None:
        raise HandshakeError(400, f"missing {name} header (draft-hixie-76 section 4.1)")
    digits = "".join(c for c in value if c in _DIGITS)
    spaces = value.count(" ")
    if not digits:
        raise HandshakeError(400, f"{name} contains no digits")
    significant = digits.lstrip("0")
    if len(significant) > _MAX_UINT32_DIGITS:
        raise HandshakeError(
            400,
            f"{name} number has {len(significant)} digits: larger than 2**32-1 "
            "(draft-hixie-76 section 4.1)",
        )
    number = int(significant or "0")  # at most 10 digits: cheap and within every limit
    if number > _MAX_UINT32:
        raise HandshakeError(
            400, f"{name} number {number} is larger than 2**32-1 (draft-hixie-76 section 4.1)"
        )
    if spaces == 0:
        # Section 5.2 step 5: a key without spaces is a symptom of a cross-protocol attack.
        raise HandshakeError(400, f"{name} contains no spaces (draft-hixie-76 section 5.2)")
    if number % spaces:
        raise HandshakeError(
            400,
            f"{name} number {number} is not a multiple of its {spaces} spaces "
            "(draft-hixie-76 section 5.2)",
        )
    part = number // spaces  # <= number <= 2**32-1: fits the 32 bits of section 5.2 step 8
    return part


def hixie76_answer(number1: int, number2: int, key3: bytes) -> bytes:
    """The 16-byte MD5 challenge answer of draft-hixie-76 section 5.2 step 8."""
    return hashlib.md5(struct.pack(">II", number1, number2) + key3).digest()


def check_key(value: str | None) -> str:
    """Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 section 4.1 item 7, 4.2.1 item 5)."""
    if value is None:
        raise HandshakeError(400, "missing Sec-WebSocket-Key header")
    try:
        # Strict: only the alphabet, padding only at the end (binascii.Error), and a str
        # of ASCII only (ValueError).
        raw = binascii.a2b_base64(value, strict_mode=True)
    except ValueError:
        raise HandshakeError(400, f"Sec-WebSocket-Key {value[:40]!r} is not base64") from None
    # Re-encoding rejects non-canonical forms (non-zero padding bits) that decode leniently.
    if len(raw) != 16 or binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        raise HandshakeError(
            400, f"Sec-WebSocket-Key {value[:40]!r} does not encode exactly 16 bytes"
        )
    return value


def hixie76_key(rng: random.Random) -> tuple[str, int]:
    """One Sec-WebSocket-KeyN and the number it encodes (draft-hixie-76 section 4.1 steps 17-21).

    The key hides ``number * spaces`` among random non-digit characters and spaces, so that a
    server must understand the protocol to answer, and no HTTP intermediary can forge it.
    """
    spaces = rng.randint(1, 12)
    number = rng.randint(0, _MAX_UINT32 // spaces)
    key = str(number * spaces)
    noise = [chr(c) for c in (*range(0x21, 0x30), *range(0x3A, 0x7F))]
    for _ in range(rng.randint(1, 12)):
        pos = rng.randint(0, len(key))
        key = key[:pos] + rng.choice(noise) + key[pos:]
    for _ in range(spaces):
        pos = rng.randint(1, len(key) - 1)  # never at the start or the end
        key = key[:pos] + " " + key[pos:]
    return key, number
