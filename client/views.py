"""What the client knows of each trip (fields and version), kept up to date from events,
and the joins and sync requests waiting for their answers.

A view moves only forward: a broadcast applies when it is newer than the view, a
snapshot when it is at least as new, ``sync_complete`` raises the version to its
marker (``websocket-api.md`` "trip_update_broadcast"; README "Resuming": a change
seen both live and replayed is applied once). Events for a trip the client has no
view of are ignored. Joins and requests are futures, resolved by the answer
(``collaboration_session_started``, ``sync_complete``) or refused by an ``error``
naming their message id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, assert_never

from tripsage_sync.client.base import RequestRefused
from tripsage_sync.client.events import (
    BroadcastPayload,
    CollaborationSessionStarted,
    ErrorDetails,
    PresencePayload,
    SessionStartedPayload,
    SnapshotPayload,
    SyncComplete,
    SyncCompletePayload,
    TripCollaboratorPresence,
    TripEvent,
    TripSnapshot,
    TripUpdateBroadcast,
)
from tripsage_sync.client.queue import PendingUpdate, UpdateStatus

__all__ = ["TripView", "TripViews"]


@dataclass
class TripView:
    """The client's copy of a trip: server values at ``version`` (pending edits apart)."""

    trip_id: str
    version: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    joined: bool = False
    permission_level: str | None = None
    collaborators: list[dict[str, Any]] = field(default_factory=list)


class TripViews:
    """The views by trip id, the joins waiting for their answer, the pending sync requests."""

    def __init__(self, next_id: Callable[[str], str]) -> None:
        self._next_id = next_id
        self._trips: dict[str, TripView] = {}
        self._joins: dict[str, list[asyncio.Future[TripView]]] = {}
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def trip(self, trip_id: str) -> TripView:
        view = self._trips.get(trip_id)
        if view is None:
            view = self._trips[trip_id] = TripView(trip_id)
        return view

    def __iter__(self) -> Iterator[TripView]:
        return iter(self._trips.values())

    # -- requests --------------------------------------------------------------------

    def join_message(self, trip_id: str) -> dict[str, Any]:
        return {
            "id": f"join-{self._next_id(trip_id)}",
            "type": "collaboration_session_start",
            "payload": {"tripId": trip_id},
        }

    def sync_message(self, trip_id: str, since: int) -> dict[str, Any]:
        return {
            "id": self._next_id("sync"),
            "type": "sync_request",
            "payload": {"tripId": trip_id, "sinceVersion": since},
        }

    def wait_joined(self, trip_id: str) -> asyncio.Future[TripView]:
        waiter: asyncio.Future[TripView] = asyncio.get_running_loop().create_future()
        self._joins.setdefault(trip_id, []).append(waiter)
        return waiter

    def wait_answer(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[message_id] = waiter
        return waiter

    def resume_messages(self, pending_trips: set[str]) -> list[dict[str, Any]]:
        """On connecting, per trip: catch up (``sync_request``), then join again."""
        messages = []
        for view in self._trips.values():
            # A view never filled (a restart with pending updates) syncs from 0.
            if (view.version > 0 and view.joined) or view.trip_id in pending_trips:
                messages.append(self.sync_message(view.trip_id, view.version))
            if view.joined:
                messages.append(self.join_message(view.trip_id))
        return messages

    # -- events ----------------------------------------------------------------------

    def receive(self, event: TripEvent, payload: dict[str, Any]) -> None:
        """Apply a trip event (``payload``: its raw payload) to its view, if there is one."""
        view = self._trips.get(event.payload.trip_id)
        if view is None:
            return
        match event:
            case CollaborationSessionStarted():
                self._started(view, event.payload)
            case TripUpdateBroadcast():
                self._broadcast(view, event.payload)
            case TripSnapshot():
                self._snapshot(view, event.payload)
            case SyncComplete():
                self._complete(view, event.payload, payload)
            case TripCollaboratorPresence():
                self._presence(view, event.payload)
            case _:
                assert_never(event)

    def _started(self, view: TripView, payload: SessionStartedPayload) -> None:
        view.fields = dict(payload.fields)
        view.version = payload.current_version
        view.permission_level = payload.permission_level
        if payload.collaborators is not None:
            view.collaborators = list(payload.collaborators)
        for joined in self._joins.pop(view.trip_id, []):
            if not joined.done():
                joined.set_result(view)

    @staticmethod
    def _broadcast(view: TripView, payload: BroadcastPayload) -> None:
        if payload.version > view.version:
            for name, change in payload.changes.items():
                view.fields[name] = change.new_value
            view.version = payload.version

    @staticmethod
    def _snapshot(view: TripView, payload: SnapshotPayload) -> None:
        if payload.version >= view.version:
            view.fields = dict(payload.fields)
            view.version = payload.version

    def _complete(self, view: TripView, payload: SyncCompletePayload, raw: dict[str, Any]) -> None:
        view.version = max(view.version, payload.version)
        request = self._requests.pop(payload.request_id or "", None)
        if request is not None and not request.done():
            request.set_result(raw)

    @staticmethod
    def _presence(view: TripView, payload: PresencePayload) -> None:
        view.collaborators = list(payload.active_collaborators)

    def outcome(self, update: PendingUpdate) -> None:
        """An own update's outcome: the server's value at its version (never broadcast back)."""
        view, version = self.trip(update.trip_id), update.server_version
        if update.status is UpdateStatus.ROLLED_BACK or version is None:
            return
        if version > view.version:
            view.fields[update.field_key] = update.server_value
            view.version = version

    def refused(self, details: ErrorDetails, payload: dict[str, Any]) -> None:
        """An ``error`` naming a request (``details.messageId``): refuse its waiter."""
        message_id = details.message_id
        if message_id is None:
            return
        request = self._requests.pop(message_id, None)
        if request is not None and not request.done():
            request.set_exception(RequestRefused(payload))
        trip_id = details.trip_id
        if trip_id is not None and message_id.startswith("join-"):
            self.trip(trip_id).joined = False
            for waiter in self._joins.pop(trip_id, []):
                if not waiter.done():
                    waiter.set_exception(RequestRefused(payload))

    # -- the connection ----------------------------------------------------------------

    def disconnected(self) -> None:
        """Presence is per connection: it is gone with it."""
        for view in self._trips.values():
            view.collaborators = []

    def fail(self, exc: BaseException) -> None:
        """The client ended: every join and request fails with what ended it."""
        for futures in self._joins.values():
            for waiter in futures:
                if not waiter.done():
                    waiter.set_exception(exc)
        self._joins.clear()
        for request in self._requests.values():
            if not request.done():
                request.set_exception(exc)
        self._requests.clear()
