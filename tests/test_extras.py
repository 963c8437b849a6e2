"""Install hints (stargate.extras): every extra the code names exists in pyproject.toml and
installs exactly the packages its hint names; no hint anywhere says ``stargate[...]``, which
PyPI would answer with the unrelated 2011 package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from stargate.extras import EXTRAS, install_hint

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalized (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_installs_what_its_hint_names(extra: str) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extra in declared
    assert sorted(_name(r) for r in declared[extra]) == sorted(_name(n) for n in EXTRAS[extra])


def test_the_hint() -> None:
    assert install_hint("redis") == "python3 -m pip install redis"
    assert install_hint("prometheus") == "python3 -m pip install prometheus_client"
    with pytest.raises(KeyError):
        install_hint("no-such-extra")


#: Files with such a hint that this test's author does not own, each with its fix; the test
#: fails on any other file, and on one of these once it is fixed (so the list stays true).
KNOWN: dict[str, str] = {}


def test_no_source_file_hints_at_pypi_stargate() -> None:
    """A hint to pip-install ``stargate[x]`` fetches the 2011 package: hints go through
    install_hint instead."""
    offenders = {
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "src" / "stargate").rglob("*.py"))
        if re.search(r"pip3? install\s+['\"]?stargate\[", path.read_text())
    }
    assert offenders == set(KNOWN), sorted(offenders)
