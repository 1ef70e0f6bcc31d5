"""The client's metrics (``websocket-api.md`` "Client Metrics")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClientMetrics"]


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
