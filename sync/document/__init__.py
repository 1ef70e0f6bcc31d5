"""The trip document: a pycrdt Doc per trip, its version, optimistic updates and history.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution"; the rules themselves live in
:mod:`sync.conflicts`). Sans-I/O: time arrives as ``*_ms`` arguments, results
are returned for ``api/`` to persist and broadcast. One module a concern,
each with its part of the theory:

=========================  ==================================================
:mod:`.schema`             the Yjs schema of a trip; reading and editing values
:mod:`.results`            requests, changes, snapshots and outcomes
:mod:`.state`              the live Doc, versions, forks and the write path
:mod:`.history`            restore, snapshot, compact, read retained versions
:mod:`.optimistic`         deciding a JSON client's update: bases, merge, LWW
:mod:`.outcome`            the sender's outcome, worded for people
:mod:`.conflict`           pending manual conflicts; resolving and expiring them
:mod:`.shadow`             the observed shadow Doc that sees peers' raw bytes
:mod:`.remote`             vetting and applying a Yjs peer's update
:mod:`.trip`               :class:`TripDocument`, the facade over the parts
=========================  ==================================================

Callers import from here: ``from sync.document import TripDocument, ...``.
"""

from __future__ import annotations

from tripsage_sync.sync.document.results import (
    ApplyResult,
    Change,
    Confirmed,
    ConflictingUpdate,
    FieldChange,
    LogEntry,
    MalformedRemoteUpdate,
    Outcome,
    Refused,
    Rejected,
    RemoteResult,
    RemoteUpdateRefused,
    RollbackReason,
    Rolledback,
    Snapshot,
    UpdateRequest,
)
from tripsage_sync.sync.document.schema import ROOT_MAP, TEXT_FIELDS, FieldKind
from tripsage_sync.sync.document.trip import TripDocument

__all__ = [
    "ROOT_MAP",
    "TEXT_FIELDS",
    "ApplyResult",
    "Change",
    "Confirmed",
    "ConflictingUpdate",
    "FieldChange",
    "FieldKind",
    "LogEntry",
    "MalformedRemoteUpdate",
    "Outcome",
    "Refused",
    "Rejected",
    "RemoteResult",
    "RemoteUpdateRefused",
    "RollbackReason",
    "Rolledback",
    "Snapshot",
    "TripDocument",
    "UpdateRequest",
]
