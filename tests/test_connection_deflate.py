"""Connection with permessage-deflate negotiated: RSV1 rules, compressed messages, limits."""

from __future__ import annotations

import itertools
import random
import zlib
from unittest import mock

import pytest

from stargate.connection import Connection, ConnectionState
from stargate.events import BinaryMessage, Event, ProtocolViolation, TextMessage
from stargate.extensions.permessage_deflate import PerMessageDeflate
from stargate.frames import RSV1, encode_frame
from stargate.limits import Limits
from stargate.protocol import Opcode, Role


def pair(
    *, server_limits: Limits | None = None, nct: bool = False
) -> tuple[Connection, Connection]:
    server = Connection(
        Role.SERVER,
        limits=server_limits,
        extensions=[PerMessageDeflate(deflate_no_context_takeover=nct, min_size=0)],
    )
    client = Connection(Role.CLIENT, extensions=[PerMessageDeflate(min_size=0)])
    return server, client


def compressed(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_a_connection_inflates_only_with_permessage_deflate() -> None:
    """What the I/O layers ask to meter a read (a few bytes can inflate to many messages)."""
    assert Connection(Role.SERVER, extensions=[PerMessageDeflate()]).inflates
    assert not Connection(Role.SERVER).inflates


def test_plain_frames_only_for_an_uncompressed_unmasked_rfc6455_connection() -> None:
    """What lets an I/O layer build a message's frame itself (``send_nowait``): its frame
    must be exactly ``build_frame(FIN | opcode, message, None)``."""
    from stargate.frames import FIN_TEXT, build_frame
    from stargate.protocol import ProtocolVersion

    plain = Connection(Role.SERVER)
    assert plain.plain_frames
    assert plain.encode_message("hi") == build_frame(FIN_TEXT, "hi", None)
    assert not Connection(Role.SERVER, extensions=[PerMessageDeflate()]).plain_frames
    assert not Connection(Role.CLIENT).plain_frames  # masked, with a fresh key each
    assert not Connection(Role.SERVER, ProtocolVersion.HIXIE_76).plain_frames


def test_rfc7692_hello_frame_received_by_a_client() -> None:
    client = Connection(Role.CLIENT, extensions=[PerMessageDeflate()])
    events = client.receive_data(bytes.fromhex("c107f248cdc9c90700"))
    assert events == [TextMessage("Hello")]


def test_rfc7692_fragmented_hello_byte_by_byte() -> None:
    client = Connection(Role.CLIENT, extensions=[PerMessageDeflate()])
    stream = bytes.fromhex("4103f248cd" + "8004c9c90700")
    events: list[Event] = []
    for i in range(len(stream)):
        events += client.receive_data(stream[i : i + 1])
    assert events == [TextMessage("Hello")]


def test_round_trip_both_ways_with_context_takeover() -> None:
    server, client = pair()
    messages: list[str | bytes] = ["Hello", "Hello", b"\x00" * 10_000, "é" * 3000, b""]
    for message in messages:
        client.send(message)
    wire = client.data_to_send()
    assert wire[0] & RSV1
    events = server.receive_data(wire)
    assert [e.data for e in events] == messages  # type: ignore[union-attr]
    for message in messages:
        server.send(message)
    events = client.receive_data(server.data_to_send())
    assert [e.data for e in events] == messages  # type: ignore[union-attr]


def test_compression_shrinks_repetitive_messages() -> None:
    server, _ = pair()
    frame = server.encode_message(b"a" * 100_000)
    assert len(frame) < 1000
    assert frame[0] == 0x80 | RSV1 | Opcode.BINARY


def test_small_messages_are_sent_uncompressed() -> None:
    server = Connection(Role.SERVER, extensions=[PerMessageDeflate(min_size=16)])
    assert server.encode_message("hi") == b"\x81\x02hi"
    assert server.encode_message("x" * 32)[0] & RSV1


@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
@pytest.mark.parametrize("reads", ["whole", "bytes"])
def test_compressed_message_in_fragments_and_reads(opcode: Opcode, reads: str) -> None:
    """RFC 7692 section 6.1: a compressed message may be fragmented, RSV1 on its first frame
    only, and the fragments' payloads are one compressed stream (section 7.2.2), here cut
    anywhere, with empty fragments, a last fragment that adds no output, and each read of
    one byte.  The next messages, compressed with the same context (section 7.2.3.2) and
    not, arrive intact."""
    server = Connection(Role.SERVER, extensions=[PerMessageDeflate()])
    message = (bytes(range(32, 127)) * 40 + random.Random(6).randbytes(300).hex().encode())[:4000]
    peer = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = peer.compress(message) + peer.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]
    cuts = [0, 3, 3, len(data) // 2, len(data), len(data)]  # an empty fragment, an empty last
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
    stream = b"".join(
        encode_frame(
            opcode if i == 0 else Opcode.CONTINUATION,
            piece,
            fin=i == len(pieces) - 1,
            rsv=RSV1 if i == 0 else 0,
            mask=True,
        )
        for i, piece in enumerate(pieces)
    )
    again = peer.compress(message) + peer.flush(zlib.Z_SYNC_FLUSH)  # refers to the first
    stream += encode_frame(opcode, again[:-4], rsv=RSV1, mask=True)
    stream += encode_frame(opcode, message[:10], fin=False, mask=True)
    stream += encode_frame(Opcode.CONTINUATION, message[10:], mask=True)
    events: list[Event] = []
    if reads == "whole":
        events = server.receive_data(stream)
    else:
        for i in range(len(stream)):
            events += server.receive_data(stream[i : i + 1])
    expected = TextMessage(message.decode()) if opcode is Opcode.TEXT else BinaryMessage(message)
    assert events == [expected] * 3
    assert server.data_to_send() == b""


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        # RSV1 on a continuation frame (RFC 7692 section 6.1).
        (
            encode_frame(Opcode.TEXT, compressed(b"ab"), fin=False, rsv=RSV1, mask=True)
            + encode_frame(Opcode.CONTINUATION, b"", rsv=RSV1, mask=True),
            "continuation",
        ),
        # RSV1 on a control frame.
        (encode_frame(Opcode.PING, b"", rsv=RSV1, mask=True), "control"),
        # RSV2 is not defined by permessage-deflate.
        (encode_frame(Opcode.TEXT, b"a", rsv=0x20, mask=True), "reserved bits"),
    ],
)
def test_rsv_rules(frames: bytes, reason: str) -> None:
    server, _ = pair()
    events = server.receive_data(frames)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == 1002
    assert reason in events[-1].reason


