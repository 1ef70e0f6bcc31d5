"""Process metrics: the Prometheus instruments of one app, and their exposition.

Theory of operation
-------------------
One :class:`Metrics` per app (never the global registry: two apps in one
process, as in tests, must not share counters). It owns a
:class:`prometheus_client.CollectorRegistry` with three kinds of series:

- *counters* (messages and bytes in/out by event type, auth failures,
  rate-limit refusals, outcomes, conflicts, appends, slow consumers, idle
  trip rooms unloaded; the cluster bus's messages and bytes, counted by the
  bus itself) are
  plain ``int`` and ``dict[str, int]`` increments on the event loop thread,
  with no lock and no label lookup on the hot path; :class:`_LiveCollector`
  turns them into counter families only when ``/metrics`` is scraped;
- *live gauges* (active connections by endpoint, peak, outbound queue depth,
  trips loaded in memory, uptime) are read from the hub and the trip registry
  at scrape time, so nothing keeps them up to date;
- *histograms* (commit latency, broadcast fan-out latency, the cycle
  collector's pauses by generation) are ``prometheus_client`` histograms. The
  pauses are timed by a ``gc.callbacks`` hook (:class:`GcPauses`) while the app
  runs: a full collection stops every thread, and its length grows with the
  objects the loaded trips keep.

Call sites: :mod:`api.transport.connection` (read and write paths, auth failures, slow
consumers), :mod:`api.transport.hub` (fan-out latency, connections opened),
:mod:`api.transport.services` (rate limits, outcomes), :mod:`api.trips.rooms` (commit
latency, appends, conflicts) and :mod:`api.trips.sweep` (rooms unloaded).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "PREFIX", "GcPauses", "LiveConnections", "Metrics", "event_type_of"]

PREFIX: Final = "tripsage"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Commits share fsyncs: a few ms normally, seconds when the disk stalls.
COMMIT_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# A young collection takes well under a millisecond; a full one grows with the heap.
GC_BUCKETS_S: Final = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# Fan-out is an encode plus one queue append per recipient: microseconds.
FANOUT_BUCKETS_S: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.05,
)
# Every server event starts {"id":"...","type":"...": the tag sits in the first bytes.
_TYPE_KEY: Final = '"type":"'
_TYPE_SCAN_CHARS: Final = 256
# Server-sent frames without a type tag: the "Authentication Response".
AUTH_RESPONSE: Final = "auth_response"


@dataclass
class LiveConnections:
    """The hub's live state, read at scrape time through :attr:`Metrics.live`."""

    by_endpoint: dict[str, int] = field(default_factory=lambda: {"chat": 0, "agent-status": 0})
    queued: int = 0  # events waiting in all outbound queues
    deepest: int = 0  # events waiting in the fullest one
    peak: int = 0  # most connections open at once since start


def event_type_of(text: str) -> str:
    """The ``type`` of an encoded server event (``auth_response`` if none)."""
    start = text.find(_TYPE_KEY, 0, _TYPE_SCAN_CHARS)
    if start < 0:
        return AUTH_RESPONSE
    start += len(_TYPE_KEY)
    end = text.find('"', start, start + 64)
    return text[start:end] if end > 0 else AUTH_RESPONSE


class GcPauses:
    """Each cycle collection's length, observed by generation, between :meth:`start`
    and :meth:`stop` (``gc.callbacks`` is the process's: one app stops what it started)."""

    def __init__(self, histogram: Histogram) -> None:
        self._by_generation = [histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # Collections never nest, and the thread that runs one holds the GIL throughout.
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)


