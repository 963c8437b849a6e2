"""``python -m stargate`` runs the command line."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_stargate_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stargate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "{serve,echo,demo,client}" in result.stdout
