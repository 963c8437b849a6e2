"""Reference Autobahn client for validating ``run_autobahn.py --mode fuzzingserver``.

Like reference_echo.py this is not stargate but a known-good peer built on ``websockets``.
It follows wstest's fuzzingserver protocol: ask ``/getCaseCount``, then for every case N
connect to ``/runCase?case=N&agent=AGENT`` and echo each message back (text as text, binary
as binary) until wstest closes, then ask ``/updateReports?agent=AGENT``.

Usage::

    python compliance/reference_client.py ws://127.0.0.1:9001 websockets-client
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import quote

import websockets.asyncio.messages
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_FRAGMENTS = 1 << 17
CASE_TIMEOUT = 300.0

# See reference_echo.py: cases 9.3.1/9.4.1 send a message in 65536 fragments.
if hasattr(websockets.asyncio.messages, "MAX_FRAGMENTS"):
    websockets.asyncio.messages.MAX_FRAGMENTS = max(
        MAX_FRAGMENTS, websockets.asyncio.messages.MAX_FRAGMENTS
    )


async def case_count(url: str) -> int:
    async with connect(f"{url}/getCaseCount") as ws:
        return int(await ws.recv())


async def run_case(url: str, agent: str, case: int) -> None:
    uri = f"{url}/runCase?case={case}&agent={quote(agent)}"
    try:
        async with (
            asyncio.timeout(CASE_TIMEOUT),
            connect(uri, max_size=MAX_MESSAGE_SIZE, open_timeout=30) as ws,
        ):
            async for message in ws:
                await ws.send(message)
    except (WebSocketException, OSError, TimeoutError) as exc:
        # Many cases end with the fuzzer failing the connection on purpose.
        print(f"case {case}: {type(exc).__name__}: {exc}", flush=True)


async def update_reports(url: str, agent: str) -> None:
    async with connect(f"{url}/updateReports?agent={quote(agent)}") as ws:
        await ws.wait_closed()


async def main(url: str, agent: str) -> int:
    url = url.rstrip("/")
    count = await case_count(url)
    print(f"{count} cases to run as agent {agent!r}", flush=True)
    for case in range(1, count + 1):
        await run_case(url, agent, case)
    await update_reports(url, agent)
    print("done", flush=True)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="wstest fuzzingserver URL, e.g. ws://127.0.0.1:9001")
    parser.add_argument("agent", help="agent name for the report")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    sys.exit(asyncio.run(main(args.url, args.agent)))
