"""What the tests need from the machine, and the one rule for when it is missing.

CI installs every peer and component the tests use (``.ci/run``): there a missing one is a
failure, never a skip, so a run that tested less cannot pass for one that tested all.
Locally a missing one skips the test with the reason.  Every test module asks here.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

try:
    from stargate import _speedups as speedups
except ImportError:  # pragma: no cover - the extension is built wherever CI runs the tests
    speedups = None  # type: ignore[assignment]

__all__ = [
    "TEST_C",
    "in_ci",
    "make_certificate",
    "needs_c",
    "node_ws",
    "require_module",
    "speedups",
    "unavailable",
]

#: The major version of Node's ``ws`` the tests install (npm, on first use).
NODE_WS_VERSION = "8"


def in_ci() -> bool:
    """Whether CI runs the tests: ``CI`` set to anything but empty, ``0``, ``false``, ``no``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the test locally; fail it under CI, which must have what the test needs."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: this test must run, not skip)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, install: str = "") -> ModuleType:
    """Import ``name`` (an extra's package), or :func:`unavailable` without it; ``install``
    names what to install when that is not ``name`` itself."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = f"; python3 -m pip install {install}" if install else ""
        unavailable(f"{name} is not installed ({exc}{hint})")


#: Whether the C accelerator's differential tests run: they import it directly, so they
#: run under ``STARGATE_PURE_PYTHON=1`` too.  Without a built accelerator they skip locally;
#: under CI they run, and fail.
TEST_C = speedups is not None or in_ci()
needs_c = pytest.mark.skipif(not TEST_C, reason="the C accelerator is not built")


def make_certificate(directory: Path, days: int = 1) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1`` and its unencrypted key
    (P-256: quick to make), written to ``directory`` by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("the openssl command is not installed: cannot make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", str(days), "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def node_ws() -> tuple[str, Path]:
    """``node`` and the ``node_modules`` directory holding Node's ``ws`` (for ``NODE_PATH``).

    ``ws`` is installed with npm into a cache directory on first use.
    """
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (Debian's nodejs)")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    prefix = Path(base) / "stargate-tests" / "node"
    modules = prefix / "node_modules"
    if not (modules / "ws" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("npm is not installed (Debian's npm): cannot install Node's ws")
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
             f"ws@{NODE_WS_VERSION}"],
            capture_output=True,
            timeout=300,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            unavailable(f"npm install ws failed: {done.stderr.decode(errors='replace')[-500:]}")
    return node, modules
