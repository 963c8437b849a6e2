"""Sans-I/O core benchmark: stargate against websockets and wsproto, in one run.

Measures, per library, at 64 B, 64 KiB and 1 MiB, for binary (the headline) and text messages
(text adds UTF-8 validation):

* ``receive`` (server role): parse + unmask a stream of pre-built masked client frames,
  fed one frame per ``receive_data`` call (like one socket read per message; frames over
  64 KiB in reads of 64 KiB), and collect the complete messages;
* ``build`` (server role): encode messages into bytes ready for the socket.

Before anything is timed, every library decodes the same frames to the same payloads and
builds byte-identical frames, so the timings cannot compare different work.  Run it from the
repository root::

    python bench/bench_core.py                  # full run, timed, about a minute
    python bench/bench_core.py --quick          # smoke run, about 10 s
    python bench/bench_core.py --json results.json
    python bench/bench_core.py --instructions   # instructions per message (callgrind)

``--instructions`` counts what each library executes per message under valgrind's callgrind
instead of timing it: the same count on a loaded machine as on an idle one, so before/after
comparisons need no idle machine.  Four variants: stargate, stargate with
``STARGATE_PURE_PYTHON=1`` (its pure-Python fallback), websockets and wsproto; two of them
at a time, a few minutes in all (``--variants``, ``--sizes`` to narrow it).  Needs
``valgrind`` on the PATH.

See bench/README.md for what exactly each library is asked to do.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, Literal, Protocol, cast

import websockets.frames as ws_frames
import wsproto.events as wsp_events
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side as WsSide
from websockets.protocol import State as WsState
from wsproto.connection import Connection as WspConnection
from wsproto.connection import ConnectionState as WspState
from wsproto.connection import ConnectionType as WspConnectionType

import stargate.masking
from stargate.connection import Connection as SgConnection
from stargate.connection import ConnectionState as SgState
from stargate.events import BinaryMessage as SgBinary
from stargate.events import TextMessage as SgText
from stargate.limits import Limits as SgLimits
from stargate.protocol import Role as SgRole

Kind = Literal["binary", "text"]
Op = Literal["receive", "build"]
Payload = bytes | str
#: Runs one timed batch and returns a count to check (messages received or bytes built).
Runner = Callable[[], int]

LIBRARIES = ("stargate", "websockets", "wsproto")
SIZES = (64, 64 * 1024, 1024 * 1024)
#: Frames larger than this reach ``receive_data`` in reads of this size (a socket's reads).
READ_SIZE = 64 * 1024
KINDS: tuple[Kind, ...] = ("binary", "text")
OPS: tuple[Op, ...] = ("receive", "build")

#: Every library gets the same message size limit, above the largest message.
MAX_SIZE = 2 * 1024 * 1024
OP_TEXT = 0x1
OP_BINARY = 0x2

# -- payloads and wire bytes, made here independently of the libraries under test --------

_TEXT_SAMPLE = (
    '{"user": "Zoë", "city": "Zürich", "note": "naïve café, 5 € or 3 £", '
    '"greek": "Ωμέγα", "ok": true, "n": 1234567890} '
)


def make_payloads(kind: Kind, size: int, count: int, seed: int) -> list[Payload]:
    """``count`` distinct payloads of exactly ``size`` bytes (UTF-8 bytes for text)."""
    rng = random.Random(seed)
    if kind == "binary":
        return [rng.randbytes(size) for _ in range(count)]
    # A random rotation of the sample, cut to at most ``size`` bytes without splitting a
    # character, padded to exactly ``size`` bytes with ASCII spaces.
    repeated = _TEXT_SAMPLE * (size // len(_TEXT_SAMPLE) + 2)
    texts: list[Payload] = []
    for _ in range(count):
        start = rng.randrange(len(_TEXT_SAMPLE))
        text = repeated[start : start + size].encode("utf-8")[:size].decode("utf-8", "ignore")
        texts.append(text + " " * (size - len(text.encode("utf-8"))))
    return texts


def as_bytes(payload: Payload) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload


def frame_header(opcode: int, length: int, masked: bool) -> bytes:
    """A FIN frame header with the minimal length encoding (RFC 6455 section 5.2)."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, mask_bit | length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """A masked single-frame message as a client sends it (RFC 6455 section 5.3)."""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return frame_header(opcode, n, masked=True) + key + masked


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked single-frame message as a server sends it."""
    return frame_header(opcode, len(payload), masked=False) + payload


