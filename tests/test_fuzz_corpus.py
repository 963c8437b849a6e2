"""Replay the fuzzing corpus (``fuzzing/corpus/<target>/``) through the fuzz targets.

The targets hold the invariants (no exception escapes a parser, only defined events and
close codes, outcome independent of how the bytes are split; for the server targets, no
exception into the loop, well-formed responses, documented refusals, a correct handshake,
every connection ends); this runs them over the seed corpus and over a few deterministic
mutations of it, quickly and without atheris.  The server seeds also pin the statuses each
must get (``fuzzing/server_seeds.py``), with the checks' tolerance of known bugs off: a seed
the server is known to answer wrongly is an expected failure, strict, so that the fix is
noticed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from fuzzing import seeds, server_seeds, server_targets, targets
from fuzzing.fuzz import CORPUS, inputs, replay

#: The server targets: their seeds are replayed one test each (below), with their statuses.
SERVER: dict[str, tuple[Callable[[], dict[str, server_seeds.Seed]], Callable[[bytes], object]]] = {
    "http": (server_seeds.http_seeds, server_targets.exchange_http),
    "upgrade": (server_seeds.upgrade_seeds, server_targets.exchange_upgrade),
}
#: Mutations replayed per target (a server input runs a connection: fewer of those).
MUTATIONS = {"http": 150, "upgrade": 150}


@pytest.mark.parametrize("name", sorted(set(targets.TARGETS) - set(SERVER)))
def test_corpus_replays(name: str) -> None:
    assert replay(targets.TARGETS[name], [CORPUS / name]) > 0


def _server_cases() -> list[object]:
    cases: list[object] = []
    for target, (make, _) in SERVER.items():
        for name, seed in make().items():
            marks = [pytest.mark.xfail(strict=True, reason=seed.bug)] if seed.bug else []
            cases.append(pytest.param(target, name, id=f"{target}/{name}", marks=marks))
    return cases


@pytest.mark.parametrize(("target", "name"), _server_cases())
def test_server_seed(target: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_targets, "TOLERATE_KNOWN_BUGS", False)
    make, run = SERVER[target]
    seed = make()[name]
    outcome = run((CORPUS / target / name).read_bytes())  # the target's checks hold
    assert isinstance(outcome, server_targets.Outcome)
    if seed.expected is not None:
        assert tuple(outcome.statuses) == seed.expected


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
    known_bugs = (
        {n for n, seed in SERVER[name][0]().items() if seed.bug} if name in SERVER else set()
    )
    corpus = [data for path, data in inputs([CORPUS / name]) if path.name not in known_bugs]
    for _ in range(MUTATIONS.get(name, 400)):
        target(_mutate(rng, rng.choice(corpus)))