def test_rsv1_without_negotiation_is_1002() -> None:
    server = Connection(Role.SERVER)
    events = server.receive_data(encode_frame(Opcode.TEXT, compressed(b"a"), rsv=RSV1, mask=True))
    assert events == [ProtocolViolation(1002, "reserved bits set without a negotiated extension")]


def test_bomb_through_the_connection_is_1009() -> None:
    server, _ = pair(server_limits=Limits(max_message_size=1 << 20))
    bomb = compressed(b"\x00" * 10_000_000)
    events = server.receive_data(encode_frame(Opcode.BINARY, bomb, rsv=RSV1, mask=True))
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == 1009
    assert server.state is ConnectionState.CLOSED


def test_fragmented_bomb_is_1009_as_it_inflates() -> None:
    server, _ = pair(server_limits=Limits(max_message_size=1 << 20))
    bomb = compressed(b"\x00" * 10_000_000)
    half = len(bomb) // 2
    stream = encode_frame(Opcode.BINARY, bomb[:half], fin=False, rsv=RSV1, mask=True)
    stream += encode_frame(Opcode.CONTINUATION, bomb[half:], mask=True)
    events = server.receive_data(stream)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == 1009


def test_invalid_compressed_data_is_1007() -> None:
    server, _ = pair()
    events = server.receive_data(encode_frame(Opcode.TEXT, b"\xff\xff\xff", rsv=RSV1, mask=True))
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == 1007


