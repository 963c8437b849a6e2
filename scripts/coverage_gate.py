"""The coverage gate: branch coverage of the whole package, and of the sans-I/O core alone.

Run after ``pytest --cov=stargate --cov-branch --cov-report=json:<file>``; exits 1 (with the
modules that fall short) unless the whole package reaches ``--total`` per cent and every
module of the sans-I/O core reaches ``--core`` per cent.  The core is where correctness lives
and tests are cheapest (a byte-in/event-out table per case), so it is held to 100%.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def percent(summary: dict[str, float]) -> float:
    """Branch coverage as coverage.py counts it: statements and branches together."""
    total = summary["num_statements"] + summary.get("num_branches", 0)
    covered = summary["covered_lines"] + summary.get("covered_branches", 0)
    return 100.0 if total == 0 else 100.0 * covered / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, help="coverage JSON report")
    parser.add_argument("--total", type=float, default=95.0)
    parser.add_argument("--core", type=float, default=100.0)
    args = parser.parse_args()
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
