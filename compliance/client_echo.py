"""The stargate client under test for Autobahn's fuzzing server (``wstest -m fuzzingserver``).

It follows wstest's client protocol: ask ``/getCaseCount``, then for every case N connect to
``/runCase?case=N&agent=AGENT`` and echo each message back (text as text, binary as binary)
until wstest closes, then ask ``/updateReports?agent=AGENT``.  Run by the harness::

    python3 compliance/run_autobahn.py --mode fuzzingserver \\
        --client-cmd "python3 compliance/client_echo.py {url} {agent}" \\
        --allowed compliance/CONFORMANCE-client.md

Settings differ from the defaults only where the test suite needs it: section 9 sends
messages of up to 16 MiB (the default limit is 1 MiB), and keepalive is off so that no ping
of ours interleaves with a case's expected frames.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import quote

import stargate
from stargate.client import ConnectError
from stargate.errors import ConnectionClosed
from stargate.limits import Limits, MiB

LIMITS = Limits(max_message_size=32 * MiB, max_frame_size=32 * MiB)
CASE_TIMEOUT = 300.0


async def case_count(url: str) -> int:
    async with stargate.connect(f"{url}/getCaseCount") as ws:
        return int(await ws.receive())


async def run_case(url: str, agent: str, case: int) -> None:
    uri = f"{url}/runCase?case={case}&agent={quote(agent)}"
    try:
        async with (
            asyncio.timeout(CASE_TIMEOUT),
            stargate.connect(
                uri, limits=LIMITS, ping_interval=None, open_timeout=30, close_timeout=5
            ) as ws,
        ):
            async for message in ws:
                await ws.send(message)
    except (ConnectError, ConnectionClosed, TimeoutError) as exc:
        # Many cases end with the fuzzer failing the connection on purpose.
        print(f"case {case}: {type(exc).__name__}: {exc}", flush=True)


async def update_reports(url: str, agent: str) -> None:
    async with stargate.connect(f"{url}/updateReports?agent={quote(agent)}") as ws:
        await ws.wait_closed()


async def main(url: str, agent: str) -> int:
    url = url.rstrip("/")
    count = await case_count(url)
    print(f"{count} cases to run as agent {agent!r}", flush=True)
    started = time.monotonic()
    for case in range(1, count + 1):
        await run_case(url, agent, case)
    await update_reports(url, agent)
    print(f"done in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", help="wstest fuzzingserver URL, e.g. ws://127.0.0.1:9001")
    parser.add_argument("agent", help="agent name for the report")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    sys.exit(asyncio.run(main(args.url, args.agent)))
