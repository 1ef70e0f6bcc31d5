"""Payloads of the trip events the server sends.

``websocket-api.md`` "Trip Collaboration Events" (joins, leaves, field locks,
broadcasts, presence, conflicts, permission changes), "Collaboration Session
Management" (the join's answer) and "Conflict Resolution"; the extensions
``conflict_resolved`` and, for ``sync_request`` (README "Resuming"),
``trip_snapshot`` and ``sync_complete``. Values of trip fields are any JSON
(``Any``: taken as the document holds them). A key sent only in some cases
(``replayed``, ``reason``, ``requestId``) is left out unless set
(:attr:`~sync.wire.EventPayload.OMIT_UNSET`); ``null`` values are sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tripsage_sync.sync.wire import EventPayload

__all__ = [
    "CollaborationSessionStartedPayload",
    "ConflictOptionPart",
    "ConflictResolutionRequiredPayload",
    "ConflictResolvedPayload",
    "ConflictingValuePart",
    "FieldChangePart",
    "Permissions",
    "SyncCompletePayload",
    "TripCollaborationJoinPayload",
    "TripCollaborationLeavePayload",
    "TripCollaboratorPresencePayload",
    "TripConflictDetectedPayload",
    "TripFieldEditingStartPayload",
    "TripFieldEditingStopPayload",
    "TripPermissionChangePayload",
    "TripSnapshotPayload",
    "TripUpdateBroadcastPayload",
]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- "Trip Collaboration Events" --------------------------------------------------------


class TripCollaborationJoinPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_collaboration_join"

    tripId: str
    userId: str
    userName: str
    avatarUrl: str | None
    permissionLevel: str
    sessionId: str | None


class TripCollaborationLeavePayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_collaboration_leave"

    tripId: str
    userId: str
    sessionId: str | None


class TripFieldEditingStartPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_field_editing_start"

    tripId: str
    fieldName: str
    fieldPath: str
    userId: str
    userName: str
    lockId: str
    expiresAt: str
    otherEditors: list[str]


class TripFieldEditingStopPayload(EventPayload):
    """``reason`` (``left``, ``timeout``) only when the server released the lock."""

    EVENT_TYPE: ClassVar[str] = "trip_field_editing_stop"
    OMIT_UNSET: ClassVar[bool] = True

    tripId: str
    fieldName: str
    userId: str
    lockId: str | None
    reason: str | None = None


class FieldChangePart(_Part):
    oldValue: Any
    newValue: Any
    fieldPath: str


class TripUpdateBroadcastPayload(EventPayload):
    """``replayed: true`` marks a change sent again in answer to ``sync_request``."""

    EVENT_TYPE: ClassVar[str] = "trip_update_broadcast"
    OMIT_UNSET: ClassVar[bool] = True

    tripId: str
    updatedBy: str
    updateType: str
    changes: dict[str, FieldChangePart]
    version: int
    timestamp: str
    replayed: bool | None = None


class TripCollaboratorPresencePayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_collaborator_presence"

    tripId: str
    # One entry a user (sync.presence.Presence.active_collaborators).
    activeCollaborators: list[dict[str, Any]]


class ConflictingValuePart(_Part):
    userId: str
    value: Any
    timestamp: str


class TripConflictDetectedPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_conflict_detected"

    tripId: str
    conflictId: str
    fieldName: str
    conflictType: str
    conflictingValues: list[ConflictingValuePart]
    resolutionStrategy: str
    winningValue: Any
    winningUserId: str | None


class TripPermissionChangePayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "trip_permission_change"

    tripId: str
    targetUserId: str
    changedBy: str
    oldPermission: str | None
    newPermission: str | None
    effectiveImmediately: bool


# -- "Collaboration Session Management" ------------------------------------------------


class Permissions(_Part):
    canEdit: bool
    canInvite: bool
    canDelete: bool


class CollaborationSessionStartedPayload(EventPayload):
    """The answer to ``collaboration_session_start`` / ``trip_join``: the whole trip."""

    EVENT_TYPE: ClassVar[str] = "collaboration_session_started"

    sessionId: str
    tripId: str
    activeCollaborators: int
    yourPermissions: Permissions
    permissionLevel: str
    features: list[str]
    serverVersion: int
    version: int
    fields: dict[str, Any]
    manualResolutionFields: list[str]
    # Who is in the trip now, the joiner too, as ``trip_collaborator_presence`` lists them:
    # a client knows its collaborators from the answer, before the next presence event.
    collaborators: list[dict[str, Any]]


# -- "Conflict Resolution" -------------------------------------------------------------


class ConflictOptionPart(_Part):
    id: str
    value: Any
    source: str
    timestamp: str
    description: str


class ConflictResolutionRequiredPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "conflict_resolution_required"

    conflictId: str
    tripId: str
    fieldName: str
    options: list[ConflictOptionPart]
    autoResolveAfter: int  # milliseconds
    defaultOption: str
    resolveBy: str


class ConflictResolvedPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "conflict_resolved"

    tripId: str
    conflictId: str
    fieldName: str
    resolvedValue: Any
    resolvedBy: str
    version: int


# -- "sync_request" (README "Resuming") ------------------------------------------------


class TripSnapshotPayload(EventPayload):
    """The whole trip at ``version``, instead of changes (``reason`` says why)."""

    EVENT_TYPE: ClassVar[str] = "trip_snapshot"

    tripId: str
    version: int
    fields: dict[str, Any]
    reason: str


class SyncCompletePayload(EventPayload):
    """The end of the answer to ``sync_request`` (``requestId``: the request's id)."""

    EVENT_TYPE: ClassVar[str] = "sync_complete"
    OMIT_UNSET: ClassVar[bool] = True

    tripId: str
    version: int
    fromVersion: int
    changes: int
    snapshot: bool
    requestId: str | None = None
