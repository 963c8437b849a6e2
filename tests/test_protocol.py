"""Tests of stargate.protocol: versions, opcodes, close code rules (RFC 6455 section 7.4)."""

from __future__ import annotations

import pytest

from stargate.protocol import (
    CLOSE_CODES_NEVER_SENT,
    CloseCode,
    Opcode,
    ProtocolVersion,
    is_valid_close_code,
)


@pytest.mark.parametrize(
    ("version", "is_hixie", "value"),
    [
        (ProtocolVersion.HIXIE_75, True, "hixie-75"),
        (ProtocolVersion.HIXIE_76, True, "hixie-76"),
        (ProtocolVersion.HYBI_07, False, "7"),
        (ProtocolVersion.HYBI_08, False, "8"),
        (ProtocolVersion.RFC6455, False, "13"),
    ],
)
def test_protocol_versions(version: ProtocolVersion, is_hixie: bool, value: str) -> None:
    assert version.is_hixie is is_hixie
    assert version.value == value
    assert ProtocolVersion(value) is version


@pytest.mark.parametrize(
    ("opcode", "value", "is_control"),
    [
        (Opcode.CONTINUATION, 0x0, False),
        (Opcode.TEXT, 0x1, False),
        (Opcode.BINARY, 0x2, False),
        (Opcode.CLOSE, 0x8, True),
        (Opcode.PING, 0x9, True),
        (Opcode.PONG, 0xA, True),
    ],
)
def test_opcodes(opcode: Opcode, value: int, is_control: bool) -> None:
    assert opcode == value
    assert opcode.is_control is is_control


@pytest.mark.parametrize("value", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_not_members(value: int) -> None:
    with pytest.raises(ValueError):
        Opcode(value)


@pytest.mark.parametrize(
    "code",
    [
        *(1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014),
        *(3000, 3999, 4000, 4999),
    ],
)
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize(
    "code",
    [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535, -1],
)
def test_invalid_close_codes(code: int) -> None:
    assert not is_valid_close_code(code)


def test_codes_never_sent() -> None:
    # RFC 6455 section 7.4.1: 1005, 1006 and 1015 MUST NOT be set in a close frame; 1004 is
    # reserved.
    assert frozenset({1004, 1005, 1006, 1015}) == CLOSE_CODES_NEVER_SENT
    for code in CLOSE_CODES_NEVER_SENT:
        assert not is_valid_close_code(code)


@pytest.mark.parametrize(
    ("value", "member"),
    [
        (1000, CloseCode.NORMAL_CLOSURE),
        (1002, CloseCode.PROTOCOL_ERROR),
        (1005, CloseCode.NO_STATUS_RCVD),
        (1006, CloseCode.ABNORMAL_CLOSURE),
        (1007, CloseCode.INVALID_FRAME_PAYLOAD_DATA),
        (1009, CloseCode.MESSAGE_TOO_BIG),
        (1015, CloseCode.TLS_HANDSHAKE),
    ],
)
def test_close_code_values(value: int, member: CloseCode) -> None:
    assert CloseCode(value) is member
