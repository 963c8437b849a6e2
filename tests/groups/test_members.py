"""A group's local members (stargate.groups.members): encoded once per frame family."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import ClassVar

from stargate.groups.members import GroupState, Message, deliver_to, normalize, send_one


class Conn:
    """Stands for a connection: what the group needs of one, and what it got."""

    encodings: ClassVar[list[tuple[str, Message]]] = []

    def __init__(
        self,
        id: int,
        family: str,
        *,
        closed: bool = False,
        hixie: bool = False,
        closing: bool = False,
    ) -> None:
        self.id = id
        self.frame_family = family
        self.closed = closed
        #: Closing: not closed yet, but sends raise (the close frame is out).
        self.closing = closing
        self.hixie = hixie
        self.got: list[bytes] = []
        self._conn = self

    def encode_shared(self, message: Message) -> bytes:
        if self.hixie and isinstance(message, bytes):
            raise TypeError("hixie carries text only")
        Conn.encodings.append((self.frame_family, message))
        data = message.encode() if isinstance(message, str) else message
        return self.frame_family.encode() + b":" + data

    def send_encoded(self, frame: bytes, messages: int = 1) -> None:
        if self.closed or self.closing:
            raise ConnectionError("closing")
        self.got.append(frame)

    @staticmethod
    def send_encoded_each(members: Collection[Conn], frame: bytes, messages: int) -> None:
        """What a group asks of a member's class: the frame to each (a real connection's
        fast path is tested with it, in tests/server/test_websocket.py)."""
        for conn in tuple(members):
            with contextlib.suppress(ConnectionError):
                conn.send_encoded(frame, messages)


def group(*conns: Conn) -> GroupState:
    state = GroupState("g", "g:g", lambda s, ws: None)
    for conn in conns:
        assert state.add(conn)  # type: ignore[arg-type]
    return state


def test_one_encoding_per_family() -> None:
    Conn.encodings = []
    a, b, c = Conn(1, "rfc"), Conn(2, "rfc"), Conn(3, "deflate")
    group(a, b, c).deliver("hi")
    assert sorted(Conn.encodings) == [("deflate", "hi"), ("rfc", "hi")]
    assert a.got == b.got == [b"rfc:hi"] and c.got == [b"deflate:hi"]


def test_a_batch_is_one_write_per_member() -> None:
    a = Conn(1, "rfc")
    group(a).deliver_batch(["1", "2", "3"])
    assert a.got == [b"rfc:1rfc:2rfc:3"]


def test_binary_skips_hixie_and_a_closing_member_does_not_stop_others() -> None:
    old, closing, fine = Conn(1, "hixie", hixie=True), Conn(2, "x", closed=True), Conn(3, "y")
    group(old, closing, fine).deliver(b"\x00")
    assert old.got == [] and fine.got == [b"y:\x00"]


def test_add_and_discard_keep_families_tidy() -> None:
    a = Conn(1, "rfc")
    state = group(a)
    assert not state.add(a)  # type: ignore[arg-type]
    assert state.discard(a)  # type: ignore[arg-type]
    assert not state.discard(a)  # type: ignore[arg-type]
    assert state.members == {} and state.families == {}


def test_send_one_and_deliver_to() -> None:
    a, b, shut = Conn(1, "rfc"), Conn(2, "rfc"), Conn(3, "rfc", closed=True)
    send_one(a, "only a")  # type: ignore[arg-type]
    send_one(shut, "never")  # type: ignore[arg-type]
    Conn.encodings = []
    deliver_to([a, b], normalize(bytearray(b"all")))  # type: ignore[list-item]
    assert a.got == [b"rfc:only a", b"rfc:all"] and b.got == [b"rfc:all"]
    assert shut.got == [] and Conn.encodings == [("rfc", b"all")]


def test_a_batch_to_hixie_skips_binary_and_sends_nothing_empty() -> None:
    """A batch mixing text and binary: a hixie member gets the text in one write; a batch
    of binary only writes nothing at all to it (no empty write), others get everything."""
    old, modern = Conn(1, "hixie", hixie=True), Conn(2, "rfc")
    state = group(old, modern)
    state.deliver_batch(["a", b"\x01", "b"])
    state.deliver_batch([b"\x02", b"\x03"])
    assert old.got == [b"hixie:ahixie:b"]
    assert modern.got == [b"rfc:arfc:\x01rfc:b", b"rfc:\x02rfc:\x03"]


def test_one_connection_closing_is_skipped_quietly() -> None:
    """``send_one`` to a connection whose close is under way (sends raise) drops the
    message without raising into the sender, and ``deliver_to`` goes on past it; binary
    for hixie connections is skipped there too, encoded once per family as usual."""
    closing = Conn(1, "rfc", closing=True)
    send_one(closing, "dropped")  # type: ignore[arg-type]
    Conn.encodings = []
    old, fine, also_closing = Conn(2, "hixie", hixie=True), Conn(3, "rfc"), Conn(4, "rfc")
    also_closing.closing = True
    deliver_to([old, also_closing, fine], b"bin")  # type: ignore[list-item]
    deliver_to([old, fine], "text")  # type: ignore[list-item]
    assert closing.got == [] and also_closing.got == []
    assert fine.got == [b"rfc:bin", b"rfc:text"] and old.got == [b"hixie:text"]
    assert Conn.encodings == [("rfc", b"bin"), ("hixie", "text"), ("rfc", "text")]


def test_text_no_frame_can_carry_is_refused_in_the_caller() -> None:
    """A lone surrogate is not UTF-8: refused where the message is sent (found on the loop
    it took the messages batched with it along)."""
    assert normalize("caf\u00e9") == "caf\u00e9"
    assert normalize(bytearray(b"\xff")) == b"\xff"  # binary is any bytes
    try:
        normalize("a\ud800b")
    except ValueError as exc:
        assert "a text message is not valid Unicode" in str(exc)
    else:
        raise AssertionError("a lone surrogate was let through")
