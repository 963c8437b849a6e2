"""stargate.handshake.keys: the RFC 6455 accept key and the hixie-76 challenge, with the
vectors of RFC 6455 section 1.3 and draft-hixie-76 section 1.3."""

from __future__ import annotations

import hashlib
import struct

from stargate.handshake.keys import accept_key, hixie76_answer

from .support import (
    HIXIE76_ANSWER,
    HIXIE76_KEY3,
    RFC_ACCEPT,
    RFC_KEY,
)


def test_accept_key_rfc_vector() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_hixie76_vector_numbers() -> None:
    assert hixie76_answer(829309203, 259970620, HIXIE76_KEY3) == HIXIE76_ANSWER
    expected = hashlib.md5(struct.pack(">II", 829309203, 259970620) + HIXIE76_KEY3).digest()
    assert expected == HIXIE76_ANSWER
