"""Write the seed corpus: ``python -m fuzzing.seeds`` (rewrites ``fuzzing/corpus/``).

Seeds are small, valid or nearly valid inputs from the RFC 6455 section 5.7 examples and
the hixie drafts, so that the fuzzer starts deep in the parsers.  The first two bytes of a
``connection`` seed choose the configuration and the split (see :mod:`fuzzing.targets`).

The ``http`` and ``upgrade`` seeds (:mod:`fuzzing.server_seeds`) are requests of every kind
and the attacks a front end and a server must agree on; their byte 0 and 1 are the same
choices for the server targets (see :mod:`fuzzing.server_targets`).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from fuzzing.server_seeds import http_seeds, upgrade_seeds

CORPUS = Path(__file__).resolve().parent / "corpus"
KEY = bytes.fromhex("37fa213d")


def _frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = False, rsv1: bool = False
) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = bytes((first, bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def _streams(masked: bool) -> dict[str, bytes]:
    def f(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
        return _frame(opcode, payload, fin=fin, masked=masked)

    return {
        "text": f(1, b"Hello"),
        "binary-256": f(2, bytes(range(256))),
        "fragmented": f(1, b"Hel", False) + f(9, b"ping") + f(0, b"lo"),
        "ping-pong": f(9, b"Hello") + f(10, b"Hello"),
        "close": f(1, b"bye") + f(8, b"\x03\xe8done"),
        "close-empty": f(8),
        "close-bad-code": f(8, b"\x03\xed"),
        "utf8-split": f(1, b"\xe2\x82", False) + f(0, b"\xac\xf0\x9f\x98\x80"),
        "utf8-invalid": f(1, b"\xce\xba\xf4\x90\x80\x80", False),
        "surrogate": f(1, b"a\xed\xa0\x80"),
        "reserved-opcode": f(3),
        "rsv1": bytes((0xC1,)) + f(1, b"x")[1:],
        "too-big": f(2, bytes(80)),
        "continuation-alone": f(0, b"x"),
        "huge-header": bytes((0x82, (0x80 if masked else 0) | 127))
        + struct.pack("!Q", 1 << 40)
        + (KEY if masked else b""),
    }


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _compressed_streams(masked: bool) -> dict[str, bytes]:
    """RFC 7692 section 7.2.3 examples and a deflate bomb, for permessage-deflate."""

    def f(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = True) -> bytes:
        return _frame(opcode, payload, fin=fin, masked=masked, rsv1=rsv1)

    hello = bytes.fromhex("f248cdc9c90700")
    return {
        "deflate-hello": f(1, hello),
        "deflate-fragmented": f(1, hello[:3], fin=False) + f(0, hello[3:], rsv1=False),
        "deflate-shared-context": f(1, hello) + f(1, bytes.fromhex("f200110000")),
        "deflate-stored-block": f(1, bytes.fromhex("000500faff48656c6c6f00")),
        "deflate-bfinal": f(1, bytes.fromhex("f348cdc9c90700")),
        "deflate-binary-empty": f(2, b"\x00"),
        "deflate-bomb": f(2, _deflated(bytes(200_000))),
        "deflate-invalid-utf8": f(1, _deflated(b"\xed\xa0\x80")),
        "deflate-garbage": f(2, b"\xff\xff\xff\xff"),
        "deflate-rsv1-on-ping": f(9, b"x"),
    }


HIXIE = {
    "text": b"\x00Hello\xff\x00\xe2\x82\xac\xff",
    "closing": b"\x00a\xff\xff\x00\x00b\xff",
    "length-prefixed": b"\x80\x81\x01" + bytes(129) + b"\x00ok\xff",
    "other-sentinel": b"\x05junk\xff\x00ok\xff",
    "invalid-utf8": b"\x00ok\xff\x00\xed\xa0\x80\xff",
    "unterminated": b"\x00" + b"x" * 100,
    "long-length": b"\xff" + b"\x80" * 12,
}


def seeds() -> dict[str, dict[str, bytes]]:
    corpus: dict[str, dict[str, bytes]] = {"connection": {}, "frames": {}, "hixie": {}}
    # connection: byte 0 picks CONFIGS[b % 8] and LIMITS[(b >> 3) % 4]; byte 1 the split.
    for config, masked in ((0, True), (1, False), (5, True), (6, False)):
        for name, stream in _streams(masked).items():
            for limits in (0, 2):
                key = f"rfc{config}-limits{limits}-{name}"
                corpus["connection"][key] = bytes((config | limits << 3, 0x5A)) + stream
    for config, masked in ((0, True), (1, False)):
        for name, stream in _compressed_streams(masked).items():
            for flags in (0x20 | 2 << 3, 0x20 | 0x40 | 3 << 3):
                key = f"rfc{config}-flags{flags:#x}-{name}"
                corpus["connection"][key] = bytes((config | flags, 0x47)) + stream
    for config in (2, 3, 4):
        for name, stream in HIXIE.items():
            corpus["connection"][f"hixie{config}-{name}"] = bytes((config | 1 << 3, 0x33)) + stream
    for masked in (True, False):
        for name, stream in _streams(masked).items():
            corpus["frames"][f"{'masked' if masked else 'unmasked'}-{name}"] = (
                bytes((int(masked),)) + stream
            )
    corpus["frames"]["close-payload"] = b"\x00\x03\xe8r\xc3\xa9ason"
    for closing in (0, 1):
        for name, stream in HIXIE.items():
            corpus["hixie"][f"{closing}-{name}"] = bytes((closing, 0x21)) + stream
    corpus["masking"] = {
        "rfc-hello": KEY + b"Hello",
        "empty": KEY,
        "short-mask": b"\x01\x02",
        "long": KEY + bytes(range(256)) * 5,
    }
    corpus["http"] = {name: seed.data for name, seed in http_seeds().items()}
    corpus["upgrade"] = {name: seed.data for name, seed in upgrade_seeds().items()}
    return corpus


def main() -> None:
    for target, files in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for name, data in files.items():
            (directory / name).write_bytes(data)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main()
