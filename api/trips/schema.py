"""The trips' HTTP operations and answers, for :mod:`api.transport.openapi`."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, JsonValue

from tripsage_sync.api.transport.openapi import HttpError, Operation
from tripsage_sync.api.trips.http import TRIP_ID, CollaboratorRequest, CreateTripRequest

__all__ = ["OPERATIONS", "Trip", "TripCollaborator", "TripList", "TripListEntry"]


class TripCollaborator(BaseModel):
    userId: str
    permissionLevel: str


class Trip(BaseModel):
    """The trip: its fields at ``version``, who may read or edit it."""

    tripId: str
    version: int
    fields: dict[str, JsonValue]
    manualResolutionFields: list[str]
    collaborators: list[TripCollaborator]
    ownerId: str


class TripListEntry(Trip):
    permissionLevel: str


class TripList(BaseModel):
    """The trips the caller may read, with the caller's permission on each."""

    trips: list[TripListEntry]


_TRIP: Final = "/api/trips/{tripId}"
_MEMBER: Final = "/api/trips/{tripId}/collaborators/{userId}"
# Trip and user ids in paths (a collaborator's id is held to the trip id's pattern).
_IDS: Final = {"tripId": TRIP_ID.pattern, "userId": TRIP_ID.pattern}
_SHARE: Final[dict[int, type[BaseModel] | str]] = {
    200: Trip,
    400: HttpError,
    401: HttpError,
    403: HttpError,
    404: HttpError,
}

OPERATIONS: Final = (
    Operation(
        "GET", "/api/trips", "The caller's trips", {200: TripList, 401: HttpError}, tag="trips"
    ),
    Operation(
        "POST",
        "/api/trips",
        "Create a trip (the caller owns it)",
        {201: Trip, 400: HttpError, 401: HttpError, 409: HttpError, 413: HttpError},
        body=CreateTripRequest,
        body_required=False,
        tag="trips",
    ),
    Operation(
        "GET",
        _TRIP,
        "Read one trip",
        {200: Trip, 401: HttpError, 404: HttpError},
        tag="trips",
        patterns=_IDS,
    ),
    Operation(
        "PUT",
        _MEMBER,
        "Share the trip (owners only); trip_permission_change at once",
        {**_SHARE, 413: HttpError},
        body=CollaboratorRequest,
        tag="trips",
        patterns=_IDS,
    ),
    Operation(
        "DELETE",
        _MEMBER,
        "Take a collaborator off the trip (owners only)",
        _SHARE,
        tag="trips",
        patterns=_IDS,
    ),
)
