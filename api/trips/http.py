"""The trips' HTTP API: create, list, read, share (``Authorization: Bearer``).

``POST /api/trips`` creates a trip (the caller owns it), ``GET /api/trips``
lists the caller's, ``GET /api/trips/{tripId}`` reads one, and
``PUT``/``DELETE /api/trips/{tripId}/collaborators/{userId}`` (owners only)
change who may read or edit it, effective at once (``trip_permission_change``).
A trip the caller may not read answers 404, like one that does not exist.
:class:`TripHttp` is a feature of its own composed on
:class:`api.trips.feature.TripFeature`, whose rooms and presence it uses.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tripsage_sync.api.restore import keep_recent
from tripsage_sync.api.transport.http_body import read_body
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.rooms import TripRoom
from tripsage_sync.storage import ops
from tripsage_sync.storage.errors import AlreadyExists
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.collaboration import TripPermissionChangePayload
from tripsage_sync.sync.conflicts.value import FIELD_NAME_PATTERN
from tripsage_sync.sync.document import TripDocument
from tripsage_sync.sync.errors import (
    AuthError,
    InvalidMessage,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    SyncError,
)
from tripsage_sync.sync.wire import make_event

__all__ = ["TRIP_ID", "TripHttp"]

logger = logging.getLogger(__name__)

TRIP_ID: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,128}$")
_FIELD_NAME: Final = f"^{FIELD_NAME_PATTERN.pattern}$"


def channel(trip_id: str) -> str:
    return f"trip:{trip_id}"


class CreateTripRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tripId: str | None = Field(default=None, pattern=TRIP_ID.pattern)
    # Field names are checked after parsing (one message for both lists); the schema
    # (docs/openapi.json) says the same rule.
    fields: dict[str, JsonValue] = Field(
        default={}, json_schema_extra={"propertyNames": {"pattern": _FIELD_NAME}}
    )
    manualResolutionFields: (
        list[Annotated[str, Field(json_schema_extra={"pattern": _FIELD_NAME})]] | None
    ) = Field(default=None, max_length=64)


class CollaboratorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    permissionLevel: str = Field(pattern="^(viewer|editor|owner)$")


def _http_error(exc: SyncError, status: int) -> JSONResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return JSONResponse(body, status_code=status)


class TripHttp:
    """The HTTP endpoints of the trips feature: a :class:`api.transport.services.Feature`
    composed on the :class:`TripFeature` whose rooms it reads and changes."""

    def __init__(self, trips: TripFeature) -> None:
        self.trips = trips

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/trips", self.http_trips, methods=["GET", "POST"]),
            Route("/api/trips/{trip_id}", self.http_trip, methods=["GET"]),
            Route(
                "/api/trips/{trip_id}/collaborators/{user_id}",
                self.http_collaborator,
                methods=["PUT", "DELETE"],
            ),
        ]

    async def start(self, services: Services) -> None:
        """Nothing to start: the trip feature holds the rooms."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def _principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Missing bearer token", code="AUTH_FAILED")
        return self.trips.services.authority.verify(token.strip())

    def _trip_json(self, room: TripRoom) -> dict[str, Any]:
        return {
            "tripId": room.trip_id,
            "version": room.doc.version,
            "fields": room.doc.fields(),
            "manualResolutionFields": sorted(room.doc.manual_fields),
            "collaborators": [
                {"userId": user, "permissionLevel": level}
                for user, level in sorted(room.permissions.items())
            ],
            "ownerId": room.owner_id,
        }

    async def http_trips(self, request: Request) -> Response:
        try:
            principal = self._principal(request)
        except AuthError as exc:
            return _http_error(exc, 401)
        if request.method == "GET":
            trips = []
            for trip in self.trips.services.store.trips_for_user(principal.user_id):
                room = self.trips.registry.get(trip.trip_id)
                trips.append(
                    {**self._trip_json(room), "permissionLevel": room.permission(principal.user_id)}
                )
            return JSONResponse({"trips": trips})
        return await self._create_trip(request, principal)

    async def _create_trip(self, request: Request, principal: Principal) -> Response:
        try:
            body = await read_body(request, self.trips.settings.max_message_size)
        except MessageTooLarge as exc:
            return _http_error(exc, 413)
        try:
            data = CreateTripRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in error["loc"])
            return _http_error(
                InvalidMessage(
                    f"Invalid field '{field}': {error['msg']}", details={"field": field}
                ),
                400,
            )
        trip_id = data.tripId or f"trip-{secrets.token_hex(8)}"
        manual = frozenset(
            self.trips.settings.manual_fields
            if data.manualResolutionFields is None
            else data.manualResolutionFields
        )
        try:
            doc, change = TripDocument.create(
                trip_id,
                dict(data.fields),
                manual,
                created_by=principal.user_id,
                now_ms=self.trips.clock.now_ms(),
                auto_resolve_after_ms=self.trips.settings.conflict_auto_resolve_ms,
            )
        except InvalidMessage as exc:
            return _http_error(exc, 400)
        now = self.trips.clock.now_ms()
        writes: list[Any] = [
            ops.create_trip(trip_id, principal.user_id, json.dumps(sorted(manual)), now),
            ops.set_collaborator(trip_id, principal.user_id, "owner"),
            ops.append_update(trip_id, change.version, change.update, json.dumps(change.meta), now),
        ]
        try:
            await self.trips.services.write(self.trips.services.store.submit_all(writes))
        except AlreadyExists:
            return _http_error(
                InvalidMessage("A trip with this id exists", details={"tripId": trip_id}), 409
            )
        store = self.trips.services.store
        keep_recent(store, doc, self.trips.settings.history_window_updates)
        room = self.trips.registry.adopt(
            trip_id, doc, principal.user_id, {principal.user_id: "owner"}
        )
        room.appended.add(change.version, now)
        logger.info("trip %s created by %s", trip_id, principal.user_id)
        return JSONResponse(self._trip_json(room), status_code=201)

    def _http_room(self, request: Request) -> tuple[Principal, TripRoom, str] | Response:
        """The caller, the trip and their permission; else the 401/404 to answer."""
        try:
            principal = self._principal(request)
            room, permission = self.trips.room_for(principal, request.path_params["trip_id"])
        except AuthError as exc:
            return _http_error(exc, 401)
        except PermissionDenied:  # not a collaborator looks like no such trip
            return _http_error(NotFound("Trip not found"), 404)
        return principal, room, permission

    async def http_trip(self, request: Request) -> Response:
        found = self._http_room(request)
        if isinstance(found, Response):
            return found
        room = found[1]
        if room.holds:  # answered from durable state
            await room.settle(self.trips.services)
            found = self._http_room(request)
            if isinstance(found, Response):
                return found
            room = found[1]
        return JSONResponse(self._trip_json(room))

    async def http_collaborator(self, request: Request) -> Response:
        found = self._http_room(request)
        if isinstance(found, Response):
            return found
        principal, room, permission = found
        if permission != "owner":
            return _http_error(PermissionDenied("Only owners manage collaborators"), 403)
        target = request.path_params["user_id"]
        if not TRIP_ID.match(target):
            return _http_error(InvalidMessage("Invalid user id"), 400)
        if target == room.owner_id:
            return _http_error(InvalidMessage("The trip's creator stays its owner"), 400)
        old = room.permission(target)
        if request.method == "PUT":
            try:
                raw = await read_body(request, self.trips.settings.max_message_size)
            except MessageTooLarge as exc:
                return _http_error(exc, 413)
            try:
                new: str | None = CollaboratorRequest.model_validate_json(raw).permissionLevel
            except ValidationError:
                return _http_error(
                    InvalidMessage(
                        "permissionLevel must be viewer, editor or owner",
                        details={"field": "permissionLevel", "expected": "viewer|editor|owner"},
                    ),
                    400,
                )
            assert new is not None
            await self.trips.services.write(
                self.trips.services.store.set_collaborator(room.trip_id, target, new)
            )
            room = self.trips.registry.get(room.trip_id)  # the same, unless unloaded meanwhile
            room.permissions[target] = new
            room.presence.set_permission(target, new)
        else:
            new = None
            await self.trips.services.write(
                self.trips.services.store.remove_collaborator(room.trip_id, target)
            )
            room = self.trips.registry.get(room.trip_id)
            room.permissions.pop(target, None)
        payload = TripPermissionChangePayload(
            tripId=room.trip_id,
            targetUserId=target,
            changedBy=principal.user_id,
            oldPermission=old,
            newPermission=new,
            effectiveImmediately=True,
        )
        event = make_event(payload, now_ms=self.trips.clock.now_ms())
        self.trips.hub.publish(channel(room.trip_id), event)
        for conn in self.trips.hub.by_user.get(target, set()):
            if channel(room.trip_id) not in conn.session.subscriptions:
                conn.send(event)
        if new is None:  # removed: out of the room at once
            for conn in list(self.trips.hub.by_user.get(target, set())):
                self.trips.hub.unsubscribe(conn, channel(room.trip_id))
                self.trips.leave(room, conn)
        else:
            self.trips.publish_presence(room)
        return JSONResponse(self._trip_json(room))
