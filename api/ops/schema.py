"""Health, metrics and maintenance for the OpenAPI document (:mod:`api.transport.openapi`)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from tripsage_sync.api.ops.feature import MaintenanceRequest
from tripsage_sync.api.transport.openapi import HttpErrorEvent, Operation
from tripsage_sync.sync.health import ServerHealthPayload

__all__ = ["OPERATIONS"]


class MaintenanceScheduled(BaseModel):
    """When the drain starts; the notice reached ``delivered`` connections."""

    scheduledTime: str
    estimatedDuration: float
    delivered: int


class MaintenanceCancelled(BaseModel):
    """Whether a pending maintenance was cancelled."""

    cancelled: bool


_ADMIN: Final = {401: HttpErrorEvent, 403: HttpErrorEvent}

OPERATIONS: Final = (
    Operation(
        "GET",
        "/health",
        "server_health: 200 when operational, 503 when degraded or draining",
        {200: ServerHealthPayload, 503: ServerHealthPayload},
        auth=False,
        tag="ops",
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus exposition",
        {200: "text/plain"},
        auth=False,
        tag="ops",
    ),
    Operation(
        "POST",
        "/api/maintenance",
        "Announce maintenance now, drain and exit at the time (admins)",
        {200: MaintenanceScheduled, 400: HttpErrorEvent, **_ADMIN, 409: HttpErrorEvent},
        body=MaintenanceRequest,
        tag="ops",
    ),
    Operation(
        "DELETE",
        "/api/maintenance",
        "Cancel a pending maintenance (admins)",
        {200: MaintenanceCancelled, **_ADMIN},
        tag="ops",
    ),
)
