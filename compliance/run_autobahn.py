#!/usr/bin/env python3
"""Run the Autobahn TestSuite against stargate and gate on the result.

Modes (``--mode``):

``fuzzingclient``
    Test a *server*.  The harness starts ``--server-cmd`` (unless the server is already
    running), waits until ``--url`` accepts TCP connections, runs
    ``wstest -m fuzzingclient`` against it, then stops the server.

``fuzzingserver``
    Test a *client*.  The harness starts ``wstest -m fuzzingserver`` on ``--url``, runs
    ``--client-cmd`` (which must run every case: ``/getCaseCount``, then
    ``/runCase?case=N&agent=AGENT`` for N = 1..count), asks wstest to write its reports and
    stops it.

Either way the harness reads ``index.json``, prints result counts per section for both
``behavior`` and ``behaviorClose``, and exits

* 0 when every case is OK or INFORMATIONAL, or NON-STRICT and listed in ``--allowed``;
* 1 when any case is FAILED or UNIMPLEMENTED (either column), NON-STRICT and not allowed,
  or missing from the report;
* 2 when the run itself could not be done (no wstest, server did not start, timeout ...).

Standard library only; see compliance/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import quote, urlsplit

HERE = Path(__file__).resolve().parent
DEFAULT_AGENT = "stargate"
DEFAULT_URL = "ws://127.0.0.1:9001"

EXIT_OK = 0
EXIT_NONCONFORMANT = 1
EXIT_ERROR = 2

# Canonical result categories, best first.  Every raw value wstest writes maps onto one.
OK = "OK"
INFORMATIONAL = "INFORMATIONAL"
NON_STRICT = "NON-STRICT"
UNIMPLEMENTED = "UNIMPLEMENTED"
FAILED = "FAILED"
CATEGORIES = (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED)
SEVERITY = {OK: 0, INFORMATIONAL: 1, NON_STRICT: 2, UNIMPLEMENTED: 3, FAILED: 4}

# Raw values of ``behaviorClose`` beyond the five above (autobahntestsuite case/case.py).
# WRONG CODE: closed with a code outside the expected set (the HTML report colours it as
# non-strict).  FAILED BY CLIENT: wstest as the client had to drop the TCP connection because
# the server did not ("it is preferred that the server close the TCP connection").
# UNCLEAN: the spec requires a clean close here and it was not (the HTML report: failed).
RAW_TO_CATEGORY = {
    "OK": OK,
    "INFORMATIONAL": INFORMATIONAL,
    "NON-STRICT": NON_STRICT,
    "WRONG CODE": NON_STRICT,
    "FAILED BY CLIENT": NON_STRICT,
    "UNIMPLEMENTED": UNIMPLEMENTED,
    "FAILED": FAILED,
    "UNCLEAN": FAILED,
    "NO_CLOSE": FAILED,
}
# Raw values an entry in the allowed file may name.  FAILED/UNIMPLEMENTED cannot be allowed:
# leave such a case out with --exclude and say why in the README instead.
ALLOWABLE_RAW = frozenset(
    raw for raw, cat in RAW_TO_CATEGORY.items() if cat in (NON_STRICT, INFORMATIONAL)
)

SECTION_NAMES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}

# Runs inside wstest's own Python 2.7 to resolve case patterns the way wstest does.
CASE_RESOLVER = r"""
import json, sys
from autobahntestsuite.case import (Cases, CaseCategories, CaseSubCategories,
                                    CaseSetname, CaseBasename)
from autobahntestsuite.caseset import CaseSet
spec = json.loads(sys.stdin.read())
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
unknown = [c for c in spec["cases"] + spec["exclude-cases"]
           if "*" not in c and c not in cs.CasesIndices]
print(json.dumps({"unknown": unknown,
                  "cases": [] if unknown else cs.parseSpecCases(spec)}))
