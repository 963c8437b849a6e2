"""Tests of stargate.masking: the RFC 6455 section 5.3 XOR, C accelerator and fallback."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable

import pytest

from stargate import masking
from stargate.masking import BytesLike, _apply_mask_python, apply_mask

MaskFn = Callable[[BytesLike, bytes], bytes]

IMPLEMENTATIONS: list[MaskFn] = [apply_mask, _apply_mask_python]
IDS = ["default", "python"]

#: RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
RFC_KEY = bytes.fromhex("37fa213d")
RFC_MASKED_HELLO = bytes.fromhex("7f9f4d5158")


def _reference(data: bytes, mask: bytes) -> bytes:
    """Byte-at-a-time definition of section 5.3: octet i XOR masking-key octet i MOD 4."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _rng_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def test_accelerator_is_built() -> None:
    # The extension ships with the package; running the suite without it would test only
    # the fallback twice.  CI runs the core once more with STARGATE_PURE_PYTHON=1.
    if masking.PURE_PYTHON:
        assert not masking.ACCELERATED and apply_mask is _apply_mask_python
    else:
        assert masking.ACCELERATED
        assert apply_mask is not _apply_mask_python


def test_pure_python_switch() -> None:
    """STARGATE_PURE_PYTHON=1 selects the fallback even where the extension is built."""
    code = "from stargate import masking; print(masking.ACCELERATED, masking.PURE_PYTHON)"
    for value, expected in (("1", "False True"), ("0", "True False")):
        env = {**os.environ, "STARGATE_PURE_PYTHON": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == expected.split()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
def test_rfc_example(impl: MaskFn) -> None:
    assert impl(b"Hello", RFC_KEY) == RFC_MASKED_HELLO
    assert impl(RFC_MASKED_HELLO, RFC_KEY) == b"Hello"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
def test_every_small_length_matches_reference(impl: MaskFn) -> None:
    rng = random.Random(6455)
    for n in range(101):
        data = _rng_bytes(rng, n)
        mask = _rng_bytes(rng, 4)
        assert impl(data, mask) == _reference(data, mask), n


@pytest.mark.parametrize("n", [4095, 4096, 65535, 65536 + 3, 1024 * 1024 + 7])
def test_large_lengths_agree(n: int) -> None:
    rng = random.Random(n)
    data = _rng_bytes(rng, n)
    mask = _rng_bytes(rng, 4)
    fast = apply_mask(data, mask)
    assert fast == _apply_mask_python(data, mask)
    assert len(fast) == n
    # Spot-check against the definition without the cost of a per-byte loop over 1 MiB.
    for i in (0, 1, 2, 3, 7, 8, n // 2, n - 2, n - 1):
        assert fast[i] == data[i] ^ mask[i % 4]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 9, 17, 1000])
def test_involution(impl: MaskFn, n: int) -> None:
    rng = random.Random(n)
    data = _rng_bytes(rng, n)
    mask = _rng_bytes(rng, 4)
    assert impl(impl(data, mask), mask) == data


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
def test_zero_mask_is_identity(impl: MaskFn) -> None:
    assert impl(b"unchanged", b"\x00\x00\x00\x00") == b"unchanged"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
@pytest.mark.parametrize(
    "data",
    [bytearray(b"Hello"), memoryview(b"Hello"), memoryview(b"xHello")[1:]],
    ids=["bytearray", "memoryview", "unaligned-memoryview"],
)
def test_accepts_bytes_like(impl: MaskFn, data: BytesLike) -> None:
    result = impl(data, RFC_KEY)
    assert type(result) is bytes
    assert result == RFC_MASKED_HELLO


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
def test_does_not_modify_input(impl: MaskFn) -> None:
    data = bytearray(b"Hello")
    impl(data, RFC_KEY)
    assert data == b"Hello"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
@pytest.mark.parametrize("mask", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
@pytest.mark.parametrize("data", [b"", b"x", b"Hello, world"], ids=["empty", "1", "12"])
def test_rejects_mask_not_of_four_bytes(impl: MaskFn, mask: bytes, data: bytes) -> None:
    # Also for empty data: a wrong mask is a caller bug whatever the payload length, and
    # both implementations must behave the same.
    with pytest.raises(ValueError, match="mask must be 4 bytes"):
        impl(data, mask)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=IDS)
def test_rejects_text(impl: MaskFn) -> None:
    with pytest.raises(TypeError):
        impl("Hello", RFC_KEY)  # type: ignore[arg-type]
