"""The envelope a group message crosses processes in: small, versioned, binary-safe.

A broker carries opaque bytes; these bytes are never unpickled (docs/design.md, "Defaults";
docs/groups.md, "The envelope").  Version 1, all integers big-endian::

    offset  size  field
    0       2     magic b"SG"
    2       1     version (1)
    3       1     flags: bit 0 text (the payload is UTF-8), bits 1-2 target kind
                  (0 group, 1 one connection, 2 everyone); other bits must be 0
    4       8     origin: the publishing hub's process id (random, per hub)
    12      8     sequence number, per origin, increasing by one per publish
    20      2     target length n (bytes of UTF-8)
    22      n     target: the group name, or the connection id for kind 1
    22+n    ...   payload: the message (UTF-8 for text)

Decoding checks every field and raises :class:`EnvelopeError` rather than guess: a wrong
magic or an unknown version, unknown flag bits or kind, a short or oversized envelope, a
target or text payload that is not UTF-8.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..masking import BytesLike

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_TARGET_SIZE",
    "VERSION",
    "Envelope",
    "EnvelopeError",
    "Kind",
    "decode",
    "encode",
]

MAGIC = b"SG"
VERSION = 1
#: Bytes before the target: magic, version, flags, origin, sequence number, target length.
_HEADER = struct.Struct("!2sBB8sQH")
HEADER_SIZE = _HEADER.size
#: A group name or connection id longer than this (in UTF-8) is refused.
MAX_TARGET_SIZE = 1024
#: Default bound of a whole envelope: a 1 MiB message (the default message limit) and room
#: for the header and a target.
DEFAULT_MAX_SIZE = 1024 * 1024 + HEADER_SIZE + MAX_TARGET_SIZE

_TEXT = 0x01
_KIND_SHIFT = 1
_KIND_MASK = 0x06
_KNOWN_FLAGS = _TEXT | _KIND_MASK


class EnvelopeError(ValueError):
    """Bytes from a broker that are not a well-formed envelope of a version we speak."""


class Kind(enum.IntEnum):
    """Whom a message is for."""

    GROUP = 0
    CONNECTION = 1
    EVERYONE = 2


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on its way between processes."""

    origin: bytes
    sequence: int
    kind: Kind
    target: str
    message: str | bytes

    def encode(self, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        return encode(
            self.origin, self.sequence, self.kind, self.target, self.message, max_size=max_size
        )


def encode(
    origin: bytes,
    sequence: int,
    kind: Kind,
    target: str,
    message: str | BytesLike,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """The envelope bytes; raises :class:`ValueError` if they would exceed ``max_size``."""
    if len(origin) != 8:
        raise ValueError("origin must be 8 bytes")
    if not 0 <= sequence < 1 << 64:
        raise ValueError("sequence number out of range")
    name = target.encode("utf-8")
    if len(name) > MAX_TARGET_SIZE:
        raise ValueError(f"target of {len(name)} bytes exceeds {MAX_TARGET_SIZE}")
    flags = Kind(kind) << _KIND_SHIFT
    if isinstance(message, str):
        payload: BytesLike = message.encode("utf-8")
        flags |= _TEXT
    else:
        payload = message
    size = HEADER_SIZE + len(name) + len(payload)
    if size > max_size:
        raise ValueError(f"envelope of {size} bytes exceeds the broker's limit of {max_size}")
    return b"".join(
        (_HEADER.pack(MAGIC, VERSION, flags, origin, sequence, len(name)), name, payload)
    )


def decode(data: BytesLike, *, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Parse an envelope; every malformed, oversized or unknown one raises
    :class:`EnvelopeError`."""
    size = len(data)
    if size > max_size:
        raise EnvelopeError(f"envelope of {size} bytes exceeds the limit of {max_size}")
    if size < HEADER_SIZE:
        raise EnvelopeError(f"envelope of {size} bytes is shorter than its header")
    magic, version, flags, origin, sequence, name_size = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("not a stargate envelope (bad magic)")
    if version != VERSION:
        raise EnvelopeError(f"unknown envelope version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise EnvelopeError(f"unknown envelope flags 0x{flags:02x}")
    try:
        kind = Kind((flags & _KIND_MASK) >> _KIND_SHIFT)
    except ValueError:
        raise EnvelopeError(f"unknown target kind in flags 0x{flags:02x}") from None
    if name_size > MAX_TARGET_SIZE:
        raise EnvelopeError(f"target of {name_size} bytes exceeds {MAX_TARGET_SIZE}")
    end = HEADER_SIZE + name_size
    if end > size:
        raise EnvelopeError("envelope truncated inside its target")
    view = memoryview(data)
    try:
        target = str(view[HEADER_SIZE:end], "utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("target is not UTF-8") from None
    message: str | bytes
    if flags & _TEXT:
        try:
            message = str(view[end:], "utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError("text payload is not UTF-8") from None
    else:
        message = bytes(view[end:])
    return Envelope(origin, sequence, kind, target, message)