"""


class HarnessError(Exception):
    """The run could not be carried out (as opposed to: the peer is not conformant)."""


# --------------------------------------------------------------------------------------------
# Allowed-results document
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Allowance:
    pattern: str  # a case id, or an fnmatch pattern such as "6.4.*"
    results: frozenset[str]  # raw wstest values, upper case
    reason: str
    line: int

    def matches(self, case_id: str) -> bool:
        return fnmatch.fnmatchcase(case_id, self.pattern)


_TABLE_HEADER = ("case", "result", "reason")
_CASE_PATTERN = re.compile(r"^[0-9*][0-9.*?]*$")


def _table_cells(line: str) -> list[str] | None:
    stripped = line.strip()
    if not stripped.startswith("|"):
        return None
    body = stripped[1:-1] if stripped.endswith("|") and len(stripped) > 1 else stripped[1:]
    return [cell.strip().strip("`").strip() for cell in body.split("|")]


def parse_allowed(path: Path) -> list[Allowance]:
    """Read every Markdown table whose header is ``| case | result | reason |``.

    ``result`` names one or more raw wstest values (comma separated): NON-STRICT,
    WRONG CODE, FAILED BY CLIENT or INFORMATIONAL.  ``case`` is a case id or fnmatch
    pattern.  Rows of other tables and all prose are ignored.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"cannot read allowed file {path}: {exc}") from exc
    allowances: list[Allowance] = []
    in_table = False
    for number, line in enumerate(text.splitlines(), start=1):
        cells = _table_cells(line)
        if cells is None:
            in_table = False
            continue
        if tuple(c.lower() for c in cells[:3]) == _TABLE_HEADER:
            in_table = True
            continue
        if not in_table or all(set(c) <= set("-: ") for c in cells):
            continue  # another table, or the |---|---| delimiter row
        where = f"{path}:{number}"
        if len(cells) < 3:
            raise HarnessError(f"{where}: expected | case | result | reason |, got {line!r}")
        pattern, result_cell, reason = cells[0], cells[1], " | ".join(cells[2:]).strip()
        if not _CASE_PATTERN.match(pattern):
            raise HarnessError(f"{where}: {pattern!r} is not a case id or pattern like 6.4.*")
        results = frozenset(r.strip().upper() for r in result_cell.split(",") if r.strip())
        bad = sorted(results - ALLOWABLE_RAW)
        if not results or bad:
            raise HarnessError(
                f"{where}: result {result_cell!r} not allowable; use one or more of "
                f"{', '.join(sorted(ALLOWABLE_RAW))} (FAILED/UNIMPLEMENTED are never allowed)"
            )
        if not reason:
            raise HarnessError(f"{where}: case {pattern} needs a reason")
        allowances.append(Allowance(pattern, results, reason, number))
    return allowances


# --------------------------------------------------------------------------------------------
# Report analysis
# --------------------------------------------------------------------------------------------


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in case_id.split("."))


def section_of(case_id: str) -> str:
    return case_id.split(".", 1)[0]


@dataclasses.dataclass
class CaseResult:
    case_id: str
    behavior: str  # raw
    behavior_close: str  # raw
    remote_close_code: int | None
    duration_ms: int
    report_file: str | None

    @property
    def category(self) -> str:
        return RAW_TO_CATEGORY.get(self.behavior, FAILED)

    @property
    def close_category(self) -> str:
        return RAW_TO_CATEGORY.get(self.behavior_close, FAILED)

    @property
    def worst(self) -> str:
        return max(self.category, self.close_category, key=SEVERITY.__getitem__)

    def non_strict_raw(self) -> set[str]:
        found = set()
        if self.category == NON_STRICT:
            found.add(self.behavior)
        if self.close_category == NON_STRICT:
            found.add(self.behavior_close)
        return found


@dataclasses.dataclass
class Verdict:
    case_id: str
    kind: str  # FAILED, UNIMPLEMENTED, NON-STRICT, MISSING
    detail: str


@dataclasses.dataclass
class Analysis:
    agent: str
    results: list[CaseResult]
    missing: list[str]
    offences: list[Verdict]
    allowed_hits: list[tuple[CaseResult, Allowance]]
    stale_allowances: list[tuple[Allowance, list[str]]]
    section_wall: dict[str, float]

    @property
    def passed(self) -> bool:
        return not self.offences


def load_index(reports: Path, agent: str | None) -> tuple[str, list[CaseResult]]:
    index_path = reports / "index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HarnessError(f"{index_path} does not exist: wstest wrote no report") from exc
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {index_path}: {exc}") from exc
    if not isinstance(index, dict) or not index:
        raise HarnessError(f"{index_path} holds no agent")
    if (agent is None or agent not in index) and len(index) == 1:
        agent = next(iter(index))
    if agent is None or agent not in index:
        raise HarnessError(f"{index_path} has no agent {agent!r} (it has {sorted(index)})")
    results = []
    for case_id, entry in index[agent].items():
        code = entry.get("remoteCloseCode")
        results.append(
            CaseResult(
                case_id=case_id,
                behavior=str(entry.get("behavior")),
                behavior_close=str(entry.get("behaviorClose")),
                remote_close_code=code if isinstance(code, int) else None,
                duration_ms=int(entry.get("duration") or 0),
                report_file=entry.get("reportfile"),
            )
        )
    results.sort(key=lambda r: case_key(r.case_id))
    return agent, results