def opcode_of(kind: Kind) -> int:
    return OP_TEXT if kind == "text" else OP_BINARY


# -- stargate -------------------------------------------------------------------------------


def _sg_connection() -> SgConnection:
    limits = SgLimits(max_message_size=MAX_SIZE, max_frame_size=MAX_SIZE)
    return SgConnection(SgRole.SERVER, limits=limits)


def sg_decode(frames: Sequence[bytes]) -> list[Payload]:
    conn = _sg_connection()
    out: list[Payload] = []
    for chunk in frames:
        for event in conn.receive_data(chunk):
            if not isinstance(event, SgText | SgBinary):
                raise AssertionError(f"stargate: unexpected event {event!r}")
            out.append(event.data)
    if conn.data_to_send() or conn.state is not SgState.OPEN:
        raise AssertionError("stargate: the connection did not stay open")
    return out


def sg_receive(chunks: Sequence[bytes], kind: Kind) -> Runner:
    # Text or binary: the same loop, stargate's events carry str or bytes already.
    receive = _sg_connection().receive_data

    def run() -> int:
        n = 0
        for chunk in chunks:
            n += len(receive(chunk))
        return n

    return run


def sg_build(payloads: Sequence[Payload], kind: Kind) -> Runner:
    conn = _sg_connection()
    send = conn.send
    data_to_send = conn.data_to_send

    def run() -> int:
        total = 0
        for payload in payloads:
            send(payload)
            total += len(data_to_send())
        return total

    return run


def sg_encode_one(payload: Payload) -> bytes:
    conn = _sg_connection()
    conn.send(payload)
    return conn.data_to_send()


# -- websockets -----------------------------------------------------------------------------
# websockets' sans-I/O Protocol, server side: it starts OPEN, as a ServerProtocol is after
# accept().  (ServerProtocol runs the same code for frames, plus one generator delegation per
# receive_data: measured 1-5% slower, so the base class is the conservative choice.)
# Its events are frames carrying raw bytes: the UTF-8 decoding of text, which stargate and
# wsproto do in their cores, happens in websockets' I/O layer, so it is done here too.


def _ws_protocol() -> WsProtocol:
    return WsProtocol(WsSide.SERVER, max_size=MAX_SIZE)


def ws_decode(frames: Sequence[bytes]) -> list[Payload]:
    proto = _ws_protocol()
    out: list[Payload] = []
    parts: list[bytes] = []
    opcode: WsOpcode | None = None
    for chunk in frames:
        proto.receive_data(chunk)
        for event in proto.events_received():
            if not isinstance(event, WsFrame) or event.opcode not in (
                WsOpcode.TEXT,
                WsOpcode.BINARY,
                WsOpcode.CONT,
            ):
                raise AssertionError(f"websockets: unexpected event {event!r}")
            if event.opcode is not WsOpcode.CONT:
                opcode = event.opcode
            parts.append(bytes(event.data))
            if event.fin:
                data = b"".join(parts)
                out.append(data.decode("utf-8") if opcode is WsOpcode.TEXT else data)
                parts = []
    if proto.data_to_send() or proto.state is not WsState.OPEN:
        raise AssertionError("websockets: the connection did not stay open")
    return out


class _WsDataFrame(Protocol):
    """What the timed loop reads of a websockets data frame (its data is bytes here)."""

    @property
    def fin(self) -> bool: ...
    @property
    def data(self) -> bytes: ...


def ws_receive(chunks: Sequence[bytes], kind: Kind) -> Runner:
    proto = _ws_protocol()
    receive = proto.receive_data
    # Verified beforehand: every event here is a data frame.
    frames_received = cast(Callable[[], list[_WsDataFrame]], proto.events_received)

    if kind == "text":

        def run() -> int:
            n = 0
            for chunk in chunks:
                receive(chunk)
                for frame in frames_received():
                    frame.data.decode("utf-8")
                    if frame.fin:
                        n += 1
            return n

    else:

        def run() -> int:
            n = 0
            for chunk in chunks:
                receive(chunk)
                for frame in frames_received():
                    if frame.fin:
                        n += 1
            return n

    return run


