"""stargate.handshake, the package: what the seed's single module exported is all still there,
and the core stays sans-I/O.  Each module has its own tests in tests/handshake/."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import stargate.handshake as handshake

#: Every name the seed's stargate/handshake.py exported (its __all__, and WEBSOCKET_GUID).
SEED_NAMES = [
    "ALL_VERSIONS",
    "RFC_VERSIONS",
    "WEBSOCKET_GUID",
    "Accepted",
    "ClientAccepted",
    "ClientHandshake",
    "OriginPolicy",
    "Request",
    "Response",
    "ServerExtension",
    "accept",
    "accept_key",
    "detect_version",
    "hixie76_answer",
    "key3_length",
    "parse_request",
    "parse_response",
    "reject_response",
]

MODULES = ["heads", "origin", "keys", "server", "client"]
PACKAGE = Path(handshake.__file__).parent
#: What the core may import besides the standard library: other sans-I/O core modules.
CORE = {"errors", "headers", "protocol"}
#: Standard library modules that do I/O or concurrency: never in the core.
IO_MODULES = {"asyncio", "socket", "ssl", "selectors", "threading", "concurrent", "subprocess"}


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_seed_name_is_exported(name: str) -> None:
    assert name in handshake.__all__
    assert getattr(handshake, name) is not None


@pytest.mark.parametrize("module", MODULES)
def test_exports_are_the_modules_own_objects(module: str) -> None:
    submodule = importlib.import_module(f"stargate.handshake.{module}")
    for name in submodule.__all__:
        if name in handshake.__all__:
            assert getattr(handshake, name) is getattr(submodule, name)


def test_every_module_is_tested_and_short() -> None:
    files = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert files == sorted(MODULES)
    tests = Path(__file__).parent / "handshake"
    for name in files:
        assert (tests / f"test_{name}.py").is_file(), name
        assert len((PACKAGE / f"{name}.py").read_text().splitlines()) <= 600, name


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_only_the_standard_library(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = [alias.name.partition(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = [(node.module or "").partition(".")[0]]
        elif isinstance(node, ast.ImportFrom):
            # ``.x`` is the package itself; ``..x`` a module of stargate, which must be core.
            if node.level == 2:
                assert (node.module or "").partition(".")[0] in CORE, ast.unparse(node)
            else:
                assert node.level == 1, ast.unparse(node)
            continue
        else:
            continue
        for root in roots:
            if root == "__future__":
                continue
            assert root in sys.stdlib_module_names, ast.unparse(node)
            assert root not in IO_MODULES, ast.unparse(node)
