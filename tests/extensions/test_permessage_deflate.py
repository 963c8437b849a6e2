"""permessage-deflate: RFC 7692's own examples, negotiation tables, the bomb."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from stargate.errors import InvalidPayload, MessageTooBig
from stargate.extensions.permessage_deflate import PerMessageDeflate, PerMessageDeflateOffer

Params = list[tuple[str, str | None]]


# -- RFC 7692 section 7.2.3: payloads of the example frames -------------------------------


def test_7_2_3_1_hello_compressed() -> None:
    assert PerMessageDeflate().deflate(b"Hello") == bytes.fromhex("f248cdc9c90700")
    assert PerMessageDeflate().inflate(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"


def test_7_2_3_1_fragmented() -> None:
    inflater = PerMessageDeflate()
    first = inflater.inflate(bytes.fromhex("f248cd"), False, 100)
    rest = inflater.inflate(bytes.fromhex("c9c90700"), True, 100 - len(first))
    assert first + rest == b"Hello"


def test_7_2_3_2_sharing_the_window() -> None:
    deflater = PerMessageDeflate()
    assert deflater.deflate(b"Hello") == bytes.fromhex("f248cdc9c90700")
    assert deflater.deflate(b"Hello") == bytes.fromhex("f200110000")
    inflater = PerMessageDeflate()
    assert inflater.inflate(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"
    assert inflater.inflate(bytes.fromhex("f200110000"), True, 100) == b"Hello"


def test_7_2_3_3_stored_block() -> None:
    payload = bytes.fromhex("000500faff48656c6c6f00")
    assert PerMessageDeflate().inflate(payload, True, 100) == b"Hello"


def test_7_2_3_4_bfinal_block_then_a_new_stream() -> None:
    inflater = PerMessageDeflate()
    assert inflater.inflate(bytes.fromhex("f348cdc9c90700"), True, 100) == b"Hello"
    # After BFINAL the peer starts a new stream; the next message must still decode.
    assert inflater.inflate(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"


def test_7_2_3_5_two_blocks() -> None:
    payload = bytes.fromhex("f248050000 00ffff cac9c90700".replace(" ", ""))
    assert PerMessageDeflate().inflate(payload, True, 100) == b"Hello"


def test_7_2_3_6_empty_message() -> None:
    assert PerMessageDeflate().deflate(b"") == b"\x00"
    assert PerMessageDeflate().inflate(b"\x00", True, 100) == b""


def test_no_context_takeover_compresses_each_message_alone() -> None:
    deflater = PerMessageDeflate(deflate_no_context_takeover=True)
    assert deflater.deflate(b"Hello") == deflater.deflate(b"Hello")
    inflater = PerMessageDeflate(inflate_no_context_takeover=True)
    for _ in range(2):
        assert inflater.inflate(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"


def test_round_trip_with_small_windows() -> None:
    data = bytes(range(256)) * 64
    for bits in (9, 12, 15):
        sender = PerMessageDeflate(deflate_window_bits=bits, mem_level=1)
        receiver = PerMessageDeflate(inflate_window_bits=bits)
        for _ in range(3):
            assert receiver.inflate(sender.deflate(data), True, len(data)) == data


def test_invalid_data_is_1007() -> None:
    with pytest.raises(InvalidPayload) as info:
        PerMessageDeflate().inflate(b"\xff\xff\xff\xff", True, 100)
    assert info.value.code == 1007


# -- the bomb ------------------------------------------------------------------------------


def test_bomb_refused_with_1009_and_bounded_memory() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * 10_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 20_000
    limit = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooBig) as info:
            PerMessageDeflate().inflate(bomb, True, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    # At most the limit (+1 byte) is ever produced, never the 10 MB.
    assert peak < 3 * limit


def test_limit_is_per_call_budget() -> None:
    data = PerMessageDeflate().deflate(b"a" * 1000)
    assert PerMessageDeflate().inflate(data, True, 1000) == b"a" * 1000
    with pytest.raises(MessageTooBig):
        PerMessageDeflate().inflate(data, True, 999)


# -- negotiation (RFC 7692 section 7.1) ----------------------------------------------------

DEFAULT = PerMessageDeflateOffer()

ACCEPTED: list[tuple[PerMessageDeflateOffer, Params, str]] = [
    (DEFAULT, [], "permessage-deflate; server_max_window_bits=12"),
    (
        DEFAULT,
        [("client_max_window_bits", None)],
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    ),
    (
        DEFAULT,
        [("client_max_window_bits", "10")],
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
    ),
    (
        DEFAULT,
        [("server_no_context_takeover", None)],
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
    ),
    (
        DEFAULT,
        [("client_no_context_takeover", None)],
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
    ),
    (DEFAULT, [("server_max_window_bits", "10")], "permessage-deflate; server_max_window_bits=10"),
    (DEFAULT, [("server_max_window_bits", "15")], "permessage-deflate; server_max_window_bits=12"),
    (
        PerMessageDeflateOffer(server_max_window_bits=15, client_max_window_bits=None),
        [("client_max_window_bits", None)],
        "permessage-deflate",
    ),
    (
        PerMessageDeflateOffer(server_max_window_bits=15),
        [("server_max_window_bits", "15")],
        "permessage-deflate; server_max_window_bits=15",
    ),
    (
        PerMessageDeflateOffer(server_no_context_takeover=True, client_no_context_takeover=True),
        [],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12",
    ),
]


@pytest.mark.parametrize(("offer", "params", "response"), ACCEPTED)
def test_accepted_offers(offer: PerMessageDeflateOffer, params: Params, response: str) -> None:
    result = offer.accept(params)
    assert result is not None
    assert result[0] == response
    assert isinstance(result[1], PerMessageDeflate)


DECLINED: list[Params] = [
    [("unknown", None)],
    [("server_no_context_takeover", "1")],
    [("client_no_context_takeover", "x")],
    [("server_max_window_bits", None)],
    [("server_max_window_bits", "7")],
    [("server_max_window_bits", "16")],
    [("server_max_window_bits", "08")],
    [("server_max_window_bits", "abc")],
    [("client_max_window_bits", "7")],
    [("client_max_window_bits", "16")],
    [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
    [("client_max_window_bits", None), ("client_max_window_bits", "10")],
]


@pytest.mark.parametrize("params", DECLINED)
def test_declined_offers(params: Params) -> None:
    assert DEFAULT.accept(params) is None


def test_negotiated_session_uses_the_agreed_windows() -> None:
    result = DEFAULT.accept([("server_max_window_bits", "10"), ("client_max_window_bits", "9")])
    assert result is not None
    session = result[1]
    assert isinstance(session, PerMessageDeflate)
    assert session.deflate_bits == 10
    data = b"x" * 5000
    peer = zlib.compressobj(6, zlib.DEFLATED, -9)
    payload = (peer.compress(data) + peer.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert session.inflate(payload, True, len(data)) == data


def test_server_window_of_8_bits_is_accepted_and_never_compresses() -> None:
    result = DEFAULT.accept([("server_max_window_bits", "8")])
    assert result is not None
    assert result[0] == "permessage-deflate; server_max_window_bits=8"
    session = result[1]
    assert isinstance(session, PerMessageDeflate)
    assert session.min_size > 1 << 40  # zlib cannot honour 8 bits: messages go uncompressed


def test_shared_key_only_without_context_takeover() -> None:
    assert PerMessageDeflate().shared_key is None
    a = PerMessageDeflate(deflate_no_context_takeover=True, deflate_window_bits=12)
    b = PerMessageDeflate(deflate_no_context_takeover=True, deflate_window_bits=12)
    c = PerMessageDeflate(deflate_no_context_takeover=True, deflate_window_bits=11)
    assert a.shared_key == b.shared_key != c.shared_key


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 8},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"mem_level": 0},
        {"compress_level": 10},
    ],
)
def test_invalid_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PerMessageDeflateOffer(**kwargs)  # type: ignore[arg-type]