def ws_build(payloads: Sequence[Payload], kind: Kind) -> Runner:
    proto = _ws_protocol()
    data_to_send = proto.data_to_send

    if kind == "text":
        send_text = proto.send_text
        texts = cast(Sequence[str], payloads)

        def run() -> int:
            total = 0
            for text in texts:
                send_text(text.encode("utf-8"))  # websockets takes text as UTF-8 bytes
                for data in data_to_send():
                    total += len(data)
            return total

    else:
        send_binary = proto.send_binary
        blobs = cast(Sequence[bytes], payloads)

        def run() -> int:
            total = 0
            for blob in blobs:
                send_binary(blob)
                for data in data_to_send():
                    total += len(data)
            return total

    return run


def ws_encode_one(payload: Payload) -> bytes:
    proto = _ws_protocol()
    if isinstance(payload, str):
        proto.send_text(payload.encode("utf-8"))
    else:
        proto.send_binary(payload)
    return b"".join(proto.data_to_send())


# -- wsproto --------------------------------------------------------------------------------
# wsproto's Connection starts OPEN and has no extension unless given one.  It has no message
# size limit.  A message may come as several Message events; the last has message_finished.


def _wsp_connection() -> WspConnection:
    return WspConnection(WspConnectionType.SERVER)


def wsp_decode(frames: Sequence[bytes]) -> list[Payload]:
    conn = _wsp_connection()
    out: list[Payload] = []
    text_parts: list[str] = []
    byte_parts: list[bytes] = []
    for chunk in frames:
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, wsp_events.TextMessage):
                text_parts.append(event.data)
                if event.message_finished:
                    out.append("".join(text_parts))
                    text_parts = []
            elif isinstance(event, wsp_events.BytesMessage):
                byte_parts.append(bytes(event.data))
                if event.message_finished:
                    out.append(b"".join(byte_parts))
                    byte_parts = []
            else:
                raise AssertionError(f"wsproto: unexpected event {event!r}")
    if conn.state is not WspState.OPEN:
        raise AssertionError("wsproto: the connection did not stay open")
    return out


def wsp_receive(chunks: Sequence[bytes], kind: Kind) -> Runner:
    conn = _wsp_connection()
    receive = conn.receive_data
    # Verified beforehand: every event here is a Message.
    messages = cast(Callable[[], Iterator[wsp_events.Message[Any]]], conn.events)

    def run() -> int:
        n = 0
        for chunk in chunks:
            receive(chunk)
            for event in messages():
                if event.message_finished:
                    n += 1
        return n

    return run


def wsp_build(payloads: Sequence[Payload], kind: Kind) -> Runner:
    send = _wsp_connection().send

    if kind == "text":
        texts = cast(Sequence[str], payloads)
        text_message = wsp_events.TextMessage

        def run() -> int:
            total = 0
            for text in texts:
                total += len(send(text_message(data=text)))
            return total

    else:
        blobs = cast(Sequence[bytes], payloads)
        bytes_message = wsp_events.BytesMessage

        def run() -> int:
            total = 0
            for blob in blobs:
                total += len(send(bytes_message(data=blob)))
            return total

    return run


def wsp_encode_one(payload: Payload) -> bytes:
    conn = _wsp_connection()
    if isinstance(payload, str):
        return bytes(conn.send(wsp_events.TextMessage(data=payload)))
    return bytes(conn.send(wsp_events.BytesMessage(data=payload)))


# -- the harness ----------------------------------------------------------------------------

Factory = Callable[[Sequence[Any], Kind], Runner]

RECEIVERS: dict[str, Factory] = {
    "stargate": sg_receive,
    "websockets": ws_receive,
    "wsproto": wsp_receive,
}
BUILDERS: dict[str, Factory] = {
    "stargate": sg_build,
    "websockets": ws_build,
    "wsproto": wsp_build,
}
DECODERS: dict[str, Callable[[Sequence[bytes]], list[Payload]]] = {
    "stargate": sg_decode,
    "websockets": ws_decode,
    "wsproto": wsp_decode,
}
ENCODERS: dict[str, Callable[[Payload], bytes]] = {
    "stargate": sg_encode_one,
    "websockets": ws_encode_one,
    "wsproto": wsp_encode_one,
}


@dataclass
class Result:
    op: Op
    kind: Kind
    size: int
    library: str
    messages_per_rep: int
    reps: int
    best_ns: float  # per message
    median_ns: float  # per message
    all_ns: list[float]


