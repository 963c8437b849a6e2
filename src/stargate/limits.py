"""Every resource a peer can make us spend has a named limit here, with a safe default."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Protocol limits of one connection.

    ``max_message_size`` bounds a whole (reassembled, decompressed) message and a hixie text
    frame, which has no length prefix; ``max_frame_size`` bounds one RFC 6455 frame's payload,
    checked from its header before any payload is buffered; ``max_header_size`` bounds the
    handshake's request or response head.  Exceeding a frame or message limit closes with 1009.
    """

    max_message_size: int = 1 * MiB
    max_frame_size: int = 1 * MiB
    max_header_size: int = 16 * KiB

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_frame_size", "max_header_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
