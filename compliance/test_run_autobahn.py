"""Offline tests of the report analysis in run_autobahn.py (no wstest needed).

Run: python3 -m pytest compliance/test_run_autobahn.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compliance import run_autobahn as ra

ALLOWED_MD = """\
# Conformance

Prose is ignored, and so are other tables:

| option | value |
|--------|-------|
| 1.1.1  | nope  |

| case | result | reason |
|------|--------|--------|
| 3.2 | NON-STRICT | fails fast before echoing |
| `6.4.*` | NON-STRICT, WRONG CODE | UTF-8 checked per message |
| 7.9.* | INFORMATIONAL | undefined by the spec |
| 7.7.* | NON-STRICT | split over two rows |
| 7.7.1 | WRONG CODE | the second row |
"""


def write_index(reports: Path, cases: dict[str, tuple[str, str]], agent: str = "stargate") -> None:
    reports.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, object]] = {}
    for case_id, (behavior, close) in cases.items():
        name = f"{agent}_case_{case_id.replace('.', '_')}.json"
        index[case_id] = {
            "behavior": behavior,
            "behaviorClose": close,
            "duration": 5,
            "remoteCloseCode": 1000,
            "reportfile": name,
        }
        detail = {
            "result": f"result of {case_id}",
            "resultClose": "close text",
            "description": f"case {case_id}",
        }
        (reports / name).write_text(json.dumps(detail))
    (reports / "index.json").write_text(json.dumps({agent: index}))


def test_parse_allowed(tmp_path: Path) -> None:
    path = tmp_path / "allowed.md"
    path.write_text(ALLOWED_MD)
    allowances = ra.parse_allowed(path)
    assert [a.pattern for a in allowances] == ["3.2", "6.4.*", "7.9.*", "7.7.*", "7.7.1"]
    assert allowances[1].results == {"NON-STRICT", "WRONG CODE"}
    assert allowances[1].matches("6.4.3") and not allowances[1].matches("6.5.1")
    assert allowances[0].line == 11


@pytest.mark.parametrize(
    "row, message",
    [
        ("| 7.1.5 | FAILED | no |", "never allowed"),
        ("| 3.2 | NON-STRICT |  |", "needs a reason"),
        ("| three | NON-STRICT | x |", "not a case id"),
    ],
)
def test_parse_allowed_rejects(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "allowed.md"
    path.write_text("| case | result | reason |\n|---|---|---|\n" + row + "\n")
    with pytest.raises(ra.HarnessError, match=message):
        ra.parse_allowed(path)


def test_analysis_gates(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write_index(
        reports,
        {
            "1.1.1": ("OK", "OK"),
            "3.2": ("NON-STRICT", "OK"),  # allowed
            "3.3": ("NON-STRICT", "OK"),  # not allowed
            "6.4.1": ("NON-STRICT", "WRONG CODE"),  # allowed, both raw values listed
            "7.1.5": ("OK", "WRONG CODE"),  # WRONG CODE counts as non-strict, not allowed
            "7.9.1": ("INFORMATIONAL", "INFORMATIONAL"),
            "9.1.1": ("OK", "UNCLEAN"),  # UNCLEAN counts as failed
            "12.1.1": ("UNIMPLEMENTED", "UNIMPLEMENTED"),
            "7.7.1": ("NON-STRICT", "WRONG CODE"),  # allowed by two entries together
            "7.7.2": ("OK", "WRONG CODE"),  # 7.7.* covers NON-STRICT only
        },
    )
    path = tmp_path / "allowed.md"
    path.write_text(ALLOWED_MD)
    analysis = ra.analyze(
        reports,
        "stargate",
        ra.parse_allowed(path),
        expected=[
            "1.1.1",
            "3.2",
            "3.3",
            "6.4.1",
            "7.1.5",
            "7.9.1",
            "9.1.1",
            "12.1.1",
            "13.1.1",
            "7.7.1",
            "7.7.2",
        ],
    )
    kinds = {v.case_id: v.kind for v in analysis.offences}
    assert kinds == {
        "3.3": "NON-STRICT",
        "7.1.5": "NON-STRICT",
        "9.1.1": "FAILED",
        "12.1.1": "UNIMPLEMENTED",
        "13.1.1": "MISSING",
        "7.7.2": "NON-STRICT",
    }
    assert [r.case_id for r, _ in analysis.allowed_hits] == ["3.2", "6.4.1", "7.7.1"]
    assert "lists only NON-STRICT" in next(
        v.detail for v in analysis.offences if v.case_id == "7.7.2"
    )
    assert "result of 3.3" in next(v.detail for v in analysis.offences if v.case_id == "3.3")
    assert not analysis.passed
    line = ra.summary_line(analysis)
    assert line.startswith(
        "autobahn: FAIL: 10 cases: 1 OK, 1 INFORMATIONAL, 3 NON-STRICT (allowed)"
    )
    assert "3 NON-STRICT (NOT allowed)" in line and "1 FAILED" in line and "1 MISSING" in line


def test_main_analyze_only_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "r"
    write_index(reports, {"1.1.1": ("OK", "OK"), "3.2": ("NON-STRICT", "OK")}, agent="other")
    allowed = tmp_path / "allowed.md"
    allowed.write_text(ALLOWED_MD)
    summary = tmp_path / "summary.md"
    code = ra.main(
        [
            "--analyze-only",
            "--reports",
            str(reports),
            "--allowed",
            str(allowed),
            "--summary-md",
            str(summary),
        ]
    )
    out = capsys.readouterr().out
    assert code == ra.EXIT_OK
    assert "autobahn: PASS: 2 cases: 1 OK, 1 NON-STRICT (allowed), 0 FAILED" in out
    assert "| **all** |" in summary.read_text()
    assert ra.main(["--analyze-only", "--reports", str(reports)]) == ra.EXIT_NONCONFORMANT


def test_main_missing_report_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        ra.main(["--analyze-only", "--reports", str(tmp_path)])
    assert exc.value.code == ra.EXIT_ERROR


def test_shipped_documents_parse() -> None:
    here = Path(ra.__file__).parent
    assert ra.parse_allowed(here / "CONFORMANCE.md") == []
    reference = ra.parse_allowed(here / "reference-allowed.md")
    assert {a.pattern for a in reference} >= {"3.2", "4.1.*", "5.15", "6.4.*"}