class Metrics:
    """The instruments of one app; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started_at_s = time.time()
        self.messages_in: dict[str, int] = {}
        self.bytes_in: dict[str, int] = {}
        self.messages_out: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        # The hub's live state (Hub.live_connections), read at scrape time.
        self.live: Callable[[], LiveConnections] | None = None
        self.trips_loaded: Callable[[], int] = lambda: 0
        self.yjs_peers: Callable[[], int] = lambda: 0  # set by the Yjs endpoint
        self.asyncio_tasks: Callable[[], int] = lambda: 0  # set by the app's lifespan
        self.storage_retry_after_ms: Callable[[], int] = lambda: 0
        self.bus_counts: Callable[[], dict[str, int]] = dict  # set by the app (cluster bus)
        # Counters, by label value (plain ints: see the module docstring).
        self.connections_opened: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        self.conflicts_raised = 0
        self.conflicts_resolved = 0
        self.log_appends = 0
        self.slow_consumers = 0
        self.trips_unloaded = 0
        r = self.registry
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds",
            "Time from handing a trip change to the writer to its durable commit",
            buckets=COMMIT_BUCKETS_S,
            registry=r,
        )
        self.fanout_seconds = Histogram(
            f"{PREFIX}_broadcast_fanout_seconds",
            "Time to encode one event and queue it for every recipient",
            buckets=FANOUT_BUCKETS_S,
            registry=r,
        )
        self.gc_pauses = GcPauses(
            Histogram(
                f"{PREFIX}_gc_pause_seconds",
                "Time the cycle collector held the process, by generation collected",
                ["generation"],
                buckets=GC_BUCKETS_S,
                registry=r,
            )
        )
        r.register(_LiveCollector(self))
        # process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux /proc).
        ProcessCollector(registry=r)

    # -- hot paths: plain increments ------------------------------------------------

    def received(self, type_: str, nbytes: int) -> None:
        self.messages_in[type_] = self.messages_in.get(type_, 0) + 1
        self.bytes_in[type_] = self.bytes_in.get(type_, 0) + nbytes

    def sent(self, type_: str, nbytes: int) -> None:
        self.messages_out[type_] = self.messages_out.get(type_, 0) + 1
        self.bytes_out[type_] = self.bytes_out.get(type_, 0) + nbytes

    @staticmethod
    def count(data: dict[str, int], key: str) -> None:
        data[key] = data.get(key, 0) + 1

    def sent_text(self, text: str) -> None:
        """Count one encoded event (its type read from the text)."""
        # str.isascii() is O(1) in CPython: encode only texts with other characters.
        nbytes = len(text) if text.isascii() else len(text.encode())
        self.sent(event_type_of(text), nbytes)

    # -- totals for the spec's payloads ------------------------------------------------

    @property
    def total_in(self) -> int:
        return sum(self.messages_in.values())

    @property
    def total_out(self) -> int:
        return sum(self.messages_out.values())

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Series read at scrape time: the hot-path dicts and the hub's live state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked: the names are unique to this collector

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, doc, data in (
            ("messages_received", "Client messages received, by type", m.messages_in),
            ("bytes_received", "Bytes of client frames received, by type", m.bytes_in),
            ("messages_sent", "Server events sent, by type", m.messages_out),
            ("bytes_sent", "Bytes of server events sent, by type", m.bytes_out),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["type"])
            for type_, value in sorted(data.items()):
                family.add_metric([type_], value)
            yield family
        for name, doc, label, data in (
            (
                "connections_opened",
                "WebSocket connections accepted",
                "endpoint",
                m.connections_opened,
            ),
            ("auth_failures", "Failed authentications, by error code", "code", m.auth_failures),
            ("rate_limited", "Requests refused by a rate limit", "limit", m.rate_limited),
            ("optimistic_updates", "Optimistic update outcomes sent", "outcome", m.outcomes),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
            for key, value in sorted(data.items()):
                family.add_metric([key], value)
            yield family
        bus = m.bus_counts()
        for name, doc, what in (
            ("bus_messages", "Messages on the cluster's bus, by direction", ""),
            ("bus_bytes", "Bytes of messages on the cluster's bus, by direction", "_bytes"),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["direction"])
            for direction in ("published", "received"):
                family.add_metric([direction], bus.get(direction + what, 0))
            yield family
        for name, doc, value in (
            ("conflicts_raised", "Manual conflicts raised (committed)", m.conflicts_raised),
            ("conflicts_resolved", "Manual conflicts resolved (committed)", m.conflicts_resolved),
            ("update_log_appends", "Trip changes appended to the update log", m.log_appends),
            (
                "slow_consumer_disconnects",
                "Connections closed because they did not read their events",
                m.slow_consumers,
            ),
            ("trips_unloaded", "Idle trip rooms unloaded from memory", m.trips_unloaded),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        active = GaugeMetricFamily(
            f"{PREFIX}_connections_active",
            "Open WebSocket connections, by endpoint",
            labels=["endpoint"],
        )
        queued = deepest = peak = 0
        if m.live is not None:
            live = m.live()
            for endpoint, count in sorted(live.by_endpoint.items()):
                active.add_metric([endpoint], count)
            queued, deepest, peak = live.queued, live.deepest, live.peak
        yield active
        yield GaugeMetricFamily(
            f"{PREFIX}_connections_peak", "Most connections open at once since start", value=peak
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbound_queue_depth",
            "Events waiting in all outbound queues",
            value=queued,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbound_queue_depth_max",
            "Events waiting in the fullest outbound queue",
            value=deepest,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_trips_loaded", "Trip documents loaded in memory", value=m.trips_loaded()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_yjs_peers", "y-websocket peers in a trip room", value=m.yjs_peers()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_asyncio_tasks", "Tasks of the server's event loop", value=m.asyncio_tasks()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_storage_retry_after_ms",
            "retryAfter of trip edits refused while storage fails (0: storage works)",
            value=m.storage_retry_after_ms(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_uptime_seconds",
            "Seconds since the server started",
            value=round(time.time() - m.started_at_s, 3),
        )