@dataclass
class Corpus:
    """The distinct payloads of one (kind, size), their masked client frames, and each frame
    as the reads that bring it (one read per frame up to READ_SIZE)."""

    kind: Kind
    size: int
    payloads: list[Payload]
    frames: list[bytes]

    @property
    def reads(self) -> list[tuple[bytes, ...]]:
        return [split_reads(frame) for frame in self.frames]


def split_reads(frame: bytes) -> tuple[bytes, ...]:
    if len(frame) <= READ_SIZE:
        return (frame,)
    return tuple(frame[i : i + READ_SIZE] for i in range(0, len(frame), READ_SIZE))


def make_corpus(kind: Kind, size: int) -> Corpus:
    # 64 KiB x 16 = 1 MiB of distinct frames; 1 MiB x 4.
    distinct = 256 if size <= 1024 else 16 if size <= 64 * 1024 else 4
    seed = size * 2 + (kind == "text")
    payloads = make_payloads(kind, size, distinct, seed)
    rng = random.Random(seed + 1)
    frames = [client_frame(opcode_of(kind), as_bytes(p), rng.randbytes(4)) for p in payloads]
    return Corpus(kind, size, payloads, frames)


def verify(corpus: Corpus) -> None:
    """Every library receives the same messages and builds the same bytes."""
    reads = [chunk for frame in corpus.reads for chunk in frame]
    for lib, decode in DECODERS.items():
        got = decode(reads)
        if got != corpus.payloads:
            raise AssertionError(f"{lib} decoded {corpus.kind} {corpus.size} B frames wrongly")
    opcode = opcode_of(corpus.kind)
    for payload in corpus.payloads[:8]:
        expected = server_frame(opcode, as_bytes(payload))
        for lib, encode in ENCODERS.items():
            if encode(payload) != expected:
                raise AssertionError(f"{lib} built a {corpus.kind} {corpus.size} B frame wrongly")


def batch_items(op: Op, corpus: Corpus, n: int) -> list[Any]:
    """What a batch of ``n`` messages feeds the runner: the reads of ``n`` frames in turn
    (receive), or ``n`` payloads in turn (build).  References only, no copies of the data."""
    if op == "build":
        return cycle(corpus.payloads, n)
    return [chunk for frame in cycle(corpus.reads, n) for chunk in frame]


