"""The server's counters, and their Prometheus exposition.

Counting costs an integer increment where something happens (a request answered, a
handshake decided, a WebSocket closed), never a lock or a library call on the hot path;
gauges (open connections, thread-pool queues, the broker) are read when scraped.  The
exposition uses ``prometheus_client`` (the ``prometheus`` extra), imported only when
metrics are served: ``ServerConfig.metrics_path`` names the path (off by default; restrict
it at the proxy, or serve it on a private address) and ``health_path`` a readiness check.

With several worker processes each one answers for itself (a ``worker`` label tells which):
Prometheus' usual answer is to scrape each worker, and the shared listening socket cannot
route a scrape to a chosen one, so counters are per worker; sum them in queries.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import ServerState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Plain counters, incremented by the server as things happen."""

    def __init__(self) -> None:
        #: HTTP responses by status code (requests refused by the server included).
        self.http_responses: Counter[int] = Counter()
        #: Upgrade requests by outcome: ``accepted``, or the refusal's status code.
        self.handshakes: Counter[str] = Counter()
        #: WebSockets closed, by :func:`close_code_label` (``1006`` when the connection
        #: dropped).
        self.websocket_closes: Counter[str] = Counter()
        #: Connections refused at ``max_connections``.
        self.refused_connections = 0
        #: Messages and bytes of closed WebSockets (open ones are added when scraped).
        self.messages_in = self.messages_out = 0
        self.bytes_in = self.bytes_out = 0
        #: Connections closed because they did not read what was sent to them.
        self.slow_consumer_closes = 0


def close_code_label(code: int) -> str:
    """A close code as a label value: the codes of RFC 6455 and its registry as they are,
    the application ranges as ``3xxx`` and ``4xxx``.  A client chooses its close code, and
    each label value is a series kept for the process's life: 2,000 of them per client
    otherwise."""
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return str(code)


def _worker() -> str:
    return os.environ.get("STARGATE_WORKER", "0")


class Collector:
    """A ``prometheus_client`` collector reading one server's counters and state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.state
        metrics = state.metrics
        worker = _worker()
        labels = ["worker"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([worker], value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric([worker], value)
            return family

        yield gauge(
            "stargate_http_connections", "Open connections speaking HTTP.", len(state.channels)
        )
        yield gauge(
            "stargate_websocket_connections", "Open WebSocket connections.", len(state.websockets)
        )
        yield gauge(
            "stargate_tls_handshakes",
            "Connections in their TLS handshake.",
            len(state.tls_handshakes),
        )
        family = CounterMetricFamily(
            "stargate_http_responses", "HTTP responses by status code.", labels=[*labels, "code"]
        )
        for code, count in sorted(metrics.http_responses.items()):
            family.add_metric([worker, str(code)], count)
        yield family
        family = CounterMetricFamily(
            "stargate_handshakes",
            "WebSocket upgrade requests by outcome (accepted, or the refusal's status).",
            labels=[*labels, "outcome"],
        )
        for outcome, count in sorted(metrics.handshakes.items()):
            family.add_metric([worker, outcome], count)
        yield family
        family = CounterMetricFamily(
            "stargate_websocket_closes",
            "WebSockets closed, by close code.",
            labels=[*labels, "code"],
        )
        for label, count in sorted(metrics.websocket_closes.items()):
            family.add_metric([worker, label], count)
        yield family
        messages_in, bytes_in, messages_out, bytes_out = state.traffic()
        for direction, messages, size in (
            ("in", messages_in, bytes_in),
            ("out", messages_out, bytes_out),
        ):
            yield counter(
                f"stargate_websocket_messages_{direction}",
                f"WebSocket messages {'received' if direction == 'in' else 'sent'}.",
                messages,
            )
            yield counter(
                f"stargate_websocket_bytes_{direction}",
                f"WebSocket bytes {'received' if direction == 'in' else 'sent'} on the wire.",
                size,
            )
        yield counter(
            "stargate_slow_consumer_closes",
            "WebSockets closed (1008) for not reading what was sent to them.",
            metrics.slow_consumer_closes,
        )
        yield counter(
            "stargate_connections_refused",
            "Connections refused (reset) at max_connections.",
            metrics.refused_connections,
        )
        # One family with a sample per pool: the text format allows one HELP and one TYPE
        # line per metric name (Prometheus' own parser refuses a scrape with two).
        queued = GaugeMetricFamily(
            "stargate_threadpool_queue_depth",
            "Tasks waiting for a worker thread.",
            labels=[*labels, "pool"],
        )
        for pool, executor in (("wsgi", state.executor), ("websocket", state.handler_executor)):
            # ThreadPoolExecutor has no public queue length; its work queue is the figure.
            queue = getattr(executor, "_work_queue", None)
            queued.add_metric([worker, pool], queue.qsize() if queue is not None else 0)
        yield queued
        if state.broker_health is not None:
            gaps, connected = state.broker_health()
            yield counter(
                "stargate_broker_gaps",
                "Times cross-process group messages may have been lost (broker reconnects).",
                gaps,
            )
            yield gauge(
                "stargate_broker_connected",
                "Whether the group broker is connected (1) or not (0).",
                1 if connected else 0,
            )


def exposition(state: ServerState) -> bytes:
    """The Prometheus text format of one server's metrics."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(state))
    return generate_latest(registry)
