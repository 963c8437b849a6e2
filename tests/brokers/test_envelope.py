"""The broker envelope (stargate.brokers.envelope): round trips, and every malformed,
oversized or unknown envelope refused with EnvelopeError, never guessed at."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stargate.brokers.envelope import (
    HEADER_SIZE,
    MAGIC,
    MAX_TARGET_SIZE,
    VERSION,
    Envelope,
    EnvelopeError,
    Kind,
    decode,
    encode,
)

ORIGIN = bytes(range(8))


def test_layout_is_the_documented_one() -> None:
    data = encode(ORIGIN, 7, Kind.GROUP, "job:1", "hé")
    assert HEADER_SIZE == 22
    assert data[:2] == MAGIC == b"SG"
    assert data[2] == VERSION == 1
    assert data[3] == 0x01  # text, kind group
    assert data[4:12] == ORIGIN
    assert struct.unpack("!Q", data[12:20]) == (7,)
    assert struct.unpack("!H", data[20:22]) == (5,)
    assert data[22:27] == b"job:1"
    assert data[27:] == "hé".encode()
    assert encode(ORIGIN, 1, Kind.EVERYONE, "", b"\x00\xff")[3] == 0x04  # binary, everyone


@given(
    sequence=st.integers(0, 2**64 - 1),
    kind=st.sampled_from(list(Kind)),
    target=st.text(max_size=50),
    message=st.one_of(st.text(max_size=200), st.binary(max_size=200)),
)
def test_round_trip(sequence: int, kind: Kind, target: str, message: str | bytes) -> None:
    data = encode(ORIGIN, sequence, kind, target, message)
    assert decode(data) == Envelope(ORIGIN, sequence, kind, target, message)
    assert decode(bytearray(data)) == decode(memoryview(data))
    assert Envelope(ORIGIN, sequence, kind, target, message).encode() == data


def test_binary_is_binary_safe_and_text_stays_text() -> None:
    every_byte = bytes(range(256)) * 4
    assert decode(encode(ORIGIN, 1, Kind.GROUP, "g", every_byte)).message == every_byte
    assert decode(encode(ORIGIN, 1, Kind.GROUP, "g", memoryview(b"mv"))).message == b"mv"
    assert decode(encode(ORIGIN, 1, Kind.GROUP, "g", "")).message == ""
    assert decode(encode(ORIGIN, 1, Kind.GROUP, "g", b"")).message == b""


def _valid() -> bytearray:
    return bytearray(encode(ORIGIN, 3, Kind.GROUP, "room", "hello"))


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d[: HEADER_SIZE - 1], "shorter than its header"),
        (lambda d: b"", "shorter than its header"),
        (lambda d: b"XX" + d[2:], "bad magic"),
        (lambda d: d[:2] + b"\x02" + d[3:], "unknown envelope version 2"),
        (lambda d: d[:2] + b"\x00" + d[3:], "unknown envelope version 0"),
        (lambda d: d[:3] + b"\x81" + d[4:], "unknown envelope flags"),
        (lambda d: d[:3] + b"\x07" + d[4:], "unknown target kind"),
        (lambda d: d[:20] + b"\x00\x40" + d[22:], "truncated inside its target"),
        (lambda d: d[:20] + b"\xff\xff" + d[22:], "exceeds 1024"),
        (lambda d: d[:22] + b"\xff\xfe\xfd\xfc" + d[26:], "target is not UTF-8"),
        (lambda d: d + b"\xc3", "text payload is not UTF-8"),
        (lambda d: d[:-1] + b"\xed\xa0\x80", "text payload is not UTF-8"),  # a surrogate
    ],
)
def test_malformed_envelopes_are_refused(mutate: object, error: str) -> None:
    with pytest.raises(EnvelopeError, match=error):
        decode(bytes(mutate(_valid())))  # type: ignore[operator]


def test_oversized_envelopes_are_refused_both_ways() -> None:
    data = encode(ORIGIN, 1, Kind.GROUP, "g", b"x" * 100)
    assert decode(data, max_size=len(data)).message == b"x" * 100
    with pytest.raises(EnvelopeError, match="exceeds the limit"):
        decode(data, max_size=len(data) - 1)
    with pytest.raises(ValueError, match="exceeds the broker's limit"):
        encode(ORIGIN, 1, Kind.GROUP, "g", b"x" * 100, max_size=len(data) - 1)
    with pytest.raises(ValueError, match="target of"):
        encode(ORIGIN, 1, Kind.GROUP, "é" * MAX_TARGET_SIZE, "x")


def test_encode_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="origin"):
        encode(b"short", 1, Kind.GROUP, "g", "x")
    with pytest.raises(ValueError, match="sequence"):
        encode(ORIGIN, -1, Kind.GROUP, "g", "x")
    with pytest.raises(ValueError, match="sequence"):
        encode(ORIGIN, 2**64, Kind.GROUP, "g", "x")


def test_a_pickle_is_just_refused() -> None:
    import pickle

    with pytest.raises(EnvelopeError):
        decode(pickle.dumps({"group": "room", "message": "x"}))
