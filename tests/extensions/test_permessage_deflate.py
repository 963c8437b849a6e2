"""permessage-deflate: RFC 7692's own examples, negotiation tables, the bomb."""

from __future__ import annotations

import sys
import tracemalloc
import zlib

import pytest

from stargate.errors import InvalidPayload, MessageTooBig
from stargate.extensions.permessage_deflate import (
    NAME,
    PerMessageDeflate,
    PerMessageDeflateClientOffer,
    PerMessageDeflateOffer,
)
from stargate.headers import parse_extensions

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


def test_without_context_takeover_a_fragmented_message_shares_one_decompressor() -> None:
    """Section 7.2.2: the fragments of one message are one compressed stream, also without
    context takeover, which only starts each *message* afresh (section 7.1.1.1)."""
    inflater = PerMessageDeflate(inflate_no_context_takeover=True)
    for _ in range(2):
        first = inflater.inflate(bytes.fromhex("f248cd"), False, 100)
        assert inflater.allocated  # kept until the message's last fragment
        rest = inflater.inflate(bytes.fromhex("c9c90700"), True, 100 - len(first))
        assert first + rest == b"Hello"
        assert not inflater.allocated


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deflate_window_bits": 7},
        {"deflate_window_bits": 16},
        {"inflate_window_bits": 7},
        {"inflate_window_bits": 16},
    ],
)
def test_session_refuses_window_bits_outside_8_to_15(kwargs: dict[str, int]) -> None:
    """Section 7.1.2: windows are 8 to 15 bits.  Refused when the session is made, not
    with zlib's "Invalid initialization option" from the first message that needs it (a
    ValueError out of ``Connection.receive_data``, which must never raise)."""
    with pytest.raises(ValueError, match="window bits must be 8 to 15"):
        PerMessageDeflate(**kwargs)  # type: ignore[arg-type]


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


def test_a_limit_as_large_as_an_index_can_be() -> None:
    """``max_message_size=sys.maxsize`` (no limit, in effect) must not overflow zlib's
    ``max_length``: an OverflowError would escape ``Connection.receive_data``."""
    data = PerMessageDeflate().deflate(b"a" * 1000)
    assert PerMessageDeflate().inflate(data, True, sys.maxsize) == b"a" * 1000


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


# -- zlib state only while needed (issue 13: idle memory) --------------------------------------


def _peer_messages(count: int) -> list[bytes]:
    # Each message repeats most of the previous one: with context takeover the peer's
    # compressor refers back across messages.
    return [
        b"message %d: " % i + b"the same long tail of text, again and again " * 4
        for i in range(count)
    ]


def test_no_zlib_state_until_a_message_needs_it() -> None:
    session = PerMessageDeflate(inflate_window_bits=12, deflate_window_bits=12, mem_level=5)
    assert not session.allocated
    session.deflate(b"Hello")
    assert session._deflater is not None and session._inflater is None
    session.inflate(bytes.fromhex("f248cdc9c90700"), True, 100)
    assert session.allocated


def test_without_context_takeover_nothing_is_kept_between_messages() -> None:
    session = PerMessageDeflate(inflate_no_context_takeover=True, deflate_no_context_takeover=True)
    for _ in range(3):
        assert session.inflate(session.deflate(b"Hello"), True, 100) == b"Hello"
        assert not session.allocated


def test_release_with_the_peer_taking_context_over() -> None:
    # The peer (zlib itself, one compressor for the whole stream) refers back into earlier
    # messages; we release between every two messages and still decode each one.
    peer = zlib.compressobj(6, zlib.DEFLATED, -12)
    session = PerMessageDeflate(inflate_window_bits=12)
    for i, message in enumerate(_peer_messages(8)):
        wire = peer.compress(message) + peer.flush(zlib.Z_SYNC_FLUSH)
        assert wire.endswith(b"\x00\x00\xff\xff")
        if i % 2:
            session.release()
            assert not session.allocated
        assert session.inflate(wire[:-4], True, 10_000) == message
    assert len(session._inflate_window) <= 1 << 12


def test_release_of_our_compressor_keeps_the_stream_valid() -> None:
    # The peer decompresses our messages with one decompressor (it keeps the context); a
    # compressor started afresh after release() is still a valid continuation.
    session = PerMessageDeflate()
    peer = zlib.decompressobj(-15)
    sizes = []
    for i, message in enumerate(_peer_messages(6)):
        if i == 3:
            session.release()
        wire = session.deflate(message)
        sizes.append(len(wire))
        assert peer.decompress(wire + b"\x00\x00\xff\xff") == message
    assert sizes[2] < sizes[0] and sizes[4] < sizes[3]  # context used, lost once, used again


