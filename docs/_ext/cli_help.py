"""An MkDocs hook: the command-line reference shows what ``stargate ... --help`` prints now.

A fenced block of language ``stargate-help`` holding arguments (``serve --help``) is replaced,
at build time, by the output of ``python -m stargate`` with those arguments, so the page can
never drift from the parser.  A command that fails fails the build.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from typing import Any

_BLOCK = re.compile(r"^```stargate-help\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def _help(arguments: str) -> str:
    argv = [sys.executable, "-m", "stargate", *shlex.split(arguments)]
    environment = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        argv, capture_output=True, text=True, env=environment, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"stargate {arguments} exited {result.returncode}: {result.stderr}")
    return f"```text\n$ stargate {arguments}\n{result.stdout.rstrip()}\n```"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _BLOCK.sub(lambda match: _help(match.group(1).strip()), markdown)
