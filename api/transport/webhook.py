"""The outgoing webhook: every trip change committed here, POSTed to a URL, signed.

Theory of operation
-------------------
:class:`Webhook` is a :class:`api.transport.hooks.Hooks` object: its
``on_change`` runs in the hook runner's task for it, one change after the
other in commit order, so an edit never waits for it. Each change is one
``POST`` of JSON::

    {"event": "trip.changed", "deliveryId": "trip-1:7", "tripId": "trip-1",
     "version": 7, "updatedBy": "alice", "origin": "json",
     "changes": {"budget": {"oldValue": 2000, "newValue": 2500}},
     "timestamp": "2026-12-03T18:00:00.000Z", "node": "web-1"}

with the headers ``X-TripSage-Event: trip.changed``, ``X-TripSage-Delivery``
(the ``deliveryId``: a receiver that got it twice ignores the second) and
``X-TripSage-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body
bytes with the webhook secret (compare it in constant time).

A 2xx answer delivers it. A network error, a timeout, 408, 429 or a 5xx is
retried after 1, 2, 4, ... s (at most :data:`MAX_DELAY_S`, with jitter,
never sooner than a ``Retry-After``), up to ``attempts`` tries; any other
answer (a 4xx: the receiver refuses it) is given up at once. Deliveries are
at least once while the node runs: what is queued when it stops is lost (the
log says how many), so a receiver that must miss nothing reads
``GET /api/trips/{tripId}`` when the versions it saw have a gap.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from typing import Final

import httpx

from tripsage_sync.api import __version__
from tripsage_sync.api.transport.hooks import Hooks, TripChange
from tripsage_sync.sync.wire import iso_ms

__all__ = ["MAX_DELAY_S", "Webhook", "signature"]

logger = logging.getLogger(__name__)

#: The longest wait between two tries of one delivery.
MAX_DELAY_S: Final = 60.0
_RETRIED: Final = frozenset({408, 429})


def signature(secret: str, body: bytes) -> str:
    """The ``X-TripSage-Signature`` of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook(Hooks):
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        node: str,
        timeout_s: float = 5.0,
        attempts: int = 6,
        initial_delay_s: float = 1.0,
    ) -> None:
        self.url = url
        self._secret = secret
        self.node = node
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.initial_delay_s = initial_delay_s
        self._client: httpx.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0

    def body(self, change: TripChange) -> bytes:
        return json.dumps(
            {
                "event": "trip.changed",
                "deliveryId": f"{change.trip_id}:{change.version}",
                "tripId": change.trip_id,
                "version": change.version,
                "updatedBy": change.updated_by,
                "origin": change.origin,
                "changes": change.changes,
                "timestamp": iso_ms(change.at_ms),
                "node": self.node,
            },
            separators=(",", ":"),
        ).encode()

    async def on_change(self, change: TripChange) -> None:
        body = self.body(change)
        delivery = f"{change.trip_id}:{change.version}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tripsage-sync/{__version__}",
            "X-TripSage-Event": "trip.changed",
            "X-TripSage-Delivery": delivery,
            "X-TripSage-Signature": signature(self._secret, body),
        }
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        for attempt in range(1, self.attempts + 1):
            wait_s = min(self.initial_delay_s * 2 ** (attempt - 1), MAX_DELAY_S)
            try:
                answer = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            else:
                if 200 <= answer.status_code < 300:
                    self.delivered += 1
                    return
                reason = f"HTTP {answer.status_code}"
                if answer.status_code < 500 and answer.status_code not in _RETRIED:
                    break  # refused: trying again would be refused again
                wait_s = max(wait_s, _retry_after(answer))
            if attempt < self.attempts:
                logger.info("webhook %s: try %d failed (%s)", delivery, attempt, reason)
                # The backoff itself (the next try of this delivery), not a wait for an event.
                await asyncio.sleep(wait_s * random.uniform(0.8, 1.2))
        self.failed += 1
        logger.warning("webhook %s: not delivered (%s)", delivery, reason)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _retry_after(answer: httpx.Response) -> float:
    try:
        return min(float(answer.headers.get("retry-after", "0")), MAX_DELAY_S)
    except ValueError:
        return 0.0
