"""Health and performance payloads (``websocket-api.md`` "Performance Monitoring").

Sans-I/O: every number comes in as an argument; nothing here reads a clock,
the process table or a socket.

Heartbeat round trips
---------------------
The server sends ``connection_heartbeat`` every ``heartbeat_interval_s`` (and
in answer to each client heartbeat), with ``payload.serverTime``. A client
that answers a server heartbeat at once with its own
``{"type": "connection_heartbeat", "payload": {"serverTime": <the echo>}}``
lets the server measure the round trip on its own clock: latency is the time
from sending that heartbeat to reading the echo (no clock skew between the
two machines enters). :class:`RoundTrips` accepts an echo only of a
``serverTime`` it sent and not yet measured, so an old or invented time
cannot produce a sample. A client that never echoes has no measured latency
(``latency: null``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict

from tripsage_sync.sync.wire import EventPayload

__all__ = [
    "LATENCY_SAMPLES",
    "STABLE_LATENCY_MS",
    "ConnectionHealthPayload",
    "PerformanceMetricsPayload",
    "RoundTrips",
    "ServerHealthPayload",
    "connection_health",
]

#: Round trips kept per connection (the latency reported is their mean).
LATENCY_SAMPLES: Final = 10
#: Server heartbeats remembered as awaiting an echo.
OUTSTANDING_HEARTBEATS: Final = 4
#: Above this mean round trip a connection is not "stable".
STABLE_LATENCY_MS: Final = 1000.0


@dataclass(slots=True)
class RoundTrips:
    """Heartbeat round trips of one connection; see the module docstring."""

    # (serverTime as sent, when it was sent) of heartbeats awaiting an echo.
    outstanding: deque[tuple[str, int]] = field(
        default_factory=lambda: deque(maxlen=OUTSTANDING_HEARTBEATS)
    )
    samples_ms: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    last_received_ms: int | None = None

    def heartbeat_sent(self, server_time: str, now_ms: int) -> None:
        self.outstanding.append((server_time, now_ms))

    def heartbeat_received(self, now_ms: int, echoed_server_time: str | None) -> int | None:
        """A client heartbeat arrived; the round trip it measured, if any."""
        self.last_received_ms = now_ms
        if echoed_server_time is None:
            return None
        for item in self.outstanding:
            if item[0] == echoed_server_time:
                self.outstanding.remove(item)
                rtt = max(0, now_ms - item[1])
                self.samples_ms.append(rtt)
                return rtt
        return None

    @property
    def latency_ms(self) -> float | None:
        if not self.samples_ms:
            return None
        return round(sum(self.samples_ms) / len(self.samples_ms), 1)

    @property
    def max_latency_ms(self) -> int | None:
        return max(self.samples_ms) if self.samples_ms else None


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True)


class ConnectionHealthPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "connection_health"

    status: Literal["healthy", "degraded"]
    latency: float | None
    lastHeartbeat: str | None
    messagesInQueue: int
    connectionStable: bool


class ServerHealthPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "server_health"

    status: Literal["operational", "degraded", "draining"]
    version: str
    uptime: float
    connections: int
    memoryUsage: float
    cpuUsage: float
    # Beyond the spec's example: which node answered, and whether it reaches what it
    # needs ("ok" or "unreachable" per dependency: "database", and "redis" in a cluster).
    # "degraded": one is unreachable (reads may still work, edits are refused for now).
    nodeId: str | None = None
    dependencies: dict[str, str] | None = None


class ConnectionCounts(_Payload):
    active: int
    peak: int
    total: int


class MessageCounts(_Payload):
    sent: int
    received: int
    perSecond: float


class Performance(_Payload):
    averageLatency: float | None
    maxLatency: float | None
    uptime: float


class PerformanceMetricsPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "performance_metrics"

    connections: ConnectionCounts
    messages: MessageCounts
    performance: Performance


def connection_health(
    trips: RoundTrips,
    *,
    queued: int,
    queue_limit: int,
    last_heartbeat: str | None,
) -> ConnectionHealthPayload:
    """``connection_health``: stable while the queue is under half its limit and
    the measured latency (if any) under :data:`STABLE_LATENCY_MS`."""
    latency = trips.latency_ms
    stable = queued * 2 < queue_limit and (latency is None or latency < STABLE_LATENCY_MS)
    return ConnectionHealthPayload(
        status="healthy" if stable else "degraded",
        latency=latency,
        lastHeartbeat=last_heartbeat,
        messagesInQueue=queued,
        connectionStable=stable,
    )