_ZLIB_SAYS = "Error -3 while decompressing data: " + "\u00e9" * 100


class _WordyZlibSession(PerMessageDeflate):
    """A session whose zlib fails with a long message (zlib's text is zlib's choice)."""

    __slots__ = ()

    def _new_inflater(self) -> zlib._Decompress:
        failing: zlib._Decompress = mock.Mock(**{"decompress.side_effect": zlib.error(_ZLIB_SAYS)})
        return failing


def test_a_reason_too_long_for_a_close_frame_is_cut_at_a_character() -> None:
    """RFC 6455 section 5.5: a close frame's payload is at most 125 bytes, 123 of them the
    reason, which section 5.5.1 requires to be UTF-8.  A failure whose reason is longer
    (here it quotes zlib's message) still closes with its code; the frame carries the
    longest prefix that fits without splitting a character, the event the whole reason."""
    server = Connection(Role.SERVER, extensions=[_WordyZlibSession()])
    events = server.receive_data(encode_frame(Opcode.TEXT, b"\x00", rsv=RSV1, mask=True))
    reason = f"invalid compressed data: {_ZLIB_SAYS}"
    assert events == [ProtocolViolation(1007, reason)]
    assert (server.close_code, server.close_reason) == (1007, reason)
    sent = server.data_to_send()
    # 60 ASCII bytes, then 2-byte characters: 31 of them fit, the next would straddle 123.
    assert sent == b"\x88\x7c" + (1007).to_bytes(2, "big") + reason[:91].encode()
    assert len(reason[:91].encode()) == 122 and len(reason[:92].encode()) == 124
    assert server.receive_data(b"more") == []


def test_invalid_utf8_inside_compressed_text_is_1007() -> None:
    server, _ = pair()
    frame = encode_frame(Opcode.TEXT, compressed(b"\xff\xfe"), rsv=RSV1, mask=True)
    events = server.receive_data(frame)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == 1007


def test_shared_frames_only_without_context_takeover() -> None:
    takeover, _ = pair()
    assert takeover.frame_family == "rfc6455"
    shared = takeover.encode_shared(b"a" * 1000)
    assert not shared[0] & RSV1  # uncompressed: the same bytes fit every member
    nct_a, _ = pair(nct=True)
    nct_b, _ = pair(nct=True)
    assert nct_a.frame_family == nct_b.frame_family != "rfc6455"
    frame = nct_a.encode_shared(b"a" * 1000)
    assert frame[0] & RSV1
    assert frame == nct_b.encode_shared(b"a" * 1000)
    client = Connection(Role.CLIENT, extensions=[PerMessageDeflate()])
    assert client.receive_data(frame) == [BinaryMessage(b"a" * 1000)]
    with pytest.raises(TypeError):
        client.encode_shared(b"masked frames are never shared")


def test_hixie_refuses_extensions() -> None:
    from stargate.protocol import ProtocolVersion

    with pytest.raises(ValueError):
        Connection(Role.SERVER, ProtocolVersion.HIXIE_76, extensions=[PerMessageDeflate()])
    with pytest.raises(ValueError):
        Connection(Role.SERVER, extensions=[object()])


def test_release_memory_between_messages_keeps_both_directions_working() -> None:
    server, client = pair()
    for i in range(6):
        text = f"message {i}: " + "repeated text " * 20
        client.send(text)
        assert server.receive_data(client.data_to_send()) == [TextMessage(text)]
        server.send(text)
        assert client.receive_data(server.data_to_send()) == [TextMessage(text)]
        server.release_memory()
        client.release_memory()
        assert server._deflate is not None and not server._deflate.allocated


def test_release_memory_leaves_a_message_in_progress_alone() -> None:
    server, client = pair()
    text = random.Random(7).randbytes(5000).hex()  # compresses to several KiB
    client.send(text)
    wire = client.data_to_send()
    assert server.receive_data(wire[:1000]) == []
    server.release_memory()
    assert server._deflate is not None and server._deflate.allocated
    assert server.receive_data(wire[1000:]) == [TextMessage(text)]
