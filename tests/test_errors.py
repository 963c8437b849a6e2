"""Tests of stargate.errors: each exception carries what the peer or the user must be told."""

from __future__ import annotations

import pytest

from stargate.errors import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshakeResponse,
    InvalidPayload,
    MessageTooBig,
    ProtocolError,
    StargateError,
)
from stargate.protocol import CloseCode, is_valid_close_code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProtocolError("reserved opcode 0x3"), 1002),
        (ProtocolError("policy", CloseCode.POLICY_VIOLATION), 1008),
        (InvalidPayload("text message is not valid UTF-8"), 1007),
        (MessageTooBig("message of 11 bytes exceeds max_message_size 10"), 1009),
    ],
    ids=["protocol-error", "explicit-code", "invalid-payload", "message-too-big"],
)
def test_protocol_errors_carry_their_close_code(error: ProtocolError, code: int) -> None:
    """RFC 6455 section 7.4.1: 1002 for a protocol error, 1007 for data inconsistent with
    the message type (section 8.1: text that is not UTF-8), 1009 for a message too big to
    process.  The connection catches ProtocolError alone and sends ``code`` in its close
    frame, so each must be a code that may be sent, as a plain int (shown as a number in
    events and logs, not as an enum member)."""
    assert isinstance(error, ProtocolError)
    assert error.code == code
    assert type(error.code) is int
    assert is_valid_close_code(error.code)


def test_protocol_error_reason_is_its_message() -> None:
    error = MessageTooBig("frame of 101 bytes exceeds max_frame_size 100")
    assert error.reason == str(error) == "frame of 101 bytes exceeds max_frame_size 100"
    assert error.args == (error.reason,)


def test_handshake_error_carries_the_http_answer() -> None:
    """A refused handshake is answered with ``status``, a reason and extra headers such as
    ``Sec-WebSocket-Version`` on 426 (RFC 6455 section 4.4)."""
    error = HandshakeError(426, "unsupported version", [("Sec-WebSocket-Version", "13")])
    assert (error.status, error.reason) == (426, "unsupported version")
    assert error.headers == [("Sec-WebSocket-Version", "13")]
    assert str(error) == "426: unsupported version"


def test_handshake_errors_do_not_share_their_headers() -> None:
    """Without headers each error gets a list of its own: a layer that adds a header to one
    refusal must not add it to every later one."""
    first, second = HandshakeError(400, "bad"), HandshakeError(403, "origin")
    first.headers.append(("Connection", "close"))
    assert second.headers == []
    assert HandshakeError(400, "bad").headers == []


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (1000, "done", "connection closed: 1000 done"),
        (1006, "", "connection closed: 1006"),
        (4000, "bye \u20ac", "connection closed: 4000 bye \u20ac"),
    ],
)
def test_connection_closed_says_how_it_ended(code: int, reason: str, message: str) -> None:
    error = ConnectionClosed(code, reason)
    assert (error.code, error.reason) == (code, reason)
    assert str(error) == message


def test_connection_closed_reason_defaults_to_empty() -> None:
    assert ConnectionClosed(1001).reason == ""


def test_invalid_handshake_response_shows_what_the_server_said() -> None:
    """The client's handshake failure keeps the server's status and the first bytes of its
    body, for the user; status 0 means the response could not be parsed at all."""
    refused = InvalidHandshakeResponse("server refused the upgrade", 403, b"forbidden")
    assert (refused.reason, refused.status, refused.body) == (
        "server refused the upgrade",
        403,
        b"forbidden",
    )
    assert str(refused) == "server refused the upgrade (status 403)"
    garbled = InvalidHandshakeResponse("malformed status line")
    assert (garbled.status, garbled.body) == (0, b"")
    assert str(garbled) == "malformed status line"


@pytest.mark.parametrize(
    "error",
    [
        ProtocolError("x"),
        InvalidPayload("x"),
        MessageTooBig("x"),
        HandshakeError(400, "x"),
        ConnectionClosed(1000),
        InvalidHandshakeResponse("x"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_one_base_class_catches_every_error_raised_on_purpose(error: StargateError) -> None:
    with pytest.raises(StargateError):
        raise error
    assert isinstance(error, Exception)
