"""Replay the fuzzing corpus (``fuzzing/corpus/<target>/``) through the fuzz targets.

The targets hold the invariants (no exception escapes a parser, only defined events and
close codes, outcome independent of how the bytes are split); this runs them over the seed
corpus and over a few deterministic mutations of it, quickly and without atheris.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain ``pytest`` does not put the project root on the path
    sys.path.insert(0, str(ROOT))

from fuzzing import seeds, targets  # noqa: E402
from fuzzing.fuzz import CORPUS, inputs, replay  # noqa: E402


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_corpus_replays(name: str) -> None:
    assert replay(targets.TARGETS[name], [CORPUS / name]) > 0


def test_corpus_matches_the_seed_generator() -> None:
    # ``python -m fuzzing.seeds`` regenerates the committed corpus exactly.
    expected = seeds.seeds()
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(expected)
    for target, files in expected.items():
        on_disk = {path.name: data for path, data in inputs([CORPUS / target])}
        assert on_disk == files, target


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_mutated_corpus(name: str) -> None:
    target = targets.TARGETS[name]
    rng = random.Random(name)
    corpus = [data for _, data in inputs([CORPUS / name])]
    for _ in range(400):
        target(_mutate(rng, rng.choice(corpus)))