def _case_report(reports: Path, result: CaseResult) -> dict[str, Any]:
    if not result.report_file:
        return {}
    try:
        data = json.loads((reports / result.report_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _shorten(text: object, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(reports: Path, result: CaseResult) -> str:
    """What the report says about a case, in one line."""
    detail = _case_report(reports, result)
    parts = [
        f"behavior={result.behavior}",
        f"behaviorClose={result.behavior_close}",
        f"remoteCloseCode={result.remote_close_code}",
    ]
    if result.category != OK and detail.get("result"):
        parts.append(f"result: {_shorten(detail['result'])}")
    if result.close_category != OK and detail.get("resultClose"):
        parts.append(f"resultClose: {_shorten(detail['resultClose'])}")
    if detail.get("description"):
        parts.append(f"case: {_shorten(detail['description'], 160)}")
    if result.report_file:
        parts.append(f"report: {reports / result.report_file}")
    return "; ".join(parts)


def analyze(
    reports: Path,
    agent: str | None,
    allowances: Sequence[Allowance],
    expected: Sequence[str] | None,
    section_wall: dict[str, float] | None = None,
) -> Analysis:
    agent, results = load_index(reports, agent)
    present = {r.case_id for r in results}
    missing = sorted(set(expected or ()) - present, key=case_key)
    offences: list[Verdict] = []
    allowed_hits: list[tuple[CaseResult, Allowance]] = []
    used: set[int] = set()
    for result in results:
        worst = result.worst
        if worst in (FAILED, UNIMPLEMENTED):
            offences.append(Verdict(result.case_id, worst, describe(reports, result)))
        elif worst == NON_STRICT:
            raws = result.non_strict_raw()
            matching = [a for a in allowances if a.matches(result.case_id)]
            contributing = [a for a in matching if a.results & raws]
            covered = frozenset().union(*(a.results for a in matching))
            if matching and raws <= covered:
                allowed_hits.append((result, contributing[0]))
                used.update(id(a) for a in contributing)
            else:
                hint = ""
                if matching:
                    listed = ", ".join(sorted(covered))
                    lines = ", ".join(str(a.line) for a in matching)
                    hint = f" [allowed file line {lines} lists only {listed}]"
                offences.append(
                    Verdict(result.case_id, NON_STRICT, describe(reports, result) + hint)
                )
    for case_id in missing:
        offences.append(Verdict(case_id, "MISSING", "requested but not in the report"))
    offences.sort(key=lambda v: case_key(v.case_id))
    # Allowances that matched cases of this run which now pass: candidates for removal.
    stale = []
    for allowance in allowances:
        if id(allowance) in used:
            continue
        now_clean = [
            r.case_id for r in results if allowance.matches(r.case_id) and r.worst in (OK,)
        ]
        if now_clean:
            stale.append((allowance, now_clean))
    return Analysis(agent, results, missing, offences, allowed_hits, stale, section_wall or {})


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _sections(results: Sequence[CaseResult]) -> list[str]:
    return sorted({section_of(r.case_id) for r in results}, key=int)


def _fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def count_table(
    analysis: Analysis, column: str, markdown: bool
) -> tuple[list[str], list[list[str]]]:
    """Rows of per-section counts; ``column`` is 'behavior', 'behaviorClose' or 'case'."""

    def pick(r: CaseResult) -> str:
        if column == "behavior":
            return r.category
        if column == "behaviorClose":
            return r.close_category
        return r.worst

    header = ["section", "name", "cases", *CATEGORIES, "case time"]
    if analysis.section_wall:
        header.append("wall time")
    rows: list[list[str]] = []
    groups: list[tuple[str, str, list[CaseResult]]] = [
        (s, SECTION_NAMES.get(s, ""), [r for r in analysis.results if section_of(r.case_id) == s])
        for s in _sections(analysis.results)
    ]
    groups.append(("all", "", list(analysis.results)))
    for section, name, members in groups:
        counts = Counter(pick(r) for r in members)
        row = [section, name, str(len(members))]
        row += [str(counts.get(c, 0)) for c in CATEGORIES]
        row.append(_fmt_seconds(sum(r.duration_ms for r in members) / 1000))
        if analysis.section_wall:
            wall = (
                sum(analysis.section_wall.values())
                if section == "all"
                else analysis.section_wall.get(section)
            )
            row.append("" if wall is None else _fmt_seconds(wall))
        rows.append(row)
    if markdown:
        rows = [[f"**{c}**" if row[0] == "all" and c else c for c in row] for row in rows]
    return header, rows


def render_text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def render_md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def raw_breakdown(analysis: Analysis) -> list[str]:
    """Raw behaviorClose values that were folded into a category, e.g. WRONG CODE."""
    notes = []
    for attr, label in (("behavior", "behavior"), ("behavior_close", "behaviorClose")):
        folded: dict[str, list[str]] = {}
        for r in analysis.results:
            raw = getattr(r, attr)
            if raw not in CATEGORIES:
                folded.setdefault(raw, []).append(r.case_id)
        for raw, cases in sorted(folded.items()):
            shown = ", ".join(cases[:12]) + (" ..." if len(cases) > 12 else "")
            category = RAW_TO_CATEGORY.get(raw, FAILED)
            notes.append(f"{label} {raw!r} counted as {category}: {len(cases)} ({shown})")
    return notes


def summary_line(analysis: Analysis) -> str:
    counts = Counter(r.worst for r in analysis.results)
    allowed = len(analysis.allowed_hits)
    not_allowed = counts.get(NON_STRICT, 0) - allowed
    parts = [f"{counts.get(OK, 0)} OK"]
    if counts.get(INFORMATIONAL):
        parts.append(f"{counts[INFORMATIONAL]} INFORMATIONAL")
    parts.append(f"{allowed} NON-STRICT (allowed)")
    if not_allowed:
        parts.append(f"{not_allowed} NON-STRICT (NOT allowed)")
    if counts.get(UNIMPLEMENTED):
        parts.append(f"{counts[UNIMPLEMENTED]} UNIMPLEMENTED")
    parts.append(f"{counts.get(FAILED, 0)} FAILED")
    if analysis.missing:
        parts.append(f"{len(analysis.missing)} MISSING")
    verdict = "PASS" if analysis.passed else "FAIL"
    return f"autobahn: {verdict}: {len(analysis.results)} cases: {', '.join(parts)}"


def print_report(analysis: Analysis, reports: Path, out: IO[str]) -> None:
    def emit(text: str = "") -> None:
        print(text, file=out)

    emit(f"Autobahn report for agent {analysis.agent!r}: {reports / 'index.json'}")
    for column in ("behavior", "behaviorClose"):
        emit()
        emit(f"{column} per section:")
        emit(render_text_table(*count_table(analysis, column, markdown=False)))
    notes = raw_breakdown(analysis)
    if notes:
        emit()
        for note in notes:
            emit(f"note: {note}")
    if analysis.allowed_hits:
        emit()
        emit(f"NON-STRICT cases allowed by --allowed ({len(analysis.allowed_hits)}):")
        for result, allowance in analysis.allowed_hits:
            raws = "/".join(sorted(result.non_strict_raw()))
            emit(f"  {result.case_id} {raws}: {allowance.reason}")
    for allowance, cases in analysis.stale_allowances:
        emit(
            f"note: allowed-file line {allowance.line} ({allowance.pattern}) was not needed "
            f"this run, {', '.join(cases[:8])}{' ...' if len(cases) > 8 else ''} passed "
            "(remove it unless the result is timing-dependent)"
        )
    if analysis.offences:
        emit()
        emit(f"OFFENDING CASES ({len(analysis.offences)}):")
        for verdict in analysis.offences:
            emit(f"  {verdict.kind} {verdict.case_id}: {verdict.detail}")
    emit()
    emit(summary_line(analysis))


def write_summary_md(analysis: Analysis, path: Path, title: str) -> None:
    lines = [f"# {title}", "", f"`{summary_line(analysis)}`", ""]
    lines += ["## Per section (worst of behavior and behaviorClose)", ""]
    lines.append(render_md_table(*count_table(analysis, "case", markdown=True)))
    for column in ("behavior", "behaviorClose"):
        lines += ["", f"## `{column}`", ""]
        lines.append(render_md_table(*count_table(analysis, column, markdown=True)))
    notes = raw_breakdown(analysis)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    if analysis.allowed_hits:
        lines += [
            "",
            "## Allowed NON-STRICT cases",
            "",
            "| case | result | reason |",
            "|---|---|---|",
        ]
        for result, allowance in analysis.allowed_hits:
            raws = ", ".join(sorted(result.non_strict_raw()))
            lines.append(f"| {result.case_id} | {raws} | {allowance.reason} |")
    if analysis.offences:
        lines += ["", "## Offending cases", "", "| case | verdict | detail |", "|---|---|---|"]
        for v in analysis.offences:
            lines.append(f"| {v.case_id} | {v.kind} | {v.detail.replace('|', '/')} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Processes, ports, wstest
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"run_autobahn: {message}", flush=True)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int


def parse_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HarnessError(f"--url must look like ws://127.0.0.1:9001, got {url!r}")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return Endpoint(url, parts.hostname, port)


def port_accepts(endpoint: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (no output)"


class Managed:
    """A child process in its own session, so that its whole process group can be stopped."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str] | str,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        pipe_output: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("w", encoding="utf-8")
        shell = isinstance(argv, str)
        self.proc = subprocess.Popen(
            argv,
            shell=shell,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_output else self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def write_log(self, line: str) -> None:
        self._log.write(line)
        self._log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """Terminate (see below) and close the output files; return the exit code."""
        self.terminate(grace)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # The leader exited; children it left in the group still go.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)


def wait_for_port(endpoint: Endpoint, timeout: float, process: Managed | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise HarnessError(
                f"{process.name} exited with code {process.proc.returncode} before "
                f"{endpoint.host}:{endpoint.port} accepted connections; its output "
                f"({process.log_path}):\n{tail(process.log_path)}"
            )
        if port_accepts(endpoint):
            return
        time.sleep(0.1)
    where = f"; its output ({process.log_path}):\n{tail(process.log_path)}" if process else ""
    raise HarnessError(
        f"{endpoint.host}:{endpoint.port} did not accept connections within {timeout:g}s{where}"
    )


def find_wstest(explicit: str | None) -> Path:
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    else:
        venv = os.environ.get("AUTOBAHN_VENV") or str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "stargate"
            / "autobahn-venv"
        )
        candidates.append(str(Path(venv) / "bin" / "wstest"))
        on_path = shutil.which("wstest")
        if on_path:
            candidates.append(on_path)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise HarnessError(
        f"wstest not found (looked at {', '.join(candidates)}); run compliance/install.sh, "
        "or pass --install, or point --wstest at it"
    )


def run_install(wstest_hint: str | None) -> None:
    if wstest_hint:
        return
    log("running compliance/install.sh")
    code = subprocess.call(["bash", str(HERE / "install.sh")], stdout=sys.stderr)
    if code != 0:
        raise HarnessError(f"compliance/install.sh failed with exit code {code}")


def wstest_python(wstest: Path) -> str | None:
    """The interpreter wstest runs with: a sibling ``python`` or its shebang."""
    sibling = wstest.parent / "python"
    if sibling.exists():
        return str(sibling)
    try:
        with wstest.open("rb") as f:
            first = f.readline().decode("utf-8", "replace").strip()
    except OSError:
        return None
    if first.startswith("#!"):
        words = shlex.split(first[2:])
        return words[0] if words else None
    return None


def resolve_cases(wstest: Path, cases: list[str], exclude: list[str]) -> list[str] | None:
    """Case ids wstest will run for these patterns, or None when that cannot be determined."""
    python = wstest_python(wstest)
    if python is None:
        return None
    try:
        proc = subprocess.run(
            [python, "-c", CASE_RESOLVER],
            input=json.dumps({"cases": cases, "exclude-cases": exclude}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        data = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        log("warning: could not list the cases up front; missing cases will not be detected")
        return None
    if data["unknown"]:
        raise HarnessError(f"unknown case id(s): {', '.join(data['unknown'])}")
    resolved: list[str] = data["cases"]
    if not resolved:
        raise HarnessError(f"no case matches --cases {cases} minus --exclude {exclude}")
    return resolved


_RUNNING = re.compile(r"Running test case ID (\S+)")
PROGRESS_EVERY = 60.0  # seconds between progress lines within a long section


def run_wstest_streaming(
    wstest_proc: Managed, total: int | None, timeout: float, watch: Managed | None
) -> dict[str, float]:
    """Copy wstest's output to its log, print a line per section, enforce the timeout.

    Returns the observed wall time per section (first case start to next section start).
    """
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        log(f"wstest still running after {timeout:g}s: stopping it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(wstest_proc.proc.pid, signal.SIGTERM)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    section_start: dict[str, float] = {}
    walls: dict[str, float] = {}
    current: str | None = None
    seen = 0
    last_progress = started
    assert wstest_proc.proc.stdout is not None
    try:
        for line in wstest_proc.proc.stdout:
            wstest_proc.write_log(line)
            match = _RUNNING.search(line)
            if not match:
                continue
            seen += 1
            now = time.monotonic()
            section = section_of(match.group(1))
            if section == current and now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                of_total = f" of {total}" if total else ""
                log(
                    f"[{_fmt_seconds(now - started)}] section {section}: case {seen}{of_total} "
                    f"({match.group(1)})"
                )
            if section != current:
                last_progress = now
                if current is not None:
                    walls[current] = now - section_start[current]
                    log(f"section {current} done in {_fmt_seconds(walls[current])}")
                current = section
                section_start[section] = now
                of_total = f" of {total}" if total else ""
                log(
                    f"[{_fmt_seconds(now - started)}] section {section} "
                    f"({SECTION_NAMES.get(section, '?')}), case {seen}{of_total}"
                )
            if watch is not None and not watch.alive():
                log(f"warning: {watch.name} exited (code {watch.proc.returncode}) during the run")
                watch = None
        wstest_proc.proc.wait()
    finally:
        timer.cancel()
    if current is not None:
        walls[current] = time.monotonic() - section_start[current]
        log(f"section {current} done in {_fmt_seconds(walls[current])}")
    log(
        f"wstest finished in {_fmt_seconds(time.monotonic() - started)} "
        f"(exit code {wstest_proc.proc.returncode})"
    )
    if timed_out.is_set():
        raise HarnessError(f"wstest timed out after {timeout:g}s; log: {wstest_proc.log_path}")
    return walls


def prepare_reports(reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    # Never analyse a previous run's results by accident.
    for stale in reports.glob("*.json"):
        if stale.name == "index.json" or "_case_" in stale.name:
            stale.unlink()
    for stale in reports.glob("*_case_*.html"):
        stale.unlink()


def load_template(name: str) -> dict[str, Any]:
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise HarnessError(f"{HERE / name} is not a JSON object")
    return data


def wstest_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines as they happen
    env["PYTHONWARNINGS"] = "ignore"  # Python 2 deprecation chatter
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def fill(template: str, endpoint: Endpoint, agent: str) -> str:
    """Substitute {url} {host} {port} {agent} in a user command (values shell-quoted)."""
    values = {
        "url": shlex.quote(endpoint.url),
        "host": shlex.quote(endpoint.host),
        "port": str(endpoint.port),
        "agent": shlex.quote(agent),
    }
    return re.sub(r"\{(url|host|port|agent)\}", lambda m: values[m.group(1)], template)


@dataclasses.dataclass
class RunOutcome:
    expected: list[str] | None
    section_wall: dict[str, float]


def run_fuzzingclient(
    args: argparse.Namespace, wstest: Path, reports: Path, cases: list[str], exclude: list[str]
) -> RunOutcome:
    endpoint = parse_url(args.url)
    expected = resolve_cases(wstest, cases, exclude)
    spec = load_template("fuzzingclient.json")
    server_entry = dict(spec.get("servers", [{}])[0])
    server_entry.update({"agent": args.agent, "url": endpoint.url})
    spec.update(
        {
            "outdir": str(reports),
            "servers": [server_entry],
            "cases": cases,
            "exclude-cases": exclude,
        }
    )
    spec_path = reports / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=3) + "\n", encoding="utf-8")

    server: Managed | None = None
    try:
        if args.server_cmd:
            if port_accepts(endpoint):
                raise HarnessError(
                    f"something already listens on {endpoint.host}:{endpoint.port}; stop it, "
                    "pick another --url, or leave out --server-cmd to test that server"
                )
            command = fill(args.server_cmd, endpoint, args.agent)
            log(f"starting server under test: {command}")
            server = Managed("server under test", command, reports / "server.log")
        wait_for_port(endpoint, args.startup_timeout, server)
        count = f"{len(expected)} cases" if expected is not None else "cases"
        log(f"running wstest -m fuzzingclient: {count} against {endpoint.url}")
        wstest_proc = Managed(
            "wstest",
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
            reports / "wstest.log",
            cwd=reports,
            env=wstest_env(),
            pipe_output=True,
        )
        try:
            walls = run_wstest_streaming(
                wstest_proc, len(expected) if expected else None, args.timeout, server
            )
        finally:
            wstest_proc.stop()
        if server is not None and not server.alive():
            log(
                f"warning: the server under test exited with code {server.proc.returncode} "
                f"before the harness stopped it; its output ({server.log_path}):\n"
                f"{tail(server.log_path)}"
            )
    finally:
        if server is not None:
            server.stop()
    return RunOutcome(expected, walls)


def request_reports(endpoint: Endpoint, agent: str, timeout: float = 120.0) -> None:
    """Open ``/updateReports?agent=..`` on wstest's fuzzingserver and wait until it is done.

    wstest writes the reports when that connection opens, then sends a close frame.  A bare
    RFC 6455 client handshake is enough; the close frame is awaited and answered.  (wstest's
    ``shutdownOnComplete=true`` is not used: it stops the reactor so abruptly that the
    handshake response can be lost; the harness stops wstest itself afterwards.)
    """
    if endpoint.url.startswith("wss:"):
        raise HarnessError("fuzzingserver over wss:// is not supported by this harness")
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request = (
        f"GET /updateReports?agent={quote(agent)} HTTP/1.1\r\n"
        f"Host: {endpoint.host}:{endpoint.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
        sock.sendall(request.encode("ascii"))
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                raise HarnessError("wstest closed the /updateReports connection early")
            received += chunk
        head, _, frames = received.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if status.split()[1:2] != ["101"]:
            raise HarnessError(f"/updateReports was refused: {status}")
        # Wait for wstest's close frame (sent after the reports are written), then answer it.
        while len(frames) < 2:
            chunk = sock.recv(4096)
            if not chunk:
                return
            frames += chunk
        if frames[0] & 0x0F == 0x8:
            with contextlib.suppress(OSError):
                sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))  # masked empty close


def run_fuzzingserver(
    args: argparse.Namespace, wstest: Path, reports: Path, cases: list[str], exclude: list[str]
) -> RunOutcome:
    if not args.client_cmd:
        raise HarnessError("--mode fuzzingserver needs --client-cmd")
    endpoint = parse_url(args.url)
    if endpoint.host not in ("127.0.0.1", "localhost", "::1"):
        raise HarnessError("fuzzingserver listens on this machine only: use a loopback --url")
    expected = resolve_cases(wstest, cases, exclude)
    spec = load_template("fuzzingserver.json")
    spec.update(
        {"url": endpoint.url, "outdir": str(reports), "cases": cases, "exclude-cases": exclude}
    )
    spec_path = reports / "fuzzingserver.json"
    spec_path.write_text(json.dumps(spec, indent=3) + "\n", encoding="utf-8")
    if port_accepts(endpoint):
        raise HarnessError(f"something already listens on {endpoint.host}:{endpoint.port}")

    log(f"starting wstest -m fuzzingserver on {endpoint.url}")
    fuzzer = Managed(
        "wstest fuzzingserver",
        [str(wstest), "-m", "fuzzingserver", "-s", str(spec_path), "--webport", "0"],
        reports / "wstest.log",
        cwd=reports,
        env=wstest_env(),
        pipe_output=True,
    )
    walls: dict[str, float] = {}
    try:
        wait_for_port(endpoint, args.startup_timeout, fuzzer)
        command = fill(args.client_cmd, endpoint, args.agent)
        env = dict(os.environ, AUTOBAHN_URL=endpoint.url, AUTOBAHN_AGENT=args.agent)
        log(f"running client under test: {command}")
        client = Managed("client under test", command, reports / "client.log", env=env)
        result: dict[str, dict[str, float]] = {}
        reader = threading.Thread(
            target=lambda: result.setdefault(
                "walls",
                run_wstest_streaming(
                    fuzzer, len(expected) if expected else None, args.timeout, None
                ),
            ),
            daemon=True,
        )
        reader.start()
        try:
            client.proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"client command still running after {args.timeout:g}s") from exc
        finally:
            code = client.stop()
        log(f"client under test exited with code {code}; output in {client.log_path}")
        if code != 0:
            log(f"client output:\n{tail(client.log_path)}")
        if not fuzzer.alive():
            raise HarnessError(f"wstest fuzzingserver died; log:\n{tail(fuzzer.log_path)}")
        log("asking wstest to write its reports, then stopping it")
        request_reports(endpoint, args.agent)
        fuzzer.terminate()
        reader.join(timeout=30)
        walls = result.get("walls", {})
    finally:
        fuzzer.stop()
    return RunOutcome(expected, walls)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def split_patterns(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite (wstest) and gate on its report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "exit status: 0 conformant, 1 not conformant (FAILED/UNIMPLEMENTED/unallowed\n"
            "NON-STRICT/missing case), 2 the run could not be done.\n"
            "In --server-cmd and --client-cmd, {url} {host} {port} {agent} are substituted."
        ),
    )
    parser.add_argument(
        "--mode",
        choices=("fuzzingclient", "fuzzingserver"),
        default="fuzzingclient",
        help="fuzzingclient tests a server; fuzzingserver tests a client",
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="fuzzingclient: where the server under test listens; "
        "fuzzingserver: where wstest listens (default %(default)s)",
    )
    parser.add_argument(
        "--server-cmd",
        help="shell command starting the server under test; without it, "
        "an already running server at --url is tested",
    )
    parser.add_argument(
        "--client-cmd",
        help="fuzzingserver: shell command running the client under test "
        "against {url} as {agent} (also in $AUTOBAHN_URL/$AUTOBAHN_AGENT)",
    )
    parser.add_argument(
        "--cases",
        action="append",
        help='comma separated case ids/patterns, e.g. "1.*,2.*" (default: *)',
    )
    parser.add_argument(
        "--exclude",
        action="append",
        help='comma separated case ids/patterns to leave out, e.g. "12.*,13.*"',
    )
    parser.add_argument(
        "--agent", default=DEFAULT_AGENT, help="agent name in the report (default %(default)s)"
    )
    parser.add_argument(
        "--reports",
        type=Path,
        help="directory for the spec, logs and wstest's reports "
        "(default compliance/reports/<mode>)",
    )
    parser.add_argument(
        "--allowed",
        type=Path,
        help="Markdown file with a | case | result | reason | table of "
        "accepted NON-STRICT/INFORMATIONAL results",
    )
    parser.add_argument("--summary-md", type=Path, help="write the summary tables here")
    parser.add_argument(
        "--wstest",
        help="wstest executable (default: $AUTOBAHN_VENV/bin/wstest, "
        "~/.cache/stargate/autobahn-venv/bin/wstest, PATH)",
    )
    parser.add_argument(
        "--install", action="store_true", help="run compliance/install.sh first (idempotent)"
    )
    parser.add_argument(
        "--analyze-only",
        action="store_true",
        help="do not run anything: analyse the index.json already in --reports",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the port to accept (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds wstest (and the client) may run (default %(default)s)",
    )
    return parser


def fail(message: str) -> NoReturn:
    print(f"run_autobahn: ERROR: {message}", file=sys.stderr, flush=True)
    print("autobahn: ERROR: the run could not be completed", flush=True)
    sys.exit(EXIT_ERROR)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """CI cancels with SIGTERM: unwind through the finally blocks that stop our children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = split_patterns(args.cases) or ["*"]
    exclude = split_patterns(args.exclude)
    reports: Path = (args.reports or HERE / "reports" / args.mode).resolve()
    try:
        allowances = parse_allowed(args.allowed) if args.allowed else []
        outcome = RunOutcome(None, {})
        if not args.analyze_only:
            if args.install:
                run_install(args.wstest)
            wstest = find_wstest(args.wstest)
            prepare_reports(reports)
            runner = run_fuzzingclient if args.mode == "fuzzingclient" else run_fuzzingserver
            with sigterm_as_interrupt():
                outcome = runner(args, wstest, reports, cases, exclude)
        analysis = analyze(reports, args.agent, allowances, outcome.expected, outcome.section_wall)
    except HarnessError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    print()
    print_report(analysis, reports, sys.stdout)
    if args.summary_md:
        title = f"Autobahn {args.mode} results: {analysis.agent}"
        write_summary_md(analysis, args.summary_md, title)
    return EXIT_OK if analysis.passed else EXIT_NONCONFORMANT


if __name__ == "__main__":
    sys.exit(main())
