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
:mod:`.seen`               what the live Doc's observer keeps between transactions
:mod:`.kept`               a log entry as memory keeps it: a tuple the collector leaves alone
:mod:`.clientids`          client ids derived per trip and key, state vectors decoded
:mod:`.history`            restore, snapshot, compact, read retained versions
:mod:`.optimistic`         deciding a JSON client's update: bases, merge, LWW
:mod:`.outcome`            the sender's outcome, worded for people
:mod:`.conflict`           pending manual conflicts; resolving and expiring them
:mod:`.shadow`             the observed shadow Doc that sees peers' raw bytes
:mod:`.newkeys`            a peer's update that only adds new keys, vetted from its bytes
:mod:`.remote`             vetting and applying a Yjs peer's update
:mod:`.trip`               :class:`TripDocument`, the facade over the parts
:mod:`.desk`               the optimistic-update path: facts in, intents out
:mod:`.idfilter`           which update ids may have a stored outcome (Bloom)
:mod:`.appended`           when retained versions were appended, in bounded spans
=========================  ==================================================

Callers import from here: ``from sync.document import TripDocument, ...``.
"""

from __future__ import annotations

from tripsage_sync.sync.document.appended import SPANS, AppendTimes
from tripsage_sync.sync.document.desk import (
    EDITORS,
    AwaitInFlightOutcome,
    Broadcast,
    Compact,
    FollowUp,
    Intent,
    NoteOwnVersion,
    Persist,
    RefusalReason,
    ScheduleConflictDeadline,
    SendError,
    SendOutcome,
    SendRollback,
    SendStoredOutcome,
    UpdateFacts,
    UpdateStart,
    persist_failed,
    receive_update,
)
from tripsage_sync.sync.document.idfilter import IdFilter
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
from tripsage_sync.sync.document.state import OlderEntries
from tripsage_sync.sync.document.trip import TripDocument

__all__ = [
    "EDITORS",
    "ROOT_MAP",
    "SPANS",
    "TEXT_FIELDS",
    "AppendTimes",
    "ApplyResult",
    "AwaitInFlightOutcome",
    "Broadcast",
    "Change",
    "Compact",
    "Confirmed",
    "ConflictingUpdate",
    "FieldChange",
    "FieldKind",
    "FollowUp",
    "IdFilter",
    "Intent",
    "LogEntry",
    "MalformedRemoteUpdate",
    "NoteOwnVersion",
    "OlderEntries",
    "Outcome",
    "Persist",
    "RefusalReason",
    "Refused",
    "Rejected",
    "RemoteResult",
    "RemoteUpdateRefused",
    "RollbackReason",
    "Rolledback",
    "ScheduleConflictDeadline",
    "SendError",
    "SendOutcome",
    "SendRollback",
    "SendStoredOutcome",
    "Snapshot",
    "TripDocument",
    "UpdateFacts",
    "UpdateRequest",
    "UpdateStart",
    "persist_failed",
    "receive_update",
]
