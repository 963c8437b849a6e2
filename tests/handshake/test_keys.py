"""stargate.handshake.keys: the RFC 6455 accept key and the hixie-76 challenge, with the
vectors of RFC 6455 section 1.3 and draft-hixie-76 section 1.3."""

from __future__ import annotations

import base64
import hashlib
import random
import struct

import pytest

from stargate.errors import HandshakeError
from stargate.handshake.keys import (
    accept_key,
    check_key,
    hixie76_answer,
    hixie76_key,
    hixie76_key_number,
)

from .support import (
    HIXIE76_ANSWER,
    HIXIE76_KEY1,
    HIXIE76_KEY2,
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


# =============================================================================================
# check_key: what a server accepts as Sec-WebSocket-Key


def test_check_key_accepts_the_rfc_nonce() -> None:
    assert check_key(RFC_KEY) == RFC_KEY
    assert base64.b64decode(RFC_KEY) == b"the sample nonce"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing Sec-WebSocket-Key"),
        ("not base64!", "is not base64"),
        ("caf\xe9", "is not base64"),  # latin-1, not ASCII
        ("c2hvcnQ=", "exactly 16 bytes"),
        ("dGhlIHNhbXBsZSBub25jZR==", "exactly 16 bytes"),  # non-zero padding bits
        ("!" * 5000, "not base64"),  # the reason quotes at most 40 characters
    ],
)
def test_check_key_refuses(value: str | None, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        check_key(value)
    assert info.value.status == 400
    assert reason in info.value.reason
    assert len(info.value.reason) < 200


# =============================================================================================
# hixie-76 keys: the server's reading, the client's making


def test_hixie76_key_numbers_of_the_draft_vector() -> None:
    """draft-hixie-76 section 1.3: the double spaces count (5 spaces in each key)."""
    assert hixie76_key_number("Sec-WebSocket-Key1", HIXIE76_KEY1) == 829309203
    assert hixie76_key_number("Sec-WebSocket-Key2", HIXIE76_KEY2) == 259970620
    collapsed = " ".join(HIXIE76_KEY1.split())  # the seed's copy of the vector: 4 spaces
    assert collapsed == "4 @1 46546xW%0l 1 5"
    with pytest.raises(HandshakeError, match="4146546015 is not a multiple of its 4 spaces"):
        hixie76_key_number("Sec-WebSocket-Key1", collapsed)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing Sec-WebSocket-Key1"),
        ("no digits here", "contains no digits"),
        ("12345", "contains no spaces"),
        ("1 2 3", "number 123 is not a multiple of its 2 spaces"),
        ("4294967296 ", "larger than 2**32-1"),
        ("9" * 5000 + " ", "5000 digits"),
        ("\xb9\xb2 \xb3", "contains no digits"),  # latin-1 superscripts are not digits
    ],
)
def test_hixie76_key_number_refuses(value: str | None, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        hixie76_key_number("Sec-WebSocket-Key1", value)
    assert info.value.status == 400
    assert reason in info.value.reason


def test_hixie76_key_number_bounds() -> None:
    assert hixie76_key_number("K", "4294967295 ") == 0xFFFFFFFF
    assert hixie76_key_number("K", "000000000000042 ") == 42  # leading zeros do not count
    assert hixie76_key_number("K", "0 ") == 0


@pytest.mark.parametrize("seed", range(50))
def test_hixie76_key_round_trip(seed: int) -> None:
    key, number = hixie76_key(random.Random(seed))
    assert hixie76_key_number("Sec-WebSocket-Key1", key) == number
    assert not key.startswith(" ") and not key.endswith(" ")


def test_hixie76_answer_is_md5_of_both_numbers_and_key3() -> None:
    key3 = bytes(range(8))
    expected = hashlib.md5(struct.pack(">II", 1, 0xFFFFFFFF) + key3).digest()
    assert hixie76_answer(1, 0xFFFFFFFF, key3) == expected
