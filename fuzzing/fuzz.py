"""Run a fuzz target under atheris, or replay inputs through it without atheris.

    python -m fuzzing.fuzz connection fuzzing/corpus/connection -max_total_time=60
    python -m fuzzing.fuzz connection --replay [FILE_OR_DIR ...]

Targets: connection, frames, hixie, masking, http, upgrade (see :mod:`fuzzing.targets`).
Without paths, ``--replay`` runs the target's seed corpus.  Under atheris, new inputs go to
the first corpus directory given; a crash is written to ``crash-<sha1>`` in the current
directory.  The server targets take ``-dict=fuzzing/http.dict``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

CORPUS = Path(__file__).resolve().parent / "corpus"


def inputs(paths: list[Path]) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``paths`` (files or directories), in a stable order."""
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            yield file, file.read_bytes()


def replay(target: Callable[[bytes], None], paths: list[Path]) -> int:
    count = 0
    for file, data in inputs(paths):
        try:
            target(data)
        except BaseException:
            print(f"failed on {file}", file=sys.stderr)
            raise
        count += 1
    return count


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if "--replay" in rest:
        rest.remove("--replay")
        targets = importlib.import_module("fuzzing.targets")
        paths = [Path(p) for p in rest] or [CORPUS / name]
        print(f"{name}: {replay(targets.TARGETS[name], paths)} inputs replayed")
        return 0
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    with atheris.instrument_imports(include=["stargate"]):
        instrumented: ModuleType = importlib.import_module("fuzzing.targets")
    atheris.Setup([sys.argv[0], *rest], instrumented.TARGETS[name])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
