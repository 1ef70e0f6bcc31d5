"""The client's metrics (``websocket-api.md`` "Client Metrics") and the meter counting them."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tripsage_sync.client.base import HIGH_FREQUENCY_PER_S, LATENCY_SAMPLES

__all__ = ["ClientMetrics", "Meter"]


@dataclass(frozen=True)
class ClientMetrics:
    """ "Client Metrics" of the spec; :meth:`to_json` gives its camelCase object.

    Counts are frames (a batch is one), bytes are UTF-8. ``connection_duration_ms``
    is the time spent connected (every connection so far), ``messages_per_second``
    is (sent + received) over it and ``average_message_size`` is bytes sent per
    message sent, as in the spec's example.
    """

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    connection_duration_ms: int
    messages_per_second: float
    average_message_size: float
    queued_messages: int
    is_high_frequency: bool
    latency_ms: float | None
    average_latency_ms: float | None
    reconnections: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "messagesSent": self.messages_sent,
            "messagesReceived": self.messages_received,
            "bytesSent": self.bytes_sent,
            "bytesReceived": self.bytes_received,
            "connectionDuration": self.connection_duration_ms,
            "messagesPerSecond": round(self.messages_per_second, 2),
            "averageMessageSize": round(self.average_message_size, 1),
            "queuedMessages": self.queued_messages,
            "isHighFrequency": self.is_high_frequency,
            "latency": self.latency_ms,
            "averageLatency": self.average_latency_ms,
            "reconnections": self.reconnections,
            "errors": self.errors,
        }


class Meter:
    """Counts frames, bytes, time connected, latencies, reconnections and errors."""

    def __init__(self) -> None:
        self.sent = self.received = self.bytes_sent = self.bytes_received = 0
        self.connected_total_s = 0.0
        self.connected_since: float | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)  # milliseconds
        self.reconnections = 0
        self.errors = 0

    def count_sent(self, text: str) -> None:
        self.sent += 1
        self.bytes_sent += len(text.encode())

    def count_received(self, raw: Any) -> None:
        self.received += 1
        text = raw if isinstance(raw, str | bytes) else json.dumps(raw)
        self.bytes_received += len(text.encode() if isinstance(text, str) else text)

    def connected(self) -> None:
        self.connected_since = time.monotonic()

    def disconnected(self) -> None:
        if self.connected_since is not None:
            self.connected_total_s += time.monotonic() - self.connected_since
            self.connected_since = None

    def metrics(self, queued_messages: int) -> ClientMetrics:
        connected_s = self.connected_total_s
        if self.connected_since is not None:
            connected_s += time.monotonic() - self.connected_since
        rate = (self.sent + self.received) / connected_s if connected_s > 0 else 0.0
        latencies = list(self.latencies)
        return ClientMetrics(
            messages_sent=self.sent,
            messages_received=self.received,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            connection_duration_ms=int(connected_s * 1000),
            messages_per_second=rate,
            average_message_size=self.bytes_sent / self.sent if self.sent else 0.0,
            queued_messages=queued_messages,
            is_high_frequency=rate > HIGH_FREQUENCY_PER_S,
            latency_ms=latencies[-1] if latencies else None,
            average_latency_ms=sum(latencies) / len(latencies) if latencies else None,
            reconnections=self.reconnections,
            errors=self.errors,
        )