def test_idle_session_memory() -> None:
    # What a negotiated but idle session holds: no zlib state at all (issue 13 asks for an
    # idle deflate connection <= 14 KiB; an allocated compressor alone is ~33 KiB here).
    offer = PerMessageDeflateOffer()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sessions = [offer.accept([("client_max_window_bits", None)]) for _ in range(200)]
        per_session = (tracemalloc.get_traced_memory()[0] - before) / len(sessions)
    finally:
        tracemalloc.stop()
    assert per_session < 1024, per_session


# -- the client's side (RFC 7692 section 7.1, as a client) --------------------------------------


def test_both_sides_are_named_permessage_deflate() -> None:
    """The handshake matches a response to our offer, and an offer to our settings, by the
    registered extension name (section 5)."""
    assert NAME == "permessage-deflate"
    assert PerMessageDeflateOffer().name == PerMessageDeflateClientOffer().name == NAME


@pytest.mark.parametrize(
    ("offer", "header"),
    [
        (PerMessageDeflateClientOffer(), "permessage-deflate; client_max_window_bits"),
        (PerMessageDeflateClientOffer(client_max_window_bits=None), "permessage-deflate"),
        (
            PerMessageDeflateClientOffer(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            PerMessageDeflateClientOffer(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=9,
                client_max_window_bits=12,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=9; client_max_window_bits=12",
        ),
    ],
)
def test_client_offer_header(offer: PerMessageDeflateClientOffer, header: str) -> None:
    """Section 7.1.2.2: ``client_max_window_bits`` without a value says only that we can
    limit our window (we use 15 unless told less); with a value, that we will use at most
    that.  Every offer parses back to its own parameters, which our server accepts."""
    assert offer.header_value() == header
    ((name, params),) = parse_extensions([header])
    assert name == NAME
    assert PerMessageDeflateOffer().accept(params) is not None


# Which session each answer gives: (inflate bits, inflate without context takeover,
# deflate bits, deflate without context takeover).  White-box: reads the session's settings.
Session = tuple[int, bool, int, bool]


def settings_of(session: PerMessageDeflate) -> Session:
    return (session._inflate_bits, session._inflate_nct, session.deflate_bits, session._deflate_nct)


CLIENT_ACCEPTS: list[tuple[PerMessageDeflateClientOffer, Params, Session]] = [
    # No parameters: 15-bit windows and context takeover both ways.
    (PerMessageDeflateClientOffer(), [], (15, False, 15, False)),
    # The server limits its own window or takes no context over without being asked
    # (sections 7.1.1.1 and 7.1.2.1 allow both).
    (PerMessageDeflateClientOffer(), [("server_max_window_bits", "10")], (10, False, 15, False)),
    (PerMessageDeflateClientOffer(), [("server_no_context_takeover", None)], (15, True, 15, False)),
    # The server asks us for a smaller window or no context takeover (7.1.1.2, 7.1.2.2).
    (PerMessageDeflateClientOffer(), [("client_max_window_bits", "9")], (15, False, 9, False)),
    (PerMessageDeflateClientOffer(), [("client_no_context_takeover", None)], (15, False, 15, True)),
    # What we offered holds when the server does not repeat it ...
    (
        PerMessageDeflateClientOffer(client_max_window_bits=10, client_no_context_takeover=True),
        [],
        (15, False, 10, True),
    ),
    # Our requests, granted: the server's window at most what we asked, or smaller.
    (
        PerMessageDeflateClientOffer(server_max_window_bits=12, server_no_context_takeover=True),
        [("server_no_context_takeover", None), ("server_max_window_bits", "11")],
        (11, True, 15, False),
    ),
    # 8 bits: zlib decompresses it with 9 and cannot compress with it, so we never do.
    (
        PerMessageDeflateClientOffer(server_max_window_bits=8, client_max_window_bits=8),
        [("server_max_window_bits", "8"), ("client_max_window_bits", "8")],
        (9, False, 9, False),
    ),
]


@pytest.mark.parametrize(("offer", "params", "session"), CLIENT_ACCEPTS)
def test_client_accepts_valid_responses(
    offer: PerMessageDeflateClientOffer, params: Params, session: Session
) -> None:
    accepted = offer.accept_response(params)
    assert settings_of(accepted) == session
    assert (accepted.level, accepted.mem_level) == (offer.compress_level, offer.mem_level)
    never = ("client_max_window_bits", "8") in params
    assert accepted.min_size == (sys.maxsize if never else offer.min_size)


CLIENT_REFUSES: list[tuple[PerMessageDeflateClientOffer, Params, str]] = [
    (PerMessageDeflateClientOffer(), [("x_unknown", None)], "malformed or duplicate"),
    (
        PerMessageDeflateClientOffer(),
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        "malformed or duplicate",
    ),
    (PerMessageDeflateClientOffer(), [("server_max_window_bits", "16")], "malformed"),
    # Section 7.1.2.1: the server's window is at most what we asked for; without the
    # parameter it is 15.
    (
        PerMessageDeflateClientOffer(server_max_window_bits=10),
        [("server_max_window_bits", "11")],
        "server_max_window_bits larger than offered",
    ),
    (
        PerMessageDeflateClientOffer(server_max_window_bits=10),
        [],
        "server_max_window_bits larger than offered",
    ),
    # Section 7.1.1.1: a server that accepts our offer includes server_no_context_takeover.
    (
        PerMessageDeflateClientOffer(server_no_context_takeover=True),
        [],
        "server_no_context_takeover was requested but not accepted",
    ),
    # Section 7.1.2.2: client_max_window_bits only in answer to our offer of it, with a value.
    (
        PerMessageDeflateClientOffer(client_max_window_bits=None),
        [("client_max_window_bits", "10")],
        "client_max_window_bits was not offered or has no value",
    ),
    (
        PerMessageDeflateClientOffer(),
        [("client_max_window_bits", None)],
        "client_max_window_bits was not offered or has no value",
    ),
    # ... and at most the window we offered (the server may only narrow it).
    (
        PerMessageDeflateClientOffer(client_max_window_bits=10),
        [("client_max_window_bits", "11")],
        "client_max_window_bits larger than offered",
    ),
]


@pytest.mark.parametrize(("offer", "params", "reason"), CLIENT_REFUSES)
def test_client_refuses_invalid_responses(
    offer: PerMessageDeflateClientOffer, params: Params, reason: str
) -> None:
    """The client must fail the connection on a response that does not answer its offer
    (RFC 7692 section 7.1; the handshake turns the ValueError into that failure)."""
    with pytest.raises(ValueError, match=reason):
        offer.accept_response(params)


@pytest.mark.parametrize(
    ("client", "server"),
    [
        (PerMessageDeflateClientOffer(), PerMessageDeflateOffer()),
        (
            PerMessageDeflateClientOffer(client_max_window_bits=9, server_max_window_bits=10),
            PerMessageDeflateOffer(server_no_context_takeover=True),
        ),
        (
            PerMessageDeflateClientOffer(client_no_context_takeover=True),
            PerMessageDeflateOffer(client_max_window_bits=None, server_max_window_bits=15),
        ),
    ],
)
def test_negotiated_sessions_understand_each_other(
    client: PerMessageDeflateClientOffer, server: PerMessageDeflateOffer
) -> None:
    """Offer, acceptance and the client's check of the response, through the header syntax:
    each side's compressor fits the other's decompressor, message after message."""
    ((_, offered),) = parse_extensions([client.header_value()])
    accepted = server.accept(offered)
    assert accepted is not None
    response, server_session = accepted
    assert isinstance(server_session, PerMessageDeflate)
    ((_, answered),) = parse_extensions([response])
    client_session = client.accept_response(answered)
    for message in _peer_messages(4):
        assert server_session.inflate(client_session.deflate(message), True, 1000) == message
        assert client_session.inflate(server_session.deflate(message), True, 1000) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"mem_level": 0},
        {"mem_level": 10},
        {"compress_level": -1},
        {"compress_level": 10},
    ],
)
def test_invalid_client_settings(kwargs: dict[str, int]) -> None:
    """Refused when the offer is made, as the server's settings are: otherwise a window
    outside 8-15 would be offered and declined (no compression, silently), and a bad level
    would pass the handshake and fail the first send with zlib's "Invalid initialization
    option"."""
    with pytest.raises(ValueError):
        PerMessageDeflateClientOffer(**kwargs)  # type: ignore[arg-type]
