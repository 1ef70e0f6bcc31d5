"""Operations: metrics, health and scheduled maintenance of one server process.

HTTP (``websocket-api.md`` "Performance Monitoring", "Health Checks"):

- ``GET /metrics``: the Prometheus text format of :mod:`api.transport.metrics` (open,
  like ``/health``: bind the server to loopback or restrict it at the proxy);
- ``GET /health``: the ``server_health`` payload; 200 while operational, 503
  while draining (load balancers stop routing before the sockets close);
- ``POST /api/maintenance`` (admin Bearer JWT): ``{"inSeconds", "estimatedDuration",
  "message", "affectedServices"}`` sends ``system_message`` (level
  ``maintenance``) to every connection now and to every connection that
  authenticates before the drain; at ``scheduledTime`` the server drains
  (``connection_close``: code 1001, ``gracePeriod``, ``reconnectAfter`` =
  ``estimatedDuration``) and the process exits. ``DELETE`` cancels it.

WebSocket requests (an event of the type with an empty payload, answered by
an event of the same type): ``connection_health`` for one's own connection
(latency from heartbeat echoes, see :mod:`sync.health`); ``performance_metrics``
and ``server_health`` for admins only (others get ``PERMISSION_DENIED``).

``memoryUsage`` is this process's resident memory over the machine's RAM and
``cpuUsage`` its CPU time over wall time times the machine's cores, over the
last minute (both fractions of the machine, measured with ``psutil``);
``messages.perSecond`` is the events sent and received per second over the
same window. A sampler task records the counters every
:data:`SAMPLE_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import SERVER_VERSION, Connection
from tripsage_sync.api.transport.http_body import read_body
from tripsage_sync.api.transport.metrics import CONTENT_TYPE
from tripsage_sync.api.transport.services import Services, shutdown_services
from tripsage_sync.sync.errors import (
    AuthError,
    InvalidMessage,
    MessageTooLarge,
    PermissionDenied,
    SyncError,
)
from tripsage_sync.sync.events import error_event
from tripsage_sync.sync.health import (
    ConnectionCounts,
    MessageCounts,
    Performance,
    PerformanceMetricsPayload,
    ServerHealthPayload,
    connection_health,
)
from tripsage_sync.sync.wire import (
    ConnectionHealthMessage,
    EventPayload,
    PerformanceMetricsMessage,
    ServerHealthMessage,
    SystemMessagePayload,
    encode,
    iso_ms,
    make_event,
)

if TYPE_CHECKING:
    from tripsage_sync.api.settings import Settings

__all__ = ["SAMPLE_INTERVAL_S", "MaintenanceRequest", "OpsFeature"]

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S: Final = 5.0
SAMPLE_WINDOW_S: Final = 60.0
DEFAULT_AFFECTED: Final = ("chat", "agent_status", "trips")
MAINTENANCE_REASON: Final = "Server maintenance"
MAX_NOTICE_S: Final = 7 * 86_400


class MaintenanceRequest(BaseModel):
    """The body of ``POST /api/maintenance``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inSeconds: Annotated[float, Field(ge=0, le=MAX_NOTICE_S)]
    estimatedDuration: Annotated[float, Field(ge=0, le=MAX_NOTICE_S)] = 0
    message: Annotated[str, Field(min_length=1, max_length=5000)]
    affectedServices: Annotated[list[str], Field(max_length=20)] = list(DEFAULT_AFFECTED)


class _Sample(NamedTuple):
    wall_s: float
    cpu_s: float
    messages: int


class _Maintenance(NamedTuple):
    notice: str  # the encoded system_message, sent again to late joiners
    at_ms: int
    handle: asyncio.TimerHandle


def _http_error(exc: SyncError, status: int, now_ms: int) -> JSONResponse:
    payload = error_event(exc, now_ms=now_ms).payload.wire()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": payload}, status_code=status, headers=headers)


