"""The coverage gate: branch coverage of the whole package, and of the sans-I/O core alone.

``coverage_gate.py REPORT``, after ``pytest --cov=stargate --cov-report=json:REPORT``: exits 1
(naming the modules that fall short) unless the whole package reaches ``--total`` per cent
and every module of the sans-I/O core reaches ``--core`` per cent.  The core is where
correctness lives and tests are cheapest (a byte-in/event-out table per case), so it is held
to 100%.

``coverage_gate.py --own-tests`` runs each core module's own test module(s) alone and requires
them to cover it completely (websockets' discipline): a module covered only by accident, from
another module's tests, fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: The sans-I/O core: standard library only, no sockets, no asyncio (DESIGN: "Protocol core").
CORE = (
    "src/stargate/connection.py",
    "src/stargate/frames.py",
    "src/stargate/hixie.py",
    "src/stargate/masking.py",
    "src/stargate/headers.py",
    "src/stargate/events.py",
    "src/stargate/protocol.py",
    "src/stargate/limits.py",
    "src/stargate/errors.py",
    "src/stargate/extensions/permessage_deflate.py",
    "src/stargate/handshake/",
)


#: Each core module and the test modules that must cover it alone (tests mirror the package).
OWN_TESTS: dict[str, tuple[str, ...]] = {
    "stargate.connection": (
        "tests/test_connection.py",
        "tests/test_connection_deflate.py",
        "tests/test_connection_properties.py",
    ),
    "stargate.frames": ("tests/test_frames.py",),
    "stargate.hixie": ("tests/test_hixie.py",),
    "stargate.masking": ("tests/test_masking.py",),
    "stargate.headers": ("tests/test_headers.py",),
    "stargate.events": ("tests/test_events.py",),
    "stargate.protocol": ("tests/test_protocol.py",),
    "stargate.limits": ("tests/test_limits.py",),
    "stargate.errors": ("tests/test_errors.py",),
    "stargate.extensions.permessage_deflate": ("tests/extensions/test_permessage_deflate.py",),
    "stargate.handshake": ("tests/test_handshake.py",),
    "stargate.handshake.heads": ("tests/handshake/test_heads.py",),
    "stargate.handshake.origin": ("tests/handshake/test_origin.py",),
    "stargate.handshake.keys": ("tests/handshake/test_keys.py",),
    "stargate.handshake.server": ("tests/handshake/test_server.py",),
    "stargate.handshake.client": ("tests/handshake/test_client.py",),
}


def own_tests(threshold: float) -> list[str]:
    """Run each core module's own tests alone; the modules they leave short of
    ``threshold``."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        for module, tests in OWN_TESTS.items():
            report = Path(work) / f"{module}.json"
            command = [
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--cov=stargate", "--cov-branch", f"--cov-report=json:{report}",
                "--cov-report=", *tests,
            ]  # fmt: skip
            env = {**os.environ, "COVERAGE_FILE": str(Path(work) / ".coverage")}
            run = subprocess.run(command, capture_output=True, text=True, env=env)
            if run.returncode != 0:
                failures.append(f"{module}: its tests failed:\n{run.stdout[-2000:]}")
                continue
            path = module.replace(".", "/")
            files = json.loads(report.read_text())["files"]
            entry = next(
                (
                    e
                    for name, e in files.items()
                    if name.endswith((f"{path}.py", f"{path}/__init__.py"))
                ),
                None,
            )
            if entry is None:
                failures.append(f"{module}: not measured by {', '.join(tests)}")
                continue
            value = percent(entry["summary"])
            print(f"coverage: {module} by its own tests: {value:.2f}%")
            if value < threshold:
                failures.append(
                    f"{module} is at {value:.2f}% by its own tests ({', '.join(tests)}), "
                    f"under {threshold}% (missing lines {entry.get('missing_lines')}, "
                    f"branches {entry.get('missing_branches')})"
                )
    return failures


def percent(summary: dict[str, float]) -> float:
    """Branch coverage as coverage.py counts it: statements and branches together."""
    total = summary["num_statements"] + summary.get("num_branches", 0)
    covered = summary["covered_lines"] + summary.get("covered_branches", 0)
    return 100.0 if total == 0 else 100.0 * covered / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, nargs="?", help="coverage JSON report")
    parser.add_argument("--total", type=float, default=95.0)
    parser.add_argument("--core", type=float, default=100.0)
    parser.add_argument("--own-tests", action="store_true", help=own_tests.__doc__)
    args = parser.parse_args()
    if args.own_tests:
        shortfalls = own_tests(args.core)
        for shortfall in shortfalls:
            print(f"coverage gate: {shortfall}", file=sys.stderr)
        return 1 if shortfalls else 0
    if args.report is None:
        parser.error("a coverage JSON report is needed (or --own-tests)")
    data = json.loads(args.report.read_text())
    failures: list[str] = []
    total = percent(data["totals"])
    print(f"coverage: {total:.2f}% of the package (gate {args.total}%)")
    if total < args.total:
        failures.append(f"the package is at {total:.2f}%, under {args.total}%")
    core_files = 0
    for name, entry in sorted(data["files"].items()):
        name = name.replace("\\", "/")
        if not any(name.endswith(c) or (c.endswith("/") and c in name) for c in CORE):
            continue
        core_files += 1
        value = percent(entry["summary"])
        if value < args.core:
            missing = entry.get("missing_lines", [])
            branches = entry.get("missing_branches", [])
            failures.append(
                f"core module {name} is at {value:.2f}%, under {args.core}% "
                f"(missing lines {missing}, branches {branches})"
            )
    print(f"coverage: {core_files} core modules checked at {args.core}%")
    if core_files < len(CORE):
        failures.append(f"only {core_files} core modules in the report: was the core measured?")
    for failure in failures:
        print(f"coverage gate: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