def cycle(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` references to ``items`` in turn (no copies of the data)."""
    return [items[i % len(items)] for i in range(n)]


#: The clock of the timed batches: wall time, or the CPU time of this thread, which leaves out
#: the time other processes of a busy machine hold the CPU (set by ``--clock``).
CLOCKS: dict[str, Callable[[], int]] = {
    "perf": time.perf_counter_ns,
    "thread": time.thread_time_ns,
}
clock = CLOCKS["perf"]


def time_batch(runner: Runner) -> tuple[int, int]:
    """Run one batch with the garbage collector off (as timeit does): (ns, count)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        count = runner()
        elapsed = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed, count


def measure_case(
    op: Op, corpus: Corpus, *, reps: int, target_s: float, max_messages: int
) -> list[Result]:
    """Time every library on one case, interleaved: each repetition runs one batch of each
    library back to back (in a rotating order), so that a busy spell of a shared machine
    slows all of them alike and the per-repetition ratios stay comparable."""
    frame_size = len(server_frame(1, as_bytes(corpus.payloads[0])))

    def batch(lib: str, n: int) -> float:
        factory = RECEIVERS[lib] if op == "receive" else BUILDERS[lib]
        runner = factory(batch_items(op, corpus, n), corpus.kind)  # a fresh connection
        elapsed, count = time_batch(runner)
        expected = n if op == "receive" else n * frame_size
        if count != expected:
            raise AssertionError(f"{lib} {op}: counted {count}, expected {expected}")
        return elapsed / n

    # Calibrate: warm up, then size each library's batch so a repetition takes ~target_s.
    sizes: dict[str, int] = {}
    for lib in LIBRARIES:
        probe = min(200, max_messages)
        per_msg = min(batch(lib, probe), batch(lib, probe))
        sizes[lib] = max(20, min(max_messages, int(target_s * 1e9 / per_msg)))
    samples: dict[str, list[float]] = {lib: [] for lib in LIBRARIES}
    for rep in range(reps):
        shift = rep % len(LIBRARIES)
        for lib in LIBRARIES[shift:] + LIBRARIES[:shift]:
            samples[lib].append(batch(lib, sizes[lib]))
    return [
        Result(
            op=op,
            kind=corpus.kind,
            size=corpus.size,
            library=lib,
            messages_per_rep=sizes[lib],
            reps=reps,
            best_ns=min(samples[lib]),
            median_ns=statistics.median(samples[lib]),
            all_ns=samples[lib],
        )
        for lib in LIBRARIES
    ]


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def websockets_speedups() -> bool:
    try:
        from websockets import speedups
    except ImportError:
        return False
    return getattr(ws_frames, "apply_mask", None) is speedups.apply_mask


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "stargate": version("stargate"),
        "websockets": version("websockets"),
        "wsproto": version("wsproto"),
        "load_average": os.getloadavg()[0],
        "stargate_mask_accelerated": stargate.masking.ACCELERATED,
        "websockets_speedups": websockets_speedups(),
    }


@dataclass
class Row:
    """One line of the summary: per-message times (best of the repetitions) and ratios."""

    op: Op
    kind: Kind
    size: int
    us: dict[str, float]  # best per-message time, microseconds
    ratio_best: dict[str, float]  # other library's best / stargate's best
    ratio_paired: dict[str, float]  # median over repetitions of other / stargate


def summarize(results: list[Result]) -> list[Row]:
    by_key = {(r.op, r.kind, r.size, r.library): r for r in results}
    rows: list[Row] = []
    for op in OPS:
        for size in SIZES:
            for kind in KINDS:
                found = [by_key.get((op, kind, size, lib)) for lib in LIBRARIES]
                case = [r for r in found if r is not None]
                if len(case) != len(LIBRARIES):
                    continue
                sg = case[0]
                others = dict(zip(LIBRARIES[1:], case[1:], strict=True))
                rows.append(
                    Row(
                        op=op,
                        kind=kind,
                        size=size,
                        us={r.library: r.best_ns / 1000 for r in case},
                        ratio_best={lib: r.best_ns / sg.best_ns for lib, r in others.items()},
                        ratio_paired={
                            lib: statistics.median(
                                o / s for o, s in zip(r.all_ns, sg.all_ns, strict=True)
                            )
                            for lib, r in others.items()
                        },
                    )
                )
    return rows


def print_table(rows: list[Row]) -> list[str]:
    """Print the summary table; return the rows where stargate is not the fastest.

    The verdict uses the paired ratios: each repetition times the three libraries back to
    back, so their ratio within a repetition is immune to the slow drifts of a shared
    machine, and the median of those ratios ignores the odd disturbed repetition.
    """
    header = (
        f"{'operation':<9} {'kind':<6} {'size':>6} | {'stargate':>9} {'websockets':>10} "
        f"{'wsproto':>9} | {'ws/sg':>6} {'wsp/sg':>6} | {'ws/sg':>6} {'wsp/sg':>6}"
    )
    print("\nus/msg: best of the repetitions.  Ratios > 1: stargate is faster.")
    print(f"{'':<24}| {'best us/msg':^31} | {'of bests':^13} | {'paired med.':^13}")
    print(header)
    print("-" * len(header))
    losses: list[str] = []
    for row in rows:
        us, best, paired = row.us, row.ratio_best, row.ratio_paired
        print(
            f"{row.op:<9} {row.kind:<6} {size_label(row.size):>6} | {us['stargate']:9.3f} "
            f"{us['websockets']:10.3f} {us['wsproto']:9.3f} | {best['websockets']:6.2f} "
            f"{best['wsproto']:6.2f} | {paired['websockets']:6.2f} {paired['wsproto']:6.2f}"
        )
        for lib in LIBRARIES[1:]:
            if paired[lib] < 1:
                losses.append(
                    f"{row.op} {row.kind} {size_label(row.size)}: {lib} is faster "
                    f"(paired median {paired[lib]:.2f}, ratio of bests {best[lib]:.2f})"
                )
    return losses


# -- instruction counts (callgrind) -------------------------------------------------------
# Seconds on a shared 2-core machine move by 10-20% between runs; instructions executed do
# not.  Each library runs in one worker process under `valgrind --tool=callgrind`; the
# worker calls os.getppid() (libc's getppid, which nothing else in the worker calls) at the
# edges of every measured batch, and `--dump-before=getppid` makes callgrind write its
# counters there and reset them, so each dump holds exactly one batch.  Two batches per case
# (a small and a large one, after a warm-up batch) and their difference divided by the
# difference in messages give the instructions per message, free of per-batch costs.

#: The variants counted: a library, or stargate with its C accelerator switched off.
VARIANTS = ("stargate", "stargate-pure", "websockets", "wsproto")
#: Messages in the small and the large batch of each case, by message size.
COUNT_BATCHES = {64: (200, 1200), 64 * 1024: (4, 16), 1024 * 1024: (1, 3)}
MARKER = "getppid"


def count_worker(library: str, sizes: Sequence[int]) -> None:
    """Run every case of ``library`` between markers.  Prints, as JSON, what each dump after
    the first holds: a measured batch ``{op, kind, size, messages}``, or ``null`` (set-up)."""
    dumps: list[dict[str, Any] | None] = []
    os.getppid()  # dump 1: start-up and imports
    for size in sizes:
        small, large = COUNT_BATCHES.get(size, (1, 3))
        for kind in KINDS:
            corpus = make_corpus(kind, size)
            for op in OPS:
                factory = RECEIVERS[library] if op == "receive" else BUILDERS[library]
                runners = [factory(batch_items(op, corpus, n), kind) for n in (small, small, large)]
                gc.disable()
                runners[0]()  # warm-up: the interpreter's specialisation settles
                os.getppid()
                dumps.append(None)
                for n, runner in zip((small, large), runners[1:], strict=True):
                    runner()
                    os.getppid()
                    dumps.append({"op": op, "kind": kind, "size": size, "messages": n})
                gc.enable()
    print(json.dumps(dumps))


def count_variant(
    variant: str, sizes: Sequence[int], workdir: str
) -> dict[tuple[str, str, int], float]:
    """Instructions per message of every case for one variant, from one callgrind run."""
    import subprocess

    env = {**os.environ, "PYTHONHASHSEED": "0", "STARGATE_PURE_PYTHON": "0"}
    library = variant
    if variant == "stargate-pure":
        env["STARGATE_PURE_PYTHON"] = "1"
        library = "stargate"
    out_file = os.path.join(workdir, f"{variant}.out")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={MARKER}",
        "--dump-instr=no",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        os.path.abspath(__file__),
        "--count-worker",
        library,
        "--sizes",
        ",".join(map(str, sizes)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run of {variant} failed:\n{done.stderr[-2000:]}")
    dumps = json.loads(done.stdout.strip().splitlines()[-1])
    windows: list[tuple[dict[str, Any], int]] = []
    for i, window in enumerate(dumps):
        # Dump 1 is start-up; entry i of the list is dump i + 2.
        with open(f"{out_file}.{i + 2}", encoding="utf-8") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
        if window is not None:
            windows.append((window, total))
    for name in os.listdir(workdir):
        if name.startswith(f"{variant}.out"):
            os.unlink(os.path.join(workdir, name))
    per_message: dict[tuple[str, str, int], float] = {}
    for (small, small_total), (large, large_total) in zip(windows[::2], windows[1::2], strict=True):
        key = (small["op"], small["kind"], small["size"])
        messages = large["messages"] - small["messages"]
        per_message[key] = (large_total - small_total) / messages
    return per_message


def count_instructions(
    variants: Sequence[str], sizes: Sequence[int]
) -> dict[str, dict[tuple[str, str, int], float]]:
    """Every variant's instructions per message, two callgrind runs at a time."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    with (
        tempfile.TemporaryDirectory(prefix="bench-core-") as workdir,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        futures = {v: pool.submit(count_variant, v, sizes, workdir) for v in variants}
        return {v: future.result() for v, future in futures.items()}


def print_instructions(
    counts: dict[str, dict[tuple[str, str, int], float]], sizes: Sequence[int]
) -> None:
    variants = list(counts)
    others = [v for v in variants if v not in ("stargate", "stargate-pure")]
    header = f"{'operation':<9} {'kind':<6} {'size':>6} | " + " ".join(f"{v:>13}" for v in variants)
    if "stargate" in counts:
        header += " | " + " ".join(f"{v[:10] + '/sg':>13}" for v in others)
    print("\nInstructions per message (callgrind; ratios > 1: stargate executes fewer).")
    print(header)
    print("-" * len(header))
    for op in OPS:
        for size in sizes:
            for kind in KINDS:
                key = (op, kind, size)
                line = f"{op:<9} {kind:<6} {size_label(size):>6} | " + " ".join(
                    f"{counts[v][key]:13,.0f}" for v in variants
                )
                if "stargate" in counts:
                    sg = counts["stargate"][key]
                    line += " | " + " ".join(f"{counts[v][key] / sg:13.2f}" for v in others)
                print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--reps", type=int, help="repetitions per case (default 20; --quick 5)")
    parser.add_argument("--time", type=float, help="seconds per batch (default 0.04; --quick 0.01)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="perf",
        help="perf: time.perf_counter_ns (wall, default); thread: time.thread_time_ns "
        "(CPU time of the benchmark, steadier on a shared machine)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if stargate is not the fastest everywhere"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="message sizes in bytes, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message under valgrind's callgrind instead of timing",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="with --instructions: what to count (default: %(default)s)",
    )
    parser.add_argument("--count-worker", metavar="LIBRARY", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.count_worker:
        count_worker(args.count_worker, sizes)
        return 0
    if args.instructions:
        for size in sizes:
            for kind in KINDS:
                verify(make_corpus(kind, size))
        counts = count_instructions(args.variants.split(","), sizes)
        print_instructions(counts, sizes)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(
                    {
                        "environment": environment(),
                        "instructions_per_message": {
                            v: [
                                {"op": op, "kind": kind, "size": size, "instructions": n}
                                for (op, kind, size), n in per_case.items()
                            ]
                            for v, per_case in counts.items()
                        },
                    },
                    f,
                    indent=2,
                )
        return 0
    global clock
    clock = CLOCKS[args.clock]
    reps: int = args.reps or (5 if args.quick else 20)
    target_s: float = args.time or (0.01 if args.quick else 0.04)

    env = environment()
    print(
        f"Python {env['python']} ({env['implementation']}) on {env['platform']}, {env['cpus']} CPUs"
    )
    print(
        f"stargate {env['stargate']}: C accelerator "
        f"{'active' if env['stargate_mask_accelerated'] else 'NOT active (pure Python)'}"
    )
    print(
        f"websockets {env['websockets']}: C speedups "
        f"{'active' if env['websockets_speedups'] else 'NOT active (pure Python)'}"
    )
    print(f"wsproto {env['wsproto']}: pure Python")
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if args.clock == "perf" and load > cpus / 2:
        print(
            f"note: load average {load:.1f} on {cpus} CPUs: wall times include waits for the "
            "CPU; --clock thread gives steadier figures on a busy machine"
        )
    print(
        f"{reps} interleaved repetitions of ~{target_s} s batches per library and case, "
        f"clock {args.clock}; times are per message\n"
    )

    results: list[Result] = []
    for size in sizes:
        for kind in KINDS:
            corpus = make_corpus(kind, size)
            verify(corpus)
            # A cap on the batch: its list of references is built before each batch.
            max_messages = 400_000 if size <= 1024 else 40_000 if size <= 65536 else 2_000
            for op in OPS:
                case = measure_case(
                    op, corpus, reps=reps, target_s=target_s, max_messages=max_messages
                )
                results.extend(case)
                for result in case:
                    print(
                        f"{op:<8} {kind:<6} {size_label(size):>6} {result.library:<10} "
                        f"best {result.best_ns / 1000:9.3f} us  "
                        f"median {result.median_ns / 1000:9.3f} us  "
                        f"({result.messages_per_rep} msgs x {reps})",
                        flush=True,
                    )

    rows = summarize(results)
    losses = print_table(rows)
    if losses:
        print("\nstargate is NOT the fastest (paired median ratios):")
        for loss in losses:
            print(f"  {loss}")
    else:
        print("\nstargate is the fastest in every row (paired median ratios).")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "environment": env,
                    "reps": reps,
                    "target_seconds": target_s,
                    "clock": args.clock,
                    "results": [asdict(r) for r in results],
                    "summary": [asdict(row) for row in rows],
                },
                f,
                indent=2,
            )
        print(f"results written to {args.json}")
    return 1 if args.strict and losses else 0


if __name__ == "__main__":
    sys.exit(main())