class OpsFeature:
    """Health, metrics and maintenance; a :class:`api.transport.services.Feature`."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._services: Services | None = None
        self._process = psutil.Process(os.getpid())
        self._cores = psutil.cpu_count() or 1
        self._ram_bytes = psutil.virtual_memory().total
        self._samples: deque[_Sample] = deque()
        self._sampler: asyncio.Task[None] | None = None
        self._maintenance: _Maintenance | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def services(self) -> Services:
        assert self._services is not None, "used before start"
        return self._services

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/health", self.http_health, methods=["GET"]),
            Route("/metrics", self.http_metrics, methods=["GET"]),
            Route("/api/maintenance", self.http_maintenance, methods=["POST", "DELETE"]),
        ]

    async def start(self, services: Services) -> None:
        self._services = services
        services.join_hooks.append(self._notify_joiner)
        self._record_sample()
        self._sampler = asyncio.create_task(self._sample_forever(), name="ops-sampler")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.handle.cancel()
        for task in (self._sampler, self._drain):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- measurements ------------------------------------------------------------------

    def _record_sample(self) -> _Sample:
        cpu = self._process.cpu_times()
        metrics = self.services.metrics
        sample = _Sample(
            self.clock.monotonic(), cpu.user + cpu.system, metrics.total_in + metrics.total_out
        )
        self._samples.append(sample)
        while self._samples and sample.wall_s - self._samples[0].wall_s > SAMPLE_WINDOW_S:
            self._samples.popleft()
        return sample

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)  # a period, not a wait for an event
            self._record_sample()

    def _rates(self) -> tuple[float, float]:
        """(cpu fraction of the machine, messages per second) over the window."""
        now = self._record_sample()
        self._samples.pop()  # measured, not kept: the sampler keeps the period even
        base = self._samples[0] if self._samples else now
        elapsed = now.wall_s - base.wall_s
        if elapsed < 0.1:  # just started: the process's lifetime average
            lifetime = max(time.time() - self._process.create_time(), 0.001)
            return now.cpu_s / (lifetime * self._cores), 0.0
        cpu = (now.cpu_s - base.cpu_s) / (elapsed * self._cores)
        return cpu, (now.messages - base.messages) / elapsed

    def server_health(self) -> ServerHealthPayload:
        services = self.services
        cpu, _ = self._rates()
        dependencies = {"database": "ok" if services.store.ping() else "unreachable"}
        if services.settings.redis_url:
            dependencies["redis"] = "ok" if services.bus.healthy else "unreachable"
        status: Literal["operational", "degraded", "draining"] = "operational"
        if not services.hub.accepting:
            status = "draining"
        elif "unreachable" in dependencies.values():
            status = "degraded"
        return ServerHealthPayload(
            status=status,
            nodeId=services.settings.node,
            dependencies=dependencies,
            version=SERVER_VERSION,
            uptime=round(self.clock.now_ms() / 1000 - services.started_at_s, 3),
            connections=len(services.hub.connections),
            memoryUsage=round(self._process.memory_info().rss / self._ram_bytes, 4),
            cpuUsage=round(min(max(cpu, 0.0), 1.0), 4),
        )

    def performance_metrics(self) -> PerformanceMetricsPayload:
        services = self.services
        hub, metrics = services.hub, services.metrics
        _, per_second = self._rates()
        latencies: list[float] = []
        worst: list[int] = []
        for conn in tuple(hub.connections.values()):
            mean, peak = conn.round_trips.latency_ms, conn.round_trips.max_latency_ms
            if mean is not None and peak is not None:
                latencies.append(mean)
                worst.append(peak)
        return PerformanceMetricsPayload(
            connections=ConnectionCounts(
                active=len(hub.connections),
                peak=hub.peak_connections,
                total=hub.total_connections,
            ),
            messages=MessageCounts(
                sent=metrics.total_out,
                received=metrics.total_in,
                perSecond=round(per_second, 2),
            ),
            performance=Performance(
                averageLatency=round(sum(latencies) / len(latencies), 1) if latencies else None,
                maxLatency=max(worst) if worst else None,
                uptime=round(self.clock.now_ms() / 1000 - services.started_at_s, 3),
            ),
        )

    # -- WebSocket requests ------------------------------------------------------------

    def _answer(self, conn: Connection, payload: EventPayload) -> None:
        conn.send(
            make_event(payload, now_ms=self.clock.now_ms(), session_id=conn.session.path_session_id)
        )

    async def on_connection_health(
        self, conn: Connection, message: ConnectionHealthMessage
    ) -> None:
        trips = conn.round_trips
        last = trips.last_received_ms
        payload = connection_health(
            trips,
            queued=conn.queued,
            queue_limit=self.settings.outbound_queue_size,
            last_heartbeat=iso_ms(last) if last is not None else None,
        )
        self._answer(conn, payload)

    @staticmethod
    def _require_admin(conn: Connection, what: str) -> None:
        if conn.principal.role != "admin":
            raise PermissionDenied(f"Only admins read {what}", details={"type": what})

    async def on_performance_metrics(
        self, conn: Connection, message: PerformanceMetricsMessage
    ) -> None:
        self._require_admin(conn, "performance_metrics")
        self._answer(conn, self.performance_metrics())

    async def on_server_health(self, conn: Connection, message: ServerHealthMessage) -> None:
        self._require_admin(conn, "server_health")
        self._answer(conn, self.server_health())

    # -- HTTP --------------------------------------------------------------------------------

    async def http_health(self, request: Request) -> Response:
        health = self.server_health()
        status = 200 if health.status == "operational" else 503
        return JSONResponse(health.model_dump(mode="json"), status_code=status)

    async def http_metrics(self, request: Request) -> Response:
        return Response(self.services.metrics.exposition(), media_type=CONTENT_TYPE)

    async def http_maintenance(self, request: Request) -> Response:
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Missing bearer token", code="AUTH_FAILED")
            principal = self.services.authority.verify(token.strip())
        except AuthError as exc:
            return _http_error(exc, 401, self.clock.now_ms())
        if principal.role != "admin":
            return _http_error(
                PermissionDenied("Only admins schedule maintenance"), 403, self.clock.now_ms()
            )
        if request.method == "DELETE":
            return JSONResponse({"cancelled": self.cancel_maintenance()})
        try:
            raw = await read_body(request, self.services.settings.max_message_size)
        except MessageTooLarge as exc:
            return _http_error(exc, 413, self.clock.now_ms())
        try:
            body = MaintenanceRequest.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors()
            field = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            expected = errors[0]["msg"] if errors else "a JSON object"
            invalid = InvalidMessage(
                "Invalid maintenance request", details={"field": field, "expected": expected}
            )
            return _http_error(invalid, 400, self.clock.now_ms())
        if not self.services.hub.accepting:
            return _http_error(
                PermissionDenied("The server is already draining"), 409, self.clock.now_ms()
            )
        return JSONResponse(self.schedule_maintenance(body, by=principal.user_id))

    # -- maintenance ---------------------------------------------------------------------------

    def schedule_maintenance(self, request: MaintenanceRequest, *, by: str) -> dict[str, Any]:
        """Announce now, drain and exit at the scheduled time (replaces a pending one)."""
        self.cancel_maintenance(announce=False)
        at_ms = self.clock.now_ms() + int(request.inSeconds * 1000)
        payload = SystemMessagePayload(
            level="maintenance",
            message=request.message,
            scheduledTime=iso_ms(at_ms),
            estimatedDuration=request.estimatedDuration,
            affectedServices=request.affectedServices,
        )
        event = make_event(payload, now_ms=self.clock.now_ms())
        hub = self.services.hub
        delivered = hub.broadcast_all(event, relay=False)  # this node's clients: it drains
        loop = asyncio.get_running_loop()
        handle = loop.call_later(request.inSeconds, self._begin_drain, request.estimatedDuration)
        self._maintenance = _Maintenance(encode(event), at_ms, handle)
        logger.info(
            "maintenance scheduled by %s at %s for %.0f s; notice sent to %d connection(s)",
            by,
            payload.scheduledTime,
            request.estimatedDuration,
            delivered,
            extra={"user": by},
        )
        return {
            "scheduledTime": payload.scheduledTime,
            "estimatedDuration": request.estimatedDuration,
            "delivered": delivered,
        }

    def cancel_maintenance(self, *, announce: bool = True) -> bool:
        pending, self._maintenance = self._maintenance, None
        if pending is None:
            return False
        pending.handle.cancel()
        if announce:
            notice = SystemMessagePayload(level="info", message="Scheduled maintenance cancelled")
            self.services.hub.broadcast_all(
                make_event(notice, now_ms=self.clock.now_ms()), relay=False
            )
            logger.info("maintenance at %s cancelled", iso_ms(pending.at_ms))
        return True

    def _notify_joiner(self, conn: Connection) -> None:
        if self._maintenance is not None:
            conn.enqueue(self._maintenance.notice)

    def _begin_drain(self, duration_s: float) -> None:
        self._maintenance = None
        self._drain = asyncio.get_running_loop().create_task(
            self._drain_and_exit(duration_s), name="maintenance-drain"
        )

    async def _drain_and_exit(self, duration_s: float) -> None:
        services = self.services
        logger.info("maintenance: draining %d connection(s)", len(services.hub.connections))
        try:
            await shutdown_services(services, MAINTENANCE_REASON, reconnect_after_s=duration_s)
        except Exception:
            logger.exception("maintenance drain failed")
        if services.request_exit is None:
            logger.warning("maintenance: drained, but no exit hook is set; the process stays up")
            return
        logger.info("maintenance: stopping the server")
        services.request_exit()
